"""The v1 ``pages/`` workaround (ui/pages_mode.py) leans on a private Streamlit flag: fail loudly if it moves."""

from __future__ import annotations

from streamlit.runtime.pages_manager import PagesManager

from apptest import open_page


def test_streamlit_still_has_the_flag_the_workaround_clears() -> None:
    assert isinstance(PagesManager.uses_pages_directory, (bool, type(None)))


def test_a_page_opened_directly_runs_through_the_app_navigation(runs_dir) -> None:
    at = open_page("pages/runs.py")
    assert [t.value for t in at.title] == ["Runs"]
    assert not at.exception
