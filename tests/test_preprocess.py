"""canvas_to_mnist: real MNIST digits blown up to canvas size and moved keep their accuracy."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from softmax_core.config import TrainConfig
from softmax_core.model import predict_proba
from softmax_core.preprocess import canvas_to_mnist
from softmax_core.train import train


def as_canvas(digit: np.ndarray, size: int, top: int, left: int, side: int = 280) -> np.ndarray:
    """A 28x28 digit scaled to ``size`` px and pasted at (top, left) on an RGBA canvas, as st_canvas sends it."""
    big = np.asarray(Image.fromarray((digit.reshape(28, 28) * 255).astype(np.uint8)).resize(
        (size, size), Image.Resampling.BILINEAR))
    canvas = np.zeros((side, side, 4), np.uint8)
    canvas[..., 3] = 255
    canvas[top:top + size, left:left + size, :3] = big[..., None]
    return canvas


@pytest.fixture(scope="module")
def weights(mnist):
    result = train(TrainConfig(), mnist)
    return result.W, result.b


def test_blown_up_and_moved_digits_keep_their_accuracy(mnist, weights):
    rng = np.random.default_rng(0)
    n = 1000
    direct = (predict_proba(*weights, mnist.images("test")[:n]).argmax(1) == mnist.test_y[:n]).mean()
    seen = []
    for digit in mnist.images("test")[:n]:
        size = int(rng.integers(120, 260))
        top, left = rng.integers(0, 280 - size + 1, 2)
        seen.append(canvas_to_mnist(as_canvas(digit, size, top, left)).ravel())
    via_canvas = (predict_proba(*weights, np.stack(seen)).argmax(1) == mnist.test_y[:n]).mean()
    assert via_canvas >= direct - 0.02, (via_canvas, direct)


def test_output_looks_like_mnist(mnist):
    image = canvas_to_mnist(as_canvas(mnist.images("test", 0), 200, 10, 70))
    assert image.shape == (28, 28) and image.dtype == np.float32
    assert 0.0 <= image.min() and image.max() <= 1.0
    rows, cols = np.flatnonzero(image.any(1)), np.flatnonzero(image.any(0))
    assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 <= 20
    mass = image.sum()
    centre = ((image.sum(1) @ np.arange(28)) / mass, (image.sum(0) @ np.arange(28)) / mass)
    assert np.allclose(centre, 14, atol=0.6)


def test_blank_and_nearly_blank_canvases_give_none():
    canvas = np.zeros((280, 280, 4), np.uint8)
    canvas[..., 3] = 255  # opaque black: the mean of all channels is 63.75, yet nothing is drawn
    assert canvas_to_mnist(canvas) is None
    canvas[100:102, 100:102, :3] = 255
    assert canvas_to_mnist(canvas) is None


def test_whole_canvas_filled_gives_an_image_not_an_error():
    image = canvas_to_mnist(np.full((280, 280, 4), 255, np.uint8))
    assert image.shape == (28, 28) and image.max() > 0.9


def test_a_vertical_stroke_reads_as_one(weights):
    canvas = np.zeros((280, 280, 4), np.uint8)
    canvas[..., 3] = 255
    canvas[50:230, 130:150, :3] = 255
    assert predict_proba(*weights, canvas_to_mnist(canvas).ravel()).argmax() == 1
