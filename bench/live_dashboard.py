"""A live dashboard for a real browser: ``streamlit run`` on a free port, and Debian chromium.

Shared by the benchmarks (bench/dashboard.py, bench/classroom.py) and the browser tests
(tests/browser/conftest.py). Imports neither softmax_core nor TensorFlow; Playwright only when
chromium is launched.
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
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

CHROMIUM = Path("/usr/bin/chromium")
"""The system's chromium (apt-get install chromium), never a browser `playwright install` downloads."""
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync",
]
VIEWPORT = {"width": 1366, "height": 900}


class ServerError(RuntimeError):
    """The server exited or never answered its health check; the message carries its log's tail."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class StreamlitServer:
    """One ``streamlit run app`` subprocess in its own process group, logging to ``log_path``.

    ``env`` is the base environment (os.environ when None); the runs folder (SOFTMAX_LAB_RUNS), an
    absolute MNIST_DIR and, when given, SOFTMAX_LAB_WORKERS are set over it. ``kill()`` then
    ``start()`` restarts it on the same port with the same runs. ``launcher`` is the module run as
    ``python -m launcher run app …`` (``bench.classroom_server`` adds a way in); the process's stdin
    is a pipe the caller may write to.
    """

    def __init__(self, app: Path, runs_dir: Path, log_path: Path, *, port: int | None = None,
                 env: Mapping[str, str] | None = None, workers: int | None = None,
                 health_timeout: float = 90.0, launcher: str = "streamlit") -> None:
        self.app, self.runs_dir, self.log_path, self.launcher = app, runs_dir, log_path, launcher
        self.port = port or free_port()
        self.base_env, self.workers, self.health_timeout = env, workers, health_timeout
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ if self.base_env is None else self.base_env, SOFTMAX_LAB_RUNS=str(self.runs_dir),
                   TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
        if env.get("MNIST_DIR"):
            env["MNIST_DIR"] = str(Path(env["MNIST_DIR"]).resolve())
        if self.workers:
            env["SOFTMAX_LAB_WORKERS"] = str(self.workers)
        return env

    def start(self) -> None:
        """Start the server and return once its health check answers (ServerError otherwise)."""
        command = [sys.executable, "-m", self.launcher, "run", str(self.app), "--server.headless", "true",
                   "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
                   "--server.port", str(self.port), "--server.address", "127.0.0.1"]
        with open(self.log_path, "ab") as log:
            log.write(f"\n--- start {' '.join(command)}\n".encode())
            self.process = subprocess.Popen(command, cwd=self.app.parent, env=self.env(), stdin=subprocess.PIPE,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.health_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(f"streamlit exited with {self.process.returncode} before it was healthy:\n"
                                  f"{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as reply:
                    if reply.read().decode().strip() == "ok":
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        self.stop()
        raise ServerError(f"streamlit not healthy on port {self.port} after {self.health_timeout:.0f} s:\n"
                          f"{self.log()}")

    def kill(self) -> None:
        """SIGKILL to the whole group, as a crash or an OOM kill would: nothing gets to clean up."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(15)

    def stop(self) -> None:
        """SIGTERM to the whole group (server and its training workers); SIGKILL after 15 s."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self, tail: int = 6000) -> str:
        """The last ``tail`` characters of the server's output."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else "(no log)"
        return text[-tail:]


@contextmanager
def chromium() -> Iterator:
    """Debian's chromium launched through Playwright's sync API; closed on leaving."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
