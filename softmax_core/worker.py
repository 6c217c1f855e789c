"""A warm training process of the job service: ``python -m softmax_core.worker``.

It imports TensorFlow, loads MNIST and traces the engine once, then trains the runs it is sent
(several at once, each in a thread) through ``record.train_and_record``. It speaks JSON lines: commands on stdin
(``train``, ``export``, ``stop``), events on stdout (``ready``, ``progress``, ``epoch``, ``done``,
``fatal``). Anything else that writes to stdout (TensorFlow's C++ logging) is sent to stderr,
so the event stream stays clean. It ends when stdin closes or its parent dies.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

PR_SET_PDEATHSIG = 1
NICENESS = 10
"""Training yields the cores to the web server: a page render is waited on by a person, an epoch
is not. With the cores otherwise idle the worker still gets all of them."""


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when the thread that started it ends (server killed)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: stdin closing still ends the worker
        pass
    if os.getppid() == 1:  # the parent died before prctl took effect
        sys.exit(0)


def _event_stream() -> TextIO:
    """A private copy of stdout for events; fd 1 itself now points at stderr."""
    events = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return events


class Worker:
    """Trains the runs sent on stdin, each in a thread of its own; ``stop`` reaches its run at once.

    The job service bounds how many run at once (one per CPU core by default). Jobs share one
    TensorFlow runtime and one copy of MNIST: a second process per job would cost ~750 MB more.
    """

    def __init__(self, events: TextIO) -> None:
        self._events = events
        self._lock = threading.Lock()
        self._stops: dict[str, threading.Event] = {}
        self._jobs: list[threading.Thread] = []

    def emit(self, event: str, **fields: Any) -> None:
        with self._lock:
            self._events.write(json.dumps({"event": event, **fields}) + "\n")

    def serve(self, commands: TextIO) -> None:
        """Load what every job needs, say ready, then act on commands until stdin closes."""
        from . import events
        from .data import DataError, load_mnist
        from .train import warm_up

        started = time.perf_counter()
        try:
            data = load_mnist(allow_download=False)
        except DataError as exc:
            self.emit("fatal", message=str(exc))
            return
        warm_up(data)
        events.warm_up()
        self.emit("ready", pid=os.getpid(), seconds=round(time.perf_counter() - started, 3))
        for line in commands:
            try:
                command = json.loads(line)
            except json.JSONDecodeError:
                continue
            if command.get("op") == "stop":
                with self._lock:
                    stop = self._stops.get(command.get("run"))
                if stop is not None:
                    stop.set()
            elif command.get("op") in ("train", "export"):
                work = self._train if command["op"] == "train" else self._export
                job = threading.Thread(target=work, args=(command, data), daemon=True)
                self._jobs.append(job)
                job.start()
        with self._lock:  # stdin closed: the service is going away; stop what still trains
            for stop in self._stops.values():
                stop.set()
        for job in self._jobs:
            job.join()

    def _train(self, command: dict[str, Any], data) -> None:
        from .config import TrainConfig
        from .record import train_and_record
        from .runs import RunWriter

        run_id = command.get("run")
        stop = threading.Event()
        with self._lock:
            self._stops[run_id] = stop
        try:
            writer = RunWriter(Path(command["run_dir"]))
            status, message = train_and_record(
                TrainConfig.from_dict(command["config"]), data, writer, stop,
                on_progress=lambda fraction: self.emit("progress", run=run_id, fraction=fraction),
                on_epoch=lambda metrics: self.emit("epoch", run=run_id, metrics=metrics.to_dict()))
        except Exception as exc:  # a bad command or an unreadable run folder fails that run only
            status, message = "failed", f"{type(exc).__name__}: {exc}"
        with self._lock:
            del self._stops[run_id]
        self.emit("done", run=run_id, status=status, message=message)

    def _export(self, command: dict[str, Any], _data) -> None:
        """Write a run as a Keras file, a SavedModel or a script (``softmax_core.export``)."""
        from .export import export_run
        from .runs import RunError, RunStore

        try:
            path = export_run(RunStore(command["root"]), command["run_id"], command["format"], Path(command["out"]))
        except (RunError, ValueError, OSError) as exc:
            self.emit("done", run=command.get("run"), status="failed", message=str(exc))
            return
        except Exception as exc:  # never leave the asking page waiting
            self.emit("done", run=command.get("run"), status="failed", message=f"{type(exc).__name__}: {exc}")
            return
        self.emit("done", run=command.get("run"), status="completed", path=str(path))


def main() -> None:
    _die_with_parent()
    os.nice(NICENESS)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    Worker(_event_stream()).serve(sys.stdin)


if __name__ == "__main__":
    main()
