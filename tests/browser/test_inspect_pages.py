"""Issue 11's smaller fixes as a user sees them: Weights' slider follows Play, Sweep counts its runs
before Start, the Runs table shows the run id within the page."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from .dom import save_screenshot

pytestmark = pytest.mark.browser


def test_weights_slider_follows_play(new_page, trained_run: str) -> None:
    page = new_page(f"weights?run={trained_run}")
    page.get_by_role("tab", name="Epoch by epoch").click()
    chart = page.locator(".st-key-weights_evolution")
    expect(chart.locator("text.slider-label").first).to_have_text(re.compile(r"Epoch 20"))  # the last epoch first
    chart.get_by_text("▶ Play").click()
    expect(chart.locator("text.slider-label").first).to_have_text(re.compile(r"Epoch [1-9]$"))  # back to the start …
    expect(chart.locator("text.slider-label").first).to_have_text("Epoch 20", timeout=60_000)  # … and along to the end
    save_screenshot(page, "weights-play", settle=False)


def test_sweep_counts_runs_before_start(new_page) -> None:
    page = new_page("sweep")
    expect(page.get_by_text(re.compile(r"This grid makes 12 runs"))).to_be_visible()


def test_runs_table_shows_the_run_id_within_the_page(new_page, trained_run: str) -> None:
    page = new_page("runs")
    header = page.locator('[data-testid="stDataFrame"]').first
    expect(header).to_be_visible()
    box = header.bounding_box()
    assert box["x"] + box["width"] <= page.viewport_size["width"], box
    expect(page.get_by_text("Delete several runs")).to_be_visible()
    save_screenshot(page, "runs-table")
