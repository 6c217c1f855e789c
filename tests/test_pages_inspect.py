"""AppTest of the inspection pages (Weights, Draw, Errors) with and without a really trained run;
damaged weights, a 500-epoch history and odd drawings (docs/faults.md).

The Draw page gets its drawing the way the browser sends it: a PNG data URL in the canvas
component's own session state, here made from a real MNIST test digit blown up to 280x280.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from made_runs import GOOD
from PIL import Image
from test_preprocess import BLANKS, FILLED, canvas
from streamlit.testing.v1 import AppTest

from apptest import WAIT, open_page, open_tab

from softmax_core.analysis import confusion_matrix, predictions
from softmax_core.config import TrainConfig
from softmax_core.data import Mnist
from softmax_core.record import record_run
from softmax_core.model import predict_proba
from softmax_core.preprocess import canvas_to_mnist
from softmax_core.runs import RunStore

PAGES = ("pages/weights.py", "pages/draw.py", "pages/errors.py")


def array(value) -> np.ndarray:
    """A Plotly array from figure JSON: a plain list, or plotly.py's base64 typed array."""
    if isinstance(value, dict) and "bdata" in value:
        flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        return flat.reshape([int(n) for n in str(shape).split(",")]) if shape else flat
    return np.asarray(value)


def canvas_png(rgba: np.ndarray) -> dict:
    """The canvas component's value after a stroke: its drawing as a PNG data URL."""
    buffer = io.BytesIO()
    Image.fromarray(rgba).save(buffer, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    return {"drawing": {"raw": {"objects": [{"type": "path"}]}, "data": url}, "backgroundFit": None}


def digit_on_canvas(image: np.ndarray) -> np.ndarray:
    """A 28x28 MNIST digit as the 280x280 white-on-black RGBA the canvas would send."""
    gray = np.kron(image.reshape(28, 28), np.ones((10, 10)))
    rgba = np.empty((280, 280, 4), np.uint8)
    rgba[..., :3] = np.round(gray * 255)[..., None]
    rgba[..., 3] = 255
    return rgba


def draw(at: AppTest, rgba: np.ndarray) -> AppTest:
    at.session_state[at.session_state["draw_canvas_key"]] = canvas_png(rgba)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def chart(at: AppTest, title_start: str = "", trace_type: str | None = None) -> list[dict]:
    """Figures whose title starts with ``title_start`` and, if given, whose first trace has that type."""
    found = []
    for element in at.get("plotly_chart"):
        spec = json.loads(element.proto.spec)
        title = ((spec["layout"].get("title") or {}).get("text")) or ""
        if title.startswith(title_start) and (trace_type is None or spec["data"][0]["type"] == trace_type):
            found.append(spec)
    return found


@pytest.fixture
def run_id(adam_run: Path, runs_dir: Path) -> str:
    """One real two-epoch run of the default settings, copied into the test's own store."""
    return shutil.copytree(adam_run, runs_dir / adam_run.name).name


@pytest.mark.parametrize("page", PAGES)
def test_page_without_runs_says_so(page: str, runs_dir: Path) -> None:
    at = open_page(page)
    assert any("No trained run yet" in info.value for info in at.info)
    assert not at.get("plotly_chart")


def test_weights_page_shows_ten_templates_on_one_scale(run_id: str, runs_dir: Path) -> None:
    at = open_page("pages/weights.py")
    W, _ = RunStore(runs_dir).load_weights(run_id)
    grid = [spec for spec in chart(at, trace_type="heatmap") if not spec.get("frames")]
    assert len(grid) == 1
    traces = grid[0]["data"]
    assert len(traces) == 10
    assert sum(bool(t.get("showscale")) for t in traces) == 1
    assert {(t["zmin"], t["zmax"], t["zmid"]) for t in traces} == {(traces[0]["zmin"], traces[0]["zmax"], 0)}
    assert traces[0]["zmin"] == -traces[0]["zmax"] > -np.abs(W).max() - 1e-6
    for digit, trace in enumerate(traces):
        np.testing.assert_allclose(array(trace["z"]), W[:, digit].reshape(28, 28), rtol=1e-6)
    assert all(axis["autorange"] == "reversed" for name, axis in grid[0]["layout"].items() if name.startswith("yaxis"))
    assert at.metric[1].value == "2"


def test_weights_page_slider_and_frames_step_through_epochs(run_id: str, runs_dir: Path) -> None:
    """The epoch slider is the figure's own, with one step per frame, so it follows Play."""
    at = open_tab(open_page("pages/weights.py"), "weights_tab", "Epoch by epoch")
    stack = RunStore(runs_dir).load_evolution(run_id)
    (animated,) = chart(at, "Templates after epoch")
    assert [frame["name"] for frame in animated["frames"]] == ["1", "2"]
    assert animated["layout"]["title"]["text"] == "Templates after epoch 2 of 2"
    assert [button["label"] for button in animated["layout"]["updatemenus"][0]["buttons"]] == ["▶ Play", "❚❚ Pause"]
    (slider,) = animated["layout"]["sliders"]
    assert slider["active"] == 1
    assert [(step["label"], step["args"][0]) for step in slider["steps"]] == [("1", ["1"]), ("2", ["2"])]
    np.testing.assert_allclose(array(animated["frames"][0]["data"][3]["z"]), stack[0][:, 3].reshape(28, 28),
                               rtol=1e-3)


def test_draw_page_reads_a_real_test_digit(run_id: str, runs_dir: Path, mnist: Mnist) -> None:
    W, b = RunStore(runs_dir).load_weights(run_id)
    raw = predict_proba(W, b, mnist.images("test")[:200]).argmax(axis=1)
    index = next(i for i in range(200) if raw[i] == mnist.test_y[i] == 7)  # a 7 the model reads right
    at = draw(open_page("pages/draw.py"), digit_on_canvas(mnist.images("test", index)))

    (bars,) = [spec for spec in chart(at, trace_type="bar") if len(spec["data"][0]["x"]) == 10
               and spec["layout"]["yaxis"]["title"]["text"] == "Probability"]
    proba = array(bars["data"][0]["y"])
    assert proba.sum() == pytest.approx(1.0, abs=1e-6)
    assert int(proba.argmax()) == 7
    expected = predict_proba(W, b, canvas_to_mnist(digit_on_canvas(mnist.images("test", index))))[0]
    np.testing.assert_allclose(proba, expected, rtol=1e-5)
    assert at.metric[0].label == "Top guess" and at.metric[0].value == "7"
    assert not any("Draw a digit" in m.value for m in at.markdown)

    maps = chart(at, "Evidence for ")
    assert [m["layout"]["title"]["text"].split(":")[0] for m in maps][0] == "Evidence for 7"
    table = at.dataframe[0].value
    table = getattr(table, "data", table)  # a Styler keeps the frame in .data
    np.testing.assert_allclose(table["evidence (Σ ink × weight)"] + table["bias"], table["logit"], atol=1e-5)
    np.testing.assert_allclose(table["probability"], proba, rtol=1e-5)
    assert list(table.columns[:2]) == ["digit", "probability"]  # in view on a narrow screen


def test_draw_page_compares_a_picked_digit(run_id: str, mnist: Mnist) -> None:
    at = draw(open_page("pages/draw.py"), digit_on_canvas(mnist.images("test", 0)))
    at.session_state["draw_compare"] = 3
    at.run()
    titles = [m["layout"]["title"]["text"].split(":")[0] for m in chart(at, "Evidence for ")]
    assert titles[1] == "Evidence for 3"


def test_draw_page_blank_canvas_asks_for_a_digit(run_id: str) -> None:
    blank = np.zeros((280, 280, 4), np.uint8)
    blank[..., 3] = 255
    at = draw(open_page("pages/draw.py"), blank)
    assert any("Draw a digit" in m.value for m in at.markdown)
    assert not at.metric and not chart(at, trace_type="bar")
    (seen,) = chart(at, trace_type="heatmap")
    assert not array(seen["data"][0]["z"]).any()  # the model-input preview stays empty


def test_draw_page_clear_empties_the_canvas(run_id: str, mnist: Mnist) -> None:
    at = draw(open_page("pages/draw.py"), digit_on_canvas(mnist.images("test", 0)))
    assert at.metric
    first_key = at.session_state["draw_canvas_key"]
    at.button(key="draw_clear").click().run()
    assert at.session_state["draw_canvas_key"] != first_key
    assert any("Draw a digit" in m.value for m in at.markdown)


def test_draw_page_trains_a_first_model_on_request(runs_dir: Path, mnist: Mnist) -> None:
    at = open_page("pages/draw.py")
    at.button(key="draw_train").click().run(timeout=WAIT)
    assert not at.exception, [e.message for e in at.exception]
    runs = RunStore(runs_dir).all_runs()
    assert len(runs) == 1 and runs[0].status == "completed" and runs[0].epochs_completed == TrainConfig().epochs
    assert any("Draw a digit" in m.value for m in at.markdown)
    draw(at, digit_on_canvas(mnist.images("test", 0)))
    assert at.metric[0].value == str(int(mnist.test_y[0]))


def test_errors_page_confusion_matrix_and_gallery(run_id: str, runs_dir: Path, mnist: Mnist) -> None:
    at = open_page("pages/errors.py")
    W, b = RunStore(runs_dir).load_weights(run_id)
    scored = predictions(predict_proba(W, b, mnist.images("test")), mnist.test_y)
    matrix = confusion_matrix(scored.labels, scored.guesses)
    assert at.metric[0].value == f"{scored.accuracy:.2%}"
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    (matrix_figure,) = [spec for spec in specs if spec["layout"].get("xaxis", {}).get("title", {}).get("text")
                        == "Guessed digit"]
    labels = [int(t) for t in matrix_figure["data"][-1]["text"]]
    assert labels == matrix.ravel().tolist()
    assert matrix.sum(axis=1).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]

    at.selectbox(key="errors_true").set_value(4).run()
    at.selectbox(key="errors_guess").set_value(9).run()
    gallery = [json.loads(c.proto.spec) for c in at.get("plotly_chart")][-1]
    assert len(gallery["layout"]["annotations"]) == min(50, matrix[4, 9])
    assert all(a["text"].startswith("4 → <b>9</b>") for a in gallery["layout"]["annotations"])

    at.toggle(key="errors_normalised").set_value(True).run()
    matrix_figure = [json.loads(c.proto.spec) for c in at.get("plotly_chart")][0]
    assert matrix_figure["data"][-1]["text"][0].endswith("%")


