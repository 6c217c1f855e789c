"""Guarded reads of files nobody vouches for: a run folder may hold anything a user or a fault left.

Every read here opens a regular file only (never a symlink, FIFO or device, and never blocking),
refuses files over a size limit, checks JSON for depth and non-finite or oversized numbers, and
checks an ``.npy`` member's shape and dtype from its header before a byte of it is inflated.
"""

from __future__ import annotations

import json
import math
import os
import stat
import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Sequence

import numpy as np

MAX_JSON_DEPTH = 8
"""Deepest nesting a run's JSON needs is 3 (config.json: object, config, value); 8 leaves room."""
MAX_INT_DIGITS = 19
"""Integers longer than this do not fit an int64 and have no place in a run's files."""
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NOCTTY", 0)


class FileRefused(ValueError):
    """A file that is not what it must be; the message names the file, never its folder."""


def open_regular(path: Path, limit: int) -> BinaryIO:
    """``path`` opened for reading if it is a regular file of at most ``limit`` bytes.

    The type is checked before opening (a FIFO would block, a device never ends) and again on
    the open descriptor, so a file swapped in between is caught. FileNotFoundError passes through.
    """
    kind = os.lstat(path).st_mode
    if not stat.S_ISREG(kind):
        raise FileRefused(f"{path.name} is {_describe(kind)}, not a regular file")
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno in (getattr(os, "ELOOP", -1), getattr(os, "EMLINK", -1)):
            raise FileRefused(f"{path.name} is a symbolic link, not a regular file") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileRefused(f"{path.name} is {_describe(info.st_mode)}, not a regular file")
        if info.st_size > limit:
            raise FileRefused(f"{path.name} is {info.st_size:,} bytes; at most {limit:,} are read")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _describe(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a plain file"


def read_bytes(path: Path, limit: int) -> bytes:
    """The whole of a regular file of at most ``limit`` bytes (a file growing meanwhile is cut at it)."""
    with open_regular(path, limit) as handle:
        size = os.fstat(handle.fileno()).st_size  # read(limit) would allocate the whole limit up front
        data = handle.read(size + 1)
        if len(data) > size:
            data += handle.read(limit + 1 - len(data))
    if len(data) > limit:
        raise FileRefused(f"{path.name} grew past {limit:,} bytes while being read")
    return data


def read_text(path: Path, limit: int) -> str:
    try:
        return read_bytes(path, limit).decode("utf-8")
    except UnicodeDecodeError:
        raise FileRefused(f"{path.name} is not UTF-8 text") from None


def _refuse_constant(name: str) -> Any:
    raise FileRefused(f"holds {name}, which is not a JSON number")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise FileRefused(f"holds an integer of {len(text)} digits")
    return int(text)


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_int=_bounded_int)


def parse_json(text: str, source: str) -> Any:
    """JSON whose numbers are finite floats or int64-sized ints, nested at most MAX_JSON_DEPTH deep."""
    try:
        value = _DECODER.decode(text)
    except RecursionError:
        raise FileRefused(f"{source} is nested too deeply") from None
    except FileRefused as exc:
        raise FileRefused(f"{source} {exc}") from None
    except ValueError as exc:
        raise FileRefused(f"{source} is not valid JSON ({exc})") from None
    _check_tree(value, source)
    return value


def _check_tree(value: Any, source: str) -> None:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > MAX_JSON_DEPTH:
                raise FileRefused(f"{source} is nested more than {MAX_JSON_DEPTH} deep")
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
        elif isinstance(item, float) and not math.isfinite(item):
            raise FileRefused(f"{source} holds a number beyond float range")


def read_json_object(path: Path, limit: int) -> dict:
    """A JSON object from a guarded file; FileRefused for anything else."""
    value = parse_json(read_text(path, limit), path.name)
    if not isinstance(value, dict):
        raise FileRefused(f"{path.name} does not hold an object")
    return value


def npy_header(member: BinaryIO, name: str, key: str) -> tuple[tuple[int, ...], np.dtype, bool, int]:
    """(shape, dtype, fortran order, data bytes) from an ``.npy`` header, refusing objects and non-floats."""
    try:
        version = np.lib.format.read_magic(member)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = reader(member)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise FileRefused(f"{name} cannot be loaded safely: {key} has no valid array header ({exc})") from None
    if dtype.hasobject:
        raise FileRefused(f"{name} cannot be loaded safely: {key} holds Python objects (a pickle)")
    if dtype.kind != "f" or dtype.itemsize > 8:
        raise FileRefused(f"{name}: {key} holds {dtype}, not floating-point numbers")
    return shape, dtype, fortran, int(np.prod(shape, dtype=np.int64)) * dtype.itemsize


