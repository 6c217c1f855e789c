"""Draw: a blank canvas asks for a digit; a vertical mouse stroke is read as a 1; a scribble is
not taken for a digit."""

from __future__ import annotations

import math

import pytest
from playwright.sync_api import expect

from .dom import CANVAS, draw_stroke, exception_texts, save_screenshot

pytestmark = pytest.mark.browser



def top_guess(page):
    """The "Top guess" metric: its value is the digit, its delta the confidence."""
    return page.locator('[data-testid="stMetric"]').filter(has_text="Top guess")


def test_blank_canvas_says_draw_a_digit(new_page, trained_run: str) -> None:
    page = new_page(f"draw?run={trained_run}")
    expect(page.locator(CANVAS)).to_be_visible()
    expect(page.get_by_text("Draw a digit", exact=True)).to_be_visible()
    expect(top_guess(page)).to_have_count(0)


def test_vertical_stroke_is_read_as_one(new_page, trained_run: str) -> None:
    page = new_page(f"draw?run={trained_run}")
    draw_stroke(page, [(0.5, 0.12), (0.5, 0.88)])
    guess = top_guess(page)
    expect(guess).to_be_visible()
    digit = guess.locator('[data-testid="stMetricValue"]').inner_text().strip()
    confidence = guess.locator('[data-testid="stMetricDelta"]').inner_text().strip()
    save_screenshot(page, "draw-stroke")
    assert digit == "1", f"a vertical stroke read as {digit} ({confidence})"
    assert exception_texts(page) == []


def test_a_scribble_is_not_taken_for_a_digit(new_page, trained_run: str) -> None:
    """A 3:2 Lissajous knot, drawn in one stroke, closes five loops (an 8 closes two): flagged, no top guess."""
    page = new_page(f"draw?run={trained_run}")
    knot = [(0.5 + 0.35 * math.sin(3 * t + 0.5), 0.5 + 0.38 * math.sin(2 * t))
            for t in (2 * math.pi * i / 60 for i in range(61))]
    draw_stroke(page, knot, steps=3)
    expect(page.get_by_text("This does not look like a digit")).to_be_visible()
    expect(page.get_by_text("a scribble: its strokes close")).to_be_visible()
    expect(top_guess(page)).to_have_count(0)
    save_screenshot(page, "draw-scribble")
    assert exception_texts(page) == []
