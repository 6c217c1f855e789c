"""Fault matrix where the dashboard shows it (AppTest): broken data, damaged and diverged runs,
hostile links, odd drawings; plus canvas preprocessing of odd drawings and the XSRF setting.

Real MNIST copies, real runs trained here, and the real pages: nothing of ours is faked.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from apptest import PROJECT, curve_epochs, live_figures, open_page
from made_runs import completed_sgd_run
from PIL import Image
from streamlit.testing.v1 import AppTest

from softmax_core.config import TrainConfig
from softmax_core.data import FILES, Mnist
from softmax_core.figures.curves import ACCURACY_AXIS, LOSS_AXIS
from softmax_core.model import predict_proba
from softmax_core.preprocess import canvas_to_mnist
from softmax_core.record import record_run
from softmax_core.runs import RunStore
from ui.session import literal

PAGES = (None, "pages/train.py", "pages/weights.py", "pages/draw.py", "pages/runs.py", "pages/errors.py",
         "pages/sweep.py")
def texts(elements) -> list[str]:
    return [e.value for e in elements]


@pytest.fixture
def fresh_caches():
    """The dashboard keeps MNIST in st.cache_resource for the whole process: start and end without it."""
    st.cache_resource.clear()
    st.cache_data.clear()
    yield
    st.cache_resource.clear()
    st.cache_data.clear()


@pytest.fixture
def mnist_copy(tmp_path) -> Path:
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in FILES:
        shutil.copy(Path(os.environ["MNIST_DIR"]) / name, folder / name)
    return folder


# --- data missing or damaged: the panel on every page -------------------------------------------

def assert_data_panel(at: AppTest, *needles: str) -> None:
    assert texts(at.header) == ["MNIST not found"]
    [message] = texts(at.error)
    for needle in needles:
        assert needle in message, message
    assert at.button(key="mnist_retry")


def flip_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


DAMAGE = {
    "flipped byte": (flip_byte, "does not match the SHA-256"),
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[:100]), "does not match the SHA-256"),
    "missing": (Path.unlink, "lacks"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_broken_mnist_dir_shows_the_panel_and_writes_nothing(
        fresh_caches, mnist_copy, runs_dir, tmp_path, monkeypatch, damage):
    hurt, reason = DAMAGE[damage]
    hurt(mnist_copy / "t10k-labels-idx1-ubyte.gz")
    monkeypatch.setenv("MNIST_DIR", str(mnist_copy))
    monkeypatch.setenv("SOFTMAX_LAB_CACHE", str(tmp_path / "cache"))
    for page in PAGES:
        at = open_page(page)
        assert_data_panel(at, "t10k-labels-idx1-ubyte.gz", reason, "Set MNIST_DIR")
        assert at.button(key="mnist_download").disabled, "with MNIST_DIR set, the fix is that folder"
        assert not at.get("plotly_chart") and not at.metric and not at.title
    assert not runs_dir.exists() and not (tmp_path / "cache").exists()


def test_no_data_offers_download_and_retry_recovers_once_the_files_are_there(
        fresh_caches, mnist_copy, runs_dir, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.delenv("MNIST_DIR", raising=False)
    monkeypatch.setenv("SOFTMAX_LAB_CACHE", str(cache))
    at = open_page()
    assert_data_panel(at, "MNIST_DIR unset", str(cache / "mnist"), "Set MNIST_DIR")
    assert not at.button(key="mnist_download").disabled
    shutil.copytree(mnist_copy, cache / "mnist")  # the user fetched the files by hand; Download is never pressed here
    at.button(key="mnist_retry").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert not at.header or "MNIST not found" not in texts(at.header)
    assert {m.label: m.value for m in at.metric}["Training images"] == "55,000"


# --- damaged and diverged runs on the pages ----------------------------------------------------

@pytest.fixture(scope="module")
def source_run(tmp_path_factory) -> Path:
    """One real run (sgd, 1 epoch, about 91% test accuracy) to copy into each test's store."""
    return completed_sgd_run(tmp_path_factory.mktemp("source"), epochs=1)


