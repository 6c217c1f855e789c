"""The dashboard as a user meets it: Start -> first curve point in chromium, and server memory.

Each measurement starts its own ``streamlit run dashboard.py`` on a free port with an empty runs
folder, drives Debian's chromium through Playwright, and stops the server (its whole process
group) at the end. Memory is the server's peak RSS (VmHWM from /proc) with 1 and with 3 browser
sessions training at once; each count gets a fresh server so that one peak does not hide in
the other.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from .live_dashboard import ServerError, StreamlitServer, chromium
from .speed import PROJECT, BenchError, child_env

TRAIN_PATH = "train"
"""URL path of pages/train.py."""
START_BUTTON = "Start training"
DONE_TEXT = "Done:"
"""The Train page's success line once a run has completed."""
APP_IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
STATUS_WIDGET = '[data-testid="stStatusWidget"]'
CHART_PROBES = """
const CHARTS = '.js-plotly-plot, .vega-embed';
const epochPoints = root => Math.max(0, ...[...root.querySelectorAll(CHARTS)].map(chart => chart.data
  ? Math.max(0, ...chart.data.filter(t => (t.mode || '').includes('markers')).map(t => (t.x || []).length))
  : Math.round(chart.querySelectorAll('g.mark-symbol.role-mark path').length / 3)));
"""
"""The charts (the Train page's live Plotly figures; Vega-Lite ones as they were for a while in
issue 11, so older checkouts measure too), and the points of the longest epoch curve (Plotly: a
trace with markers; Vega: symbols of three curves)."""
MARKS_JS = """() => {""" + CHART_PROBES + """
  const marks = {};
  const checks = {
    progress: () => document.querySelector('[data-testid="stProgress"]'),
    chart: () => document.querySelector(CHARTS),
    metrics: () => [...document.querySelectorAll('[data-testid="stMetricValue"]')].some(e => /[0-9]/.test(e.innerText)),
    point: () => epochPoints(document) > 0,
  };
  window.__benchMarks = marks;
  window.__benchTimer = setInterval(() => {
    const now = performance.now();
    for (const [name, check] of Object.entries(checks)) if (!(name in marks) && check()) marks[name] = now;
  }, 20);
  return performance.now();
}"""
"""Records, on the page's clock every 20 ms, when each stage is first seen after the click:
the progress bar, a Plotly chart mounted, epoch 1's numbers (a dash before), a point on a curve."""
PAGE_POLL_SECONDS = 1.0
"""pages/train.py redraws a running run's progress and curves every second (its RUNNING_POLL_SECONDS)."""
HEALTH_TIMEOUT = 120.0
PAGE_TIMEOUT_MS = 120_000
LATENCY_TRIES = 4
MEMORY_EPOCHS = 40
"""Epochs per run in the memory test: long enough (a few seconds) for 3 runs to overlap."""
POLL_SECONDS = 0.02

Log = Callable[[str], None]


def skipped(reason: str) -> dict:
    return {"note": f"skipped ({reason})"}


@contextmanager
def streamlit_server(launcher: str = "streamlit") -> Iterator[tuple[subprocess.Popen, str, Path]]:
    """A fresh ``streamlit run dashboard.py`` with its own runs folder; yields (process, url, runs folder)."""
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as root:
        server = StreamlitServer(PROJECT / "dashboard.py", Path(root) / "runs", Path(root) / "server.log",
                                 env=child_env(), health_timeout=HEALTH_TIMEOUT, launcher=launcher)
        try:
            server.start()
        except ServerError as exc:
            raise BenchError(str(exc)) from None
        try:
            yield server.process, server.url, server.runs_dir
        finally:
            server.stop()


