"""Train one run and write it to the run store as it goes (and TensorBoard events): the path every training takes.

The CLI's ``train`` and the job service's worker processes both call ``train_and_record``, so a
run trained from a terminal and one trained from the dashboard are written the same way.
Imports TensorFlow (through ``train``): only training processes load this module.
"""

from __future__ import annotations

import threading
from typing import Callable, Protocol

import numpy as np

from .config import TrainConfig
from .data import Mnist
from .events import EventLog
from .metrics import EpochMetrics
from .runs import RunError, RunStore, RunWriter, failure_reason
from .train import train


class StopFlag(Protocol):
    def is_set(self) -> bool: ...


def train_and_record(config: TrainConfig, data: Mnist, writer: RunWriter, stop: StopFlag,
                     on_progress: Callable[[float], None] | None = None,
                     on_epoch: Callable[[EpochMetrics], None] | None = None) -> tuple[str, str]:
    """Train ``config``, writing each finished epoch through ``writer``; the final (status, message).

    Never raises for a training or disk failure: that is a ``failed`` run with its reason. The
    caller records the end (``writer.finish``), since only it knows how it was asked to stop.
    """

    try:
        events = EventLog(writer.path, config)
    except OSError as exc:
        return "failed", failure_reason(exc)

    def record(metrics: EpochMetrics, W: np.ndarray, b: np.ndarray) -> None:
        """The run's own files first (pages read the weights once they hear of the epoch), then the
        news, then TensorBoard's copy: the live view does not wait for the event log."""
        writer.record_epoch(metrics.to_dict(), W, b)
        if on_epoch:
            on_epoch(metrics)
        events.epoch(metrics, W)

    try:
        result = train(config, data, record, on_progress, stop)
        status, message = result.status, result.message
    except Exception as exc:  # the run must end with a status, whatever went wrong
        status, message = "failed", failure_reason(exc)
    try:
        events.close(status)
    except OSError:
        pass  # TensorBoard's copy of the end; the run's own status is written by the caller
    return status, message


def record_run(store: RunStore, config: TrainConfig, data: Mnist, stop: StopFlag | None = None,
               sweep: str | None = None, on_progress: Callable[[float], None] | None = None,
               on_epoch: Callable[[EpochMetrics], None] | None = None) -> tuple[str, str, str]:
    """Train and record a whole run in this process (CLI, sweeps from the CLI, tests); (run id, status, message).

    When the end cannot be written (folder removed, disk full), the run is ``failed`` with why.
    """
    writer = store.create(config, sweep=sweep)
    status, message = train_and_record(config, data, writer, stop or threading.Event(), on_progress, on_epoch)
    try:
        writer.finish(status, message)
    except RunError as exc:
        status, message = "failed", f"{message + '; ' if message else ''}{exc}"
    return writer.run_id, status, message
