"""The training loops the speed benchmark compares: softmax_core's engine and its peers.

Every variant but ``engine_defaults`` (the engine with the lab's Adam, cosine and L2) runs
constant-learning-rate minibatch SGD from zero weights over the same batch order — epoch k
visits ``numpy.random.default_rng(seed)``'s k-th ``permutation(n)``, which is how the engine
draws it — and reports the training seconds of each epoch (evaluation left out), its final
weights and its peak RSS. One variant runs per process:

    python -m bench.variants engine --batch-size 100 --epochs 6 --lr 0.5

prints one JSON line (see ``measure``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from softmax_core.config import TrainConfig  # noqa: E402
from softmax_core.data import CLASSES, PIXELS, Mnist, load_mnist  # noqa: E402

from .blas import blas_info  # noqa: E402

EVALUATE_CALLS = 30
"""Calls of ``train.evaluate`` timed after an engine run; the median is reported."""


class EpochClock:
    """Wall and process-CPU seconds of each epoch.

    CPU time (all threads of the process) measures the work done; other processes on a shared
    machine disturb it far less than wall time, so it is reported beside it.
    """

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.start()

    @staticmethod
    def now() -> tuple[float, float]:
        return time.perf_counter(), time.process_time()

    def start(self) -> None:
        self._began = self.now()

    def lap(self, at: tuple[float, float] | None = None) -> None:
        """Close the epoch at ``at`` (default: now)."""
        wall, cpu = at or self.now()
        self.wall.append(wall - self._began[0])
        self.cpu.append(cpu - self._began[1])


@dataclass
class Trained:
    clock: EpochClock
    """Seconds of each epoch's training; the first includes tracing and first-call setup."""
    W: np.ndarray | None
    """Final weights; None for the floor, which trains nothing."""
    b: np.ndarray | None
    extra: dict = field(default_factory=dict)


def permutations(n: int, epochs: int, seed: int) -> list[np.ndarray]:
    """The engine's batch order: one ``default_rng(seed).permutation(n)`` per epoch."""
    rng = np.random.default_rng(seed)
    return [rng.permutation(n).astype(np.int32) for _ in range(epochs)]


DEFAULTS_ROUNDS = 4
"""Rounds of (defaults, plain SGD) an ``engine_defaults`` process trains after its first run."""


def ratio_key(name: str, cpu: bool) -> str:
    """The ``extra`` key of a ratio a variant measured in its own process: ``name_ratio`` or ``name_cpu_ratio``."""
    return f"{name}_cpu_ratio" if cpu else f"{name}_ratio"


def engine(data: Mnist, batch_size: int, epochs: int, lr: float, seed: int) -> Trained:
    """``softmax_core.train.train``, the function the dashboard runs: SGD, constant lr, no L2, zeros."""
    return engine_run(data, sgd_config(batch_size, epochs, lr, seed))


def sgd_config(batch_size: int, epochs: int, lr: float, seed: int) -> TrainConfig:
    """Every peer's recipe in the engine: constant-rate SGD from zeros, no L2."""
    return TrainConfig(learning_rate=lr, batch_size=batch_size, epochs=epochs, seed=seed,
                       optimizer="sgd", schedule="constant", l2=0.0, init="zeros")


def engine_defaults(data: Mnist, batch_size: int, epochs: int, lr: float, seed: int) -> Trained:
    """The engine with the lab's defaults (Adam, cosine decay, L2): what a user runs. ``lr`` applies to SGD only.

    Its first run is reported as the variant. The process then trains DEFAULTS_ROUNDS rounds of the
    defaults followed at once by plain SGD (``engine``'s run), and ``extra`` gives the median over
    rounds of the defaults' median epoch over SGD's (``defaults_ratio``; ``defaults_cpu_ratio`` of CPU
    time). Separate processes of one variant differed by up to 1.5x on this VM and a process's own
    speed drifts within seconds, both more than the 15% the ratio is held to; back-to-back runs in
    one process see nearly the same machine.
    """
    defaults, sgd = TrainConfig(batch_size=batch_size, epochs=epochs, seed=seed), sgd_config(batch_size, epochs, lr, seed)
    first = engine_run(data, defaults)
    rounds = [(engine_run(data, defaults, evaluate_calls=0), engine_run(data, sgd, evaluate_calls=0))
              for _ in range(DEFAULTS_ROUNDS)]
    for kind in ("wall", "cpu"):
        first.extra[ratio_key("defaults", kind == "cpu")] = float(
            np.median([_steady(mine, kind) / _steady(other, kind) for mine, other in rounds]))
    return first


