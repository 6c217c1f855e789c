"""What a Streamlit page shows, read from the browser's DOM: idle state, charts, canvas, shots.

Selectors are Streamlit 1.67's `data-testid`s; Plotly figures are read from the graph divs'
own `data`, which is what the user sees drawn.
"""

from __future__ import annotations

from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
SCREENSHOTS = PROJECT / "artifacts" / "screenshots"
APP_IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
STATUS_WIDGET = '[data-testid="stStatusWidget"]'
LOADING = '[data-testid="stSkeleton"], [data-testid="stElementContainer"][data-stale="true"]'
"""Placeholders while an element's code loads lazily, and elements left over from the last run."""
EXCEPTION = '[data-testid="stException"]'
CANVAS = '[data-testid="stBidiComponentIsolated"] canvas.upper-canvas'
IDLE_TIMEOUT = 60_000
"""Milliseconds: the first page that imports TensorFlow takes ~5 s, more on a loaded machine."""
POINTS_TIMEOUT = 90_000
"""Milliseconds: a run's first point may wait for a worker to start and compile a program for
its batch size (~15 s alone, several times that while the machine is busy)."""


def wait_idle(page, timeout: float = IDLE_TIMEOUT) -> None:
    """Wait until Streamlit has run the script, shows no running indicator and has drawn every element.

    For first loads only: after an action, wait for the text you expect instead.
    """
    page.wait_for_selector(APP_IDLE, timeout=timeout)
    page.locator(STATUS_WIDGET).first.wait_for(state="detached", timeout=timeout)
    page.locator(LOADING).first.wait_for(state="detached", timeout=timeout)


def wait_for_points(page, chart: str, trace: str, more_than: int = 0, exactly: int | None = None) -> int:
    """Block until that trace shows more than `more_than` points (or `exactly` so many); return the count.

    Reads the Plotly graph divs' own trace data (st.plotly_chart and the Train page's live figures
    alike). The count is read in the same check that passed.
    """
    handle = page.wait_for_function(
        """([scope, trace, more, exactly]) => {
            const counts = [];
            for (const el of document.querySelectorAll(scope + ' .js-plotly-plot'))
                for (const t of el.data || []) if (t.name === trace) counts.push((t.x || []).length);
            for (const n of counts) if (exactly === null ? n > more : n === exactly) return n;
            return 0;
        }""",
        arg=[f".st-key-{chart}", trace, more_than, exactly], timeout=POINTS_TIMEOUT)
    return handle.json_value()


def first_text(page) -> str | None:
    """The text of the first element in the main area that shows any: a page's title, if well made."""
    return page.evaluate("""() => {
        const main = document.querySelector('[data-testid="stMain"]');
        const first = [...main.querySelectorAll('[data-testid="stElementContainer"]')].find(e => e.innerText.trim());
        return first ? first.innerText.trim() : null;
    }""")


def exception_texts(page) -> list[str]:
    return page.locator(EXCEPTION).all_inner_texts()


def draw_stroke(page, points: list[tuple[float, float]], steps: int = 12) -> None:
    """Drag the mouse through `points` (fractions of the canvas' width and height) as one stroke."""
    canvas = page.locator(CANVAS)
    canvas.wait_for(state="visible")
    box = canvas.bounding_box()
    xy = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
    page.mouse.move(*xy[0])
    page.mouse.down()
    for x, y in xy[1:]:
        page.mouse.move(x, y, steps=steps)
    page.mouse.up()


def save_screenshot(page, name: str, settle: bool = True) -> Path:
    """A full-page PNG at artifacts/screenshots/<name>.png.

    With `settle`, taken once the script has finished (a half-drawn page shows skeletons);
    without, at once, to catch a live view mid-run. Streamlit scrolls
    inside its own main container, so the viewport is stretched to the content's height for
    the shot and restored afterwards.
    """
    if settle:
        wait_idle(page)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    height = page.evaluate("""() => Math.max(document.body.scrollHeight, ...[...document.querySelectorAll(
        '[data-testid="stMain"], [data-testid="stSidebarContent"]')].map(e => e.scrollHeight))""")
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": max(size["height"], min(int(height), 8000))})
    try:
        page.screenshot(path=str(path), full_page=True)
    finally:
        page.set_viewport_size(size)
    return path
