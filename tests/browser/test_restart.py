"""The server dies (SIGKILL) while a session trains; restarted on the same port and runs folder,
the reloaded page recovers and shows that run as interrupted, its finished epochs kept."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import expect

from bench.classroom import children
from softmax_core.runs import RunStore

from .dom import exception_texts, save_screenshot, wait_for_points, wait_idle

pytestmark = pytest.mark.browser

SLOW_RUN = "train?batch_size=2&epochs=500"
"""27,500 steps an epoch, 500 epochs: the kill lands mid-run however fast the machine."""


def slow_run_training(new_page):
    """A page whose slow run has finished an epoch; the page and the run id."""
    page = new_page(SLOW_RUN)
    page.get_by_role("button", name="Start training").click()
    page.wait_for_url(re.compile(r"[?&]run="))
    wait_for_points(page, "train_loss_chart", "train loss")
    return page, parse_qs(urlparse(page.url).query)["run"][0]


def test_restarted_server_shows_the_run_as_interrupted(new_page, server) -> None:
    page, run_id = slow_run_training(new_page)

    server.kill()
    server.start()
    page.reload()
    wait_idle(page)
    expect(page.get_by_text(re.compile(r"interrupted", re.I)).first).to_be_visible()
    expect(page.get_by_role("button", name="Stop", exact=True)).to_have_count(0)
    expect(page.get_by_role("heading", name="Train", exact=True)).to_be_visible()
    expect(page.locator('[data-testid="stSidebarNav"] a')).to_have_count(7)  # the app's navigation, not pages/
    save_screenshot(page, "train-interrupted")
    assert exception_texts(page) == []

    info = RunStore(server.runs_dir).get(run_id)
    assert info.status == "interrupted"
    assert 1 <= info.epochs_completed < 500
    wait_for_points(page, "train_loss_chart", "train loss", exactly=info.epochs_completed)
    RunStore(server.runs_dir).load_weights(run_id)


def test_sigterm_records_the_running_run_as_stopped_and_leaves_no_worker(new_page, server) -> None:
    page, run_id = slow_run_training(new_page)
    workers = children(server.process.pid)
    assert workers, "the job service's worker is a child of the server"

    os.kill(server.process.pid, signal.SIGTERM)  # the server alone, as Ctrl-C or a service manager would
    server.process.wait(60)
    info = RunStore(server.runs_dir).get(run_id)
    assert info.status == "stopped" and "shut down" in info.message
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]
    server.start()
