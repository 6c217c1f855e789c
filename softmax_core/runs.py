"""RunStore: every training run as a folder of plain files that survive crashes.

A run folder holds ``config.json``, ``status.json``, ``metrics.jsonl`` (one line per finished
epoch, flushed as it happens), ``weights.npz`` (W and b of the last finished epoch) and
``evolution.npz`` (W after each epoch, float16, and b after each epoch). Weights are written to a temporary file and
renamed, and are read with ``allow_pickle=False``, so a crash or a hostile file costs one run,
never the store.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import re
import secrets
import shutil
import socket
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import ConfigError, TrainConfig
from .data import CLASSES, PIXELS

STATUSES = ("queued", "running", "completed", "stopped", "diverged", "failed", "cancelled", "interrupted",
            "pruned", "unreadable")
FINAL_STATUSES = ("completed", "stopped", "diverged", "failed", "cancelled", "interrupted", "pruned")
ACTIVE_STATUSES = ("queued", "running")
"""Written by a live process; read as cancelled / interrupted once that process is gone."""
STATUS_BYTES = 4096
"""status.json is padded to this size when created, so that a run's end can be written over it in
place when the disk is full (no new blocks needed)."""
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,79}")
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
        """Save the weights, then append the metrics line: metrics never outrun weights."""
        self._evolution.append(W.astype(np.float16))
        self._biases.append(b.astype(np.float32))
        epoch = np.array(metrics["epoch"])
        _atomic_write(self.path / "weights.npz", lambda h: np.savez(h, W=W.astype(np.float32),
                                                                  b=b.astype(np.float32), epoch=epoch))
        _atomic_write(self.path / "evolution.npz", lambda h: np.savez(h, W=np.stack(self._evolution),
                                                                    b=np.stack(self._biases)))
        with open(self.path / "metrics.jsonl", "a") as handle:
            handle.write(json.dumps(metrics) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

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
        """Ids of all run folders, newest first."""
        if not self.root.is_dir():
            return []
        return sorted((p.name for p in self.root.iterdir() if p.is_dir() and _RUN_ID.fullmatch(p.name)), reverse=True)

    def list(self) -> list[RunInfo]:
        """Every run, newest first; a run deleted while listing is left out."""
        runs = []
        for run_id in self.run_ids():
            try:
                runs.append(self.get(run_id))
            except RunError:
                continue
        return sorted(runs, key=lambda run: run.created, reverse=True)  # ids of one second are not ordered

    def get(self, run_id: str) -> RunInfo:
        """Read one run; a damaged one comes back with status ``unreadable`` and the reason."""
        path = self.path(run_id)
        if not path.is_dir():
            raise RunError(f"no run {run_id!r} in {self.root}")
        try:
            return self._read(path)
        except (RunError, ConfigError, OSError, ValueError, KeyError, TypeError) as exc:
            if not path.is_dir():
                raise RunError(f"run {run_id!r} was deleted") from None
            return RunInfo(run_id, path, "unreadable", error=f"{type(exc).__name__}: {exc}")

    def _read(self, path: Path) -> RunInfo:
        meta = _read_json(path / "config.json")
        state = _read_json(path / "status.json")
        metrics = _read_metrics(path / "metrics.jsonl")
        status = _field(state, "status.json", "status", str)
        if status not in STATUSES:
            raise RunError(f"unknown status {status!r}")
        if status in ACTIVE_STATUSES and not _alive(state):
            status = "interrupted" if status == "running" else "cancelled"
        if metrics:
            _check_weights(path / "weights.npz")
        config = TrainConfig.from_dict(_field(meta, "config.json", "config", dict))
        return RunInfo(path.name, path, status, config, _field(meta, "config.json", "created", float),
                       _field(state, "status.json", "ended", float, optional=True),
                       _field(state, "status.json", "message", str, optional=True) or "",
                       metrics, _field(meta, "config.json", "sweep", str, optional=True))

    def load_weights(self, run_id: str) -> tuple[np.ndarray, np.ndarray]:
        """W (784x10) and b (10) of a run's last finished epoch."""
        path = self.path(run_id) / "weights.npz"
        if not path.is_file():
            raise RunError(f"run {run_id} has no weights yet (no finished epoch)")
        return _check_weights(path)

    def load_evolution(self, run_id: str) -> np.ndarray:
        """W after each finished epoch, shape (epochs, 784, 10), float32."""
        path = self.path(run_id) / "evolution.npz"
        if not path.is_file():
            raise RunError(f"run {run_id} has no weight history")
        try:
            with np.load(path, allow_pickle=False) as npz:
                stack = npz["W"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise RunError(f"{path.name} cannot be loaded safely ({exc})") from None
        if stack.ndim != 3 or stack.shape[1:] != (PIXELS, CLASSES):
            raise RunError(f"{path}: W history has shape {stack.shape}")
        return stack.astype(np.float32)

    def delete(self, run_id: str) -> None:
        """Remove a run's folder; a run folder that is a symlink loses the link, never its target."""
        path = self.path(run_id)
        if path.is_symlink():
            path.unlink()
        else:
            shutil.rmtree(path)

    def metrics_csv(self, run_id: str) -> str:
        """The per-epoch metrics of a run as CSV text (step losses left out)."""
        out = io.StringIO()
        writer = csv.DictWriter(out, CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(self.get(run_id).metrics)
        return out.getvalue()

    def weights_npz(self, run_id: str) -> bytes:
        """The raw ``weights.npz`` of a run, for download, after checking it."""
        self.load_weights(run_id)
        return (self.path(run_id) / "weights.npz").read_bytes()


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunError(f"{path.name} is not valid JSON ({exc})") from None
    except FileNotFoundError:
        raise RunError(f"{path.name} is missing") from None
    if not isinstance(value, dict):
        raise RunError(f"{path.name} does not hold an object")
    return value


def _field(values: dict, source: str, key: str, kind: type, optional: bool = False) -> Any:
    """``values[key]`` if it has the JSON type ``kind`` (float accepts int); None if optional and absent."""
    value = values.get(key)
    if value is None and optional:
        return None
    kinds = (int, float) if kind is float else kind
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise RunError(f"{source}: {key!r} is {value!r}, expected {kind.__name__}")
    return value


def _read_metrics(path: Path) -> list[dict]:
    """Per-epoch lines; a torn last line (a crash mid-write) is dropped, a torn middle one is not."""
    if not path.is_file():
        return []
    lines = path.read_text().splitlines()
    rows = []
    for i, line in enumerate(lines):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise RunError(f"metrics.jsonl line {i + 1} is not valid JSON") from None
        if not isinstance(row, dict):
            raise RunError(f"metrics.jsonl line {i + 1} is not an object")
        for key in CSV_COLUMNS:
            _field(row, f"metrics.jsonl line {i + 1}", key, float)
        rows.append(row)
    return rows


def _check_weights(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise RunError("weights.npz is missing")
    try:
        with np.load(path, allow_pickle=False) as npz:
            W, b = npz["W"], npz["b"]
    except KeyError as exc:
        raise RunError(f"weights.npz lacks {exc}") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise RunError(f"weights.npz cannot be loaded safely ({exc})") from None
    if W.shape != (PIXELS, CLASSES) or b.shape != (CLASSES,):
        raise RunError(f"weights.npz has W {W.shape} and b {b.shape}, expected (784, 10) and (10,)")
    if W.dtype.kind != "f" or b.dtype.kind != "f":
        raise RunError("weights.npz does not hold floating-point arrays")
    return W.astype(np.float32), b.astype(np.float32)


def _alive(state: dict) -> bool:
    """Whether the process that marked a run ``running`` is still that same process."""
    if state.get("host") != socket.gethostname():
        return True
    pid = state.get("pid")
    return isinstance(pid, int) and _process_token(pid) is not None and _process_token(pid) == state.get("proc_start")
