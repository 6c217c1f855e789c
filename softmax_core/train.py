"""Training: whole chunks of minibatch SGD run inside one compiled TensorFlow graph.

One function, ``train``, serves the CLI, the dashboard's background jobs and the benchmarks.
Per epoch it reports full train, validation and test loss and accuracy plus every minibatch
loss; a stop event ends it between chunks, and a non-finite loss ends it as ``diverged``
with the last finite weights kept.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import tensorflow as tf

from .config import TrainConfig
from .data import CLASSES, Mnist
from .metrics import EpochMetrics
from .model import initial_weights

CHUNK_EXAMPLES = 11_000
"""Examples per compiled call: small enough for a prompt Stop and a smooth progress bar."""
DIVERGED_LOSS = 100 * math.log(CLASSES)
"""A mean train loss above 100x an untrained model's (ln 10) means the weights have blown up.

The loss is computed stably from logits, so a too-large learning rate rarely yields NaN; it
yields huge, finite losses, which count as divergence too."""
MOMENTUM = 0.9
ADAM_BETA1, ADAM_BETA2, ADAM_EPSILON = 0.9, 0.999, 1e-8


@dataclass
class TrainResult:
    status: str
    """completed, stopped or diverged."""
    history: list[EpochMetrics]
    W: np.ndarray
    b: np.ndarray
    seconds: float
    message: str = ""

    @property
    def epochs_completed(self) -> int:
        return len(self.history)


EpochCallback = Callable[[EpochMetrics, np.ndarray, np.ndarray], None]
ProgressCallback = Callable[[float], None]
"""Called with the fraction of all epochs done, after every compiled chunk."""


@dataclass(frozen=True)
class _Tensors:
    train_x: tf.Tensor
    train_y: tf.Tensor
    splits: dict[str, tuple[tf.Tensor, tf.Tensor]]


_tensors_lock = threading.Lock()


def _tensors(data: Mnist) -> _Tensors:
    """The data as TF tensors, made once per Mnist object and shared by every job."""
    with _tensors_lock:
        return data.cache.get("tensors") or _make_tensors(data)


def _make_tensors(data: Mnist) -> _Tensors:
    splits = {name: tuple(_shared_tensor(a) for a in data.split(name)) for name in ("train", "validation", "test")}
    data.cache["tensors"] = _Tensors(*splits["train"], splits)
    return data.cache["tensors"]


def _shared_tensor(array: np.ndarray) -> tf.Tensor:
    """A tensor over the array's own memory (DLPack) when TF can use it, else a copy.

    TF needs 64-byte aligned, C-contiguous buffers; data.py allocates the images that way, so the
    185 MB of pixels are held once, not twice.
    """
    if array.flags.c_contiguous and array.ctypes.data % 64 == 0:
        return tf.experimental.dlpack.from_dlpack(array.__dlpack__())
    return tf.convert_to_tensor(array)


def _learning_rate(lr0: tf.Tensor, step: tf.Tensor, total: tf.Tensor) -> tf.Tensor:
    """Cosine decay from lr0 to 0 over all steps of the run."""
    progress = tf.cast(step, tf.float32) / tf.cast(total, tf.float32)
    return lr0 * 0.5 * (1.0 + tf.cos(math.pi * progress))


@tf.function(reduce_retracing=True)
def _run_chunk(optimizer: str, cosine: bool, W, b, slots, X, Y, batches, lr0, l2, step0, total_steps):
    """Minibatch updates over ``batches`` (steps x batch indices), in-graph; new state and step losses.

    The gradient of mean softmax cross-entropy is written out, (p - onehot) / n, rather than
    taped, and batches come as rows of a 2-D index array: fewest ops per step, which is most of
    the cost at batch 100.
    """
    steps = tf.shape(batches)[0]
    scale = 1.0 / tf.cast(tf.shape(batches)[1], tf.float32)
    losses = tf.TensorArray(tf.float32, size=steps)

    def body(i, W, b, slots, losses):
        idx = batches[i]
        xb, yb = tf.gather(X, idx), tf.gather(Y, idx)
        logits = tf.matmul(xb, W) + b
        log_p = logits - tf.reduce_logsumexp(logits, axis=1, keepdims=True)
        onehot = tf.one_hot(yb, CLASSES)
        loss = -tf.reduce_mean(tf.reduce_sum(onehot * log_p, axis=1))
        g = (tf.exp(log_p) - onehot) * scale
        gW = tf.matmul(xb, g, transpose_a=True) + l2 * W
        gb = tf.reduce_sum(g, axis=0)
        t = step0 + i
        lr = _learning_rate(lr0, t, total_steps) if cosine else lr0
        W, b, slots = _apply(optimizer, W, b, gW, gb, slots, lr, t)
        return i + 1, W, b, slots, losses.write(i, loss)

    _, W, b, slots, losses = tf.while_loop(lambda i, *_: i < steps, body, (0, W, b, slots, losses))
    return W, b, slots, losses.stack()


def _apply(optimizer: str, W, b, gW, gb, slots, lr, t):
    """One optimizer update; ``slots`` holds (mW, mb, vW, vb), unused ones stay zero."""
    mW, mb, vW, vb = slots
    if optimizer == "sgd":
        return W - lr * gW, b - lr * gb, slots
    if optimizer == "momentum":
        mW, mb = MOMENTUM * mW + gW, MOMENTUM * mb + gb
        return W - lr * mW, b - lr * mb, (mW, mb, vW, vb)
    mW, mb = ADAM_BETA1 * mW + (1 - ADAM_BETA1) * gW, ADAM_BETA1 * mb + (1 - ADAM_BETA1) * gb
    vW, vb = ADAM_BETA2 * vW + (1 - ADAM_BETA2) * gW**2, ADAM_BETA2 * vb + (1 - ADAM_BETA2) * gb**2
    k = tf.cast(t + 1, tf.float32)
    scale = lr * tf.sqrt(1 - ADAM_BETA2**k) / (1 - ADAM_BETA1**k)
    W = W - scale * mW / (tf.sqrt(vW) + ADAM_EPSILON)
    b = b - scale * mb / (tf.sqrt(vb) + ADAM_EPSILON)
    return W, b, (mW, mb, vW, vb)


@tf.function(reduce_retracing=True)
def _loss_and_accuracy(W, b, X, Y):
    logits = tf.matmul(X, W) + b
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=Y, logits=logits))
    correct = tf.equal(tf.argmax(logits, axis=1, output_type=tf.int32), Y)
    return loss, tf.reduce_mean(tf.cast(correct, tf.float32))


def evaluate(W: np.ndarray | tf.Tensor, b: np.ndarray | tf.Tensor, data: Mnist) -> dict[str, float]:
    """Full-split loss and accuracy for train, validation and test."""
    out = {}
    for name, (x, y) in _tensors(data).splits.items():
        loss, acc = _loss_and_accuracy(tf.convert_to_tensor(W), tf.convert_to_tensor(b), x, y)
        out[f"{name}_loss"], out[f"{name}_accuracy"] = float(loss), float(acc)
    return out


def _diverged(step_losses: np.ndarray, train_loss: float) -> bool:
    return not (np.all(np.isfinite(step_losses)) and math.isfinite(train_loss)) or train_loss > DIVERGED_LOSS


def _chunks(perm: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """The epoch's shuffled indices as (steps, batch) blocks of about CHUNK_EXAMPLES; a last
    partial batch comes alone as a (1, rest) block."""
    full = len(perm) // batch_size * batch_size
    per_chunk = max(1, CHUNK_EXAMPLES // batch_size)
    batches = perm[:full].reshape(-1, batch_size)
    chunks = [batches[i:i + per_chunk] for i in range(0, len(batches), per_chunk)]
    if full < len(perm):
        chunks.append(perm[full:].reshape(1, -1))
    return chunks


def train(config: TrainConfig, data: Mnist, on_epoch: EpochCallback | None = None,
          on_progress: ProgressCallback | None = None, stop: threading.Event | None = None) -> TrainResult:
    """Train a fresh softmax regression on ``data`` as ``config`` says.

    ``on_epoch(metrics, W, b)`` is called after each finished epoch. Setting ``stop`` ends the
    run after the current chunk, returning the weights of the last finished epoch.
    """
    tensors = _tensors(data)
    kept = initial_weights(config.init, config.seed)
    rng = np.random.default_rng(config.seed)
    n = len(data.train_y)
    steps_per_epoch = math.ceil(n / config.batch_size)
    total_steps = tf.constant(steps_per_epoch * config.epochs)
    W, b = tf.constant(kept[0]), tf.constant(kept[1])
    zeros = (tf.zeros_like(W), tf.zeros_like(b))
    slots = zeros + zeros
    cosine = config.schedule == "cosine"
    scalars = dict(lr0=tf.constant(config.learning_rate, tf.float32), l2=tf.constant(config.l2, tf.float32),
                   total_steps=total_steps)
    history: list[EpochMetrics] = []
    started = time.perf_counter()
    status, message = "completed", ""
    for epoch in range(config.epochs):
        step = epoch * steps_per_epoch
        step_losses: list[np.ndarray] = []
        chunks = _chunks(rng.permutation(n).astype(np.int32), config.batch_size)
        for k, chunk in enumerate(chunks):
            if stop is not None and stop.is_set():
                status, message = "stopped", f"stopped by request during epoch {epoch + 1}"
                break
            W, b, slots, losses = _run_chunk(config.optimizer, cosine, W, b, slots, tensors.train_x,
                                             tensors.train_y, tf.constant(chunk), step0=tf.constant(step), **scalars)
            step_losses.append(losses.numpy())
            step += len(losses)
            if on_progress:
                on_progress((epoch + (k + 1) / len(chunks)) / config.epochs)
        if status == "stopped":
            break
        losses_np = np.concatenate(step_losses)
        metrics = evaluate(W, b, data)
        if _diverged(losses_np, metrics["train_loss"]):
            status = "diverged"
            message = (f"train loss reached {metrics['train_loss']:.4g} in epoch {epoch + 1} (an untrained model "
                       f"has {math.log(CLASSES):.2f}): learning rate {config.learning_rate:g} is too large for "
                       f"{config.optimizer}. Kept the weights of epoch {epoch}.")
            break
        lr_now = float(_learning_rate(scalars["lr0"], tf.constant(step), total_steps)) if cosine else config.learning_rate
        record = EpochMetrics(epoch=epoch + 1, **metrics, learning_rate=lr_now,
                              seconds=time.perf_counter() - started,
                              step_losses=[float(x) for x in losses_np])
        history.append(record)
        kept = (W.numpy(), b.numpy())
        if on_epoch:
            on_epoch(record, *kept)
    return TrainResult(status, history, kept[0], kept[1], time.perf_counter() - started, message)


def warm_up(data: Mnist, batch_sizes: tuple[int, ...] = (100, 1000)) -> None:
    """Trace the engine and the evaluation once per optimizer path and common batch size.

    A worker process calls this before its first job, so that a run's first epoch costs what
    its later ones do.
    """
    tensors = _tensors(data)
    W, b = (tf.constant(a) for a in initial_weights("zeros", 0))
    slots = (tf.zeros_like(W), tf.zeros_like(b)) * 2
    scalars = dict(lr0=tf.constant(1e-3), l2=tf.constant(0.0), step0=tf.constant(0), total_steps=tf.constant(1))
    for batch in batch_sizes:
        block = tf.constant(np.arange(2 * batch, dtype=np.int32).reshape(2, batch))
        for optimizer, cosine in (("adam", True), ("sgd", False), ("sgd", True), ("momentum", False)):
            _run_chunk(optimizer, cosine, W, b, slots, tensors.train_x, tensors.train_y, block, **scalars)
    evaluate(W, b, data)
