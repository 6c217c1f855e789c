"""Real-browser fixtures: a live `streamlit run dashboard.py` and Debian chromium via Playwright.

The server runs as a subprocess on a free port with its own temporary runs folder, so it never
touches a user's runs nor collides with AppTest tests. Chromium is the system one at
/usr/bin/chromium (never `playwright install`). Both live for this package only: they are
stopped after the last browser test, before the rest of the suite runs.

Without chromium (or Playwright) these tests skip locally but fail under CI=true.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Iterator

import pytest

from .dom import PROJECT, save_screenshot, wait_idle

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync",
]
VIEWPORT = {"width": 1366, "height": 900}
HEALTH_TIMEOUT = 90.0
"""Seconds for the server to answer its health check: Streamlit starts in ~3 s, slower under load."""
EXPECT_TIMEOUT = 30_000
"""Milliseconds an `expect` waits: a rerun that loads TensorFlow or trains takes seconds here."""
FIGURES_KEY = pytest.StashKey[list]()
FAILED_KEY = pytest.StashKey[bool]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: end-to-end test in a real browser against a live Streamlit server")
    config.stash[FIGURES_KEY] = []


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    """Print the figures browser tests measured (reported, never asserted)."""
    figures = config.stash.get(FIGURES_KEY, [])
    if figures:
        terminalreporter.section("browser figures")
        for line in figures:
            terminalreporter.write_line(line)


@pytest.fixture
def report_figure(pytestconfig: pytest.Config) -> Callable[[str], None]:
    """Record one measured figure for the end-of-run summary (and print it for `-s`)."""
    def report(line: str) -> None:
        print(line)
        pytestconfig.stash[FIGURES_KEY].append(line)
    return report


def _unavailable(reason: str) -> None:
    """A missing browser is a failure in CI and a skip on a developer's machine."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"browser tests cannot run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class StreamlitServer:
    """One `streamlit run` subprocess; `kill()` then `start()` restarts it on the same port and runs."""

    def __init__(self, app: Path, port: int, runs_dir: Path, log_path: Path, workers: int | None = None) -> None:
        self.app, self.port, self.runs_dir, self.log_path = app, port, runs_dir, log_path
        self.workers = workers
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ, SOFTMAX_LAB_RUNS=str(self.runs_dir), TF_CPP_MIN_LOG_LEVEL="2",
                   PYTHONUNBUFFERED="1")
        if env.get("MNIST_DIR"):
            env["MNIST_DIR"] = str(Path(env["MNIST_DIR"]).resolve())
        if self.workers:
            env["SOFTMAX_LAB_WORKERS"] = str(self.workers)
        return env

    def start(self) -> None:
        command = [sys.executable, "-m", "streamlit", "run", str(self.app), "--server.headless", "true",
                   "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
                   "--server.port", str(self.port), "--server.address", "127.0.0.1"]
        with open(self.log_path, "ab") as log:
            log.write(f"\n--- start {' '.join(command)}\n".encode())
            self.process = subprocess.Popen(command, cwd=self.app.parent, env=self.env(), stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + HEALTH_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"streamlit exited with {self.process.returncode} before it was healthy:\n{self.log()}",
                            pytrace=False)
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as reply:
                    if reply.read().decode().strip() == "ok":
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        self.stop()
        pytest.fail(f"streamlit not healthy on port {self.port} after {HEALTH_TIMEOUT:.0f} s:\n{self.log()}",
                    pytrace=False)

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would: nothing gets to clean up."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self, tail: int = 6000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else "(no log)"
        return text[-tail:]


@pytest.fixture(scope="package")
def chromium() -> Iterator:
    """Debian chromium launched through Playwright's sync API, shared by the package's tests."""
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} not found: apt-get install chromium (never `playwright install`)")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        _unavailable("playwright is not installed: pip install -r requirements-dev.txt")
    expect.set_options(timeout=EXPECT_TIMEOUT)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="package")
def server(chromium, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StreamlitServer]:
    """The dashboard served from this checkout, with an empty runs folder of its own."""
    root = tmp_path_factory.mktemp("streamlit")
    app = StreamlitServer(PROJECT / "dashboard.py", free_port(), root / "runs", root / "server.log")
    app.runs_dir.mkdir()
    app.start()
    yield app
    app.stop()


@pytest.fixture(scope="package")
def trained_run(server: StreamlitServer, mnist) -> str:
    """A completed default run in the server's store, trained by the library as the CLI would."""
    from softmax_core.config import TrainConfig
    from softmax_core.record import record_run
    from softmax_core.runs import RunStore

    run_id, status, message = record_run(RunStore(server.runs_dir), TrainConfig(), mnist)
    assert status == "completed", message
    return run_id


@pytest.fixture
def new_page(chromium, server: StreamlitServer, request: pytest.FixtureRequest) -> Iterator[Callable]:
    """Open a page in a fresh browser context (a new Streamlit session) per call.

    On failure every open page is saved as artifacts/screenshots/FAILED-<test>-<n>.png.
    """
    contexts = []

    def open_page(path: str = "", wait: bool = True):
        context = chromium.new_context(viewport=VIEWPORT)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(EXPECT_TIMEOUT)
        page.goto(f"{server.url}/{path.lstrip('/')}", wait_until="commit")
        if wait:
            wait_idle(page)
        return page

    yield open_page
    if request.node.stash.get(FAILED_KEY, False):
        for i, context in enumerate(contexts):
            for j, page in enumerate(context.pages):
                save_screenshot(page, f"FAILED-{request.node.name}-{i}{j}", settle=False)
    for context in contexts:
        context.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    """A failed browser test carries the server's log in its report, so it says why."""
    report = yield
    if report.when == "call" and report.failed:
        item.stash[FAILED_KEY] = True
        server = getattr(item, "funcargs", {}).get("server")
        if isinstance(server, StreamlitServer):
            report.sections.append(("streamlit log (tail)", server.log()))
    return report

