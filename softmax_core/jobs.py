"""Training jobs in background threads, so training survives page reruns and switches.

A job owns one run: it trains through ``train.train``, writes every finished epoch to the run
store, and offers thread-safe snapshots for a page to poll. The worker never touches the UI.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Self

from .config import TrainConfig
from .data import Mnist
from .runs import RunStore, RunWriter
from .train import EpochMetrics, train


@dataclass(frozen=True)
class JobSnapshot:
    run_id: str
    status: str
    """running, completed, stopped, diverged or failed."""
    progress: float
    elapsed: float
    eta: float | None
    history: list[EpochMetrics] = field(default_factory=list)
    message: str = ""

    @property
    def done(self) -> bool:
        return self.status != "running"


class BackgroundJob:
    """Work in a daemon thread that always ends with a status: what training runs and sweeps share."""

    def __init__(self, name: str) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._status, self._message = "running", ""
        self._started = time.perf_counter()
        self._ended: float | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _elapsed(self) -> float:
        """Seconds since the start, frozen once the job ends; call with the lock held."""
        return (self._ended if self._ended is not None else time.perf_counter()) - self._started

    def _work(self) -> tuple[str, str]:
        """Do the job; return its final status and message."""
        raise NotImplementedError

    def _finish(self, status: str, message: str) -> None:
        """Record the outcome durably before snapshots show it (nothing to record by default)."""

    def _run(self) -> None:
        try:
            status, message = self._work()
        except Exception as exc:  # the job must end with a status, whatever went wrong
            status, message = "failed", f"{type(exc).__name__}: {exc}"
        self._finish(status, message)
        with self._lock:
            self._status, self._message, self._ended = status, message, time.perf_counter()


class TrainingJob(BackgroundJob):
    """One training run in a daemon thread; ``stop()`` ends it after the current chunk."""

    def __init__(self, config: TrainConfig, data: Mnist, store: RunStore, sweep: str | None = None) -> None:
        self.config = config
        self._data = data
        self._writer: RunWriter = store.create(config, sweep=sweep)
        self._history: list[EpochMetrics] = []
        self._progress = 0.0
        super().__init__(f"train-{self.run_id}")

    @property
    def run_id(self) -> str:
        return self._writer.run_id

    def snapshot(self) -> JobSnapshot:
        with self._lock:
            elapsed = self._elapsed()
            eta = None
            if self._status == "running" and self._progress > 0:
                eta = elapsed * (1 - self._progress) / self._progress
            return JobSnapshot(self.run_id, self._status, self._progress, elapsed, eta,
                               list(self._history), self._message)

    def _on_epoch(self, metrics: EpochMetrics, W, b) -> None:
        self._writer.record_epoch(metrics.to_dict(), W, b)
        with self._lock:
            self._history.append(metrics)

    def _on_progress(self, fraction: float) -> None:
        with self._lock:
            self._progress = fraction

    def _work(self) -> tuple[str, str]:
        result = train(self.config, self._data, self._on_epoch, self._on_progress, self._stop)
        return result.status, result.message

    def _finish(self, status: str, message: str) -> None:
        self._writer.finish(status, message)
