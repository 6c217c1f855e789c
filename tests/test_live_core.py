"""The live view's pieces: the live Plotly curves (bounded, JSON-safe), the weight mosaic, the
per-epoch answers to a drawing (checked against a plain softmax), and the loss-trouble check."""

from __future__ import annotations

import json
import math

import numpy as np

from softmax_core.analysis import loss_trouble
from softmax_core.config import TrainConfig
from softmax_core.evolution import answers_by_epoch, weight_history
from softmax_core.figures.live import ACCURACY_HEIGHT, LOSS_HEIGHT, MAX_BAND_POINTS, live_accuracy, live_loss
from softmax_core.figures.mosaic import template_mosaic
from softmax_core.runs import RunStore


def epoch(n: int, loss: float, steps: int = 0) -> dict:
    return {"epoch": n, "train_loss": loss, "validation_loss": loss, "test_loss": loss, "train_accuracy": 0.9,
            "validation_accuracy": 0.9, "test_accuracy": 0.9, "learning_rate": 0.1, "seconds": n,
            "step_losses": [loss] * steps}


def test_band_is_bounded_however_many_steps() -> None:
    history = [epoch(n, 1 / n, steps=5500) for n in range(1, 31)]
    band, *curves = live_loss(history).data
    assert band.name == "minibatch loss" and 0 < len(band.x) <= MAX_BAND_POINTS
    assert [list(c.x) for c in curves] == [list(range(1, 31))] * 3


def test_figures_keep_their_height_from_the_first_epoch_to_the_last() -> None:
    """A fixed height: the page does not move when the first points arrive or the run ends."""
    for figure, height in ((live_loss, LOSS_HEIGHT), (live_accuracy, ACCURACY_HEIGHT)):
        assert figure([]).layout.height == figure([epoch(n, 1 / n, 10) for n in range(1, 40)]).layout.height == height


def test_accuracy_in_percent_and_nan_sent_as_a_gap() -> None:
    figure = live_accuracy([epoch(1, 0.5), {**epoch(2, math.nan), "test_accuracy": 0.95}])
    test = next(t for t in figure.data if t.name == "test accuracy")
    assert list(test.y) == [90.0, 95.0]
    loss = json.loads(live_loss([epoch(1, 0.5), epoch(2, math.nan)]).to_json())
    train = next(t for t in loss["data"] if t["name"] == "train loss")
    assert train["y"] == [0.5, None]  # NaN is not JSON: plotly.js draws null as a gap


def test_mosaic_colours_sign_of_weights() -> None:
    W = np.zeros((784, 10), np.float32)
    W[0, 0], W[0, 1] = 1.0, -1.0
    image = template_mosaic(W)
    assert image.dtype == np.uint8 and image.shape == (2 * 112 + 4, 5 * 112 + 4 * 4, 3)
    assert image[0, 0, 0] > image[0, 0, 2]  # digit 0's first pixel: red
    assert image[0, 116, 2] > image[0, 116, 0]  # digit 1's first pixel: blue
    assert tuple(image[50, 50]) == (255, 255, 255)


def test_answers_by_epoch_match_a_plain_softmax(tmp_path) -> None:
    store = RunStore(tmp_path)
    writer = store.create(TrainConfig())
    rng = np.random.default_rng(0)
    weights = [(rng.normal(size=(784, 10)).astype(np.float32), rng.normal(size=10).astype(np.float32))
               for _ in range(3)]
    for n, (W, b) in enumerate(weights, 1):
        writer.record_epoch(epoch(n, 0.3), W, b)
    Ws, bs = weight_history(store.path(writer.run_id))
    x = rng.random(784).astype(np.float32)
    answers = answers_by_epoch(Ws, bs, x)
    for n, (W, b) in enumerate(weights):
        logits = x.astype(np.float64) @ W.astype(np.float16).astype(np.float64) + b
        expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        np.testing.assert_allclose(answers[n], expected, rtol=1e-3, atol=1e-5)


def test_loss_trouble_names_rises_and_climbs() -> None:
    assert loss_trouble([epoch(n, 1 / n) for n in range(1, 10)]) is None
    swinging = [epoch(n, 0.4 + 0.2 * (n % 2)) for n in range(1, 11)]  # ends low, rose 4 of 9 times
    assert "rose in" in loss_trouble(swinging)
    climbing = [epoch(1, 0.3), epoch(2, 0.2), epoch(3, 0.25), epoch(4, 0.4)]
    assert "climbed" in loss_trouble(climbing)
    spiking = [epoch(n, loss) for n, loss in enumerate([1.58, 4.43, 1.52, 1.47, 1.44, 4.08, 2.27, 1.42], 1)]
    assert "jumped from 1.440 to 4.080 in epoch 6" in loss_trouble(spiking)  # SGD lr 10: 2 rises of 7, ends at its best


def test_the_basic_plotly_js_is_the_plotly_package_s_version_and_draws_every_live_trace() -> None:
    """static/plotly-basic.min.js (served to the live curves) must match the figures plotly.py builds."""
    import plotly.offline

    from ui.live_figure import PLOTLY_JS, _warm_up_figure

    head = PLOTLY_JS.read_text(encoding="utf-8")[:200]
    assert f"plotly.js (basic - minified) v{plotly.offline.get_plotlyjs_version()}" in head, head
    assert (PLOTLY_JS.parent / "plotly-basic.LICENSE").exists()
    kinds = {t.get("type", "scatter") for fig in (live_loss([]), live_accuracy([])) for t in fig.to_plotly_json()["data"]}
    kinds |= {t.get("type", "scatter") for t in _warm_up_figure()["data"]}
    assert kinds <= {"scatter", "bar", "pie"}, kinds  # the basic bundle's trace types
