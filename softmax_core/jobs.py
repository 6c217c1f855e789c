"""The job service: one per server process, a FIFO queue, warm worker processes, Stop from anywhere.

Pages (any session) ``submit`` a config and get a run id; the job waits in the queue until one of
``SOFTMAX_LAB_WORKERS`` slots (default: the CPU cores) is free, trains in the warm worker
process, and streams progress and epochs back. Any page can ``snapshot`` or ``stop`` any job by run id. The
server process never imports TensorFlow: that lives in ``softmax_core.worker`` only.

Every job's end is written to its run's ``status.json`` by this process, whatever happened to
the worker (stopped, crashed, killed); when even that write fails, the job ends ``failed`` here
with the reason. On a server restart, runs it left ``running`` read as interrupted and
``queued`` ones as cancelled (see README: a queued run is not resumed, since the person who
queued it may be gone and a restart should not start work nobody asked this server for).
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import secrets
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from .config import TrainConfig
from .metrics import EpochMetrics
from .runs import ACTIVE_STATUSES, RunError, RunStore, RunWriter, failure_reason

WORKERS_ENV = "SOFTMAX_LAB_WORKERS"
WORKER_COMMAND = (sys.executable, "-m", "softmax_core.worker")
RESTART_PAUSE = 5.0
"""Seconds before a worker that could not start (no MNIST) is tried again."""

EpochHook = Callable[[EpochMetrics], bool]
"""Called in the service for each finished epoch of a job; True stops the job as ``pruned``."""


def default_workers() -> int:
    """$SOFTMAX_LAB_WORKERS, else the CPU cores this process may use."""
    value = os.environ.get(WORKERS_ENV, "").strip()
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            raise ValueError(f"{WORKERS_ENV} must be a whole number, not {value!r}") from None
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass(frozen=True)
class JobSnapshot:
    """What a page shows of one job; immutable, so a page can read it without locks."""

    run_id: str
    status: str
    """queued, running, then completed, stopped, diverged, failed, cancelled, interrupted or pruned."""
    config: TrainConfig
    progress: float
    elapsed: float
    """Seconds of training so far (0 while queued)."""
    eta: float | None
    history: list[EpochMetrics] = field(default_factory=list)
    message: str = ""
    position: int | None = None
    """1 for the next job to start, while queued."""
    stopping: bool = False
    sweep: str | None = None

    @property
    def done(self) -> bool:
        return self.status not in ACTIVE_STATUSES


@dataclass
class _Job:
    run_id: str
    config: TrainConfig
    writer: RunWriter
    sweep: str | None
    on_epoch: EpochHook | None
    status: str = "queued"
    progress: float = 0.0
    history: list[EpochMetrics] = field(default_factory=list)
    message: str = ""
    started: float | None = None
    ended: float | None = None
    stop_as: str | None = None
    """Set by ``stop``: the status a stopped run ends with (stopped, or pruned for a search)."""
    done: threading.Event = field(default_factory=threading.Event)


class WorkerGone(Exception):
    """The worker process ended (killed, out of memory, crashed) or never became ready."""


class _WorkerProcess:
    """The ``softmax_core.worker`` process: commands in, events routed to the job they name."""

    def __init__(self, command: tuple[str, ...]) -> None:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        bufsize=1, env=env, cwd=Path(__file__).resolve().parents[1])
        self._lock = threading.Lock()
        self._routes: dict[str, queue.Queue] = {}
        self._control: queue.Queue = queue.Queue()
        self._gone = False
        threading.Thread(target=self._route, name=f"worker-{self.process.pid}-events", daemon=True).start()

    def _route(self) -> None:
        """Reader thread: each event to its run's queue; at EOF, None to every waiting run."""
        for line in self.process.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(event, dict):
                continue
            with self._lock:
                route = self._routes.get(event.get("run"), self._control)
            route.put(event)
        with self._lock:
            self._gone = True
            routes = list(self._routes.values())
        for route in routes + [self._control]:
            route.put(None)

    def wait_ready(self) -> float:
        """Block until TensorFlow and MNIST are loaded; the seconds it took. WorkerGone if it cannot."""
        event = self._control.get()
        if event is not None and event.get("event") == "ready":
            return float(event.get("seconds", 0.0))
        if event is not None and event.get("event") == "fatal":
            self.kill()
            raise WorkerGone(event.get("message", "the training process could not start"))
        raise WorkerGone(self.death())

    def request(self, route_id: str, command: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Send a command; yield the events that name ``route_id`` up to ``done``. WorkerGone if the process dies."""
        route: queue.Queue = queue.Queue()
        with self._lock:
            if self._gone:
                raise WorkerGone(self.death())
            self._routes[route_id] = route
        try:
            self.send({**command, "run": route_id})
            while (event := route.get()) is not None:
                yield event
                if event.get("event") == "done":
                    return
            raise WorkerGone(self.death())
        finally:
            with self._lock:
                self._routes.pop(route_id, None)

    def send(self, command: dict[str, Any]) -> None:
        with self._lock:
            try:
                self.process.stdin.write(json.dumps(command) + "\n")
                self.process.stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                raise WorkerGone("the training process is gone") from None

    def alive(self) -> bool:
        return self.process.poll() is None and not self._gone

    def death(self) -> str:
        """Why the process ended, in words a person can act on."""
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return "the training process stopped answering"
        if code < 0:
            name = {9: "SIGKILL: killed, or out of memory", 15: "SIGTERM"}.get(-code, f"signal {-code}")
            return f"the training process died ({name})"
        return f"the training process exited with status {code}"

    def close(self, timeout: float = 3.0) -> None:
        """Close stdin (the worker's cue to stop its jobs and exit), then kill if it lingers."""
        with self._lock:
            try:
                self.process.stdin.close()
            except OSError:
                pass
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


class JobService:
    """A FIFO queue of training jobs; at most ``workers`` train at once, in one warm worker process.

    One process for all jobs, not one per job: TensorFlow and MNIST cost ~750 MB per process here,
    so the server plus workers stays near 1 GB instead of 1.7 GB with two cores. A crash of that
    process interrupts the jobs it ran (recorded as such); the service then starts a new one.
    """

    def __init__(self, workers: int | None = None, command: tuple[str, ...] = WORKER_COMMAND) -> None:
        self.workers = workers or default_workers()
        self._command = command
        self._lock = threading.Condition()
        self._jobs: dict[str, _Job] = {}
        self._queue: deque[str] = deque()
        self._process: _WorkerProcess | None = None
        self._starting: _WorkerProcess | None = None
        self._process_lock = threading.Lock()
        self._closing = False
        self.worker_error = ""
        """Why the worker cannot start (e.g. MNIST missing), for pages to show; empty when fine."""
        self._slots = [threading.Thread(target=self._serve, name=f"job-slot-{slot}", daemon=True)
                       for slot in range(self.workers)]
        for thread in self._slots:
            thread.start()

    # --- what pages and the CLI call -------------------------------------------------------------

    def submit(self, store: RunStore, config: TrainConfig, sweep: str | None = None,
               on_epoch: EpochHook | None = None) -> str:
        """Queue a run of ``config`` in ``store``; its id. Raises OSError/RunError if it cannot be written."""
        if self._closing:
            raise RunError("the lab is shutting down; no new runs")
        writer = store.create(config, sweep=sweep, status="queued")
        job = _Job(writer.run_id, config, writer, sweep, on_epoch)
        with self._lock:
            self._jobs[job.run_id] = job
            self._queue.append(job.run_id)
            self._lock.notify_all()
        return job.run_id

    def stop(self, run_id: str, status: str = "stopped") -> bool:
        """Cancel a queued job at once, or ask a running one to stop after its current compiled call.

        False when this service does not know the job or it has already ended.
        """
        with self._lock:
            job = self._jobs.get(run_id)
            if job is None or job.status not in ACTIVE_STATUSES:
                return False
            queued = job.status == "queued"
            if queued:
                self._queue.remove(run_id)
            else:
                job.stop_as = job.stop_as or status
            process = self._process
        if queued:
            self._end(job, "cancelled", "cancelled before it started")
        elif process is not None:
            try:
                process.send({"op": "stop", "run": run_id})
            except WorkerGone:
                pass  # its slot sees the death and records the run
        return True

    def snapshot(self, run_id: str) -> JobSnapshot | None:
        """The job's state now, or None if this service never ran it."""
        with self._lock:
            job = self._jobs.get(run_id)
            if job is None:
                return None
            position = self._queue.index(run_id) + 1 if job.status == "queued" else None
            return self._snapshot(job, position)

    def active(self) -> list[JobSnapshot]:
        """Running jobs, then queued ones in the order they will start."""
        with self._lock:
            running = [self._snapshot(j, None) for j in self._jobs.values() if j.status == "running"]
            queued = [self._snapshot(self._jobs[r], i + 1) for i, r in enumerate(self._queue)]
        return running + queued

    def wait(self, run_id: str, timeout: float | None = None) -> JobSnapshot:
        """Block until the job has ended (or ``timeout`` passes); its snapshot."""
        with self._lock:
            job = self._jobs[run_id]
        job.done.wait(timeout)
        return self.snapshot(run_id)

    def wait_started(self, run_id: str, timeout: float) -> bool:
        """Block until the job has left the queue (or ``timeout`` passes); whether it has.

        A page that has just pressed Start waits this long to draw the running view at once,
        instead of drawing "queued" and finding out at its next poll.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            while (job := self._jobs.get(run_id)) is not None and job.status == "queued":
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(remaining)
            return True

    def shutdown(self, timeout: float = 5.0) -> None:
        """Cancel queued jobs, stop running ones and record them, end the worker process."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            queued = list(self._queue)
            running = [j.run_id for j in self._jobs.values() if j.status == "running"]
            self._lock.notify_all()
        for run_id in queued + running:
            self.stop(run_id)
        deadline = time.monotonic() + timeout
        for run_id in running:
            self._jobs[run_id].done.wait(max(0.0, deadline - time.monotonic()))
        process = self._process or self._starting
        if process is not None:
            process.close(timeout=max(0.5, deadline - time.monotonic()))
        for run_id in running:  # a job whose end did not arrive in time ends here
            job = self._jobs[run_id]
            if not job.done.wait(1.0):
                self._end(job, "interrupted", "the lab was shut down while it trained")

    def export(self, store: RunStore, run_id: str, fmt: str, out: Path) -> Path:
        """Have the worker write ``run_id`` as ``fmt`` (see ``softmax_core.export``) to ``out``; the path.

        Exports need TensorFlow, so the worker makes them, beside any training; they do not queue.
        Raises RunError with the worker's reason when it cannot.
        """
        process = self._process
        while process is None or not process.alive():
            if self._closing:
                raise RunError("the lab is shutting down")
            time.sleep(0.1)
            process = self._process
        command = {"op": "export", "root": str(store.root), "run_id": run_id, "format": fmt, "out": str(out)}
        try:
            for event in process.request(f"export-{secrets.token_hex(4)}", command):
                if event.get("event") == "done":
                    if event.get("status") != "completed":
                        raise RunError(event.get("message") or "the export failed")
                    return Path(event["path"])
        except WorkerGone as exc:
            raise RunError(str(exc)) from None
        raise RunError("the training process ended the export without a word")

    @property
    def warming(self) -> bool:
        """True while the worker process is loading TensorFlow and MNIST (after start or a crash)."""
        process = self._process
        return process is None or not process.alive()

    def worker_pids(self) -> list[int]:
        process = self._process
        return [process.process.pid] if process is not None and process.alive() else []

    # --- slots: each trains one job at a time on the shared worker process -----------------------

    def _serve(self) -> None:
        while not self._closing:
            process = self._ready_process()
            if process is None:
                continue
            run_id = self._next(process)
            if run_id is None:
                continue
            job = self._jobs[run_id]
            try:
                status, message = self._train(job, process)
            except WorkerGone as exc:
                status, message = "interrupted", f"{exc}; its finished epochs are kept"
            if job.stop_as and status == "stopped":
                status = job.stop_as
                if status == "pruned":
                    message = f"pruned after epoch {len(job.history)}: behind the other trials at the same epoch"
            if self._closing and status in ("stopped", "interrupted"):
                message = "the lab was shut down while it trained; its finished epochs are kept"
            self._end(job, status, message)

    def _ready_process(self) -> _WorkerProcess | None:
        """The live, warm worker process; started (once, whichever slot comes first) when needed."""
        with self._process_lock:
            if self._closing:
                return None
            if self._process is not None and self._process.alive():
                return self._process
            process = self._starting = _WorkerProcess(self._command)
            try:
                process.wait_ready()
            except WorkerGone as exc:
                if self._closing:
                    return None
                self.worker_error = str(exc)
                self._fail_queued(str(exc))
                time.sleep(RESTART_PAUSE)
                return None
            self._process, self._starting, self.worker_error = process, None, ""
            return process

    def _next(self, process: _WorkerProcess) -> str | None:
        """The next queued run id, now marked running; None at shutdown or when the worker died idle."""
        with self._lock:
            while not self._queue and not self._closing:
                self._lock.wait(timeout=1.0)
                if not process.alive():
                    return None
            if self._closing:
                return None
            run_id = self._queue.popleft()
            job = self._jobs[run_id]
            job.status, job.started = "running", time.monotonic()
            self._lock.notify_all()  # for wait_started
            return run_id

    def _train(self, job: _Job, process: _WorkerProcess) -> tuple[str, str]:
        """Run one job on the worker; its (status, message). Raises WorkerGone if the worker dies."""
        try:
            job.writer.start()
        except OSError as exc:
            return "failed", failure_reason(exc)
        command = {"op": "train", "run_dir": str(job.writer.path), "config": job.config.to_dict()}
        for event in process.request(job.run_id, command):
            kind = event["event"]
            if kind == "progress":
                with self._lock:
                    job.progress = float(event["fraction"])
            elif kind == "epoch":
                metrics = EpochMetrics(**event["metrics"])
                with self._lock:
                    job.history.append(metrics)
                if job.on_epoch is not None and job.on_epoch(metrics):
                    self.stop(job.run_id, status="pruned")
            elif kind == "done":
                return event["status"], event.get("message", "")
        raise WorkerGone("the training process ended the run without a word")

    def _end(self, job: _Job, status: str, message: str) -> None:
        """Write the job's end to its run; if that fails, the job ends ``failed`` with the reason."""
        try:
            job.writer.finish(status, message)
        except RunError as exc:
            status, message = "failed", f"{message + '; ' if message else ''}{exc}"
        with self._lock:
            job.status, job.message, job.ended = status, message, time.monotonic()
            if status == "completed":
                job.progress = 1.0
        job.done.set()

    def _fail_queued(self, reason: str) -> None:
        with self._lock:
            queued = [self._jobs[r] for r in self._queue]
            self._queue.clear()
        for job in queued:
            self._end(job, "failed", reason)

    def _snapshot(self, job: _Job, position: int | None) -> JobSnapshot:
        now = time.monotonic()
        elapsed = 0.0 if job.started is None else (job.ended or now) - job.started
        eta = None
        if job.status == "running" and job.progress > 0:
            eta = elapsed * (1 - job.progress) / job.progress
        return JobSnapshot(job.run_id, job.status, job.config, min(job.progress, 1.0), elapsed, eta,
                           list(job.history), job.message, position, job.stop_as is not None, job.sweep)


_shared: JobService | None = None
_shared_lock = threading.Lock()


def shared_service() -> JobService:
    """This process's one job service, started on first use and shut down when the process exits."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = JobService()
            atexit.register(_shared.shutdown)
        return _shared
