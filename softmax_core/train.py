"""Training: chunks of minibatch steps, each one XLA-compiled call over the uint8 pixels.

One function, ``train``, serves the CLI, the dashboard's background jobs and the benchmarks.
Per epoch it reports full train, validation and test loss and accuracy plus every minibatch
loss; a stop event ends it between chunks, and a non-finite loss ends it as ``diverged``
with the last finite weights kept. ``warm_up`` compiles the common shapes ahead of a first run.

Importing this module sets TensorFlow's intra-op threads to 1 for the whole process (if no op
has run yet): a step is too small to split across threads, and the handoff cost more than it
saved. Training processes are dedicated workers, so the process-wide setting is theirs to make.
When $SOFTMAX_LAB_XLA_CACHE names a folder, it also points TensorFlow's persistent compilation
cache there (see ``_use_persistent_compilation_cache``), so a fresh process loads the programs an
earlier one compiled instead of compiling them again; that too takes effect only if no op has run yet.
It also lets XLA use 512-bit vectors (``WIDE_VECTORS_FLAG``), if nothing has compiled yet.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .config import OPTIMIZERS, TrainConfig
from .data import CLASSES, PIXELS, Mnist

XLA_CACHE_ENV = "SOFTMAX_LAB_XLA_CACHE"
"""A folder for compiled XLA programs; unset or ``off``: none, every process compiles its own.

Opt-in: TensorFlow logs errors when it loads its own entries ("Could lead to execution errors
such as SIGILL", a parse error), and a folder shared by machines with different CPUs (a home
on NFS) would hand one machine's code to another. The job service's worker compiles once per
server start, ahead of the first run, so the dashboard does not need it."""


def xla_cache_dir() -> Path | None:
    """Where compiled programs are kept between processes: $SOFTMAX_LAB_XLA_CACHE, if set and not off."""
    value = os.environ.get(XLA_CACHE_ENV, "")
    return None if value.strip().lower() in ("", "off", "0", "no", "none") else Path(value)


CACHE_MIN_FREE_BYTES = 256 * 2**20
"""The persistent cache is used only if its disk has this much free: TensorFlow fails a compile
whose program it cannot write (a few hundred KB each), so a nearly full disk must not get one."""


def _use_persistent_compilation_cache() -> Path | None:
    """Let TensorFlow keep each compiled program on disk and load it in later processes.

    A fresh process then skips XLA compilation (about 1 CPU second per program) for any program
    an earlier process compiled: the CLI's first epoch costs what a warm worker's does. Set before
    TensorFlow compiles anything (its XLA flags are read once). Entries are keyed by the program's
    HLO, so a changed engine or data shape compiles anew; deleting the folder is always safe.
    Not used (programs compile in memory, as before) when the folder cannot be written or its
    disk is nearly full, since TensorFlow then fails the compile instead of skipping the write;
    an explicit ``--tf_xla_persistent_cache_directory`` in TF_XLA_FLAGS is left as it is.
    Returns the folder in use, or None.
    """
    flags = os.environ.get("TF_XLA_FLAGS", "")
    inherited = os.environ.pop(_OWN_FLAG_ENV, None)  # a parent's choice, made by this function: made anew here
    if inherited:
        flags = " ".join(flags.replace(inherited, " ").split())
    os.environ["TF_XLA_FLAGS"] = flags
    folder = xla_cache_dir()
    if folder is None or "tf_xla_persistent_cache_directory" in flags or not _writable(folder):
        return None
    flag = f"--tf_xla_persistent_cache_directory={folder}"
    os.environ["TF_XLA_FLAGS"], os.environ[_OWN_FLAG_ENV] = f"{flags} {flag}".strip(), flag
    return folder


_OWN_FLAG_ENV = "SOFTMAX_LAB_XLA_CACHE_FLAG"
"""The flag this module added to TF_XLA_FLAGS, so that a child process tells it from a user's own."""


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-"):
            pass
        return shutil.disk_usage(folder).free >= CACHE_MIN_FREE_BYTES
    except OSError:
        return False


WIDE_VECTORS_FLAG = "--xla_cpu_prefer_vector_width=512"
"""Lets XLA use 512-bit vectors where the CPU has them (a no-op on CPUs without AVX-512).

Each engine epoch paired with a NumPy epoch in one process (``bench.variants.paired``), three
processes each way: engine / NumPy at batch 100 went 0.600-0.637 -> 0.574-0.599 and at 1000 went
0.604-0.619 -> 0.548-0.595; an evaluation's fastest call 21.1-21.3 -> 16.1-16.5 ms."""


