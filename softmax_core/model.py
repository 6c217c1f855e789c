"""The softmax regression of the tutorial: logits = x @ W + b, W 784x10, b 10.

TensorFlow holds the trainable state; a NumPy twin of the forward pass serves single-image
prediction, where TF's per-call overhead would dominate.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from .data import CLASSES, PIXELS


class SoftmaxRegression(tf.Module):
    """W (784x10) and b (10); zeros as in the tutorial, or small random values."""

    def __init__(self, init: str = "zeros", seed: int = 0) -> None:
        super().__init__(name="softmax_regression")
        if init == "zeros":
            w0 = np.zeros((PIXELS, CLASSES), np.float32)
        elif init == "random":
            w0 = np.random.default_rng(seed).normal(0.0, 0.01, (PIXELS, CLASSES)).astype(np.float32)
        else:
            raise ValueError(f"init must be 'zeros' or 'random', not {init!r}")
        self.W = tf.Variable(w0, name="W")
        self.b = tf.Variable(np.zeros(CLASSES, np.float32), name="b")

    def logits(self, x: tf.Tensor) -> tf.Tensor:
        return tf.matmul(x, self.W) + self.b

    def probabilities(self, x: tf.Tensor) -> tf.Tensor:
        return tf.nn.softmax(self.logits(x))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of W and b as float32 NumPy arrays."""
        return self.W.numpy().copy(), self.b.numpy().copy()

    def assign(self, W: np.ndarray | tf.Tensor, b: np.ndarray | tf.Tensor) -> None:
        self.W.assign(W)
        self.b.assign(b)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, shifted by the row maximum so that it never overflows."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def predict_proba(W: np.ndarray, b: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Class probabilities for images x of shape (784,) or (n, 784), in NumPy."""
    return softmax(np.asarray(x, np.float32).reshape(-1, PIXELS) @ W + b)
