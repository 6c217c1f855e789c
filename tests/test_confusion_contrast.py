"""Every count on the confusion matrix reads at WCAG AA contrast (4.5:1) against its own cell."""

from __future__ import annotations

import numpy as np

from softmax_core.figures.digits import confusion_matrix


def luminance(rgb: np.ndarray) -> float:
    c = rgb / 255.0
    linear = np.where(c <= 0.03928, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return float(linear @ [0.2126, 0.7152, 0.0722])


def cell_colour(value: float, top: float, scale: list) -> np.ndarray:
    low, high = (np.array([int(c[i:i + 2], 16) for i in (1, 3, 5)], float) for _, c in scale)
    return low + min(value / top, 1.0) * (high - low)


def test_counts_have_aa_contrast() -> None:
    rng = np.random.default_rng(0)
    matrix = rng.integers(0, 60, (10, 10))
    np.fill_diagonal(matrix, rng.integers(850, 1130, 10))
    fig = confusion_matrix(matrix)
    colours = np.array(fig.data[-1].textfont.color).reshape(10, 10)
    heatmaps = fig.data[:2]
    for i in range(10):
        for j in range(10):
            trace = heatmaps[0] if i == j else heatmaps[1]
            scale = [(stop, colour) for stop, colour in trace.colorscale]
            background = luminance(cell_colour(matrix[i, j], trace.zmax, scale))
            text = 1.0 if colours[i, j] == "white" else 0.0
            ratio = (max(background, text) + 0.05) / (min(background, text) + 0.05)
            assert ratio >= 4.5, (i, j, matrix[i, j], colours[i, j], ratio)
