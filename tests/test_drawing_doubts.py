"""digit_doubts on real MNIST test digits (nearly all pass) and on drawings that are not digits:
dots, dashes, blobs and scribbles (tangles that close many loops, scratched-out areas).

The drawings are made with PIL lines and dots on a 280x280 canvas, as the Draw page's canvas
gives them, and go through the page's own preprocessing.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from softmax_core.analysis import (MAX_LOOPS, MAX_SOLID_SHARE, closed_loops, digit_doubts, reference_digits,
                                   solid_share)
from softmax_core.data import Mnist
from softmax_core.preprocess import canvas_to_mnist, ink_extent

SIDE = 280


@pytest.fixture(scope="module")
def references(mnist: Mnist) -> np.ndarray:
    return reference_digits(mnist)


def drawn(*strokes: list[tuple[int, int]], dot: tuple[int, int] | None = None) -> np.ndarray:
    image = Image.new("L", (SIDE, SIDE))
    pen = ImageDraw.Draw(image)
    for stroke in strokes:
        pen.line(stroke, fill=255, width=20, joint="curve")
    if dot:
        pen.ellipse([dot[0] - 10, dot[1] - 10, dot[0] + 10, dot[1] + 10], fill=255)
    return np.asarray(image)


def doubts(canvas: np.ndarray, references: np.ndarray) -> list[str]:
    return digit_doubts(canvas_to_mnist(canvas), ink_extent(canvas), references)


def test_real_test_digits_are_taken_for_digits(mnist: Mnist, references: np.ndarray) -> None:
    images = mnist.images("test", slice(0, 2000)).reshape(-1, 28, 28)
    images = images / 255.0 if images.max() > 1.5 else images
    doubted = sum(bool(digit_doubts(image, 0.8, references)) for image in images)
    assert doubted / len(images) < 0.03, doubted


def test_drawn_one_and_seven_pass(references: np.ndarray) -> None:
    assert doubts(drawn([(140, 40), (140, 250)]), references) == []
    assert doubts(drawn([(70, 50), (210, 50), (120, 250)]), references) == []


def test_a_single_dot_is_too_little_ink(references: np.ndarray) -> None:
    found = doubts(drawn(dot=(140, 140)), references)
    assert any("too little ink" in d for d in found) and any("too much ink" in d for d in found), found


def test_a_dash_is_unlike_any_digit(references: np.ndarray) -> None:
    found = doubts(drawn([(40, 140), (240, 140)]), references)
    assert any("unlike any training digit" in d for d in found), found


def tangle(seed: int) -> list[tuple[float, float]]:
    """A scribble: a closed curve of four random sine waves each way, crossing itself, 180 px across."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 2 * np.pi, 300)
    frequency, amplitude = rng.integers(1, 7, (2, 4, 1)), rng.normal(size=(2, 4, 1))
    phase = rng.uniform(0, 2 * np.pi, (2, 4, 1))
    xy = (amplitude * np.sin(frequency * t + phase)).sum(axis=1)
    xy = xy / np.abs(xy).max(axis=1, keepdims=True) * 90 + SIDE / 2
    return list(zip(*xy))


def scratch_out(seed: int) -> list[tuple[float, float]]:
    """Back-and-forth strokes over one area, as when a drawing is scratched out."""
    rng = np.random.default_rng(seed)
    lines = 8 + seed % 8
    points = []
    for i in range(lines):
        y = 60 + 160 * i / lines + rng.normal() * 5
        left, right = (50 + rng.normal() * 8, y + 50), (230 + rng.normal() * 8, y - 20)
        points += [left, right] if i % 2 == 0 else [right, left]
    return points


def test_loops_are_the_holes_a_digit_closes() -> None:
    ring = [(140 + 80 * np.cos(a), 140 + 110 * np.sin(a)) for a in np.linspace(0, 2 * np.pi, 40)]
    top = [(140 + 60 * np.cos(a), 85 + 55 * np.sin(a)) for a in np.linspace(0, 2 * np.pi, 30)]
    bottom = [(140 + 75 * np.cos(a), 195 + 60 * np.sin(a)) for a in np.linspace(0, 2 * np.pi, 30)]
    assert closed_loops(canvas_to_mnist(drawn([(140, 30), (140, 250)]))) == 0
    assert closed_loops(canvas_to_mnist(drawn(ring))) == 1
    assert closed_loops(canvas_to_mnist(drawn(top, bottom))) == 2


def test_scribbles_are_not_taken_for_digits(references: np.ndarray) -> None:
    """Measured: 28 of 40 tangles and 33 of 40 scratch-outs flagged (5 and 7 before the shape checks);
    the rest look like a letter or a thick digit to every check."""
    tangles = [doubts(drawn(tangle(seed)), references) for seed in range(40)]
    scratches = [doubts(drawn(scratch_out(seed)), references) for seed in range(40)]
    assert sum(map(bool, tangles)) >= 26 and sum(map(bool, scratches)) >= 30
    assert sum(any("a scribble: its strokes close" in d for d in found) for found in tangles) >= 24
    assert any("scratched out" in d for found in scratches for d in found)


def test_shape_checks_almost_never_flag_real_digits(mnist: Mnist) -> None:
    """Of all 10,000 MNIST test digits, 21 (0.21%) close more than three loops or are mostly solid ink."""
    images = mnist.images("test").reshape(-1, 28, 28)
    images = images / 255.0 if images.max() > 1.5 else images
    flagged = sum(closed_loops(x) > MAX_LOOPS or solid_share(x) > MAX_SOLID_SHARE for x in images)
    assert len(images) == 10_000 and flagged <= 30, flagged


@pytest.mark.parametrize("size", [60, 100, 160, 250])
def test_small_or_large_drawn_digits_pass_the_shape_checks(references: np.ndarray, size: int) -> None:
    """A small drawing has thick strokes once fitted to 20x20: they are not taken for a filled area."""
    o, s = (SIDE - size) / 2, size
    one = [(o + s / 2, o), (o + s / 2, o + s)]
    eight_top = [(o + s / 2 + 0.22 * s * np.cos(a), o + 0.25 * s + 0.25 * s * np.sin(a)) for a in np.linspace(0, 7, 30)]
    eight_bottom = [(o + s / 2 + 0.27 * s * np.cos(a), o + 0.72 * s + 0.28 * s * np.sin(a)) for a in np.linspace(0, 7, 30)]
    for canvas in (drawn(one), drawn(eight_top, eight_bottom)):
        found = doubts(canvas, references)
        assert not any("scribble" in d or "scratched out" in d for d in found), found
