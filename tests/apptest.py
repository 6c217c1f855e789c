"""Opening the dashboard under Streamlit's AppTest, the same way in every page test, and reading
what a page shows (its texts; what its Markdown renders to, through a CommonMark parser)."""

from __future__ import annotations

from pathlib import Path

from markdown_it import MarkdownIt
from streamlit.testing.v1 import AppTest

PROJECT = Path(__file__).resolve().parents[1]
DASHBOARD = str(PROJECT / "dashboard.py")
WAIT = 180.0
"""Seconds to wait for a background run: a deadline against hangs, not a timing check."""
ALL_PAGES = (None, "pages/train.py", "pages/weights.py", "pages/draw.py", "pages/runs.py", "pages/errors.py",
             "pages/sweep.py")
"""Home (None) and every page."""
HOSTILE_TEXT = "**x** [click](https://example.org) ![p](https://example.org/p.png) <img src=x> :red[r] $x$"
"""Markdown that would draw a link, an image and emphasis if a page passed it through unescaped."""
COMMONMARK = MarkdownIt("commonmark")


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


def texts(elements) -> list[str]:
    return [e.value for e in elements]


def shown(at: AppTest) -> list[str]:
    """The Markdown bodies of every text element a page drew."""
    kinds = (at.title, at.header, at.subheader, at.markdown, at.caption, at.info, at.warning, at.error, at.success)
    return [e.value for kind in kinds for e in kind]


def rendered(markdown: str) -> str:
    """The HTML a CommonMark renderer makes of ``markdown``."""
    return COMMONMARK.render(markdown)


def assert_inert(markdown: str) -> None:
    """No link, image or emphasis came out of HOSTILE_TEXT (the pages' own links may stay)."""
    html = rendered(markdown)
    assert 'href="https://example.org' not in html and "<img" not in html and "<strong>x" not in html, html
