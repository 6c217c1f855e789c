"""The dashboard as a user meets it: Start -> first curve point in chromium, and server memory.

Each measurement starts its own ``streamlit run dashboard.py`` on a free port with an empty runs
folder, drives Debian's chromium through Playwright, and stops the server (its whole process
group) at the end. Memory is the server's peak RSS (VmHWM from /proc) with 1 and with 3 browser
sessions training at once; each count gets a fresh server so that one peak does not hide in
the other.
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Iterator
from contextlib import contextmanager

from .speed import PROJECT, BenchError, child_env

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
TRAIN_PATH = "train"
"""URL path of pages/train.py."""
START_BUTTON = "Start"
APP_IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
STATUS_WIDGET = '[data-testid="stStatusWidget"]'
FIRST_POINT_JS = """() => {
  for (const plot of document.querySelectorAll('.js-plotly-plot')) {
    for (const trace of plot.data || []) {
      if (trace.x && trace.x.length > 0) return performance.now();
    }
  }
  return false;
}"""
"""Resolves, with the page's clock, once any Plotly chart on the page holds a data point."""
HEALTH_TIMEOUT = 120.0
PAGE_TIMEOUT_MS = 120_000
LATENCY_TRIES = 3
MEMORY_EPOCHS = 40
"""Epochs per run in the memory test: long enough (a few seconds) for 3 runs to overlap."""
POLL_SECONDS = 0.02

Log = Callable[[str], None]


def skipped(reason: str) -> dict:
    return {"note": f"skipped ({reason})"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def streamlit_server() -> Iterator[tuple[subprocess.Popen, str]]:
    """A fresh ``streamlit run dashboard.py`` with its own runs folder; yields (process, url)."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as root:
        env = dict(child_env(), SOFTMAX_LAB_RUNS=str(Path(root) / "runs"))
        command = [sys.executable, "-m", "streamlit", "run", str(PROJECT / "dashboard.py"),
                   "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true",
                   "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
        log_path = Path(root) / "server.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(command, cwd=PROJECT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_healthy(process, url, log_path)
            yield process, url
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(15)


def _wait_healthy(process: subprocess.Popen, url: str, log_path: Path) -> None:
    deadline = time.monotonic() + HEALTH_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"streamlit exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                if reply.read().decode().strip() == "ok":
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise BenchError(f"streamlit not healthy after {HEALTH_TIMEOUT:.0f} s:\n{log_path.read_text()[-3000:]}")


@contextmanager
def chromium() -> Iterator:
    """Debian's chromium through Playwright's sync API (never a downloaded browser)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def open_train_page(browser, url: str):
    """A new browser session on the Train page, once its script has finished running."""
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    page.goto(f"{url}/{TRAIN_PATH}")
    page.wait_for_selector(APP_IDLE)
    page.locator(STATUS_WIDGET).first.wait_for(state="detached")
    start_button(page).wait_for()
    return page


def start_button(page):
    return page.get_by_role("button", name=START_BUTTON, exact=True)


def press_start_until_first_point(page) -> float:
    """Seconds from the click on Start to the first point on a curve, on the page's own clock."""
    clicked_at = page.evaluate("() => performance.now()")
    start_button(page).click()
    seen_at = page.wait_for_function(FIRST_POINT_JS, polling="raf", timeout=PAGE_TIMEOUT_MS).json_value()
    return (seen_at - clicked_at) / 1000


def start_latency(log: Log) -> dict:
    """Start -> first curve point, in fresh sessions of one server; the first includes tracing."""
    if not (PROJECT / "pages" / "train.py").exists():
        return skipped("pages/train.py not present")
    log("browser: Start -> first curve point …")
    with streamlit_server() as (_process, url), chromium() as browser:
        started = time.perf_counter()
        first_page = open_train_page(browser, url)
        page_ready = time.perf_counter() - started
        tries = [press_start_until_first_point(first_page)]
        for _ in range(LATENCY_TRIES - 1):
            page = open_train_page(browser, url)
            tries.append(press_start_until_first_point(page))
    return {
        "start_to_first_point_seconds": statistics.median(tries[1:]),
        "first_start_to_first_point_seconds": tries[0],
        "tries_seconds": tries,
        "first_page_ready_seconds": page_ready,
    }


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
    with streamlit_server() as (process, url):
        with RssSampler(process.pid) as sampler:
            pages = [open_train_page(browser, url) for _ in range(sessions)]
            for page in pages:
                set_epochs(page, MEMORY_EPOCHS)
            idle_kb = sampler.status_kb("VmRSS")
            for page in pages:
                start_button(page).click()
            for page in pages:
                page.wait_for_function(FIRST_POINT_JS, polling=200, timeout=PAGE_TIMEOUT_MS)
            for page in pages:
                wait_finished(page)
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


def set_epochs(page, epochs: int) -> None:
    """Placeholder until pages/train.py lands: set the form's epochs."""
    raise NotImplementedError


def wait_finished(page) -> None:
    """Placeholder until pages/train.py lands: wait until the run shows as finished."""
    raise NotImplementedError
