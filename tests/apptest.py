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