def test_weights_page_with_a_single_epoch_has_no_slider(mnist: Mnist, runs_dir: Path) -> None:
    record_run(RunStore(runs_dir), TrainConfig(epochs=1), mnist)
    at = open_tab(open_page("pages/weights.py"), "weights_tab", "Epoch by epoch")
    assert not at.slider
    (animated,) = chart(at, "Templates after epoch")
    assert animated["layout"]["title"]["text"] == "Templates after epoch 1 of 1"


# --- damaged weights, long histories, odd drawings ---------------------------------------------------

def test_weights_damaged_behind_an_intact_header_stop_the_page_with_the_reason(sgd_run, runs_dir):
    run = shutil.copytree(sgd_run, runs_dir / GOOD)
    raw = bytearray((run / "weights.npz").read_bytes())
    raw[2000] ^= 0xFF
    (run / "weights.npz").write_bytes(bytes(raw))
    for page in PAGES:
        at = open_page(page)
        assert any("cannot be used" in e.value for e in at.error)


def test_a_500_epoch_history_is_animated_from_a_sample(sgd_run, runs_dir):
    run = shutil.copytree(sgd_run, runs_dir / GOOD)
    epochs = 500
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    (run / "metrics.jsonl").write_text("".join(json.dumps({**rows[-1], "epoch": e + 1}) + "\n" for e in range(epochs)))
    config = json.loads((run / "config.json").read_text())
    config["config"]["epochs"] = epochs
    (run / "config.json").write_text(json.dumps(config))
    stack = np.random.default_rng(0).normal(size=(epochs, 784, 10)).astype(np.float16)
    np.savez(run / "evolution.npz", W=stack)
    at = open_tab(open_page("pages/weights.py"), "weights_tab", "Epoch by epoch")
    (animated,) = [json.loads(c.proto.spec) for c in at.get("plotly_chart")
                   if json.loads(c.proto.spec).get("frames")]
    names = [frame["name"] for frame in animated["frames"]]
    assert len(names) <= 41 and names[0] == "1" and names[-1] == str(epochs)
    assert [step["label"] for step in animated["layout"]["sliders"][0]["steps"]] == names
    assert animated["layout"]["title"]["text"] == f"Templates after epoch {epochs} of {epochs}"
    np.testing.assert_allclose(array(animated["data"][3]["z"]).astype(np.float32),
                               stack[epochs - 1][:, 3].reshape(28, 28).astype(np.float32), rtol=1e-3)


@pytest.mark.parametrize("drawing", ["specks", "faint wash", "whole canvas", "one-pixel line"])
def test_draw_page_asks_for_a_digit_or_gives_a_sane_guess(sgd_run, runs_dir, drawing):
    run_id = shutil.copytree(sgd_run, runs_dir / GOOD).name
    rgba = canvas({**BLANKS, **FILLED}[drawing])
    at = draw(open_page("pages/draw.py"), rgba)
    assert not at.exception, [e.message for e in at.exception]
    if drawing in BLANKS:
        assert any("Draw a digit" in m.value for m in at.markdown)
        assert not at.metric
        return
    W, b = RunStore(runs_dir).load_weights(run_id)
    proba = predict_proba(W, b, canvas_to_mnist(rgba))[0]
    assert np.isfinite(proba).all() and proba.sum() == pytest.approx(1.0, abs=1e-5)
    doubted = [w.value for w in at.warning if "does not look like a digit" in w.value]
    if drawing == "whole canvas":  # all ink: a blob, and the page says so instead of a confident guess
        assert doubted and "too much ink" in doubted[0] and not at.metric
    else:
        assert doubted or (at.metric[0].label == "Top guess" and at.metric[0].value == str(int(proba.argmax())))