@contextmanager
def _archive(path: Path, limit: int) -> Iterator[zipfile.ZipFile]:
    """A guarded ``.npz`` as a zip; every zip, zlib or I/O fault becomes FileRefused naming the file."""
    try:
        with open_regular(path, limit) as handle, zipfile.ZipFile(handle) as archive:
            yield archive
    except KeyError as exc:
        raise FileRefused(f"{path.name} lacks {exc}") from None
    except FileNotFoundError:
        raise
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError) as exc:
        raise FileRefused(f"{path.name} cannot be loaded safely ({exc})") from None


def _open_member(archive: zipfile.ZipFile, name: str, key: str,
                 limit: int) -> tuple[BinaryIO, tuple[int, ...], np.dtype, bool, int]:
    """A member opened past its header, once the header's size, the zip's claim and ``limit`` agree."""
    info = archive.getinfo(f"{key}.npy")
    member = archive.open(info)
    shape, dtype, fortran, nbytes = npy_header(member, name, key)
    if info.file_size != member.tell() + nbytes or nbytes > limit:
        member.close()
        raise FileRefused(f"{name}: {key} claims {info.file_size:,} bytes for a {shape} array "
                          f"(at most {limit:,} are read)")
    return member, shape, dtype, fortran, nbytes


def read_npz(path: Path, shapes: dict[str, tuple[int | None, ...]], limit: int,
             rows: Sequence[int] | None = None) -> dict[str, np.ndarray]:
    """The named float arrays of an ``.npz`` as float32, each checked against ``shapes`` (None: any length).

    ``limit`` bounds the file and each array inflated. Nothing is inflated until every header and
    the zip's own sizes agree with the expected shapes, so a small file that inflates to gigabytes
    costs nothing. With ``rows``, only those indices along the first axis are read.
    """
    with _archive(path, limit) as archive:
        return {key: _read_member(archive, path.name, key, shape, rows, limit) for key, shape in shapes.items()}


def npz_shapes(path: Path, keys: Sequence[str], limit: int) -> dict[str, tuple[int, ...]]:
    """The shapes of float arrays of an ``.npz``, from their headers alone (no data inflated)."""
    shapes = {}
    with _archive(path, limit) as archive:
        for key in keys:
            member, shapes[key], *_ = _open_member(archive, path.name, key, limit)
            member.close()
    return shapes


def _read_member(archive: zipfile.ZipFile, name: str, key: str, expected: tuple[int | None, ...],
                 rows: Sequence[int] | None, limit: int) -> np.ndarray:
    member, shape, dtype, fortran, nbytes = _open_member(archive, name, key, limit)
    with member:
        if len(shape) != len(expected) or any(e is not None and e != s for e, s in zip(expected, shape)):
            want = "(" + ", ".join("n" if e is None else str(e) for e in expected) + ")"
            raise FileRefused(f"{name} has {key} of shape {shape}, expected {want}")
        if rows is None:
            return _exact(member, nbytes, name, key, dtype).reshape(shape, order="F" if fortran else "C") \
                .astype(np.float32)
        if fortran:
            raise FileRefused(f"{name}: {key} is not stored row by row")
        row_bytes = nbytes // shape[0] if shape[0] else 0
        start = member.tell()
        picked = []
        for row in rows:
            if not 0 <= row < shape[0]:
                raise FileRefused(f"{name}: {key} has no row {row}")
            member.seek(start + row * row_bytes)
            picked.append(_exact(member, row_bytes, name, key, dtype).reshape(shape[1:]))
        return np.stack(picked).astype(np.float32) if picked else np.zeros((0, *shape[1:]), np.float32)


def _exact(member: BinaryIO, nbytes: int, name: str, key: str, dtype: np.dtype) -> np.ndarray:
    data = member.read(nbytes)
    if len(data) != nbytes:
        raise FileRefused(f"{name}: {key} is truncated")
    return np.frombuffer(data, dtype)