def _steady(trained: Trained, kind: str) -> float:
    """Median seconds (``wall`` or ``cpu``) of a run's epochs after its first."""
    return float(np.median(getattr(trained.clock, kind)[1:]))


def engine_run(data: Mnist, config: TrainConfig, evaluate_calls: int = EVALUATE_CALLS,
               after_epoch: Callable[[int], None] | None = None) -> Trained:
    """Train as ``config`` says, timing each epoch's training apart from its evaluation.

    An epoch's training ends at its last ``on_progress`` call (after its last compiled call);
    the time from there to ``on_epoch`` is the per-epoch evaluation and bookkeeping.
    ``after_epoch(k)`` runs after the evaluation of epoch k (0-based), outside every timing (``paired``'s peers).
    """
    from softmax_core.train import evaluate, train

    progress_marks: list[tuple[float, float]] = []
    in_train_evaluation: list[float] = []
    clock = EpochClock()

    def on_progress(_fraction: float) -> None:
        progress_marks.append(EpochClock.now())

    def on_epoch(_metrics, _W, _b) -> None:
        trained_at = progress_marks[-1]
        clock.lap(trained_at)
        in_train_evaluation.append(time.perf_counter() - trained_at[0])
        if after_epoch:
            after_epoch(len(in_train_evaluation) - 1)
        clock.start()

    result = train(config, data, on_epoch=on_epoch, on_progress=on_progress)
    evaluate_seconds = []
    for _ in range(evaluate_calls):
        started = time.perf_counter()
        evaluate(result.W, result.b, data)
        evaluate_seconds.append(time.perf_counter() - started)
    return Trained(clock, result.W, result.b, {
        "status": result.status,
        "evaluate_seconds": float(np.median(evaluate_seconds)) if evaluate_seconds else None,
        "in_train_evaluation_seconds": float(np.median(in_train_evaluation[1:] or in_train_evaluation)),
    })


def numpy_sgd(data: Mnist, batch_size: int, epochs: int, lr: float, seed: int) -> Trained:
    """The strongest plain NumPy loop we could write (``NumpyLoop``), epoch after epoch."""
    from threadpoolctl import threadpool_limits

    loop, clock = NumpyLoop(data, batch_size, lr), EpochClock()
    with threadpool_limits(1, "blas"):
        for perm in permutations(len(data.train_y), epochs, seed):
            loop.epoch(perm, clock)
    return Trained(clock, np.ascontiguousarray(loop.Wt.T), loop.b, {"blas": blas_info()})


