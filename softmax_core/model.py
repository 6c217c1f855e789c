"""The tutorial's softmax regression, probabilities = softmax(x @ W + b), W 784x10 and b 10.

Plain NumPy: the starting weights, and the forward pass that pages, the CLI and tests use on
saved weights (7 µs for one image, no TensorFlow import). Training, in TensorFlow, is train.py.
"""

from __future__ import annotations

import numpy as np

from .data import CLASSES, PIXELS

RANDOM_INIT_SCALE = 0.01


def initial_weights(init: str = "zeros", seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """W and b before training: zeros as in the tutorial, or small Gaussian W from ``seed``."""
    if init == "zeros":
        W = np.zeros((PIXELS, CLASSES), np.float32)
    elif init == "random":
        W = np.random.default_rng(seed).normal(0.0, RANDOM_INIT_SCALE, (PIXELS, CLASSES)).astype(np.float32)
    else:
        raise ValueError(f"init must be 'zeros' or 'random', not {init!r}")
    return W, np.zeros(CLASSES, np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, shifted by the row maximum so that it never overflows."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def predict_proba(W: np.ndarray, b: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Class probabilities for images x of shape (784,) or (n, 784)."""
    return softmax(np.asarray(x, np.float32).reshape(-1, PIXELS) @ W + b)
