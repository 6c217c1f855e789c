"""What a trained run gets right and wrong, and why: confusion matrix, mistakes, per-pixel evidence.

Pure NumPy over a run's W (784x10), b (10) and its probabilities, so the Errors and Draw pages,
the CLI and the tests share one set of numbers. A linear softmax's logit is a sum over pixels,
``x @ W[:, k] + b[k]``: each pixel's term ``x[i] * W[i, k]`` is its vote for or against digit k.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .data import CLASSES, IMAGE_SIDE, PIXELS, Mnist


@dataclass(frozen=True, eq=False)
class Predictions:
    """A model's verdict on a labelled set: true labels, guesses and the guess's probability."""

    labels: np.ndarray
    guesses: np.ndarray
    confidence: np.ndarray

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.labels == self.guesses))


def predictions(proba: np.ndarray, labels: np.ndarray) -> Predictions:
    """Guesses (argmax) and their probabilities from an (n, 10) probability matrix."""
    proba = np.asarray(proba)
    if proba.ndim != 2 or proba.shape != (len(labels), CLASSES):
        raise ValueError(f"expected probabilities of shape ({len(labels)}, {CLASSES}), got {proba.shape}")
    guesses = proba.argmax(axis=1)
    return Predictions(np.asarray(labels, np.int64), guesses.astype(np.int64),
                       proba[np.arange(len(guesses)), guesses].astype(np.float32))


def confusion_matrix(labels: np.ndarray, guesses: np.ndarray, classes: int = CLASSES) -> np.ndarray:
    """Counts of (true, guessed) pairs: rows are true digits, columns guesses."""
    labels, guesses = np.asarray(labels, np.int64), np.asarray(guesses, np.int64)
    if labels.shape != guesses.shape:
        raise ValueError(f"labels {labels.shape} and guesses {guesses.shape} differ in shape")
    return np.bincount(labels * classes + guesses, minlength=classes * classes).reshape(classes, classes)


def row_normalised(matrix: np.ndarray) -> np.ndarray:
    """Each row as shares of its true digit's count (a row with no examples stays zero)."""
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros(matrix.shape, np.float64), where=totals > 0)


def per_class_accuracy(matrix: np.ndarray) -> np.ndarray:
    """Share of each true digit guessed right: the diagonal of the row-normalised matrix."""
    return np.diagonal(row_normalised(matrix)).copy()


def misclassified(result: Predictions, true_digit: int | None = None,
                  guessed_digit: int | None = None) -> np.ndarray:
    """Indices of wrong guesses, optionally of one true and/or guessed digit, most confident first."""
    wrong = result.labels != result.guesses
    if true_digit is not None:
        wrong &= result.labels == true_digit
    if guessed_digit is not None:
        wrong &= result.guesses == guessed_digit
    index = np.flatnonzero(wrong)
    return index[np.argsort(-result.confidence[index], kind="stable")]


def evidence(x: np.ndarray, W: np.ndarray, digit: int) -> np.ndarray:
    """Each pixel's vote for ``digit``, ``x[i] * W[i, digit]``, as a 28x28 image."""
    x = np.asarray(x, np.float32).reshape(PIXELS)
    return (x * W[:, digit]).reshape(IMAGE_SIDE, IMAGE_SIDE)


@dataclass(frozen=True, eq=False)
class LogitParts:
    """Every digit's logit split into the pixels' summed evidence and the bias."""

    evidence: np.ndarray
    bias: np.ndarray

    @property
    def logits(self) -> np.ndarray:
        return self.evidence + self.bias


def logit_parts(x: np.ndarray, W: np.ndarray, b: np.ndarray) -> LogitParts:
    """The evidence sums ``x @ W`` and bias ``b`` whose total is each digit's logit."""
    x = np.asarray(x, np.float32).reshape(PIXELS)
    return LogitParts(x @ W, np.asarray(b, np.float32).copy())


MIN_EXTENT = 0.2
"""A drawing whose ink spans less than this share of the canvas (both ways) is a dot or a speck."""
MAX_INK_SHARE = 0.3
"""Mean ink of the 28x28 image above this is a blob: 99.9% of MNIST test digits have less (median 0.13)."""
MIN_SIMILARITY = 0.69
"""Cosine similarity to the nearest of the first 10,000 train digits; 1% of test digits fall below."""
REFERENCE_DIGITS = 10_000
MAX_LOOPS = 3
"""A drawing whose strokes close more loops than this is a scribble: an 8 closes two; 0.17% of the
10,000 MNIST test digits close four or more (thick strokes that touch, broken loops)."""
MAX_SOLID_SHARE = 0.6
"""A drawing with more of its ink than this inside filled areas is scratched out or coloured in:
pen strokes are 2-3 pixels wide, so 0.04% of MNIST test digits are above (median 0.10)."""
SOLID_EXTENT = 0.45
"""Filled areas are judged only in drawings at least this big: in a smaller one the Draw page's
20 px pen is over 3 pixels wide once fitted to MNIST's 20x20 box, and its strokes look solid."""
INK = 0.5
"""A pixel at least this dark is ink, for the shape checks (loops, filled areas)."""