class NumpyLoop:
    """Minibatch SGD in plain NumPy, float32, the gradient written out as the engine does.

    W is held transposed (10 x 784), so both products write contiguous rows; each epoch's rows
    are copied once, in the epoch's order, into one buffer (outside the timing, as for Keras), so
    every batch is a contiguous slice. The caller runs BLAS on one thread
    (``threadpool_limits(1, "blas")``), which was never slower here and far faster on a loaded machine.
    """

    def __init__(self, data: Mnist, batch_size: int, lr: float) -> None:
        self.X, self.Y = data.images("train"), data.train_y
        self.Xs, self.Ys = np.empty_like(self.X), np.empty_like(self.Y)
        self.Wt, self.b = np.zeros((CLASSES, PIXELS), np.float32), np.zeros(CLASSES, np.float32)
        self.batch_size, self.lr = batch_size, np.float32(lr)
        self.step_losses: list[float] = []
        """Each step's loss as a Python float: the engine hands every step's loss back too."""

    def epoch(self, perm: np.ndarray, clock: EpochClock) -> None:
        """One epoch in ``perm``'s order, timed on ``clock`` from the first step to the last."""
        np.take(self.X, perm, axis=0, out=self.Xs)
        np.take(self.Y, perm, out=self.Ys)
        Wt, b = self.Wt, self.b
        clock.start()
        for i in range(0, len(perm), self.batch_size):
            xb, yb = self.Xs[i:i + self.batch_size], self.Ys[i:i + self.batch_size]
            rows = np.arange(len(yb))
            logits = xb @ Wt.T
            logits += b
            logits -= logits.max(axis=1, keepdims=True)
            log_sum = np.log(np.exp(logits).sum(axis=1, keepdims=True))
            self.step_losses.append(float(np.mean(log_sum[:, 0] - logits[rows, yb])))
            g = np.exp(logits - log_sum)
            g[rows, yb] -= 1.0
            step = self.lr / np.float32(len(yb))
            Wt -= step * (g.T @ xb)
            b -= step * g.sum(axis=0)
        clock.lap()


def tf1_session(data: Mnist, batch_size: int, epochs: int, lr: float, seed: int) -> Trained:
    """The tutorial's style: placeholders, a Session, ``feed_dict`` per batch, GradientDescentOptimizer.

    Built inside its own ``tf.Graph``; eager execution is never disabled globally. The loss is
    the stable one from logits (the tutorial's log(softmax) is not copied).
    """
    import tensorflow as tf

    v1 = tf.compat.v1
    X, Y = data.images("train"), data.train_y
    clock = EpochClock()
    with tf.Graph().as_default():
        x = v1.placeholder(tf.float32, [None, PIXELS])
        y = v1.placeholder(tf.int32, [None])
        W = v1.Variable(tf.zeros([PIXELS, CLASSES]))
        b = v1.Variable(tf.zeros([CLASSES]))
        logits = tf.matmul(x, W) + b
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        step = v1.train.GradientDescentOptimizer(lr).minimize(loss)
        with v1.Session() as session:
            session.run(v1.global_variables_initializer())
            for perm in permutations(len(Y), epochs, seed):
                clock.start()
                for i in range(0, len(perm), batch_size):
                    idx = perm[i:i + batch_size]
                    session.run([step, loss], feed_dict={x: X[idx], y: Y[idx]})
                clock.lap()
            W_final, b_final = session.run([W, b])
    return Trained(clock, W_final, b_final)


def keras_fit(data: Mnist, batch_size: int, epochs: int, lr: float, seed: int) -> Trained:
    """``Sequential([Dense(10, activation="softmax")])`` + ``fit`` with SGD, compiled as Keras defaults.

    One ``fit`` call per epoch on that epoch's permuted copy (made outside the timing), with
    ``shuffle=False``, keeps the engine's batch order; an epoch is timed from Keras's own
    ``on_epoch_begin`` to ``on_epoch_end``, so fit's per-call setup is left out (reported apart).
    ``sparse_categorical_crossentropy`` on a softmax output takes Keras's stable path from logits.
    """
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.clock = EpochClock()

        def on_epoch_begin(self, epoch, logs=None) -> None:
            self.clock.start()

        def on_epoch_end(self, epoch, logs=None) -> None:
            self.clock.lap()

    model = keras.Sequential([keras.Input((PIXELS,)),
                              keras.layers.Dense(CLASSES, activation="softmax", kernel_initializer="zeros")])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr), loss="sparse_categorical_crossentropy")
    timer, fit_calls = EpochTimer(), []
    for epoch, perm in enumerate(permutations(len(data.train_y), epochs, seed)):
        xs, ys = data.images("train", perm), data.train_y[perm]
        started = time.perf_counter()
        model.fit(xs, ys, batch_size=batch_size, epochs=epoch + 1, initial_epoch=epoch, shuffle=False,
                  verbose=0, callbacks=[timer])
        fit_calls.append(time.perf_counter() - started)
    W, b = (np.asarray(w) for w in model.layers[0].get_weights())
    return Trained(timer.clock, W, b, {
        "jit_compile": bool(model.jit_compile),
        "fit_call_seconds": float(np.median(fit_calls[1:] or fit_calls)),
    })