def open_train_page(browser, url: str, query: str = ""):
    """A new browser session on the Train page, once its script has finished running.

    ``query`` (e.g. ``epochs=40``) presets the form: the page reads its settings from the URL.
    """
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    page.goto(f"{url}/{TRAIN_PATH}" + (f"?{query}" if query else ""))
    page.wait_for_selector(APP_IDLE)
    page.locator(STATUS_WIDGET).first.wait_for(state="detached")
    start_button(page).wait_for()
    return page


def start_button(page):
    return page.get_by_role("button", name=START_BUTTON)


def wait_until_done(page) -> None:
    """Wait for the page to say its run is done: a bound for a failing run, not a timing."""
    page.get_by_text(DONE_TEXT).first.wait_for(timeout=PAGE_TIMEOUT_MS * 5)


def press_start_until_first_point(page, runs: Path) -> dict[str, float | None]:
    """Seconds from the click on Start to the first point on a curve, on the page's own clock.

    Split: click -> progress bar (the rerun that starts the job); -> a chart mounted (Plotly.js
    loaded in this fresh browser session); -> epoch 1's numbers in the metric row (the engine's
    first epoch with its evaluation — ``engine_first_epoch`` from the run store — the store's
    write, then the page's next poll); -> the point drawn on the curve.
    """
    before = set(runs.iterdir()) if runs.exists() else set()
    clicked_at = page.evaluate(MARKS_JS)
    start_button(page).click()
    page.wait_for_function("() => 'point' in window.__benchMarks", polling=50, timeout=PAGE_TIMEOUT_MS)
    marks = page.evaluate("() => { clearInterval(window.__benchTimer); return window.__benchMarks; }")
    since = {name: (at - clicked_at) / 1000 for name, at in marks.items()}
    return {
        "total": since["point"], "click_to_progress": since.get("progress"), "click_to_chart": since.get("chart"),
        "click_to_metrics": since.get("metrics"),
        "engine_first_epoch": _first_epoch_seconds(set(runs.iterdir()) - before),
    }


def _first_epoch_seconds(new_runs: set[Path]) -> float | None:
    """``seconds`` of epoch 1 in the one new run's metrics.jsonl (time since train() began)."""
    for run in new_runs:
        metrics = run / "metrics.jsonl"
        if metrics.exists():
            lines = metrics.read_text().splitlines()
            if lines:
                return json.loads(lines[0])["seconds"]
    return None


def start_latency(log: Log) -> dict:
    """Start -> first curve point with the page's default settings, each try in a fresh session.

    Each try waits for the previous run to finish, so tries do not compete; the first try
    also pays the server's first training call (TensorFlow tracing), reported apart.
    """
    if not (PROJECT / "pages" / "train.py").exists():
        return skipped("pages/train.py not present")
    log("browser: Start -> first curve point …")
    tries = []
    with streamlit_server() as (_process, url, runs), chromium() as browser:
        started = time.perf_counter()
        page = open_train_page(browser, url)
        page_ready = time.perf_counter() - started
        for attempt in range(LATENCY_TRIES):
            if attempt:
                page = open_train_page(browser, url)
            tries.append(press_start_until_first_point(page, runs))
            wait_until_done(page)
            page.context.close()
            log(f"  try {attempt + 1}: {tries[-1]}")
    later = tries[1:]
    return {
        "start_to_first_point_seconds": statistics.median(t["total"] for t in later),
        "click_to_progress_seconds": _median_known(t["click_to_progress"] for t in later),
        "click_to_chart_seconds": _median_known(t["click_to_chart"] for t in later),
        "click_to_metrics_seconds": _median_known(t["click_to_metrics"] for t in later),
        "engine_first_epoch_seconds": _median_known(t["engine_first_epoch"] for t in later),
        "first_try": tries[0],
        "tries": tries,
        "first_page_ready_seconds": page_ready,
        "page_poll_seconds": PAGE_POLL_SECONDS,
    }


def _median_known(values) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


