"""Sessions kept apart: two, then three browser contexts start runs at once, each sees only its own live
job (a third waits for a training slot), and every run lands in the shared store, distinct and
complete. A bystander has no live view of its own, but sees every job under Running now."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import expect

from softmax_core.runs import RunStore

from .dom import exception_texts

pytestmark = pytest.mark.browser

DONE = re.compile(r"Done: [\d.]+% test accuracy after (\d+) epochs")
SETTINGS = ({"batch_size": 20, "epochs": 14, "seed": 1}, {"batch_size": 25, "epochs": 15, "seed": 2},
            {"batch_size": 30, "epochs": 16, "seed": 3})
"""Different epochs per session, so each page's text (training, queued or done) says whose job it shows."""


def run_id_of(page) -> str:
    """The run id the Train page put in its URL when the run started."""
    page.wait_for_url(re.compile(r"[?&]run="))
    return parse_qs(urlparse(page.url).query)["run"][0]


@pytest.mark.parametrize("sessions", [2, 3])
def test_sessions_train_at_once_each_seeing_its_own_job(new_page, server, sessions: int) -> None:
    chosen = SETTINGS[:sessions]
    pages = []
    for settings in chosen:
        page = new_page("train?" + "&".join(f"{k}={v}" for k, v in settings.items()))
        expect(page.get_by_label("Epochs", exact=True)).to_have_value(str(settings["epochs"]))
        pages.append(page)
    for page in pages:
        page.get_by_role("button", name="Start training").click()
    run_ids = [run_id_of(page) for page in pages]
    assert len(set(run_ids)) == sessions

    for page, settings in zip(pages, chosen):
        # Training, or waiting its turn when there are more sessions than training slots (CPU cores).
        own = re.compile(rf"Epoch \d+ of {settings['epochs']}\b|Queued: position \d|after {settings['epochs']} epochs")
        expect(page.get_by_text(own)).to_be_visible()
        for other in chosen:
            if other is not settings:
                expect(page.get_by_text(re.compile(rf"Epoch \d+ of {other['epochs']}\b"))).to_have_count(0)

    bystander = new_page("train")  # no live view of its own, but every job in Running now
    expect(bystander.get_by_role("button", name="Start training")).to_be_enabled()
    expect(bystander.get_by_role("button", name="Stop", exact=True)).to_have_count(0)
    expect(bystander.get_by_role("heading", name="Running now")).to_be_visible()

    for page, settings in zip(pages, chosen):
        done = page.get_by_text(DONE)
        expect(done).to_be_visible(timeout=120_000)
        assert DONE.search(done.inner_text()).group(1) == str(settings["epochs"])
        assert exception_texts(page) == []

    store = RunStore(server.runs_dir)
    for run_id, settings in zip(run_ids, chosen):
        info = store.get(run_id)
        assert info.status == "completed"
        assert info.epochs_completed == settings["epochs"]
        assert (info.config.batch_size, info.config.seed) == (settings["batch_size"], settings["seed"])
        W, b = store.load_weights(run_id)
        assert W.shape == (784, 10) and b.shape == (10,)
