"""Every page renders in Chromium with its title first and no exception element; one screenshot each."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import expect

from softmax_core.runs import RunStore

from .dom import exception_texts, first_text, save_screenshot, wait_for_points, wait_idle

pytestmark = pytest.mark.browser

PAGES = {
    "home": ("", "Softmax Lab"),
    "train": ("train", "Train"),
    "weights": ("weights", "Weights"),
    "draw": ("draw", "Draw"),
    "runs": ("runs", "Runs"),
    "errors": ("errors", "Errors"),
    "sweep": ("sweep", "Sweep"),
}
"""Screenshot name -> (URL path, page title)."""
ENDLESS_RUN = "train?batch_size=1&epochs=500"
"""55,000 steps an epoch, 500 epochs: nothing but Stop ends it, however fast the machine."""


@pytest.mark.parametrize("name", PAGES)
def test_page_renders_without_exception(name: str, new_page, trained_run: str) -> None:
    path, title = PAGES[name]
    page = new_page(path)
    expect(page.get_by_role("heading", name=title, exact=True)).to_be_visible()
    nav = page.locator('[data-testid="stSidebarNav"] a')
    expect(nav).to_have_count(len(PAGES))  # the app's own navigation, not the files in pages/
    save_screenshot(page, name)
    assert exception_texts(page) == []
    assert first_text(page) == title, "stray output above the page title"


def test_every_page_works_while_a_run_trains_then_stop_saves_it(new_page, server, trained_run: str) -> None:
    """Page switches keep the session's job alive; no page breaks meanwhile; Stop saves the run."""
    page = new_page(ENDLESS_RUN)
    page.get_by_role("button", name="Start training").click()
    stop = page.get_by_role("button", name="Stop", exact=True)
    expect(stop).to_be_visible()
    run_id = parse_qs(urlparse(page.url).query)["run"][0]

    for name, (path, title) in [*PAGES.items(), ("train", PAGES["train"])]:
        page.locator(f'[data-testid="stSidebarNav"] a[href="{server.url}/{path}"]').click()
        expect(page.get_by_role("heading", name=title, exact=True)).to_be_visible()
        if name == "train":
            expect(stop).to_be_visible()  # the same live job, redrawn twice a second: never idle
        else:
            wait_idle(page)
        assert exception_texts(page) == [], f"{name} while training"

    wait_for_points(page, "train_loss_chart", "train loss")  # its curves so far, drawn again
    save_screenshot(page, "train-live-after-tour", settle=False)
    stop.click()
    stopped = page.get_by_text(re.compile(r"Stopped after (\d+) finished epochs?"))
    expect(stopped).to_be_visible()
    info = RunStore(server.runs_dir).get(run_id)
    assert info.status == "stopped"
    assert str(info.epochs_completed) in stopped.inner_text()
