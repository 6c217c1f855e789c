"""ui/session.py on every page (AppTest): the MNIST panel when data is missing or damaged, run ids
from links kept inside the store, and text from a link or a file shown literally (docs/faults.md).

Real MNIST copies, copies of a real run and the real pages: nothing of ours is faked.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import streamlit as st
from apptest import ALL_PAGES, HOSTILE_TEXT, live_figures, open_page, rendered, texts
from made_runs import GOOD, flip_byte
from streamlit.testing.v1 import AppTest

from ui.session import literal


def test_literal_renders_as_the_very_text_given():
    for text in (HOSTILE_TEXT, "# heading", "1. list", "> quote", "a\nb", "`code`", "www.example.org", "&lt;"):
        html = rendered(literal(text))
        assert html.startswith("<p>") and "<a " not in html and "<img" not in html and "<h1>" not in html
        assert "<code>" not in html and "<ol>" not in html and "<blockquote>" not in html


# --- data missing or damaged: the panel on every page -------------------------------------------

@pytest.fixture
def fresh_caches():
    """The dashboard keeps MNIST in st.cache_resource for the whole process: start and end without it."""
    st.cache_resource.clear()
    st.cache_data.clear()
    yield
    st.cache_resource.clear()
    st.cache_data.clear()


def assert_data_panel(at: AppTest, *needles: str) -> None:
    assert texts(at.header) == ["MNIST not found"]
    [message] = texts(at.error)
    for needle in needles:
        assert needle in message, message
    assert at.button(key="mnist_retry")


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
    for page in ALL_PAGES:
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


# --- run ids from the URL ----------------------------------------------------------------------

@pytest.mark.parametrize("page_file", ["pages/train.py", "pages/weights.py", "pages/draw.py", "pages/errors.py",
                                       "pages/runs.py"])
def test_a_link_with_a_run_id_outside_the_store_is_refused(sgd_run, runs_dir, tmp_path, page_file):
    inside = shutil.copytree(sgd_run, runs_dir / GOOD).name
    outside = shutil.copytree(sgd_run, tmp_path / "elsewhere" / "20990101-000000-ffffff")
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
