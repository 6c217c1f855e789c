"""Run summaries kept on disk between processes, so a restarted server lists a thousand runs
without reading a thousand runs' files again.

One JSON file per runs folder, in the lab's cache folder (private to the user, never in the runs
folder, whose files may come from anyone). It holds, for each run that has ended, the signature
of its files (inode, size, times, mode) and the summary read from them. The store uses an entry
only while every signature still matches, so a changed, replaced or removed file is read again
as before; an index that cannot be read or parsed is ignored and written anew, and one that
cannot be written (read-only or full disk) only costs the next start its speed.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from . import safe_read
from .data import cache_root
from .safe_read import FileRefused

VERSION = 1
LIMIT = 256 << 20
"""A summary of a 20-epoch run is about 4 kB: room for some 60,000 runs."""

Entries = dict[str, tuple[tuple, dict[str, Any]]]
"""Run id -> (signature of its files, its summary as plain JSON values)."""


def index_path(root: Path) -> Path:
    """The index of the runs folder ``root``, named by a hash of its resolved path."""
    key = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:24]
    return cache_root() / "run-summaries" / f"{key}.json"


def load(root: Path) -> Entries:
    """The entries saved for ``root``; empty when there is no index or it is not one we wrote."""
    try:
        raw = safe_read.read_bytes(index_path(root), LIMIT)
        saved = json.loads(raw, parse_constant=_refuse)  # NaN and Infinity are not JSON
        if saved.get("version") != VERSION or saved.get("root") != str(root.resolve()):
            return {}
        return {run_id: (_signature(signature), summary) for run_id, (signature, summary) in saved["runs"].items()}
    except (OSError, FileRefused, ValueError, TypeError, AttributeError, KeyError):
        return {}


def save(root: Path, entries: Entries) -> bool:
    """Write ``entries`` as the index of ``root`` (atomically); False if the cache cannot take it."""
    target = index_path(root)
    body = {"version": VERSION, "root": str(root.resolve()),
            "runs": {run_id: [signature, summary] for run_id, (signature, summary) in entries.items()}}
    try:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=".index-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(body, handle, allow_nan=False, separators=(",", ":"))
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except (OSError, ValueError):
        return False
    return True


def _refuse(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")


def _signature(value: list) -> tuple:
    """A signature back from JSON lists to the tuples the store compares."""
    return tuple(tuple(item) if item is not None else None for item in value)
