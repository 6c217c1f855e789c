"""Real-browser fixtures: a live `streamlit run dashboard.py` and Debian chromium via Playwright.

The server runs as a subprocess on a free port with its own temporary runs folder, so it never
touches a user's runs nor collides with AppTest tests. Chromium is the system one at
/usr/bin/chromium (never `playwright install`). Both come from bench/live_dashboard.py, as the
benchmarks' do, and live for this package only: they are stopped after the last browser test,
before the rest of the suite runs.

Without chromium (or Playwright) these tests skip locally but fail under CI=true.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterator

import pytest

from bench.live_dashboard import CHROMIUM, VIEWPORT, ServerError, StreamlitServer
from bench.live_dashboard import chromium as launch_chromium

from .dom import PROJECT, save_screenshot, wait_idle

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


@pytest.fixture(scope="package")
def chromium() -> Iterator:
    """Debian chromium launched through Playwright's sync API, shared by the package's tests."""
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} not found: apt-get install chromium (never `playwright install`)")
    try:
        from playwright.sync_api import expect
    except ImportError:
        _unavailable("playwright is not installed: pip install -r requirements-dev.txt")
    expect.set_options(timeout=EXPECT_TIMEOUT)
    with launch_chromium() as browser:
        yield browser


def start_server(root: Path, workers: int | None = None) -> StreamlitServer:
    """The dashboard served from this checkout with an empty runs folder in ``root``, healthy."""
    server = StreamlitServer(PROJECT / "dashboard.py", root / "runs", root / "server.log", workers=workers,
                             health_timeout=HEALTH_TIMEOUT)
    server.runs_dir.mkdir()
    try:
        server.start()
    except ServerError as exc:
        pytest.fail(str(exc), pytrace=False)
    return server


@pytest.fixture(scope="package")
def server(chromium, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StreamlitServer]:
    """The dashboard with an empty runs folder of its own."""
    app = start_server(tmp_path_factory.mktemp("streamlit"))
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

