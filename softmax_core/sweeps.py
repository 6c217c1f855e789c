"""Hyperparameter sweeps: a grid of TrainConfigs trained one after another, each a normal run.

Every run of a sweep goes through ``TrainingJob`` (so through ``train.train``) and is saved in
the run store with ``sweep=<sweep id>``; the sweep itself is nothing more than that tag, so the
Runs page, the CLI and the Sweep page all read the same folders.
"""

from __future__ import annotations

import itertools
import math
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from .config import ConfigError, TrainConfig
from .data import Mnist
from .jobs import BackgroundJob, JobSnapshot, TrainingJob
from .runs import RunInfo, RunStore

AXES = ("learning_rate", "batch_size", "epochs", "optimizer")
"""Settings a sweep may vary; the rest come from the base config."""
MAX_RUNS = 64
SELECTION_METRIC = "validation_accuracy"
"""Sweeps pick their best run on the validation split, never on the test set."""
POLL_SECONDS = 0.05


def sweep_configs(base: TrainConfig, grid: dict[str, Sequence]) -> list[TrainConfig]:
    """Every combination of the values in ``grid`` applied to ``base``, in grid order.

    Raises ConfigError naming the axis when an axis is unknown or empty, the grid is too large,
    or a value is out of range.
    """
    for axis, values in grid.items():
        if axis not in AXES:
            raise ConfigError(axis, f"cannot be swept (sweepable: {', '.join(AXES)})")
        if not values:
            raise ConfigError(axis, "needs at least one value")
    axes = list(grid)
    combos = list(itertools.product(*(list(dict.fromkeys(grid[a])) for a in axes)))
    if len(combos) > MAX_RUNS:
        raise ConfigError(axes[0], f"the grid has {len(combos)} runs; at most {MAX_RUNS}")
    base_values = base.to_dict()
    return [TrainConfig.from_dict({**base_values, **dict(zip(axes, combo))}) for combo in combos]


def new_sweep_id() -> str:
    return time.strftime("sweep-%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def run_sweep(base: TrainConfig, grid: dict[str, Sequence], data: Mnist, store: RunStore,
              on_run: Callable[[RunInfo], None] | None = None, stop: threading.Event | None = None,
              sweep_id: str | None = None,
              on_job: Callable[[TrainingJob], None] | None = None) -> list[RunInfo]:
    """Train every config of the grid in turn; return the saved runs.

    ``on_job(job)`` is called as each run starts and ``on_run(info)`` as it ends. Setting
    ``stop`` stops the current run (saved as ``stopped``) and starts no more.
    """
    configs = sweep_configs(base, grid)
    sweep_id = sweep_id or new_sweep_id()
    finished: list[RunInfo] = []
    for config in configs:
        if stop is not None and stop.is_set():
            break
        job = TrainingJob(config, data, store, sweep=sweep_id).start()
        if on_job:
            on_job(job)
        while not job.snapshot().done:
            if stop is not None and stop.is_set():
                job.stop()
            job.join(POLL_SECONDS)
        job.join()
        info = store.get(job.run_id)
        finished.append(info)
        if on_run:
            on_run(info)
    return finished


@dataclass(frozen=True)
class SweepSnapshot:
    sweep_id: str
    status: str
    """running, completed, stopped or failed."""
    total: int
    finished: int
    progress: float
    elapsed: float
    eta: float | None
    current: JobSnapshot | None
    current_config: TrainConfig | None
    run_ids: list[str] = field(default_factory=list)
    message: str = ""

    @property
    def done(self) -> bool:
        return self.status != "running"


class SweepJob(BackgroundJob):
    """A sweep in a daemon thread with overall progress and Stop; one per browser session."""

    def __init__(self, base: TrainConfig, grid: dict[str, Sequence], data: Mnist, store: RunStore) -> None:
        self.configs = sweep_configs(base, grid)
        self.sweep_id = new_sweep_id()
        self._base, self._grid, self._data, self._store = base, dict(grid), data, store
        self._job: TrainingJob | None = None
        self._run_ids: list[str] = []
        self._finished = 0
        super().__init__(self.sweep_id)

    def snapshot(self) -> SweepSnapshot:
        with self._lock:
            job = self._job
            finished, status = self._finished, self._status
            run_ids, message = list(self._run_ids), self._message
            elapsed = self._elapsed()
        current = job.snapshot() if job is not None and status == "running" else None
        total = len(self.configs)
        running_part = current.progress if current is not None else 0.0
        progress = min((finished + running_part) / total, 1.0) if status == "running" else 1.0
        eta = elapsed * (1 - progress) / progress if status == "running" and progress > 0 else None
        return SweepSnapshot(self.sweep_id, status, total, finished, progress, elapsed, eta, current,
                             job.config if current is not None else None, run_ids, message)

    def _on_job(self, job: TrainingJob) -> None:
        with self._lock:
            self._job = job
            self._run_ids.append(job.run_id)

    def _on_run(self, info: RunInfo) -> None:
        with self._lock:
            self._finished += 1
            self._job = None

    def _work(self) -> tuple[str, str]:
        run_sweep(self._base, self._grid, self._data, self._store, self._on_run, self._stop,
                  self.sweep_id, self._on_job)
        return ("stopped", "stopped by request") if self._stop.is_set() else ("completed", "")


def saved_sweeps(store: RunStore) -> dict[str, list[RunInfo]]:
    """Saved runs grouped by sweep id, newest sweep first, runs in the order they were trained."""
    grouped: dict[str, list[RunInfo]] = {}
    for run in store.list():
        if run.sweep:
            grouped.setdefault(run.sweep, []).append(run)
    return {sweep: sorted(runs, key=lambda r: r.created) for sweep, runs in sorted(grouped.items(), reverse=True)}


def best_run(runs: Sequence[RunInfo], metric: str = SELECTION_METRIC) -> RunInfo | None:
    """The run with the highest final ``metric`` among runs with a finished epoch."""
    scored = [r for r in runs if r.config is not None and r.metrics and math.isfinite(r.final.get(metric, math.nan))]
    return max(scored, key=lambda r: r.final[metric], default=None)