def reference_digits(data: Mnist) -> np.ndarray:
    """Unit-length rows of the first ``REFERENCE_DIGITS`` train images, for ``digit_doubts``."""
    rows = data.images("train", slice(0, REFERENCE_DIGITS))
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-9)


def closed_loops(image: np.ndarray) -> int:
    """Regions of background the ink encloses (4-connected, not reaching the edge): 0 in a 1, 2 in an 8."""
    background = np.asarray(image, np.float32).reshape(IMAGE_SIDE, IMAGE_SIDE) < INK
    outside = np.zeros_like(background)
    outside[[0, -1], :] = outside[:, [0, -1]] = True
    outside &= background
    while True:  # grow the background reached from the edge until it stops
        grown = outside.copy()
        grown[1:] |= outside[:-1]
        grown[:-1] |= outside[1:]
        grown[:, 1:] |= outside[:, :-1]
        grown[:, :-1] |= outside[:, 1:]
        grown &= background
        if (grown == outside).all():
            break
        outside = grown
    enclosed = {(int(i), int(j)) for i, j in zip(*np.nonzero(background & ~outside))}
    loops = 0
    while enclosed:  # count the enclosed regions
        loops += 1
        stack = [enclosed.pop()]
        while stack:
            i, j = stack.pop()
            for pixel in ((i + 1, j), (i - 1, j), (i, j + 1), (i, j - 1)):
                if pixel in enclosed:
                    enclosed.remove(pixel)
                    stack.append(pixel)
    return loops


def solid_share(image: np.ndarray) -> float:
    """The share of ink pixels whose eight neighbours are all ink too: inside a filled area, not on a stroke."""
    ink = np.asarray(image, np.float32).reshape(IMAGE_SIDE, IMAGE_SIDE) >= INK
    padded = np.pad(ink, 1)
    inside = ink.copy()
    for di in (0, 1, 2):
        for dj in (0, 1, 2):
            inside &= padded[di:di + IMAGE_SIDE, dj:dj + IMAGE_SIDE]
    return float(inside.sum() / max(int(ink.sum()), 1))


def digit_doubts(image: np.ndarray, extent: float, references: np.ndarray) -> list[str]:
    """Why a drawing does not look like a handwritten digit (empty when it does).

    A softmax always picks one of ten and its probabilities always sum to 1, so a confident
    answer says nothing about whether the input was a digit: these checks look at the drawing
    itself. ``extent`` is the larger side of the ink's bounding box as a share of the canvas.
    """
    x = np.asarray(image, np.float32).reshape(PIXELS)
    doubts = []
    if extent < MIN_EXTENT:
        doubts.append(f"too little ink: it spans {extent:.0%} of the canvas (a digit spans most of its height)")
    if x.mean() > MAX_INK_SHARE:
        doubts.append(f"too much ink once scaled to MNIST's 20x20 box ({x.mean():.0%} of the pixels; "
                      "real digits use about 13%): a blob or a filled shape")
    elif extent >= SOLID_EXTENT and solid_share(x) > MAX_SOLID_SHARE:
        doubts.append(f"filled in or scratched out: {solid_share(x):.0%} of its ink is inside solid areas "
                      "(pen strokes of real digits are 2-3 pixels wide)")
    loops = closed_loops(x)
    if loops > MAX_LOOPS:
        doubts.append(f"a scribble: its strokes close {loops} loops (an 8 closes two)")
    similarity = float((references @ (x / max(float(np.linalg.norm(x)), 1e-9))).max()) if len(references) else 1.0
    if similarity < MIN_SIMILARITY:
        doubts.append(f"unlike any training digit (nearest match {similarity:.2f}; "
                      f"99% of real test digits score above {MIN_SIMILARITY})")
    return doubts


RISE_SHARE = 1 / 3
"""A run whose train loss rose in at least this share of its epochs is oscillating."""
RISE_FACTOR = 1.2
"""Or whose last train loss is this many times its best (it climbed away from its minimum), or
jumped to this many times its best so far in some epoch: a steady descent never does either."""


def loss_trouble(history: list) -> str | None:
    """Why a run's loss curve looks unhealthy (rising or swinging), or None when it falls steadily.

    Large steps overshoot the minimum: the loss bounces or climbs while accuracy may still look
    fine, which is why a finished run is checked rather than trusted for its final accuracy.
    """
    losses = [float(h["train_loss"] if isinstance(h, dict) else h.train_loss) for h in history]
    if len(losses) < 3 or not all(np.isfinite(losses)):
        return None
    rises = sum(1 for a, b in zip(losses, losses[1:]) if b > a)
    if losses[-1] > RISE_FACTOR * min(losses):
        return (f"the train loss climbed from its best {min(losses):.3f} to {losses[-1]:.3f}: the steps "
                "overshoot the minimum")
    if rises >= RISE_SHARE * (len(losses) - 1):
        return f"the train loss rose in {rises} of {len(losses) - 1} epochs instead of falling steadily"
    jump = max(range(1, len(losses)), key=lambda i: losses[i] / min(losses[:i]))
    if losses[jump] > RISE_FACTOR * min(losses[:jump]):
        return (f"the train loss jumped from {min(losses[:jump]):.3f} to {losses[jump]:.3f} in epoch {jump + 1}: "
                "the steps overshoot the minimum")
    return None
