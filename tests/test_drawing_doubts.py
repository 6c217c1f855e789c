"""digit_doubts on real MNIST test digits (nearly all pass) and on drawings that are not digits.

The drawings are made with PIL lines and dots on a 280x280 canvas, as the Draw page's canvas
gives them, and go through the page's own preprocessing.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from softmax_core.analysis import digit_doubts, reference_digits
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
