"""The job service seen from browsers: a reload keeps the live view and Stop, a closed tab's run is
stopped from another session, with one slot a second run waits with its position shown, and the
web server itself never maps TensorFlow."""

from __future__ import annotations

import re
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import expect

from softmax_core.runs import RunStore

from .conftest import EXPECT_TIMEOUT, VIEWPORT, start_server
from .dom import exception_texts, save_screenshot, wait_for_points, wait_idle

pytestmark = pytest.mark.browser

SLOW = "train?batch_size=10&epochs=200"
"""A run far longer than any test waits for: only Stop ends it."""
LOSS_CHART, TRAIN_LOSS = "train_loss_chart", "train loss"


def start_run(page) -> str:
    """Press Start; the new run's id from the URL."""
    page.get_by_role("button", name="Start training").click()
    page.wait_for_url(re.compile(r"[?&]run="))
    return parse_qs(urlparse(page.url).query)["run"][0]


def wait_for_status(store: RunStore, run_id: str, wanted: str) -> None:
    deadline = time.monotonic() + EXPECT_TIMEOUT / 1000
    while store.get(run_id).status != wanted:
        assert time.monotonic() < deadline, f"run {run_id} is {store.get(run_id).status}, not {wanted}"
        time.sleep(0.1)


def test_the_web_server_never_maps_tensorflow_while_a_run_trains(new_page, server) -> None:
    page = new_page(SLOW)
    run_id = start_run(page)
    wait_for_points(page, LOSS_CHART, TRAIN_LOSS)
    maps = Path(f"/proc/{server.process.pid}/maps").read_text()
    assert "libtensorflow" not in maps and "_pywrap_tensorflow" not in maps
    page.get_by_role("button", name="Stop", exact=True).click()
    wait_for_status(RunStore(server.runs_dir), run_id, "stopped")


def test_a_reload_mid_run_keeps_the_live_view_and_stop(new_page, server) -> None:
    page = new_page(SLOW)
    run_id = start_run(page)
    before = wait_for_points(page, LOSS_CHART, TRAIN_LOSS)
    page.reload(wait_until="commit")  # no wait for idle: a live page polls for as long as the run trains
    stop = page.get_by_role("button", name="Stop", exact=True)
    expect(stop).to_be_visible()
    wait_for_points(page, LOSS_CHART, TRAIN_LOSS, more_than=before)  # still live after the reload
    save_screenshot(page, "train-after-reload", settle=False)
    stop.click()
    expect(page.get_by_text(re.compile(r"Stopped after \d+ finished epoch"))).to_be_visible()
    wait_for_status(RunStore(server.runs_dir), run_id, "stopped")
    assert exception_texts(page) == []


def test_a_closed_tabs_run_is_stopped_from_another_session(new_page, server) -> None:
    page = new_page(SLOW)
    run_id = start_run(page)
    wait_for_points(page, LOSS_CHART, TRAIN_LOSS)
    page.context.close()
    other = new_page("runs")
    panel_stop = other.locator(f".st-key-running_now_stop_{run_id} button")
    expect(panel_stop).to_be_visible()
    save_screenshot(other, "runs-running-now", settle=False)
    panel_stop.click()
    wait_for_status(RunStore(server.runs_dir), run_id, "stopped")
    assert exception_texts(other) == []


@pytest.fixture(scope="module")
def one_slot(chromium, tmp_path_factory: pytest.TempPathFactory):
    """A second dashboard server with SOFTMAX_LAB_WORKERS=1: one run trains at a time."""
    app = start_server(tmp_path_factory.mktemp("one-slot"), workers=1)
    contexts = []

    def open_page(path: str):
        context = chromium.new_context(viewport=VIEWPORT)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(EXPECT_TIMEOUT)
        page.goto(f"{app.url}/{path}", wait_until="commit")
        wait_idle(page)
        return page

    yield app, open_page
    for context in contexts:
        context.close()
    app.stop()


def test_with_one_slot_a_second_run_waits_its_turn_then_trains(one_slot) -> None:
    server, open_page = one_slot
    first = open_page(SLOW)
    first_id = start_run(first)
    # a fresh server: the run waits until its worker has loaded TensorFlow, a while on a busy machine
    expect(first.get_by_role("button", name="Stop", exact=True)).to_be_visible(timeout=180_000)
    wait_for_points(first, LOSS_CHART, TRAIN_LOSS)
    second = open_page("train?batch_size=1000&epochs=2")
    second_id = start_run(second)
    expect(second.get_by_text("Queued: position 1")).to_be_visible()
    save_screenshot(second, "train-queued", settle=False)
    first.get_by_role("button", name="Stop", exact=True).click()
    expect(second.get_by_text(re.compile(r"Done: [\d.]+% test accuracy after 2 epochs"))).to_be_visible()
    store = RunStore(server.runs_dir)
    assert store.get(first_id).status == "stopped" and store.get(second_id).status == "completed"
    assert exception_texts(second) == []