def _prefer_wide_vectors() -> None:
    """Add WIDE_VECTORS_FLAG to XLA_FLAGS, unless the user chose a vector width there (to opt out, set one).

    XLA reads XLA_FLAGS once, when it first needs its options, so this counts only if nothing has
    compiled yet. Child processes inherit the variable, and keep it as it is.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_prefer_vector_width" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {WIDE_VECTORS_FLAG}".strip()


XLA_CACHE = _use_persistent_compilation_cache()
_prefer_wide_vectors()

import tensorflow as tf  # noqa: E402  after the flags above

from .metrics import EpochMetrics  # noqa: E402
from .model import initial_weights  # noqa: E402

CALL_EXAMPLES = 27_500
"""About this many examples per compiled call: two calls an epoch. Each call has a fixed cost
(~1 ms of CPU, more wall time on a busy machine), so fewer is faster; two still stream progress
within an epoch and end well within 0.1 s each on a quiet machine, so Stop lands promptly."""
MAX_STEPS_PER_CALL = 2_750
"""Most steps per call: at tiny batches a step's fixed cost dominates, so calls are cut by steps
(batch 10: two calls an epoch, ~0.06 s each; batch 1: 20 calls)."""
SUB_BATCH = 250
"""Most rows of a batch whose float32 copy (784 KB) the step keeps in cache between its two products."""
COMPILE_THREADS = 2
"""Programs ``warm_up`` compiles at once: XLA compiles on the calling thread, one core each."""
EVAL_BLOCK = 250
"""Rows per matrix product in an evaluation: their float32 copy (784 KB) stays in cache. Blocks of
250 took 10-15% less time per evaluation than blocks of 500 (interleaved in one process)."""
EVAL_PARTS = 2
"""An evaluation runs as this many compiled calls at once, one per core (XLA's products use one thread)."""
DIVERGED_LOSS = 100 * math.log(CLASSES)
"""A mean train loss above 100x an untrained model's (ln 10) means the weights have blown up.

The loss is computed stably from logits, so a too-large learning rate rarely yields NaN; it
yields huge, finite losses, which count as divergence too."""
MOMENTUM = 0.9
ADAM_BETA1, ADAM_BETA2, ADAM_EPSILON = 0.9, 0.999, 1e-8
SPLITS = ("train", "validation", "test")
PIXEL_SCALE = np.float32(1.0 / 255.0)
PIXELS_PER_WORD = 4
"""Pixels per uint32 word of ``_Tensors.train_words`` (PIXELS is a multiple of it)."""

try:
    tf.config.threading.set_intra_op_parallelism_threads(1)
except RuntimeError:  # an op already ran in this process: its thread pool stays, training is slower
    pass


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
    train_words: tf.Tensor
    """The training split's pixels as uint32 words of PIXELS_PER_WORD pixels, (n, 196): the
    uint8 array's own memory, viewed so that a batch's gather moves a quarter as many elements."""
    train_y: tf.Tensor
    splits: tuple[tuple[tf.Tensor, tf.Tensor], ...]
    """(uint8 pixels, labels) of train, validation and test."""


_tensors_lock = threading.Lock()


def _tensors(data: Mnist) -> _Tensors:
    """The data as TF tensors, made once per Mnist object and shared by every job."""
    with _tensors_lock:
        return data.cache.get("tensors") or _make_tensors(data)


def _make_tensors(data: Mnist) -> _Tensors:
    splits = tuple(tuple(_shared_tensor(a) for a in data.split_pixels(name)) for name in SPLITS)
    words = _shared_tensor(data.split_pixels("train")[0].view(np.uint32))
    data.cache["tensors"] = _Tensors(words, splits[0][1], splits)
    return data.cache["tensors"]


def _shared_tensor(array: np.ndarray) -> tf.Tensor:
    """A tensor over the array's own memory (DLPack) when TF can use it, else a copy.

    TF needs 64-byte aligned, C-contiguous buffers; data.py allocates the pixels that way, so
    they are held once, as uint8, not copied into TensorFlow.
    """
    if array.flags.c_contiguous and array.ctypes.data % 64 == 0:
        return tf.experimental.dlpack.from_dlpack(array.__dlpack__())
    return tf.convert_to_tensor(array)


def _pixel_values(pixels: tf.Tensor) -> tf.Tensor:
    """uint8 pixels as float32 0..255, unscaled: products take 1/255 on their 10-wide side.

    x/255 @ W == (x @ W) / 255, so the scale is applied to the logits and the gradient (a
    few thousand numbers) instead of to every pixel of every batch.
    """
    return tf.cast(pixels, tf.float32)


def _batch_pixels(words: tf.Tensor, idx: tf.Tensor) -> tf.Tensor:
    """Rows ``idx`` of the pixels as float32 0..255, gathered as uint32 words.

    XLA's gather costs per element: gathering words of four pixels instead of single bytes took
    7-10% less CPU per epoch at batch 100 (interleaved A/B, loaded machine), the same pixels bit for bit.
    """
    rows = tf.bitcast(tf.gather(words, idx), tf.uint8)
    return _pixel_values(tf.reshape(rows, [idx.shape[0], words.shape[1] * PIXELS_PER_WORD]))


def _cosine(lr0: float, step: int, total: int) -> float:
    """Cosine decay from lr0 to 0 over all steps of the run, as the compiled loop applies it."""
    return lr0 * 0.5 * (1.0 + math.cos(math.pi * step / total))


@tf.function(jit_compile=True, autograph=False)
def _run_chunk(optimizer: str, Wt, b, slots, X, Y, batches, sizes, steps, lr0, cosine, l2, step0, total_steps):
    """The first ``steps`` batches of ``batches`` as minibatch updates, in one XLA program.

    ``batches`` is (steps per call, blocks, rows per block) of row indices: a batch larger than
    SUB_BATCH is split into blocks whose products run while their rows are in cache. ``sizes``
    gives the rows used of each batch: padding (a partial last batch, a batch that does not
    split evenly) is index 0 with weight 0, so one program per optimizer and batch size serves
    every call. ``X`` is the pixels as words (``_Tensors.train_words``); W is held transposed
    (10 x 784). Returns the new state and the step losses.
    """
    losses = tf.TensorArray(tf.float32, size=batches.shape[0])

    def body(i, Wt, b, slots, losses):
        loss, gWt, gb = _gradient(Wt, b, X, Y, batches[i], sizes[i])
        t = step0 + i
        progress = tf.cast(t, tf.float32) / tf.cast(total_steps, tf.float32)
        lr = tf.where(cosine, lr0 * 0.5 * (1.0 + tf.cos(math.pi * progress)), lr0)
        Wt, b, slots = _apply(optimizer, Wt, b, gWt + l2 * Wt, gb, slots, lr, t)
        return i + 1, Wt, b, slots, losses.write(i, loss)

    _, Wt, b, slots, losses = tf.while_loop(lambda i, *_: i < steps, body, (0, Wt, b, slots, losses))
    return Wt, b, slots, losses.stack()


def _gradient(Wt, b, X, Y, blocks, size):
    """Mean loss of one batch and its gradient, summed block by block (the products over unscaled pixels)."""
    count, width = blocks.shape
    scale = 1.0 / tf.cast(size, tf.float32)

    def block(j, loss, gWt, gb):
        idx = blocks[j]
        x = _batch_pixels(X, idx)
        logits = tf.matmul(x, Wt, transpose_b=True) * PIXEL_SCALE + b
        weight = tf.where(tf.range(width) + j * width < size, scale, 0.0)
        block_loss, block_gWt, block_gb = _block_sums(logits, tf.gather(Y, idx), weight, x)
        return j + 1, loss + block_loss, gWt + block_gWt, gb + block_gb

    zeros = (0, 0.0, tf.zeros_like(Wt), tf.zeros_like(b))
    if count == 1:
        loss, gWt, gb = block(*zeros)[1:]
    else:
        loss, gWt, gb = tf.while_loop(lambda j, *_: j < count, block, zeros)[1:]
    return loss, gWt * PIXEL_SCALE, gb


def _block_sums(logits: tf.Tensor, labels: tf.Tensor, weight: tf.Tensor,
                x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """One block's weighted loss and its parts of the gradient (weights transposed, bias).

    The softmax runs class-major, on the logits transposed (10 x rows): its reductions then run
    across rows, and the weight gradient is a plain product g @ x. Against TensorFlow's row-major
    loss op: 14-16% less CPU per epoch at batch 10 and 100, and, with 512-bit vectors, 5-7% less
    time with blocks of 250 rows (batch 500 and 1000; interleaved in one process).
    """
    row_losses, g = _cross_entropy_t(tf.transpose(logits), labels)
    g *= weight
    return tf.reduce_sum(row_losses * weight), tf.matmul(g, x), tf.reduce_sum(g, axis=1)


def _cross_entropy_t(logits_t: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Each row's loss and its gradient wrt the logits (softmax minus one-hot), from class-major logits (10 x rows)."""
    shifted = logits_t - tf.reduce_max(logits_t, axis=0)
    e = tf.exp(shifted)
    total = tf.reduce_sum(e, axis=0)
    onehot = tf.equal(tf.range(CLASSES)[:, None], labels[None, :])
    picked = tf.reduce_sum(tf.where(onehot, shifted, 0.0), axis=0)  # shifted, so a small loss keeps its digits
    return tf.math.log(total) - picked, e / total - tf.cast(onehot, tf.float32)


def _zero_slots(optimizer: str, Wt: tf.Tensor, b: tf.Tensor) -> tuple[tf.Tensor, ...]:
    """The optimizer's state: none for SGD, a velocity for momentum, two moments for Adam."""
    zeros = (tf.zeros_like(Wt), tf.zeros_like(b))
    return {"sgd": (), "momentum": zeros, "adam": zeros + zeros}[optimizer]


def _apply(optimizer: str, Wt, b, gWt, gb, slots, lr, t):
    """One optimizer update; ``slots`` as ``_zero_slots`` makes them."""
    if optimizer == "sgd":
        return Wt - lr * gWt, b - lr * gb, slots
    if optimizer == "momentum":
        mW, mb = MOMENTUM * slots[0] + gWt, MOMENTUM * slots[1] + gb
        return Wt - lr * mW, b - lr * mb, (mW, mb)
    mW, mb, vW, vb = slots
    mW, mb = ADAM_BETA1 * mW + (1 - ADAM_BETA1) * gWt, ADAM_BETA1 * mb + (1 - ADAM_BETA1) * gb
    vW, vb = ADAM_BETA2 * vW + (1 - ADAM_BETA2) * gWt**2, ADAM_BETA2 * vb + (1 - ADAM_BETA2) * gb**2
    k = tf.cast(t + 1, tf.float32)
    scale = lr * tf.sqrt(1 - ADAM_BETA2**k) / (1 - ADAM_BETA1**k)
    Wt = Wt - scale * mW / (tf.sqrt(vW) + ADAM_EPSILON)
    b = b - scale * mb / (tf.sqrt(vb) + ADAM_EPSILON)
    return Wt, b, (mW, mb, vW, vb)


@tf.function(jit_compile=True, autograph=False)
def _evaluation(Wt, b, splits, part):
    """Summed loss and number correct of each split over the rows of one part, in one XLA call.

    The rows of all splits, in order, are cut into EVAL_PARTS parts of about equal size; ``part``
    (a Python int: one program per part) says which. Returns (splits, 2); zeros where a split
    has no rows in this part.
    """
    return tf.stack([_sums_over(Wt, b, X, Y, start, stop) if stop > start else tf.zeros([2])
                     for (X, Y), (start, stop) in zip(splits, _part_rows([Y.shape[0] for _, Y in splits], part))])


def _part_rows(sizes: list[int], part: int) -> list[tuple[int, int]]:
    """(start, stop) of each split's rows that fall in ``part``, cutting at whole EVAL_BLOCKs."""
    total = sum(sizes)
    cuts = [min(total, round(total * k / EVAL_PARTS / EVAL_BLOCK) * EVAL_BLOCK) for k in range(EVAL_PARTS + 1)]
    cuts[-1] = total
    low, high, offset, rows = cuts[part], cuts[part + 1], 0, []
    for size in sizes:
        rows.append((min(max(low - offset, 0), size), min(max(high - offset, 0), size)))
        offset += size
    return rows


def _sums_over(Wt, b, X, Y, start: int, stop: int):
    """Summed loss and number correct over rows start..stop: a loop over blocks, then the rows left over."""
    blocks = (stop - start) // EVAL_BLOCK

    def body(i, total):
        first = start + i * EVAL_BLOCK
        rows = tf.slice(X, [first, 0], [EVAL_BLOCK, X.shape[1]])
        return i + 1, total + _sums(Wt, b, rows, tf.slice(Y, [first], [EVAL_BLOCK]))

    total = tf.while_loop(lambda i, _: i < blocks, body, (0, tf.zeros([2])))[1] if blocks else tf.zeros([2])
    rest = start + blocks * EVAL_BLOCK
    if rest < stop:
        total += _sums(Wt, b, X[rest:stop], Y[rest:stop])
    return total


def _sums(Wt, b, X, Y):
    """Summed loss and number correct over the rows of X, class-major as in training (4-5% faster here too)."""
    logits_t = tf.transpose(tf.matmul(_pixel_values(X), Wt, transpose_b=True) * PIXEL_SCALE + b)
    row_losses, _ = _cross_entropy_t(logits_t, Y)
    correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits_t, axis=0, output_type=tf.int32), Y), tf.float32))
    return tf.stack([tf.reduce_sum(row_losses), correct])