def floor(data: Mnist, batch_size: int, epochs: int, lr: float, seed: int) -> Trained:
    """The work of an epoch with no per-step cost: one X @ W and one X.T @ G over all rows.

    Timed in NumPy (OpenBLAS) and TensorFlow (``floor_passes``); the faster is the floor.
    ``batch_size`` and ``lr`` do not apply; ``epochs`` is the number of timed passes.
    """
    clocks = {}
    for name, work in floor_passes(data.images("train"), seed).items():
        work()
        clocks[name] = EpochClock()
        for _ in range(max(epochs, 5)):
            clocks[name].start()
            work()
            clocks[name].lap()
    best = min(clocks, key=lambda name: np.median(clocks[name].wall))
    return Trained(clocks[best], None, None, {
        "library": best, "numpy_seconds": float(np.median(clocks["numpy"].wall)),
        "tensorflow_seconds": float(np.median(clocks["tensorflow"].wall)), "blas": blas_info(),
    })


def floor_passes(X: np.ndarray, seed: int) -> dict[str, Callable[[], None]]:
    """The floor's pass in each library, by name: both products over all rows of X (float32).

    Each library runs at its own thread count: NumPy's BLAS on every core, TensorFlow on every
    core unless softmax_core.train was imported first (it sets TensorFlow's intra-op threads to 1;
    the pass's two products may still run at once, one per core).
    """
    import tensorflow as tf

    W = np.random.default_rng(seed).normal(0, 0.01, (PIXELS, CLASSES)).astype(np.float32)
    G = np.random.default_rng(seed + 1).normal(0, 0.01, (len(X), CLASSES)).astype(np.float32)
    tX, tW, tG = (tf.constant(a) for a in (X, W, G))

    @tf.function
    def tf_pass(X, W, G):
        return tf.matmul(X, W), tf.matmul(X, G, transpose_a=True)

    def numpy_pass() -> None:
        X @ W
        X.T @ G

    def tf_call() -> None:
        [t.numpy() for t in tf_pass(tX, tW, tG)]

    return {"numpy": numpy_pass, "tensorflow": tf_call}


PARK_SECONDS = 0.3
"""A pause before each timed epoch of ``paired`` after the other's: idle OpenBLAS workers spin for a
while after a call (without the pause the engine's CPU per epoch read 1.6x its wall time), and so
may TensorFlow's after the engine's evaluation."""


