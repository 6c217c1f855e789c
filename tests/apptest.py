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


def curve_epochs(at: AppTest, axis_title: str, trace: str) -> list[int]:
    """The epochs of one curve (e.g. "train loss") in the page's Vega-Lite chart with that y-axis title.

    The Train page's live charts keep their spec fixed and send their rows as Arrow data.
    """
    import json

    from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df

    for chart in at.get("vega_lite_chart"):
        spec = json.loads(chart.proto.spec)
        titles = {layer["encoding"]["y"]["title"] for layer in spec.get("layer", []) if "y" in layer.get("encoding", {})}
        if axis_title in titles:
            rows = convert_arrow_bytes_to_pandas_df(chart.proto.data.data)
            return [int(e) for e in rows[rows["series"] == trace]["epoch"]]
    raise AssertionError(f"no Vega-Lite chart with y axis {axis_title!r}")