class RssSampler:
    """Polls a process's VmRSS in a thread; VmHWM from /proc gives the true peak at the end."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def status_kb(self, field: str) -> int:
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise BenchError(f"/proc/{self.pid}/status has no {field}")

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        started = time.perf_counter()
        while not self._stop.wait(POLL_SECONDS):
            try:
                self.samples.append((time.perf_counter() - started, self.status_kb("VmRSS")))
            except (OSError, BenchError):
                return


def _sessions_peak(browser, sessions: int, log: Log) -> dict:
    """A fresh server; ``sessions`` browser sessions press Start together; the server's peak RSS."""
    with streamlit_server() as (process, url, _runs):
        with RssSampler(process.pid) as sampler:
            pages = [open_train_page(browser, url, f"epochs={MEMORY_EPOCHS}") for _ in range(sessions)]
            idle_kb = sampler.status_kb("VmRSS")
            for page in pages:
                start_button(page).click()
            for page in pages:
                wait_until_done(page)
            peak_kb = sampler.status_kb("VmHWM")
            for page in pages:
                page.context.close()
        sampled_peak = max((kb for _, kb in sampler.samples), default=0)
    log(f"  {sessions} session(s): idle {idle_kb / 1024:.0f} MB, peak {peak_kb / 1024:.0f} MB")
    return {"idle_kb": idle_kb, "peak_kb": peak_kb, "sampled_peak_kb": sampled_peak}


def memory(log: Log) -> dict:
    """Peak RSS of one server with 1 and with 3 sessions training at once."""
    if not (PROJECT / "pages" / "train.py").exists():
        return skipped("pages/train.py not present")
    log("memory: 1 and 3 sessions training …")
    with chromium() as browser:
        one = _sessions_peak(browser, 1, log)
        three = _sessions_peak(browser, 3, log)
    return {
        "idle_mb": one["idle_kb"] / 1024, "peak_1_mb": one["peak_kb"] / 1024, "peak_3_mb": three["peak_kb"] / 1024,
        "ratio_3_vs_1": three["peak_kb"] / one["peak_kb"], "epochs_per_run": MEMORY_EPOCHS,
        "sampled_peak_1_mb": one["sampled_peak_kb"] / 1024, "sampled_peak_3_mb": three["sampled_peak_kb"] / 1024,
    }



LIVE_EPOCHS = 30
"""Epochs of the run whose live view is measured (issue 11's target is stated for 30)."""
STOP_BATCH = 10
"""The run that is stopped uses batch 10 (about 1 s an epoch here), so it is still live at the click."""
SETTLE_MS = 3000
"""A second fresh tab is pressed this long after it shows Start, as a person reading the page would:
the first fresh tab is pressed at once, while the browser is still loading plotly.js."""
SETTLED_EPOCHS = 3
"""Epochs of the settled fresh tab's run: only its first point is timed."""
LIVE_PROBES_JS = """() => {""" + CHART_PROBES + """
  window.__lt = 0;
  window.__longest = [];
  new PerformanceObserver(list => { for (const e of list.getEntries()) {
      window.__lt += e.duration; window.__longest = [...window.__longest, e.duration].sort((a, b) => b - a).slice(0, 3); } })
    .observe({type: 'longtask', buffered: false});
  window.__samples = [];
  window.__seen = new Set();
  const main = () => document.querySelector('[data-testid="stMain"]');
  setInterval(() => {
    const m = main();
    if (!m) return;
    const charts = [...m.querySelectorAll(CHARTS)];
    for (const chart of charts) window.__seen.add(chart);
    window.__samples.push({
      t: performance.now(), charts: charts.length, height: m.scrollHeight,
      replaced: [...window.__seen].filter(chart => !chart.isConnected).length,
      points: epochPoints(m),
      done: m.innerText.includes('Done:'),
    });
  }, 200);
}"""
"""Installed before the page loads: main-thread long tasks summed (ms), and every 200 ms the
number of charts, how many charts seen before have left the page (a remount replaces a chart
even when the count holds), the main area's height and the epoch curve's points."""
STOPPING_JS = """() => {
  const stop = [...document.querySelectorAll('[data-testid="stMain"] button')]
    .find(b => b.innerText.trim().endsWith('Stop'));
  if (!stop) return false;
  window.__stopping = null;
  const t0 = performance.now();
  stop.click();
  const timer = setInterval(() => {
    const text = document.querySelector('[data-testid="stMain"]').innerText;
    const seen = ['Stopping', 'Stopped after'].find(words => text.includes(words));
    if (seen) { window.__stopping = {ms: performance.now() - t0, seen}; clearInterval(timer); }
  }, 10);
  return true;
}"""
"""Clicks Stop in the page (false if there is none yet) and records the ms until it says "Stopping"."""


