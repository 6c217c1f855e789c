"""Canvas drawing -> a 28x28 image made the way MNIST's digits were made.

MNIST digits were cropped to their ink, scaled to fit a 20x20 box with the aspect ratio kept
(anti-aliased), then placed in a 28x28 field with their centre of mass at the centre. A drawn
digit that skips these steps looks nothing like the training data, and the model guesses badly.
"""

from __future__ import annotations

import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from .data import IMAGE_SIDE

BOX = 20
"""MNIST's digits fit a 20x20 box inside the 28x28 field."""
MIN_INK = 0.002
"""Below this share of fully inked canvas pixels the canvas counts as blank."""
INK_LEVEL = 0.1
"""Pixels fainter than this (of full white) are background when cropping."""


def to_gray(image: np.ndarray) -> np.ndarray:
    """Float gray in [0, 1] from uint8/float gray, RGB or RGBA (alpha ignored: the canvas is opaque)."""
    array = np.asarray(image)
    integer = np.issubdtype(array.dtype, np.integer)  # before the channel mean turns it into floats
    if array.ndim == 3:
        array = array[..., :3].mean(axis=2) if array.shape[2] >= 3 else array[..., 0]
    if array.ndim != 2:
        raise ValueError(f"expected an image of shape (h, w) or (h, w, channels), got {np.shape(image)}")
    gray = array.astype(np.float32)
    return gray / 255.0 if integer or (gray.size and gray.max() > 1.0) else gray


def canvas_to_mnist(image: np.ndarray) -> np.ndarray | None:
    """The 28x28 float32 image in [0, 1] that the model should see, or None for a blank canvas.

    ``image`` is white ink on black, any size; the canvas gives RGBA uint8.
    """
    gray = to_gray(image)
    if gray.size == 0 or gray.sum() < MIN_INK * gray.size:
        return None
    rows = np.flatnonzero((gray > INK_LEVEL).any(axis=1))
    cols = np.flatnonzero((gray > INK_LEVEL).any(axis=0))
    if rows.size == 0:
        return None
    crop = gray[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    scale = BOX / max(crop.shape)
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    small = np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.LANCZOS), np.float32)
    small = np.clip(small, 0.0, 1.0)
    return _centre_by_mass(small)


def _centre_by_mass(digit: np.ndarray) -> np.ndarray:
    """Place ``digit`` in a 28x28 field so that its centre of mass lands at the centre."""
    field = np.zeros((IMAGE_SIDE, IMAGE_SIDE), np.float32)
    h, w = digit.shape
    mass = digit.sum()
    cy = (digit.sum(axis=1) @ np.arange(h)) / mass
    cx = (digit.sum(axis=0) @ np.arange(w)) / mass
    centre = IMAGE_SIDE / 2  # measured on MNIST: mean centre of mass (13.99, 14.00)
    top = int(np.clip(round(centre - cy), 0, IMAGE_SIDE - h))
    left = int(np.clip(round(centre - cx), 0, IMAGE_SIDE - w))
    field[top:top + h, left:left + w] = digit
    return field


SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
LUMA = np.array([0.299, 0.587, 0.114], np.float32)
"""ITU-R 601 weights, as Pillow's own convert("L") uses."""


def file_gray(img: Image.Image) -> np.ndarray:
    """Gray in [0, 1] from an image file of any mode.

    16-bit gray keeps its full range (converting to 8 bits would clip it all to white), and a
    transparent background is laid on the ground that contrasts with what is drawn (a dark digit
    on transparency is otherwise black on black).
    """
    if img.mode in SIXTEEN_BIT_MODES:
        return np.clip(np.asarray(img, np.float64) / 65535.0, 0.0, 1.0).astype(np.float32)
    if img.mode not in ALPHA_MODES and "transparency" not in img.info:
        return np.asarray(img.convert("L"), np.float32) / 255.0
    rgba = np.asarray(img.convert("RGBA"), np.float32) / 255.0
    luma, alpha = rgba[..., :3] @ LUMA, rgba[..., 3]
    if alpha.sum() == 0 or alpha.min() == 1.0:
        return luma
    drawn = float((luma * alpha).sum() / alpha.sum())  # mean brightness of what is drawn
    ground = 1.0 if drawn < 0.5 else 0.0
    return luma * alpha + ground * (1.0 - alpha)


def image_file_to_mnist(path: str, max_pixels: int = 4096 * 4096) -> np.ndarray | None:
    """Read a PNG/JPEG of a digit and preprocess it like the canvas.

    Dark ink on a light background is inverted first, so a photo of a digit on paper works too.
    Images over ``max_pixels`` are refused from their header, before decoding; a file that is
    not an image, or a damaged one, raises ValueError too.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.width * img.height > max_pixels:
                    raise ValueError(f"image is {img.width}x{img.height} pixels; at most {max_pixels} "
                                     "pixels are accepted")
                gray = file_gray(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ValueError(f"image is too large ({exc})") from None
    except FileNotFoundError:
        raise
    except UnidentifiedImageError:
        raise ValueError("not an image that can be read (PNG, JPEG, …)") from None
    except (OSError, SyntaxError, EOFError) as exc:  # Pillow's plugins raise these for damaged files
        raise ValueError(f"damaged image ({exc})") from None
    if np.median(gray) > 0.5:
        gray = 1.0 - gray
    return canvas_to_mnist(gray)


def ink_extent(image: np.ndarray) -> float:
    """The larger side of the ink's bounding box as a share of the canvas side (0 when blank)."""
    gray = to_gray(image)
    rows = np.flatnonzero((gray > INK_LEVEL).any(axis=1))
    cols = np.flatnonzero((gray > INK_LEVEL).any(axis=0))
    if rows.size == 0:
        return 0.0
    return max((rows[-1] - rows[0] + 1) / gray.shape[0], (cols[-1] - cols[0] + 1) / gray.shape[1])
