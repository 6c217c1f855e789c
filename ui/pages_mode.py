"""The one workaround for Streamlit's v1 ``pages/`` mode, which this product's folder name triggers.

Streamlit takes a folder named ``pages/`` beside the entry script for a v1 multipage app until
some session has called ``st.navigation`` (upstream: streamlit/streamlit issue 8388, PR 10276;
the flag is the private ``PagesManager.uses_pages_directory``). On a fresh server a shared link
or a reload would run the page bare: no page config, no navigation, the raw file list in the
sidebar. The product owner fixed the folder's name, so the workaround stays, here only.
Tests that fail when a Streamlit upgrade changes it: tests/test_pages_mode.py and
tests/browser/test_restart.py (a deep link after a restart shows the app's own navigation).
"""

from __future__ import annotations

import threading

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

_ENTERED = "_softmax_lab_entered"
_this_run = threading.local()
"""Per script run (Streamlit runs each in a thread of its own): did dashboard.py's navigation run?"""


def navigation_ready() -> None:
    """Called by dashboard.py right after ``st.navigation``: this run goes through the app."""
    _this_run.navigated = True


def run_through_app() -> None:
    """Called first by every page: a page that Streamlit ran bare reruns through dashboard.py.

    Clearing the flag and rerunning sends this very request through the entry script, which
    keeps the page asked for. The test is per run, not the global flag: after a restart the
    reconnecting tab and a reload start bare at once, and the first to clear the flag must not
    leave the other one bare. Only a session's first run is rerun: a rerun later would drop the
    widget event behind it.
    """
    navigated, _this_run.navigated = getattr(_this_run, "navigated", False), False
    if navigated:
        return
    PagesManager.uses_pages_directory = False
    if not st.session_state.get(_ENTERED):  # a session's first run: no widget event to lose
        st.session_state[_ENTERED] = True
        st.rerun()