PLOTLY_LOADED_JS = "() => !document.querySelector('.st-key-live_figure_plotly_js') || window.Plotly !== undefined"
"""The page has finished loading: the plotly.js that the Train page loads ahead of its live curves
has run (as it has by the time a person has chosen settings)."""


PLOTLY_FETCH_JS = """() => performance.getEntriesByType('resource').filter(r => r.name.includes('/plotly-basic'))
  .map(r => ({start_s: r.startTime / 1000, response_start_s: r.responseStart / 1000, end_s: r.responseEnd / 1000,
              transfer_kb: r.transferSize / 1000}))[0] || null"""
"""When the page fetched plotly.js (seconds on the page's clock, from navigation) and how much came over the wire."""


def _live_page(browser, url: str, query: str, received: list[int] | None = None, wait_plotly: bool = True):
    """The Train page with the live probes; the size of every websocket frame it receives goes to ``received``.

    ``wait_plotly=False`` returns as soon as the page has run and shows Start: a person who opens the
    Train page in a new tab (an empty browser cache) and presses Start at once."""
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    context.add_init_script(f"({LIVE_PROBES_JS})()")
    page = context.new_page()
    if received is not None:
        page.on("websocket", lambda ws: ws.on("framereceived", lambda frame: received.append(len(frame))))
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    page.goto(f"{url}/{TRAIN_PATH}?{query}")
    page.wait_for_selector(APP_IDLE)
    page.locator(STATUS_WIDGET).first.wait_for(state="detached")
    start_button(page).wait_for()
    if wait_plotly:
        page.wait_for_function(PLOTLY_LOADED_JS, polling=100)
    return page


def _chart_and_height_faults(samples: list[dict]) -> dict:
    """Chart unmounts and height drops while the run is live (first point to Done) and at its end."""
    live = [s for s in samples if s["points"] > 0 and not s["done"]]
    end = [s for s in samples if s["done"]]
    most = max((s["charts"] for s in live), default=0)
    drops = sum(1 for a, b in zip(live, live[1:]) if b["height"] < a["height"] - 2)
    return {
        "samples_live": len(live), "chart_unmount_samples": sum(1 for s in live if s["charts"] < most),
        "charts_replaced_live": live[-1].get("replaced", 0) if live else None,
        "charts_replaced_by_end": end[-1].get("replaced", 0) if end else None,
        "height_drops_live": drops,
        "height_before_done_px": live[-1]["height"] if live else None,
        "height_after_done_px": end[-1]["height"] if end else None,
        "charts_after_done": end[-1]["charts"] if end else None,
    }