_evaluation_pool: ThreadPoolExecutor | None = None


def _evaluate_t(Wt: tf.Tensor, b: tf.Tensor, data: Mnist) -> dict[str, float]:
    """Every part on its own thread (the last on the caller's), so an evaluation uses both cores."""
    global _evaluation_pool
    splits = _tensors(data).splits
    with _tensors_lock:
        if _evaluation_pool is None:
            _evaluation_pool = ThreadPoolExecutor(max(1, EVAL_PARTS - 1), thread_name_prefix="evaluation")
    others = [_evaluation_pool.submit(lambda k: _evaluation(Wt, b, splits, k).numpy(), part)
              for part in range(EVAL_PARTS - 1)]
    sums = _evaluation(Wt, b, splits, EVAL_PARTS - 1).numpy().astype(np.float64)
    for other in others:
        sums += other.result()
    return {f"{name}_{kind}": float(sums[i, j] / Y.shape[0]) for i, (name, (_, Y)) in enumerate(zip(SPLITS, splits))
            for j, kind in enumerate(("loss", "accuracy"))}


def _trace_evaluation(Wt: tf.Tensor, b: tf.Tensor, data: Mnist) -> None:
    """Trace the evaluation's programs on this thread, in order.

    The persistent cache keys a compiled program by its HLO, which names the traced function
    with a process-wide counter: tracing in a fixed order, never racing another thread, gives
    the same names, hence cache hits, in every process that takes the same path.
    """
    splits = _tensors(data).splits
    for part in range(EVAL_PARTS):
        _evaluation.get_concrete_function(Wt, b, splits, part)


