"""canvas_to_mnist: real MNIST digits blown up to canvas size and moved keep their accuracy; odd
drawings give None or an MNIST-like image, never an error; image files of any depth or alpha read alike."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from softmax_core.model import predict_proba
from softmax_core.preprocess import canvas_to_mnist, image_file_to_mnist


def as_canvas(digit: np.ndarray, size: int, top: int, left: int, side: int = 280) -> np.ndarray:
    """A 28x28 digit scaled to ``size`` px and pasted at (top, left) on an RGBA canvas, as st_canvas sends it."""
    big = np.asarray(Image.fromarray((digit.reshape(28, 28) * 255).astype(np.uint8)).resize(
        (size, size), Image.Resampling.BILINEAR))
    canvas = np.zeros((side, side, 4), np.uint8)
    canvas[..., 3] = 255
    canvas[top:top + size, left:left + size, :3] = big[..., None]
    return canvas


@pytest.fixture(scope="module")
def weights(default_training):
    return default_training.W, default_training.b


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


# --- odd drawings (docs/faults.md: smaller breaks) ---------------------------------------------------

def canvas(fill) -> np.ndarray:
    """A 280x280 RGBA canvas as the component sends it: opaque, white ink on black; ``fill(gray)`` draws."""
    gray = np.zeros((280, 280), np.uint8)
    fill(gray)
    rgba = np.empty((280, 280, 4), np.uint8)
    rgba[..., :3] = gray[..., None]
    rgba[..., 3] = 255
    return rgba


def specks(gray: np.ndarray) -> None:
    for y, x in ((40, 40), (200, 90), (120, 250)):
        gray[y:y + 4, x:x + 4] = 255


def faint_wash(gray: np.ndarray) -> None:
    gray[:] = 20  # below the ink level everywhere: a smudge, not a digit


def near_black(gray: np.ndarray) -> None:
    gray[:] = 1  # 1 of 255 everywhere: must not be read as full white on a 0..1 scale


def everything(gray: np.ndarray) -> None:
    gray[:] = 255


def one_pixel_line(gray: np.ndarray) -> None:
    gray[:, 140] = 255


def stroke_1(gray: np.ndarray) -> None:
    gray[40:240, 130:150] = 255


BLANKS = {"empty": lambda g: None, "specks": specks, "faint wash": faint_wash, "near black": near_black}
FILLED = {"whole canvas": everything, "one-pixel line": one_pixel_line, "a vertical stroke": stroke_1}


@pytest.mark.parametrize("drawing", BLANKS)
def test_blank_and_nearly_blank_canvas_is_not_a_digit(drawing):
    assert canvas_to_mnist(canvas(BLANKS[drawing])) is None
    transparent = canvas(BLANKS[drawing])
    transparent[..., 3] = 0
    assert canvas_to_mnist(transparent) is None


@pytest.mark.parametrize("drawing", FILLED)
def test_filled_or_thin_drawings_give_an_mnist_like_image(drawing):
    image = canvas_to_mnist(canvas(FILLED[drawing]))
    assert image.shape == (28, 28) and image.dtype == np.float32
    assert np.isfinite(image).all() and image.min() >= 0 and image.max() <= 1
    assert image.sum() > 0
    ink = np.argwhere(image > 0.1)
    assert (ink.max(axis=0) - ink.min(axis=0) + 1).max() <= 20, "fitted into MNIST's 20x20 box"
    assert not image[:4].any() and not image[-4:].any() and not image[:, :4].any() and not image[:, -4:].any()


def test_tiny_and_odd_shaped_canvases_do_not_raise():
    assert canvas_to_mnist(np.zeros((0, 0, 4), np.uint8)) is None
    for dot in (np.full((1, 1, 4), 255, np.uint8), np.full((1, 1), 1.0, np.float32)):  # a whole canvas of ink
        image = canvas_to_mnist(dot)
        assert image.shape == (28, 28) and np.isfinite(image).all() and image.max() <= 1
    with pytest.raises(ValueError, match="expected an image"):
        canvas_to_mnist(np.zeros((2, 2, 2, 2), np.uint8))


# --- image files: 16-bit gray, a transparent ground -------------------------------------------------

def test_a_16_bit_png_reads_like_its_8_bit_twin(tmp_path, mnist):
    digit = mnist.images("test", 0).reshape(28, 28)
    Image.fromarray((digit * 255).astype(np.uint8)).resize((280, 280)).save(tmp_path / "d8.png")
    Image.fromarray(((1 - digit) * 65535).astype(np.uint16)).resize((280, 280)).save(tmp_path / "d16.png")
    assert Image.open(tmp_path / "d16.png").mode.startswith("I")
    eight, sixteen = image_file_to_mnist(str(tmp_path / "d8.png")), image_file_to_mnist(str(tmp_path / "d16.png"))
    assert sixteen is not None
    np.testing.assert_allclose(sixteen, eight, atol=0.01)


@pytest.mark.parametrize("ink", ["dark", "white"])
def test_a_digit_on_a_transparent_background_is_read(tmp_path, mnist, ink):
    digit = mnist.images("test", 0).reshape(28, 28)
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., :3] = 0 if ink == "dark" else 255
    rgba[..., 3] = (digit * 255).astype(np.uint8)
    Image.fromarray(rgba).resize((280, 280)).save(tmp_path / "alpha.png")
    Image.fromarray((digit * 255).astype(np.uint8)).resize((280, 280)).save(tmp_path / "plain.png")
    read = image_file_to_mnist(str(tmp_path / "alpha.png"))
    assert read is not None
    np.testing.assert_allclose(read, image_file_to_mnist(str(tmp_path / "plain.png")), atol=0.01)
