"""RunStore: every training run as a folder of plain files that survive crashes.

A run folder holds ``config.json``, ``status.json``, ``metrics.jsonl`` (one line per finished
epoch, flushed as it happens), ``weights.npz`` (W and b of the last finished epoch) and
``evolution.npz`` (W after each epoch, float16, and b after each epoch). Weights are written to a
temporary file and renamed. Every file is read through ``safe_read`` (regular files only, size
limits, headers checked before inflating, JSON depth and numbers checked), so a crash or a
hostile file costs one run, listed as unreadable with the reason, never the store. Listing reads
no arrays and re-reads a run only when one of its files changed.
"""

from __future__ import annotations

import csv
import dataclasses
import errno
import io
import json
import math
import os
import re
import secrets
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import safe_read, summary_index
from .config import ConfigError, TrainConfig
from .data import CLASSES, PIXELS
from .safe_read import FileRefused

STATUSES = ("queued", "running", "completed", "stopped", "diverged", "failed", "cancelled", "interrupted",
            "pruned", "unreadable")
FINAL_STATUSES = ("completed", "stopped", "diverged", "failed", "cancelled", "interrupted", "pruned")
ACTIVE_STATUSES = ("queued", "running")
"""Written by a live process; read as cancelled / interrupted once that process is gone."""
STATUS_BYTES = 4096
"""status.json is padded to this size when created, so that a run's end can be written over it in
place when the disk is full (no new blocks needed)."""
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,79}")
JSON_LIMIT = 1 << 20
"""config.json and status.json are a few hundred bytes; a message may hold a long error."""
METRICS_LIMIT = 1 << 30
STEPS_LIMIT = 8 << 20
"""Above this size a metrics.jsonl is read without its step losses: per-epoch points only.

A default run's file is about 0.2 MB; 8 MB holds some 400,000 step losses."""
WEIGHTS_LIMIT = 1 << 20
EVOLUTION_LIMIT = 256 << 20
"""W per epoch in float16 is 15,680 bytes: room for some 17,000 epochs."""
LATEST_CREATED = 4102444800.0
"""2100-01-01: a creation time after it (or before 1970) is damage, not a date."""
CSV_COLUMNS = ("epoch", "train_loss", "train_accuracy", "validation_loss", "validation_accuracy",
               "test_loss", "test_accuracy", "learning_rate", "seconds")


class RunError(Exception):
    """A run id that is invalid or unknown, or a run whose files cannot be trusted."""


