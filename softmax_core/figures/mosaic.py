"""The ten weight templates as one small RGB image, for views redrawn every epoch.

An image is a single cheap element to replace in the browser (a Plotly heatmap grid is
remounted on every change); the colours match the Plotly templates: red where ink votes for
the digit, blue against, white at zero.
"""

from __future__ import annotations

import numpy as np

from ..data import CLASSES, IMAGE_SIDE, PIXELS

NEGATIVE = np.array([33, 102, 172], np.float32)
"""RdBu's blue end."""
POSITIVE = np.array([178, 24, 43], np.float32)
"""RdBu's red end."""
WHITE = np.array([255, 255, 255], np.float32)
ZOOM = 4
GAP = 4
PERCENTILE = 99.0


def template_mosaic(W: np.ndarray, columns: int = 5) -> np.ndarray:
    """uint8 RGB image of W's ten columns as 28x28 templates in a grid, on one symmetric scale."""
    W = np.asarray(W, np.float32).reshape(PIXELS, CLASSES)
    limit = float(np.percentile(np.abs(W), PERCENTILE)) or 1.0
    t = np.clip(W / limit, -1.0, 1.0)
    colours = np.where(t[..., None] >= 0, WHITE + t[..., None] * (POSITIVE - WHITE),
                       WHITE + (-t[..., None]) * (NEGATIVE - WHITE))
    side = IMAGE_SIDE * ZOOM
    rows = -(-CLASSES // columns)
    canvas = np.full((rows * side + (rows - 1) * GAP, columns * side + (columns - 1) * GAP, 3), 255, np.uint8)
    for digit in range(CLASSES):
        tile = colours[:, digit].reshape(IMAGE_SIDE, IMAGE_SIDE, 3).repeat(ZOOM, 0).repeat(ZOOM, 1)
        r, c = divmod(digit, columns)
        canvas[r * (side + GAP):r * (side + GAP) + side, c * (side + GAP):c * (side + GAP) + side] = tile
    return canvas
