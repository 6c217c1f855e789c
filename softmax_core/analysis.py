"""What a trained run gets right and wrong, and why: confusion matrix, mistakes, per-pixel evidence.

Pure NumPy over a run's W (784x10), b (10) and its probabilities, so the Errors and Draw pages,
the CLI and the tests share one set of numbers. A linear softmax's logit is a sum over pixels,
``x @ W[:, k] + b[k]``: each pixel's term ``x[i] * W[i, k]`` is its vote for or against digit k.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .data import CLASSES, IMAGE_SIDE, PIXELS


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