def default_root() -> Path:
    """$SOFTMAX_LAB_RUNS, else ``softmax-lab/runs`` in the XDG data folder."""
    if os.environ.get("SOFTMAX_LAB_RUNS"):
        return Path(os.environ["SOFTMAX_LAB_RUNS"]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "softmax-lab" / "runs"


def check_run_id(run_id: str) -> str:
    """Refuse anything that is not a plain folder name (no '/', no '..')."""
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise RunError(f"invalid run id {run_id!r}: letters, digits, '-' and '_' only")
    return run_id


def _process_token(pid: int) -> str | None:
    """The start time of live process ``pid``, so that a recycled pid is not mistaken for ours.

    A zombie (killed, not yet reaped by its parent) counts as dead.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return fields[19]


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_json(path: Path, value: Any) -> None:
    _atomic_write(path, lambda h: h.write(json.dumps(value, indent=1).encode()))


def _status_bytes(state: dict[str, Any]) -> bytes:
    """The status as JSON padded with spaces to STATUS_BYTES; a message too long is cut to fit."""
    text = json.dumps(state, indent=1).encode()
    if len(text) > STATUS_BYTES:
        cut = len(text) - STATUS_BYTES + 1
        text = json.dumps({**state, "message": state.get("message", "")[:-cut] + "…"}, indent=1).encode()
    return text.ljust(STATUS_BYTES)


def _overwrite_in_place(path: Path, data: bytes) -> None:
    """Write over an existing file's own blocks: works on a full disk, where a new file cannot."""
    fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
    try:
        if os.fstat(fd).st_size < len(data):
            raise RunError(f"{path.name} is too small to be overwritten in place")
        os.pwrite(fd, data, 0)
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class RunInfo:
    """What the store knows of one run; ``error`` is set when its files are unreadable."""

    run_id: str
    path: Path
    status: str
    config: TrainConfig | None = None
    created: float = 0.0
    ended: float | None = None
    message: str = ""
    metrics: list[dict] = field(default_factory=list)
    sweep: str | None = None
    error: str = ""
    state: dict = field(default_factory=dict, repr=False)
    """status.json as read: who marked the run running, to tell a live run from an interrupted one."""

    @property
    def epochs_completed(self) -> int:
        return len(self.metrics)

    @property
    def final(self) -> dict:
        """The last finished epoch's metrics, without its step losses."""
        if not self.metrics:
            return {}
        return {k: v for k, v in self.metrics[-1].items() if k != "step_losses"}

    @property
    def duration(self) -> float | None:
        return self.metrics[-1]["seconds"] if self.metrics else None


def failure_reason(exc: BaseException) -> str:
    """One line for a failed run, without server paths: what went wrong, not where."""
    if isinstance(exc, OSError):
        if exc.errno == errno.ENOSPC:
            return "the disk is full: free some space and train again"
        if exc.errno == errno.ENOENT:
            return "the run's folder was removed while it trained"
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return "the runs folder is not writable"
        return f"could not write the run: {exc.strerror or type(exc).__name__}"
    return f"{type(exc).__name__}: {exc}"


class RunWriter:
    """Writes one run as it trains; every call leaves the folder loadable."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._status: dict[str, Any] = json.loads((path / "status.json").read_text())
        self._evolution: list[np.ndarray] = []
        self._biases: list[np.ndarray] = []

    @property
    def run_id(self) -> str:
        return self.path.name

    def record_epoch(self, metrics: dict, W: np.ndarray, b: np.ndarray) -> None:
        """Append the metrics line, then replace the weights (which carry their epoch), then the history.

        A crash between the two leaves metrics one epoch ahead of the weights; the reader keeps only
        the epochs the weights have (``_read``), so a run's numbers and weights always agree.
        """
        self._evolution.append(W.astype(np.float16))
        self._biases.append(b.astype(np.float32))
        epoch = np.array(float(metrics["epoch"]))  # float: the guarded reader reads floating-point arrays only
        with open(self.path / "metrics.jsonl", "a") as handle:
            handle.write(json.dumps(metrics) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        _atomic_write(self.path / "weights.npz", lambda h: np.savez(h, W=W.astype(np.float32),
                                                                  b=b.astype(np.float32), epoch=epoch))
        _atomic_write(self.path / "evolution.npz", lambda h: np.savez(h, W=np.stack(self._evolution),
                                                                    b=np.stack(self._biases)))

    def start(self) -> None:
        """Mark a queued run as running (written by the process that owns the job)."""
        self._status.update(status="running", started=time.time())
        _atomic_write(self.path / "status.json", lambda h: h.write(_status_bytes(self._status)))

    def finish(self, status: str, message: str = "") -> None:
        """Record how the run ended; on a full disk, over the old status in place.

        Raises RunError when neither write works (the folder is gone): the caller reports it.
        """
        if status not in FINAL_STATUSES:
            raise ValueError(f"final status must be one of {FINAL_STATUSES}")
        self._status.update(status=status, message=message, ended=time.time())
        data = _status_bytes(self._status)
        path = self.path / "status.json"
        try:
            _atomic_write(path, lambda h: h.write(data))
        except OSError as first:
            try:
                _overwrite_in_place(path, data)
            except (OSError, RunError) as exc:
                raise RunError(f"could not record the end of run {self.run_id}: {first.strerror or first} "
                               f"({type(exc).__name__})") from None


class RunStore:
    """The folder of all runs; shared by every session, CLI and sweep on this machine."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root).expanduser() if root else default_root()

    def path(self, run_id: str) -> Path:
        return self.root / check_run_id(run_id)

    def create(self, config: TrainConfig, sweep: str | None = None, status: str = "running") -> RunWriter:
        """A new run folder with a fresh id, marked ``status`` (running or queued) by this process.

        The folder is removed again if its first files cannot be written (full disk, no permission).
        """
        if status not in ACTIVE_STATUSES:
            raise ValueError(f"a new run is one of {ACTIVE_STATUSES}")
        self.root.mkdir(parents=True, exist_ok=True)
        while True:
            run_id = time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)
            path = self.root / run_id
            try:
                path.mkdir()
                break
            except FileExistsError:
                continue
        state = {"status": status, "message": "", "pid": os.getpid(), "proc_start": _process_token(os.getpid()),
                 "host": socket.gethostname(), "ended": None}
        try:
            _write_json(path / "config.json", {"config": config.to_dict(), "created": time.time(), "sweep": sweep})
            _atomic_write(path / "status.json", lambda h: h.write(_status_bytes(state)))
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise
        return RunWriter(path)

    def run_ids(self) -> list[str]:
        """Ids of all run folders, newest first; a store that cannot be read raises RunError."""
        try:
            with os.scandir(self.root) as entries:
                return sorted((e.name for e in entries if _RUN_ID.fullmatch(e.name) and e.is_dir()), reverse=True)
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise RunError(f"the run store cannot be read ({exc.strerror})") from None

    def all_runs(self) -> list[RunInfo]:
        """Every run, newest first, from a summary cached per run until one of its files changes.

        Summaries hold per-epoch metrics without step losses and load no arrays, so listing a
        thousand runs costs a stat of each file; a run deleted while listing is left out. The
        summaries of ended runs are also kept on disk (``summary_index``), so a new process (a
        restarted server, the CLI) reads only the runs whose files changed since.
        """
        run_ids = self.run_ids()
        self._seed_summaries(run_ids)
        runs, ended_read = [], False
        for run_id in run_ids:
            try:
                run, fresh = self._read_cached(self.root / run_id, steps=False)
            except RunError:
                continue
            runs.append(_live(run))
            ended_read |= fresh and run.status not in ACTIVE_STATUSES
        if ended_read:
            self._save_summaries(run_ids)
        return sorted(runs, key=lambda run: run.created, reverse=True)  # ids of one second are not ordered

    def _seed_summaries(self, run_ids: list[str]) -> None:
        """Once per process and folder: take the saved summaries whose runs still exist."""
        if self.root in _SEEDED:
            return
        _SEEDED.add(self.root)
        saved = summary_index.load(self.root)
        for run_id in run_ids:
            path = self.root / run_id
            if run_id in saved:
                signature, summary = saved[run_id]
                try:
                    info = _from_summary(path, summary)
                except (ConfigError, AttributeError, KeyError, TypeError, ValueError):
                    continue
                with _SUMMARIES_LOCK:
                    _SUMMARIES.setdefault(path, (signature, info))

    def _save_summaries(self, run_ids: list[str]) -> None:
        """Save the summaries of this folder's ended runs, for the next process to start from."""
        with _SUMMARIES_LOCK:
            cached = [(run_id, _SUMMARIES.get(self.root / run_id)) for run_id in run_ids]
        summary_index.save(self.root, {run_id: (entry[0], _to_summary(entry[1])) for run_id, entry in cached
                                       if entry is not None and entry[1].status not in ACTIVE_STATUSES})

    def get(self, run_id: str) -> RunInfo:
        """One run with its step losses (unless its metrics.jsonl is over STEPS_LIMIT).

        A damaged run comes back with status ``unreadable`` and the reason.
        """
        path = self.path(run_id)
        if not path.is_dir():
            raise RunError(f"no run {run_id!r} in this run store")
        return self._cached(path, steps=True)

    def summary(self, run_id: str) -> RunInfo:
        """One run as listings see it: per-epoch metrics without step losses, cached like ``list``."""
        path = self.path(run_id)
        if not path.is_dir():
            raise RunError(f"no run {run_id!r} in this run store")
        return self._summary(path)

    def _summary(self, path: Path) -> RunInfo:
        return self._cached(path, steps=False)

    def _cached(self, path: Path, steps: bool) -> RunInfo:
        """The run read with or without step losses, re-read only when one of its files changed."""
        return _live(self._read_cached(path, steps)[0])

    def _read_cached(self, path: Path, steps: bool) -> tuple[RunInfo, bool]:
        """The run as its files say (from the cache while they are unchanged), and whether this read them."""
        key = _signature(path)
        metrics_size = key[2][1] if key[2] else 0
        steps = steps and metrics_size <= STEPS_LIMIT  # over it, the summary is the whole answer
        cache, size = (_FULL, FULL_CACHE_SIZE) if steps else (_SUMMARIES, SUMMARY_CACHE_SIZE)
        with _SUMMARIES_LOCK:
            cached = cache.get(path)
        fresh = cached is None or cached[0] != key
        if fresh:
            cached = (key, _guarded(path, lambda: _read(path, steps=steps)))
            with _SUMMARIES_LOCK:
                if len(cache) >= size:
                    cache.clear()
                cache[path] = cached
        return cached[1], fresh

    def load_weights(self, run_id: str) -> tuple[np.ndarray, np.ndarray]:
        """W (784x10) and b (10) of a run's last finished epoch."""
        path = self.path(run_id) / "weights.npz"
        try:
            arrays = safe_read.read_npz(path, {"W": (PIXELS, CLASSES), "b": (CLASSES,)}, WEIGHTS_LIMIT)
        except FileNotFoundError:
            raise RunError(f"run {run_id} has no weights yet (no finished epoch)") from None
        except FileRefused as exc:
            raise RunError(str(exc)) from None
        return arrays["W"], arrays["b"]

    def evolution_epochs(self, run_id: str) -> int:
        """How many per-epoch snapshots of W a run kept, from the file's header alone."""
        path = self.path(run_id) / "evolution.npz"
        try:
            shape = safe_read.npz_shapes(path, ["W"], EVOLUTION_LIMIT)["W"]
        except FileNotFoundError:
            raise RunError(f"run {run_id} has no weight history") from None
        except FileRefused as exc:
            raise RunError(str(exc)) from None
        if len(shape) != 3 or shape[1:] != (PIXELS, CLASSES):
            raise RunError(f"evolution.npz has W of shape {shape}, expected (n, 784, 10)")
        return shape[0]

    def load_evolution(self, run_id: str, epochs: Sequence[int] | None = None) -> np.ndarray:
        """W after each finished epoch (or only the 0-based ``epochs`` asked for), (n, 784, 10), float32."""
        path = self.path(run_id) / "evolution.npz"
        try:
            return safe_read.read_npz(path, {"W": (None, PIXELS, CLASSES)}, EVOLUTION_LIMIT, rows=epochs)["W"]
        except FileNotFoundError:
            raise RunError(f"run {run_id} has no weight history") from None
        except FileRefused as exc:
            raise RunError(str(exc)) from None

    def delete(self, run_id: str) -> None:
        """Remove a run's folder; a run folder that is a symlink loses the link, never its target.

        The folder is first renamed out of the store, so a store that refuses the change (read-only,
        no permission) loses nothing; RunError says why.
        """
        path = self.path(run_id)
        try:
            if path.is_symlink():
                path.unlink()
                return
            doomed = path.with_name(f".deleting-{run_id}-{secrets.token_hex(3)}")
            path.rename(doomed)
            shutil.rmtree(doomed)
        except FileNotFoundError:
            raise RunError(f"run {run_id} was already deleted") from None
        except OSError as exc:
            raise RunError(f"run {run_id} cannot be deleted: {exc.strerror}") from None

    def metrics_csv(self, run_id: str) -> str:
        """The per-epoch metrics of a run as CSV text (step losses left out); RunError if unreadable."""
        run = self._summary(self.path(run_id))
        if run.error:
            raise RunError(run.error)
        out = io.StringIO()
        writer = csv.DictWriter(out, CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(run.metrics)
        return out.getvalue()

    def weights_npz(self, run_id: str) -> bytes:
        """The raw ``weights.npz`` of a run, for download, after checking it."""
        self.load_weights(run_id)
        try:
            return safe_read.read_bytes(self.path(run_id) / "weights.npz", WEIGHTS_LIMIT)
        except (OSError, FileRefused) as exc:
            raise RunError(f"weights.npz cannot be read ({exc})") from None


SUMMARY_CACHE_SIZE = 20_000
FULL_CACHE_SIZE = 16
_SUMMARIES: dict[Path, tuple[tuple, RunInfo]] = {}
"""Run summaries by folder, with the (inode, size, mtime) of each file they were read from."""
_FULL: dict[Path, tuple[tuple, RunInfo]] = {}
"""The last few runs read with their step losses (the Train page redraws one on every rerun)."""
_SUMMARIES_LOCK = threading.Lock()
_SEEDED: set[Path] = set()
"""Runs folders whose saved summaries this process has taken (``RunStore._seed_summaries``)."""
_SIGNED_FILES = ("config.json", "status.json", "metrics.jsonl", "weights.npz")


def _signature(path: Path) -> tuple:
    """What changes when any file of a run is written, replaced or removed."""
    key, folder = [], os.fspath(path)
    for name in _SIGNED_FILES:
        try:
            info = os.lstat(os.path.join(folder, name))  # str joins: a thousand runs make 4,000 of them
            key.append((info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_mode))
        except OSError:
            key.append(None)
    return tuple(key)


def _guarded(path: Path, read) -> RunInfo:
    """``read()``, or the run as ``unreadable`` with the reason; RunError if the folder is gone."""
    try:
        return read()
    except (RunError, ConfigError, FileRefused, OSError, ValueError, KeyError, TypeError, OverflowError) as exc:
        if not path.is_dir():
            raise RunError(f"run {path.name!r} was deleted") from None
        reason = str(exc) if isinstance(exc, (RunError, ConfigError, FileRefused)) else _os_reason(exc)
        return RunInfo(path.name, path, "unreadable", error=reason)


def _os_reason(exc: BaseException) -> str:
    """An error's text without the server's paths."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{Path(exc.filename).name if exc.filename else 'a file'}: {exc.strerror}"
    return f"{type(exc).__name__}: {exc}"


def _read(path: Path, steps: bool) -> RunInfo:
    meta = _read_json(path / "config.json")
    state = _read_json(path / "status.json")
    metrics = _read_metrics(path / "metrics.jsonl", steps)
    status = _field(state, "status.json", "status", str)
    if status not in STATUSES:
        raise RunError(f"status.json: unknown status {status!r}")
    if status == "completed" and not metrics:
        raise RunError("status.json says completed, but metrics.jsonl has no finished epoch")
    if metrics:
        _check_weights(path / "weights.npz")
        metrics = metrics[:_weights_epoch(path / "weights.npz", len(metrics))]
    config = TrainConfig.from_dict(_field(meta, "config.json", "config", dict))
    created = _field(meta, "config.json", "created", float)
    if not 0 <= created <= LATEST_CREATED:
        raise RunError(f"config.json: 'created' is {created!r}, not a time between 1970 and 2100")
    ended = _field(state, "status.json", "ended", float, optional=True)
    sweep = _field(meta, "config.json", "sweep", str, optional=True)
    if sweep is not None and not _RUN_ID.fullmatch(sweep):
        raise RunError("config.json: 'sweep' is not a plain id")
    return RunInfo(path.name, path, status, config, created, ended,
                   _field(state, "status.json", "message", str, optional=True) or "", metrics, sweep, state=state)


def _to_summary(run: RunInfo) -> dict[str, Any]:
    """A cached run as plain JSON values, for the summary index."""
    return {"status": run.status, "config": run.config.to_dict() if run.config else None, "created": run.created,
            "ended": run.ended, "message": run.message, "metrics": _columns(run.metrics), "sweep": run.sweep,
            "error": run.error, "state": run.state}


def _columns(rows: list[dict]) -> dict[str, list] | None:
    """Epoch rows as one list per key (half the bytes to parse); None if their keys differ, which
    ``_rows`` refuses, so such a run is read from its files."""
    keys = list(rows[0]) if rows else []
    if any(list(row) != keys for row in rows):
        return None
    return {key: [row[key] for row in rows] for key in keys}


def _rows(metrics: dict[str, list]) -> list[dict]:
    """Epoch rows back from ``_columns``, checked as ``_read_metrics`` checks a file's (the index is
    a file too: whoever can write the cache folder could have written it)."""
    count = len(metrics.get("epoch", ()))
    for key in CSV_COLUMNS:
        values = metrics[key]
        if len(values) != count or not all(type(v) in (int, float) and math.isfinite(v) for v in values):
            raise ValueError(f"metrics column {key!r} is not {count} finite numbers")
    if metrics["epoch"] != list(range(1, count + 1)):
        raise ValueError("metrics epochs are not 1, 2, …")
    return [dict(zip(metrics, values)) for values in zip(*metrics.values())]


def _from_summary(path: Path, summary: dict[str, Any]) -> RunInfo:
    """A run back from ``_to_summary``; anything but what it wrote raises."""
    status = summary["status"]
    if status not in STATUSES or status in ACTIVE_STATUSES:
        raise ValueError(f"status {status!r} is not kept in the index")
    config = TrainConfig.from_dict(summary["config"]) if summary["config"] is not None else None
    created, ended, sweep = summary["created"], summary["ended"], summary["sweep"]
    if not (type(created) in (int, float) and 0 <= created <= LATEST_CREATED
            and (ended is None or type(ended) in (int, float)) and (sweep is None or _RUN_ID.fullmatch(sweep))):
        raise ValueError("created, ended or sweep is not what the store writes")
    return RunInfo(path.name, path, status, config, float(created), ended, str(summary["message"]),
                   _rows(summary["metrics"]), sweep, str(summary["error"]), dict(summary["state"]))


def _live(run: RunInfo) -> RunInfo:
    """A copy of a cached run; one marked running (queued) by a process now gone reads interrupted (cancelled)."""
    status = run.status
    if status in ACTIVE_STATUSES and not _alive(run.state):
        status = "interrupted" if status == "running" else "cancelled"
    return dataclasses.replace(run, status=status)


def _read_json(path: Path) -> dict:
    try:
        return safe_read.read_json_object(path, JSON_LIMIT)
    except FileNotFoundError:
        raise RunError(f"{path.name} is missing") from None


def _field(values: dict, source: str, key: str, kind: type, optional: bool = False) -> Any:
    """``values[key]`` if it has the JSON type ``kind`` (float accepts int); None if optional and absent."""
    value = values.get(key)
    if value is None and optional:
        return None
    kinds = (int, float) if kind is float else kind
    if isinstance(value, bool) or not isinstance(value, kinds):
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise RunError(f"{source}: {key!r} is {shown}, expected {kind.__name__}")
    return value


def _read_metrics(path: Path, steps: bool) -> list[dict]:
    """Per-epoch lines, epochs 1, 2, … in order; a torn last line (a crash mid-write) is dropped.

    Step losses are cut out before parsing unless ``steps`` (and the file is under STEPS_LIMIT),
    so a summary of even a very long run parses a few numbers per epoch.
    """
    try:
        raw = safe_read.read_bytes(path, METRICS_LIMIT)
    except FileNotFoundError:
        return []
    if not steps or len(raw) > STEPS_LIMIT:
        raw = b"\n".join(_without_step_losses(line) for line in raw.split(b"\n"))
    try:
        lines = raw.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise RunError("metrics.jsonl is not UTF-8 text") from None
    rows = []
    for i, line in enumerate(lines):
        source = f"metrics.jsonl line {i + 1}"
        try:
            row = safe_read.parse_json(line, source)
        except FileRefused:
            if i == len(lines) - 1 and not raw.endswith(b"\n"):
                break
            raise
        if not isinstance(row, dict):
            raise RunError(f"{source} is not an object")
        for key in CSV_COLUMNS:
            _field(row, source, key, float)
        if row["epoch"] != i + 1:
            raise RunError(f"{source} is epoch {row['epoch']!r}, expected {i + 1}")
        losses = row.get("step_losses", [])
        if not isinstance(losses, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                   for x in losses):
            raise RunError(f"{source}: 'step_losses' is not a list of numbers")
        rows.append(row)
    return rows


def _without_step_losses(line: bytes) -> bytes:
    """``line`` with its step losses emptied, if they are a flat list (anything else is left to the checks).

    Step losses are nearly all of a metrics line; cutting them with ``bytes.find`` (memchr speed)
    spares parsing thousands of numbers per epoch that no listing shows.
    """
    key = line.find(b'"step_losses":')
    start = line.find(b"[", key) if key >= 0 else -1
    end = line.find(b"]", start) if start >= 0 else -1
    if end < 0 or line[key + 14:start].strip() or any(line.find(c, start + 1, end) >= 0 for c in (b"[", b"{", b'"')):
        return line
    return line[:start + 1] + line[end:]


def _check_weights(path: Path) -> None:
    """W and b of the right shapes and float dtypes, from the headers: nothing is inflated."""
    try:
        shapes = safe_read.npz_shapes(path, ("W", "b"), WEIGHTS_LIMIT)
    except FileNotFoundError:
        raise RunError("weights.npz is missing") from None
    if shapes["W"] != (PIXELS, CLASSES) or shapes["b"] != (CLASSES,):
        raise RunError(f"weights.npz has W {shapes['W']} and b {shapes['b']}, expected (784, 10) and (10,)")


def _weights_epoch(path: Path, recorded: int) -> int:
    """The epoch the weights are from, when a crash left metrics.jsonl one epoch ahead of them.

    Weights written before that epoch marker existed (an int array, refused by the float-only
    reader) count as ``recorded``: they were written in the other order, never behind.
    """
    try:
        epoch = float(safe_read.read_npz(path, {"epoch": ()}, WEIGHTS_LIMIT)["epoch"])
    except FileRefused:
        return recorded
    return int(epoch) if epoch == int(epoch) and 1 <= epoch < recorded else recorded


def _alive(state: dict) -> bool:
    """Whether the process that marked a run ``running`` is still that same process."""
    if state.get("host") != socket.gethostname():
        return True
    pid = state.get("pid")
    return isinstance(pid, int) and _process_token(pid) is not None and _process_token(pid) == state.get("proc_start")