def live_view(log: Log) -> dict:
    """Issue 11's live-view figures: main-thread busy share during a 30-epoch run, chart unmounts,
    height jumps, Start -> first point in a fresh tab, and Stop -> "Stopping" latency.

    Reported, never asserted; the load average is recorded before and after since this machine
    is shared.
    """
    if not (PROJECT / "pages" / "train.py").exists():
        return skipped("pages/train.py not present")
    log(f"browser: live view of a {LIVE_EPOCHS}-epoch run …")
    load_before = list(os.getloadavg())
    with streamlit_server() as (_process, url, runs), chromium() as browser:
        warm = _live_page(browser, url, "epochs=1")  # the server's first training call, kept out of the figures
        start_button(warm).click()
        wait_until_done(warm)
        warm.context.close()

        received: list[int] = []
        page = _live_page(browser, url, f"epochs={LIVE_EPOCHS}", received)
        started = page.evaluate("() => { window.__lt = 0; window.__longest = []; window.__samples = []; return performance.now(); }")
        received.clear()
        first = press_start_until_first_point(page, runs)
        wait_until_done(page)
        busy_ms, done_at, longest = page.evaluate("() => [window.__lt, performance.now(), window.__longest]")
        websocket_bytes, websocket_frames = sum(received), len(received)
        page.wait_for_timeout(2000)  # then 2 s more to see the end settle
        samples = page.evaluate("() => window.__samples")
        page.context.close()

        fresh = _live_page(browser, url, f"epochs={LIVE_EPOCHS}", wait_plotly=False)
        fresh_started = fresh.evaluate("() => { window.__lt = 0; window.__longest = []; return performance.now(); }")
        fresh_first = press_start_until_first_point(fresh, runs)
        fresh_plotly = fresh.evaluate(PLOTLY_FETCH_JS)
        wait_until_done(fresh)
        fresh_busy_ms, fresh_done_at = fresh.evaluate("() => [window.__lt, performance.now()]")
        fresh.context.close()

        settled = _live_page(browser, url, f"epochs={SETTLED_EPOCHS}", wait_plotly=False)
        settled.wait_for_timeout(SETTLE_MS)
        settled_first = press_start_until_first_point(settled, runs)
        wait_until_done(settled)
        settled.context.close()

        stop_page = _live_page(browser, url, f"epochs={LIVE_EPOCHS}&batch_size={STOP_BATCH}")
        start_button(stop_page).click()
        stop_page.wait_for_function("() => (window.__samples.at(-1) || {}).points >= 1", polling=100)
        log(f"  30-epoch run: busy {busy_ms / 1000:.1f} s of {(done_at - started) / 1000:.1f} s")
        if not stop_page.evaluate(STOPPING_JS):
            raise BenchError("the run ended before Stop could be clicked")
        stop_page.wait_for_function("() => window.__stopping !== null", polling=50)
        stopping = stop_page.evaluate("() => window.__stopping")
        stop_page.context.close()
    figures = {
        "epochs": LIVE_EPOCHS, "wall_seconds": (done_at - started) / 1000, "busy_seconds": busy_ms / 1000,
        "busy_share": busy_ms / (done_at - started), "longest_tasks_seconds": [ms / 1000 for ms in longest],
        "websocket_kb": websocket_bytes / 1000, "websocket_frames": websocket_frames,
        "websocket_kb_per_epoch": websocket_bytes / 1000 / LIVE_EPOCHS,
        "start_to_first_point_seconds": first["total"],
        "fresh_tab_start_to_first_point_seconds": fresh_first["total"],
        "fresh_tab_busy_share": fresh_busy_ms / (fresh_done_at - fresh_started),
        "fresh_tab_start_shown_s": fresh_started / 1000, "fresh_tab_plotly_fetch": fresh_plotly,
        "fresh_tab_split": fresh_first,
        "fresh_tab_settled_start_to_first_point_seconds": settled_first["total"], "fresh_tab_settled_split": settled_first,
        "fresh_tab_wall_seconds": (fresh_done_at - fresh_started) / 1000, "stop_to_stopping_seconds": stopping["ms"] / 1000, "stop_first_seen": stopping["seen"],
        **_chart_and_height_faults(samples),
        "load_average_before": load_before, "load_average_after": list(os.getloadavg()),
    }
    log(f"  {figures}")
    return figures


if __name__ == "__main__":
    print(json.dumps(live_view(lambda line: print(line, file=sys.stderr, flush=True))))