class Marker:
    """Unpickling this creates a file: proof that a pickle was loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


def damaged_store(source_run: Path, runs_dir: Path, marker: Path) -> dict[str, str]:
    """A good run plus one copy per kind of damage; returns {run id: expected reason}."""
    good = shutil.copytree(source_run, runs_dir / "20000101-000000-aaaaaa")
    broken = {name: shutil.copytree(source_run, runs_dir / f"20000101-000001-{name}")
              for name in ("trunc0", "pickle", "shape0", "listrow", "badjson")}
    (broken["trunc0"] / "weights.npz").write_bytes((broken["trunc0"] / "weights.npz").read_bytes()[:4000])
    np.savez(broken["pickle"] / "weights.npz", W=np.array([Marker(marker)], dtype=object), b=np.zeros(10))
    np.savez(broken["shape0"] / "weights.npz", W=np.zeros((28, 28)), b=np.zeros(10))
    metrics = broken["listrow"] / "metrics.jsonl"
    metrics.write_text(json.dumps([json.loads(metrics.read_text())]) + "\n")
    (broken["badjson"] / "config.json").write_text('{"config": {')
    np.savez(good / "evolution.npz", W=np.array([Marker(marker)], dtype=object))  # weights fine, history pickled
    return {good.name: "", broken["trunc0"].name: "weights.npz cannot be loaded safely",
            broken["pickle"].name: "weights.npz cannot be loaded safely", broken["shape0"].name: "expected (784, 10)",
            broken["listrow"].name: "not an object", broken["badjson"].name: "config.json is not valid JSON"}


def test_damaged_runs_are_listed_with_their_reason_and_no_page_breaks(source_run, runs_dir, tmp_path):
    marker = tmp_path / "PICKLE-WAS-LOADED"
    expected = damaged_store(source_run, runs_dir, marker)
    at = open_page("pages/runs.py")
    assert any("5 run folders cannot be read" in w for w in texts(at.warning))
    [reasons] = [d.value for d in at.dataframe if "Reason" in d.value.columns]
    listed = dict(zip(reasons["Run id"], reasons["Reason"]))
    for run_id, reason in expected.items():
        if reason:
            assert reason in listed[run_id]
    good = next(run_id for run_id, reason in expected.items() if not reason)
    assert good not in listed
    for page in PAGES:  # every page with the damaged store, as a user clicks through
        open_page(page)
    weights = open_page("pages/weights.py")
    assert weights.selectbox(key="weights_run").value == good
    for run_id, reason in expected.items():
        if reason:
            assert any(literal(reason) in e for e in texts(open_page("pages/train.py", run=run_id).error))
    assert not marker.exists(), "a pickle was loaded"


def test_a_late_diverged_run_shows_a_warning_and_curves_that_stop_there(mnist: Mnist, runs_dir):
    config = TrainConfig(learning_rate=700, optimizer="sgd", schedule="constant", batch_size=1000, seed=1, epochs=12,
                         l2=0.0)
    run_id, _, _ = record_run(RunStore(runs_dir), config, mnist)
    run = RunStore(runs_dir).get(run_id)
    assert run.status == "diverged" and 1 <= run.epochs_completed < config.epochs
    at = open_page("pages/train.py", run=run_id)
    [warning] = texts(at.warning)
    assert "Training diverged" in warning and f"in epoch {run.epochs_completed + 1}" in warning
    for axis, trace in ((LOSS_AXIS, "train loss"), (LOSS_AXIS, "test loss"), (ACCURACY_AXIS, "test accuracy")):
        assert curve_epochs(at, axis, trace) == list(range(1, run.epochs_completed + 1))
    [table] = [d.value for d in open_page("pages/runs.py").dataframe if "Status" in d.value.columns]
    assert list(table["Status"]) == ["⚠ diverged"]


# --- run ids from the URL ----------------------------------------------------------------------

@pytest.mark.parametrize("page_file", ["pages/train.py", "pages/weights.py", "pages/draw.py", "pages/errors.py",
                                  "pages/runs.py"])
def test_a_link_with_a_run_id_outside_the_store_is_refused(source_run, runs_dir, tmp_path, page_file):
    inside = shutil.copytree(source_run, runs_dir / "20000101-000000-aaaaaa").name
    outside = shutil.copytree(source_run, tmp_path / "elsewhere" / "20990101-000000-ffffff")
    hostile = f"../elsewhere/{outside.name}"
    at = open_page(page_file, run=hostile)
    shown = [e.value for kind in (at.title, at.markdown, at.caption, at.info, at.warning, at.error, at.success)
             for e in kind]
    assert not any(outside.name in text for text in shown)
    if page_file == "pages/train.py":
        assert not at.get("plotly_chart") and not live_figures(at), "the outside run's curves must not be drawn"
    elif page_file != "pages/runs.py":
        picker = {"pages/weights.py": "weights_run", "pages/draw.py": "draw_run", "pages/errors.py": "errors_run"}[page_file]
        assert at.selectbox(key=picker).value == inside
    assert outside.is_dir() and (outside / "weights.npz").is_file()


# --- odd drawings --------------------------------------------------------------------------------

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


def canvas_png(rgba: np.ndarray) -> dict:
    """The canvas component's value after a stroke: its drawing as a PNG data URL."""
    buffer = io.BytesIO()
    Image.fromarray(rgba).save(buffer, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    return {"drawing": {"raw": {"objects": [{"type": "path"}]}, "data": url}, "backgroundFit": None}


@pytest.mark.parametrize("drawing", ["specks", "faint wash", "whole canvas", "one-pixel line"])
def test_draw_page_asks_for_a_digit_or_gives_a_sane_guess(source_run, runs_dir, drawing):
    run_id = shutil.copytree(source_run, runs_dir / "20000101-000000-aaaaaa").name
    at = open_page("pages/draw.py")
    rgba = canvas({**BLANKS, **FILLED}[drawing])
    at.session_state[at.session_state["draw_canvas_key"]] = canvas_png(rgba)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    if drawing in BLANKS:
        assert any("Draw a digit" in m for m in texts(at.markdown))
        assert not at.metric
        return
    W, b = RunStore(runs_dir).load_weights(run_id)
    proba = predict_proba(W, b, canvas_to_mnist(rgba))[0]
    assert np.isfinite(proba).all() and proba.sum() == pytest.approx(1.0, abs=1e-5)
    doubted = [w for w in texts(at.warning) if "does not look like a digit" in w]
    if drawing == "whole canvas":  # all ink: a blob, and the page says so instead of a confident guess
        assert doubted and "too much ink" in doubted[0] and not at.metric
    else:
        assert doubted or (at.metric[0].label == "Top guess" and at.metric[0].value == str(int(proba.argmax())))


# --- server settings -----------------------------------------------------------------------------

def test_streamlit_config_keeps_xsrf_protection_on():
    """The lab has no login; XSRF protection (which needs CORS protection) must stay on."""
    server = tomllib.loads((PROJECT / ".streamlit" / "config.toml").read_text()).get("server", {})
    assert server.get("enableXsrfProtection") is True
    assert server.get("enableCORS", True) is True
