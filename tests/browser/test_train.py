"""Train: the form starts a background run whose loss chart gains points live, then reports the result."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from .dom import exception_texts, save_screenshot, wait_for_points

pytestmark = pytest.mark.browser

LOSS_CHART, TRAIN_LOSS = "train_loss_chart", "train loss"
DONE = re.compile(r"Done: ([\d.]+)% test accuracy after (\d+) epochs")
LIVE_EPOCHS, LIVE_BATCH = 12, 10
"""Batch 10 takes about 0.4 s an epoch here: slow enough to watch the chart grow, a few seconds in all."""


def fill_settings(page, batch_size: int, epochs: int) -> None:
    """Type the settings as a user would; each field commits when focus leaves it."""
    for label, value in (("Batch size", batch_size), ("Epochs", epochs)):
        field = page.get_by_label(label, exact=True)
        field.fill(str(value))
        field.press("Tab")
        expect(field).to_have_value(str(value))


def test_loss_chart_gains_points_while_training(new_page, report_figure) -> None:
    page = new_page("train")
    fill_settings(page, LIVE_BATCH, LIVE_EPOCHS)
    page.get_by_role("button", name="Start training").click()
    started = time.monotonic()
    expect(page.get_by_role("button", name="Stop", exact=True)).to_be_visible()

    first = wait_for_points(page, LOSS_CHART, TRAIN_LOSS)
    second = wait_for_points(page, LOSS_CHART, TRAIN_LOSS, more_than=first)
    still_training = page.get_by_role("button", name="Stop", exact=True).is_visible()
    save_screenshot(page, "train-live", settle=False)
    assert 1 <= first < second < LIVE_EPOCHS and still_training, (first, second, still_training)

    done = page.get_by_text(DONE)
    expect(done).to_be_visible(timeout=120_000)
    wait_for_points(page, LOSS_CHART, TRAIN_LOSS, exactly=LIVE_EPOCHS)
    seconds = time.monotonic() - started
    accuracy, epochs = DONE.search(done.inner_text()).groups()
    assert int(epochs) == LIVE_EPOCHS
    assert float(accuracy) > 90.0
    assert exception_texts(page) == []
    save_screenshot(page, "train-done")
    report_figure(f"train (batch {LIVE_BATCH}, {LIVE_EPOCHS} epochs): chart at {first} then {second} epochs "
                  f"while training; Start -> final curve {seconds:.1f} s; test accuracy {accuracy}%")


def test_default_run_from_a_link_reports_its_accuracy(new_page, report_figure) -> None:
    """The settings come from the URL (a shareable link); 15 epochs of the defaults otherwise."""
    page = new_page("train?epochs=15")
    expect(page.get_by_label("Epochs", exact=True)).to_have_value("15")
    page.get_by_role("button", name="Start training").click()
    started = time.monotonic()
    done = page.get_by_text(DONE)
    expect(done).to_be_visible(timeout=120_000)
    wait_for_points(page, LOSS_CHART, TRAIN_LOSS, exactly=15)
    seconds = time.monotonic() - started
    accuracy, epochs = DONE.search(done.inner_text()).groups()
    assert epochs == "15"
    assert float(accuracy) >= 92.0
    assert "run=" in page.url, "the run id joins the settings in the URL"
    report_figure(f"train (defaults, 15 epochs): Start -> final curve {seconds:.1f} s; test accuracy {accuracy}%")
