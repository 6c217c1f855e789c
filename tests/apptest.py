"""Opening the dashboard under Streamlit's AppTest, the same way in every page test."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

PROJECT = Path(__file__).resolve().parents[1]
DASHBOARD = str(PROJECT / "dashboard.py")
WAIT = 180.0
"""Seconds to wait for a background run: a deadline against hangs, not a timing check."""


def open_page(page: str | None = None, **params: str) -> AppTest:
    """The dashboard run once on ``page`` (Home if None) with ``params`` in the URL, no exception."""
    at = AppTest.from_file(DASHBOARD, default_timeout=120)
    for name, value in params.items():
        at.query_params[name] = value
    if page:
        at.switch_page(page)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def open_tab(at: AppTest, key: str, label: str) -> AppTest:
    """Select the tab ``label`` of the lazy tabs ``key`` (their content runs only while selected), no exception."""
    at.session_state[key] = label
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def live_figures(at: AppTest) -> list[dict]:
    """The Plotly figures of the page's live_figure elements (the Train page's curves), as the browser gets them."""
    import json

    data = [json.loads(element.proto.json) for element in at.get("bidi_component")
            if element.proto.component_name == "softmax_lab.live_figure"]
    return [d["figure"] for d in data if "figure" in d]


def curve_epochs(at: AppTest, axis_title: str, trace: str) -> list[int]:
    """The epochs of one curve (e.g. "train loss") in the page's live Plotly figure with that y-axis title."""
    for figure in live_figures(at):
        if figure["layout"].get("yaxis", {}).get("title", {}).get("text") == axis_title:
            return [int(x) for t in figure["data"] if t.get("name") == trace for x in t["x"]]
    raise AssertionError(f"no live figure with y axis {axis_title!r}")
