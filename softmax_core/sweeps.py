"""Hyperparameter sweeps: a grid of TrainConfigs trained one after another, each a normal run.

Every run of a sweep is an ordinary job of the lab's queue (from the dashboard) or an ordinary
run of the CLI's process, trained through ``record.train_and_record`` and saved with
``sweep=<sweep id>``; the sweep itself is nothing more than that tag, so the Runs page, the CLI
and the Sweep page all read the same folders.
"""

from __future__ import annotations

import itertools
import math
import secrets
import threading
import time
from typing import Callable, Sequence

from .config import ConfigError, TrainConfig
from .data import Mnist
from .jobs import JobService
from .runs import RunError, RunInfo, RunStore

AXES = ("learning_rate", "batch_size", "epochs", "optimizer", "l2")
"""Settings a sweep may vary; the rest come from the base config."""
MAX_RUNS = 64
SELECTION_METRIC = "validation_accuracy"
"""Sweeps pick their best run on the validation split, never on the test set."""


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
        sizes = {a: len(dict.fromkeys(grid[a])) for a in axes}
        widest = max(axes, key=sizes.get)  # the axis to trim first
        shape = " x ".join(str(sizes[a]) for a in axes)
        raise ConfigError(widest, f"has {sizes[widest]} values, making {len(combos)} runs ({shape}); "
                                  f"a sweep runs at most {MAX_RUNS}")
    base_values = base.to_dict()
    return [TrainConfig.from_dict({**base_values, **dict(zip(axes, combo))}) for combo in combos]


SWEEP_PREFIX = "sweep-"


def new_sweep_id() -> str:
    return time.strftime(f"{SWEEP_PREFIX}%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def run_sweep(base: TrainConfig, grid: dict[str, Sequence], data: Mnist, store: RunStore,
              on_run: Callable[[RunInfo], None] | None = None, stop: threading.Event | None = None,
              sweep_id: str | None = None) -> list[RunInfo]:
    """Train every config of the grid in turn in this process (the CLI's sweep); the saved runs.

    ``on_run(info)`` is called as each run ends. Setting ``stop`` stops the current run (saved as
    ``stopped``) and starts no more.
    """
    from .record import record_run  # TensorFlow: only the CLI's own process trains here

    configs = sweep_configs(base, grid)
    sweep_id = sweep_id or new_sweep_id()
    stop = stop or threading.Event()
    finished: list[RunInfo] = []
    for config in configs:
        if stop.is_set():
            break
        run_id, _, _ = record_run(store, config, data, stop, sweep=sweep_id)
        try:
            info = store.get(run_id)
        except RunError:
            continue
        finished.append(info)
        if on_run:
            on_run(info)
    return finished


def submit_sweep(service: JobService, store: RunStore, base: TrainConfig,
                 grid: dict[str, Sequence]) -> tuple[str, list[str]]:
    """Queue every config of the grid as a job of the lab's queue; the sweep id and run ids in grid order."""
    configs = sweep_configs(base, grid)
    sweep_id = new_sweep_id()
    return sweep_id, [service.submit(store, config, sweep=sweep_id) for config in configs]


def saved_sweeps(store: RunStore) -> dict[str, list[RunInfo]]:
    """Saved runs grouped by sweep id, newest sweep first, runs in the order they were trained."""
    grouped: dict[str, list[RunInfo]] = {}
    for run in store.all_runs():
        if run.sweep and run.sweep.startswith(SWEEP_PREFIX):  # not the trials of an Optuna study
            grouped.setdefault(run.sweep, []).append(run)
    return {sweep: sorted(runs, key=lambda r: r.created) for sweep, runs in sorted(grouped.items(), reverse=True)}


def best_run(runs: Sequence[RunInfo], metric: str = SELECTION_METRIC) -> RunInfo | None:
    """The run with the highest final ``metric`` among runs with a finished epoch."""
    scored = [r for r in runs if r.config is not None and r.metrics and math.isfinite(r.final.get(metric, math.nan))]
    return max(scored, key=lambda r: r.final[metric], default=None)
