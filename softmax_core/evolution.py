"""A run's weights epoch by epoch, read with NumPy only, and one drawing's answer at each epoch.

The web server reads these while the run trains in the worker process, so a person who drew a
digit on Draw can watch the model change its mind about it, epoch after epoch.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from .data import CLASSES, PIXELS
from .model import softmax


def weight_history(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """W (epochs, 784, 10) and b (epochs, 10) from a run folder's evolution.npz; None without b.

    Runs recorded before b was kept per epoch have no b stack: the per-epoch answer would be
    wrong with the last epoch's b, so they get none.
    """
    try:
        with np.load(path / "evolution.npz", allow_pickle=False) as npz:
            if "b" not in npz.files:
                return None
            W, b = npz["W"].astype(np.float32), npz["b"].astype(np.float32)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error):
        return None
    if W.ndim != 3 or W.shape[1:] != (PIXELS, CLASSES) or b.shape != (len(W), CLASSES):
        return None
    return W, b


def answers_by_epoch(W: np.ndarray, b: np.ndarray, image: np.ndarray) -> np.ndarray:
    """(epochs, 10) probabilities the model gave ``image`` after each epoch."""
    x = np.asarray(image, np.float32).reshape(PIXELS)
    return softmax(np.einsum("p,epk->ek", x, W) + b)