def evaluate(W: np.ndarray | tf.Tensor, b: np.ndarray | tf.Tensor, data: Mnist) -> dict[str, float]:
    """Full-split loss and accuracy for train, validation and test."""
    with _plain_cache_errors():
        return _evaluate_t(tf.transpose(tf.convert_to_tensor(W, tf.float32)), tf.convert_to_tensor(b, tf.float32), data)


def _compile_evaluation(Wt: tf.Tensor, b: tf.Tensor, data: Mnist) -> threading.Thread | None:
    """Compile the evaluation for ``data`` in a background thread, the first time only.

    It then compiles on the second core while the first calls train, instead of after them.
    """
    with _tensors_lock:
        if data.cache.get("evaluation compiled"):
            return None
        data.cache["evaluation compiled"] = True
    _trace_evaluation(Wt, b, data)
    thread = threading.Thread(target=_evaluate_t, args=(Wt, b, data), name="compile evaluation", daemon=True)
    thread.start()
    return thread


def _diverged(step_losses: np.ndarray, train_loss: float) -> bool:
    return not (np.all(np.isfinite(step_losses)) and math.isfinite(train_loss)) or train_loss > DIVERGED_LOSS


def _steps_per_call(batch_size: int, n: int) -> int:
    """Steps per compiled call for an epoch of n rows: the epoch's steps split evenly over its calls."""
    steps = -(-n // batch_size)
    calls = max(1, round(n / CALL_EXAMPLES), -(-steps // MAX_STEPS_PER_CALL))
    return -(-steps // calls)


def _block_shape(batch_size: int) -> tuple[int, int]:
    """(blocks, rows per block) of a batch: as few blocks of at most SUB_BATCH rows as cover it."""
    blocks = -(-batch_size // SUB_BATCH)
    return blocks, -(-batch_size // blocks)


def _epoch_batches(perm: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The epoch's shuffled indices as (calls, steps per call, blocks, rows) and each step's row count.

    Padding (a partial last batch, a batch not split evenly, the last call's unused steps) is
    index 0; it weighs nothing, and steps past the epoch's last are never run.
    """
    per_call = _steps_per_call(batch_size, len(perm))
    blocks, rows = _block_shape(batch_size)
    steps = -(-len(perm) // batch_size)
    calls = -(-steps // per_call)
    padded = np.zeros((calls * per_call, blocks * rows), np.int32)
    sizes = np.zeros(calls * per_call, np.int32)
    full = len(perm) // batch_size
    padded[:full, :batch_size] = perm[:full * batch_size].reshape(full, batch_size)
    sizes[:full] = batch_size
    if full < steps:
        padded[full, :len(perm) - full * batch_size] = perm[full * batch_size:]
        sizes[full] = len(perm) - full * batch_size
    return padded.reshape(calls, per_call, blocks, rows), sizes.reshape(calls, per_call)


def _weights(Wt: tf.Tensor, b: tf.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """W (784 x 10) and b as the API gives them."""
    return np.ascontiguousarray(Wt.numpy().T), b.numpy()


@contextmanager
def _plain_cache_errors() -> Iterator[None]:
    """A compile that failed on the persistent cache (disk filled since the check, an entry
    damaged) raises a RuntimeError that names the folder and the fix, not TensorFlow's op error.

    An unreadable entry is deleted, so the next process compiles it anew. (TensorFlow keeps a
    failed compile for the rest of the process: this process cannot retry it.)
    """
    try:
        yield
    except tf.errors.OpError as exc:
        text = str(exc)
        if XLA_CACHE is None or str(XLA_CACHE) not in text:
            raise
        if isinstance(exc, tf.errors.DataLossError):
            for path in re.findall(r"\S*xla_compile_cache\S*?\.pb\b", text):
                Path(path).unlink(missing_ok=True)
        first_line = text.splitlines()[0][:300] if text else type(exc).__name__
        raise RuntimeError(f"the cache of compiled programs in {XLA_CACHE} failed: {first_line}. Free space there, "
                           f"delete the folder, or set {XLA_CACHE_ENV}=off") from exc


def train(config: TrainConfig, data: Mnist, on_epoch: EpochCallback | None = None,
          on_progress: ProgressCallback | None = None, stop: threading.Event | None = None) -> TrainResult:
    """Train a fresh softmax regression on ``data`` as ``config`` says.

    ``on_epoch(metrics, W, b)`` is called after each finished epoch. Setting ``stop`` (anything
    with ``is_set()``) ends the run after the current call, returning the last finished epoch's weights.
    """
    with _plain_cache_errors():
        return _train(config, data, on_epoch, on_progress, stop)


def _train(config: TrainConfig, data: Mnist, on_epoch: EpochCallback | None,
           on_progress: ProgressCallback | None, stop: threading.Event | None) -> TrainResult:
    tensors = _tensors(data)
    kept = initial_weights(config.init, config.seed)
    rng = np.random.default_rng(config.seed)
    n = len(data.train_y)
    steps_per_epoch = math.ceil(n / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    Wt, b = tf.constant(kept[0].T), tf.constant(kept[1])
    slots = _zero_slots(config.optimizer, Wt, b)
    cosine = config.schedule == "cosine"
    scalars = dict(lr0=tf.constant(config.learning_rate, tf.float32), cosine=tf.constant(cosine),
                   l2=tf.constant(config.l2, tf.float32), total_steps=tf.constant(total_steps))
    history: list[EpochMetrics] = []
    started = time.perf_counter()
    args, kwargs = _first_call_args(tensors, config.optimizer, config.batch_size)
    _run_chunk.get_concrete_function(*args, **kwargs)  # traced before the evaluation: see _trace_evaluation
    evaluation_ready = _compile_evaluation(Wt, b, data)
    status, message = "completed", ""
    for epoch in range(config.epochs):
        step = epoch * steps_per_epoch
        end = step + steps_per_epoch
        step_losses: list[np.ndarray] = []
        batches, sizes = _epoch_batches(rng.permutation(n), config.batch_size)
        for k in range(len(batches)):
            if stop is not None and stop.is_set():
                status, message = "stopped", f"stopped by request during epoch {epoch + 1}"
                break
            steps = min(len(sizes[k]), end - step)
            Wt, b, slots, losses = _run_chunk(config.optimizer, Wt, b, slots, tensors.train_words, tensors.train_y,
                                              tf.constant(batches[k]), tf.constant(sizes[k]), tf.constant(steps),
                                              step0=tf.constant(step), **scalars)
            step_losses.append(losses.numpy()[:steps])
            step += steps
            if on_progress:
                on_progress((epoch + (k + 1) / len(batches)) / config.epochs)
        if status == "stopped":
            break
        losses_np = np.concatenate(step_losses)
        if evaluation_ready:
            evaluation_ready.join()
        metrics = _evaluate_t(Wt, b, data)
        if _diverged(losses_np, metrics["train_loss"]):
            status = "diverged"
            message = (f"train loss reached {metrics['train_loss']:.4g} in epoch {epoch + 1} (an untrained model "
                       f"has {math.log(CLASSES):.2f}): learning rate {config.learning_rate:g} is too large for "
                       f"{config.optimizer}. Kept the weights of epoch {epoch}.")
            break
        lr_now = _cosine(config.learning_rate, step, total_steps) if cosine else config.learning_rate
        record = EpochMetrics(epoch=epoch + 1, **metrics, learning_rate=lr_now,
                              seconds=time.perf_counter() - started,
                              step_losses=[float(x) for x in losses_np])
        history.append(record)
        kept = _weights(Wt, b)
        if on_epoch:
            on_epoch(record, *kept)
    return TrainResult(status, history, kept[0], kept[1], time.perf_counter() - started, message)


def warm_up(data: Mnist, batch_sizes: tuple[int, ...] = (100, 1000),
            optimizers: tuple[str, ...] = OPTIMIZERS) -> float:
    """Compile the engine for ``data`` at these batch sizes and optimizers, and the evaluation.

    A worker process calls it before its first job, so that a first run's first epoch does not
    pay tracing and XLA compilation (each program is compiled once per process and shape, about
    1 CPU second each, or loaded from the persistent cache). Everything is traced first, on this
    thread and in a fixed order (the cache's keys depend on it); the programs then compile two
    at a time, one per core. Each runs one throwaway step (a loop body's first run has a
    one-off cost too). Returns the seconds taken.
    """
    with _plain_cache_errors():
        return _warm_up(data, batch_sizes, optimizers)


def _warm_up(data: Mnist, batch_sizes: tuple[int, ...], optimizers: tuple[str, ...]) -> float:
    started = time.perf_counter()
    tensors = _tensors(data)
    Wt, b = tf.zeros([CLASSES, PIXELS]), tf.zeros([CLASSES])
    with _tensors_lock:
        data.cache["evaluation compiled"] = True
    _trace_evaluation(Wt, b, data)
    calls = [_first_call_args(tensors, optimizer, batch) for optimizer in optimizers for batch in batch_sizes]
    for args, kwargs in calls:
        _run_chunk.get_concrete_function(*args, **kwargs)
    jobs = [partial(_evaluate_t, Wt, b, data)]
    jobs += [partial(_first_call, args, kwargs) for args, kwargs in calls]
    with ThreadPoolExecutor(COMPILE_THREADS, thread_name_prefix="warm up") as pool:
        for done in [pool.submit(job) for job in jobs]:
            done.result()
    return time.perf_counter() - started


def _first_call_args(tensors: _Tensors, optimizer: str, batch_size: int) -> tuple[tuple, dict]:
    """Arguments of one throwaway step of the program for this optimizer and batch size."""
    Wt, b = tf.zeros([CLASSES, PIXELS]), tf.zeros([CLASSES])
    per_call = _steps_per_call(batch_size, tensors.train_words.shape[0])
    args = (optimizer, Wt, b, _zero_slots(optimizer, Wt, b), tensors.train_words, tensors.train_y,
            tf.zeros([per_call, *_block_shape(batch_size)], tf.int32), tf.zeros([per_call], tf.int32), tf.constant(1))
    kwargs = dict(step0=tf.constant(0), lr0=tf.constant(0.0), cosine=tf.constant(False), l2=tf.constant(0.0),
                  total_steps=tf.constant(1))
    return args, kwargs


def _first_call(args: tuple, kwargs: dict) -> None:
    """One throwaway step: compiles the program (or loads it from the persistent cache)."""
    _run_chunk(*args, **kwargs)[-1].numpy()