def paired(data: Mnist, batch_size: int, epochs: int, lr: float, seed: int) -> Trained:
    """``engine``'s run with, after each of its epochs, the NumPy peer's same epoch and a floor pass.

    This VM's speed drifts by up to 1.5x within seconds, for every process alike (a 300 x 300
    matmul probe moved 54 -> 90 ms in one process), so ratios of runs in separate processes, or
    even of runs seconds apart, swung more than the targets' margins. Epochs side by side, a
    tenth of a second apart, see the same machine: ``extra`` gives the median over epochs 2..N of
    engine epoch / NumPy epoch (``numpy_ratio``) and engine epoch / the faster floor pass
    (``floor_ratio``), with ``_cpu_`` twins of process CPU time (``ratio_key``). The floor runs as
    ``floor_passes`` says, TensorFlow with intra-op threads 1 here (softmax_core.train is imported):
    a weaker floor than the ``floor`` variant's, whose TensorFlow pass uses both cores. Its peak RSS
    counts both loops' data and the float64 yardstick of the NumPy weights.
    """
    from threadpoolctl import threadpool_limits

    import softmax_core.train  # noqa: F401  first: its thread and XLA settings count only before any op runs

    loop = NumpyLoop(data, batch_size, lr)
    passes = floor_passes(loop.X, seed)
    perms = permutations(len(data.train_y), epochs, seed)
    loop_clock, clocks = EpochClock(), {name: EpochClock() for name in passes}
    for work in passes.values():
        work()

    def peers(epoch: int) -> None:
        time.sleep(PARK_SECONDS)
        with threadpool_limits(1, "blas"):
            loop.epoch(perms[epoch], loop_clock)
        for name, work in passes.items():
            clocks[name].start()
            work()
            clocks[name].lap()
        time.sleep(PARK_SECONDS)

    trained = engine_run(data, sgd_config(batch_size, epochs, lr, seed), evaluate_calls=0, after_epoch=peers)
    for kind in ("wall", "cpu"):
        engine_epochs = getattr(trained.clock, kind)[1:]
        floors = np.min([getattr(clocks[name], kind)[1:] for name in passes], axis=0)
        numpy_epochs = getattr(loop_clock, kind)[1:]
        trained.extra[ratio_key("numpy", kind == "cpu")] = float(np.median(np.divide(engine_epochs, numpy_epochs)))
        trained.extra[ratio_key("floor", kind == "cpu")] = float(np.median(np.divide(engine_epochs, floors)))
    trained.extra["numpy_final_train_loss"] = train_loss(np.ascontiguousarray(loop.Wt.T), loop.b, data)
    return trained


VARIANTS: dict[str, Callable[[Mnist, int, int, float, int], Trained]] = {
    "engine": engine, "engine_defaults": engine_defaults, "keras": keras_fit, "tf1": tf1_session,
    "numpy": numpy_sgd, "floor": floor, "paired": paired,
}


def train_loss(W: np.ndarray, b: np.ndarray, data: Mnist, block: int = 5_000) -> float:
    """Mean cross-entropy over the full train split, in float64: the same yardstick for all."""
    total = 0.0
    for start in range(0, len(data.train_y), block):
        rows = slice(start, start + block)
        logits = data.images("train", rows).astype(np.float64) @ W.astype(np.float64) + b
        logits -= logits.max(axis=1, keepdims=True)
        log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        total -= log_p[np.arange(len(log_p)), data.train_y[rows]].sum()
    return total / len(data.train_y)


def limited(data: Mnist, examples: int) -> Mnist:
    """The first ``examples`` train rows (all of validation and test), for quick smoke runs."""
    if examples >= len(data.train_y):
        return data
    return data.head(examples, len(data.validation_y), len(data.test_y))


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (VmHWM)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM:"))


def measure(argv: list[str]) -> dict:
    """Run one variant as the command line says; its figures as one JSON-ready dict."""
    parser = argparse.ArgumentParser(description="Run one benchmark variant; print one JSON line.")
    parser.add_argument("variant", choices=sorted(VARIANTS))
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--lr", type=float, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--examples", type=int, default=55_000)
    args = parser.parse_args(argv)
    data = limited(load_mnist(allow_download=False), args.examples)
    trained = VARIANTS[args.variant](data, args.batch_size, args.epochs, args.lr, args.seed)
    peak = peak_rss_mb()  # the training's peak, before the float64 yardstick below
    final = None if trained.W is None else train_loss(trained.W, trained.b, data)
    return {
        "variant": args.variant, "batch_size": args.batch_size, "examples": len(data.train_y),
        "epoch_seconds": trained.clock.wall, "epoch_cpu_seconds": trained.clock.cpu,
        "final_train_loss": final, "peak_rss_mb": peak, "extra": trained.extra,
    }


def main(argv: list[str] | None = None) -> int:
    print(json.dumps(measure(sys.argv[1:] if argv is None else argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
