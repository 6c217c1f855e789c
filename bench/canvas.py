"""Server-side latency of the Draw page's work: canvas RGBA -> 28x28 -> class probabilities.

Run in its own process (``python -m bench.canvas --calls 300``), it prints one JSON line. The
canvas image is a real test digit drawn as the canvas sends it: RGBA uint8, white ink on black,
opaque, at the canvas's size.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np
from PIL import Image

from softmax_core.data import CLASSES, IMAGE_SIDE, PIXELS, load_mnist

CANVAS_SIDE = 280
"""Pixels per side of the drawing canvas the benchmark feeds (10x MNIST's 28)."""


def canvas_image(digit: np.ndarray, side: int = CANVAS_SIDE) -> np.ndarray:
    """A 28x28 digit in [0, 1] scaled up to a side x side opaque RGBA canvas, white on black."""
    gray = Image.fromarray((digit.reshape(IMAGE_SIDE, IMAGE_SIDE) * 255).astype(np.uint8))
    big = np.asarray(gray.resize((side, side), Image.Resampling.BILINEAR))
    return np.dstack([big, big, big, np.full_like(big, 255)])


def canvas_latency(calls: int, side: int = CANVAS_SIDE, seed: int = 0) -> dict:
    """Median and 95th percentile seconds of ``canvas_to_mnist`` + ``predict_proba`` per image."""
    from softmax_core.model import predict_proba
    from softmax_core.preprocess import canvas_to_mnist

    data = load_mnist(allow_download=False)
    rng = np.random.default_rng(seed)
    W = rng.normal(0, 0.01, (PIXELS, CLASSES)).astype(np.float32)
    b = np.zeros(CLASSES, np.float32)
    images = [canvas_image(data.images("test", i), side) for i in rng.choice(len(data.test_y), 20, replace=False)]
    predict_proba(W, b, canvas_to_mnist(images[0]))
    seconds, preprocess_seconds = [], []
    for k in range(calls):
        image = images[k % len(images)]
        started = time.perf_counter()
        small = canvas_to_mnist(image)
        between = time.perf_counter()
        predict_proba(W, b, small)
        ended = time.perf_counter()
        seconds.append(ended - started)
        preprocess_seconds.append(between - started)
    return {
        "canvas_side": side, "calls": calls,
        "seconds": statistics.median(seconds),
        "p95_seconds": float(np.percentile(seconds, 95)),
        "preprocess_seconds": statistics.median(preprocess_seconds),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Time canvas -> probabilities; print one JSON line.")
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--side", type=int, default=CANVAS_SIDE)
    args = parser.parse_args(argv)
    print(json.dumps(canvas_latency(args.calls, args.side)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
