"""Find, download, verify and parse the real MNIST IDX files.

The lab never trains on a stand-in: data comes from an explicit folder, ``MNIST_DIR``,
the local cache, or a checksum-verified download from the canonical mirrors, in that order.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import shutil
import struct
import tempfile
import threading
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

FILES: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
RAW_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte.gz": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte.gz": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte.gz": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
"""SHA-256 of each file unzipped, for folders that hold the IDX files without ``.gz``."""
MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
TRAIN_SIZE, VALIDATION_SIZE, TEST_SIZE = 55_000, 5_000, 10_000
IMAGE_SIDE = 28
PIXELS = IMAGE_SIDE * IMAGE_SIDE
CLASSES = 10
_IMAGE_MAGIC, _LABEL_MAGIC = 0x00000803, 0x00000801
FIX_HINT = "Set MNIST_DIR to a folder holding the four MNIST files (train-images-idx3-ubyte.gz, …)."

Progress = Callable[[str, int, int], None]
"""Download progress callback: (file name, bytes so far, total bytes or 0)."""


class DataError(Exception):
    """MNIST could not be found, fetched or trusted; the message says what to do."""


@dataclass(frozen=True, eq=False)
class Mnist:
    """The tutorial's split: 55k train, 5k validation (the last of the 60k), 10k test.

    Pixels are stored once, as uint8 rows of 784: ``pixels`` holds train then validation (the
    training split is a 43 MB view of it, float32 would take 172 MB), ``test_pixels`` the test
    split. ``images`` gives float32 in [0, 1] for the rows a caller needs. Labels are int32 0..9.
    """

    pixels: np.ndarray
    labels: np.ndarray
    test_pixels: np.ndarray
    test_y: np.ndarray
    train_size: int
    source: Path
    cache: dict = field(default_factory=dict, repr=False)

    @property
    def train_y(self) -> np.ndarray:
        return self.labels[:self.train_size]

    @property
    def validation_y(self) -> np.ndarray:
        return self.labels[self.train_size:]

    def split_pixels(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """uint8 pixels (views, no copy) and labels of ``train``, ``validation`` or ``test``."""
        if name == "train":
            return self.pixels[:self.train_size], self.train_y
        if name == "validation":
            return self.pixels[self.train_size:], self.validation_y
        if name == "test":
            return self.test_pixels, self.test_y
        raise ValueError(f"unknown split {name!r}")

    def images(self, name: str, rows: int | slice | np.ndarray | list[int] = slice(None)) -> np.ndarray:
        """Selected rows of a split as float32 in [0, 1]: shape (784,) for one int, else (k, 784)."""
        return scaled(self.split_pixels(name)[0][rows])

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Images (float32 in [0, 1], a fresh copy) and labels of ``train``, ``validation`` or ``test``."""
        return self.images(name), self.split_pixels(name)[1]

    def head(self, train: int, validation: int, test: int) -> "Mnist":
        """The first rows of each split, as a new Mnist: real digits for quick tests and smoke runs."""
        pixels = np.concatenate([self.pixels[:train], self.pixels[self.train_size:self.train_size + validation]])
        labels = np.concatenate([self.train_y[:train], self.validation_y[:validation]])
        return Mnist(aligned_copy(pixels), labels, aligned_copy(self.test_pixels[:test]), self.test_y[:test].copy(),
                     min(train, self.train_size), self.source)


def cache_root() -> Path:
    """The lab's own cache folder: $SOFTMAX_LAB_CACHE, else softmax-lab in the XDG cache."""
    if os.environ.get("SOFTMAX_LAB_CACHE"):
        return Path(os.environ["SOFTMAX_LAB_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "softmax-lab"


def cache_dir() -> Path:
    """Where downloaded MNIST files are kept."""
    return cache_root() / "mnist"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _file_in(folder: Path, name: str) -> Path | None:
    """The gzipped file, or its unzipped twin (``name`` without ``.gz``)."""
    for candidate in (folder / name, folder / name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def missing_files(folder: Path) -> list[str]:
    return [name for name in FILES if _file_in(folder, name) is None]


def verify_folder(folder: Path) -> None:
    """Raise DataError naming the first missing, unreadable or altered file in ``folder``."""
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder. {FIX_HINT}")
    missing = missing_files(folder)
    if missing:
        raise DataError(f"{folder} lacks {', '.join(missing)}. {FIX_HINT}")
    for name in FILES:
        path = _file_in(folder, name)
        assert path is not None
        expected = FILES[name] if path.suffix == ".gz" else RAW_SHA256[name]
        try:
            found = sha256(path)
        except OSError as exc:
            raise DataError(f"{path} cannot be read ({exc.strerror or exc}). {FIX_HINT}") from None
        if found != expected:
            raise DataError(
                f"{path} does not match the SHA-256 of the canonical MNIST file "
                f"(corrupt or truncated download?). Delete it and fetch it again. {FIX_HINT}"
            )


def read_idx(path: Path, magic: int, dims: int) -> np.ndarray:
    """Parse one IDX file (gzipped or not) into a uint8 array, checking its header."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path} cannot be read ({exc}); it is likely truncated. {FIX_HINT}") from exc
    header = 4 + 4 * dims
    if len(raw) < header:
        raise DataError(f"{path} is too short to be an IDX file. {FIX_HINT}")
    found_magic, *shape = struct.unpack(f">{1 + dims}I", raw[:header])
    if found_magic != magic:
        raise DataError(f"{path} has magic number {found_magic:#010x}, expected {magic:#010x}.")
    expected = int(np.prod(shape)) + header
    if len(raw) != expected:
        raise DataError(f"{path} holds {len(raw)} bytes, its header promises {expected}: truncated.")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def download(folder: Path, progress: Progress | None = None, mirrors: tuple[str, ...] = MIRRORS) -> None:
    """Fetch the missing files into ``folder``, each verified before it is renamed into place."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, expected in FILES.items():
        if _file_in(folder, name) is not None:
            continue
        errors = []
        for mirror in mirrors:
            try:
                _fetch(mirror + name, folder / name, expected, progress)
                break
            except (OSError, ValueError, http.client.HTTPException, DataError) as exc:
                errors.append(f"{mirror}: {exc}")
        else:
            raise DataError(f"could not download {name} ({'; '.join(errors)}). {FIX_HINT}")


def _fetch(url: str, target: Path, expected: str, progress: Progress | None) -> None:
    """Download ``url`` to a ``.part`` file beside ``target``; only a verified file is renamed in."""
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False, suffix=".part") as tmp:
        part = Path(tmp.name)
    try:
        with urllib.request.urlopen(url, timeout=30) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            while chunk := response.read(1 << 16):
                out.write(chunk)
                done += len(chunk)
                if progress:
                    progress(target.name, done, total)
        if sha256(part) != expected:
            raise DataError(f"{url} sent a file whose SHA-256 does not match")
        shutil.move(part, target)
    finally:
        part.unlink(missing_ok=True)


def locate(data_dir: str | os.PathLike | None = None, allow_download: bool = True,
           progress: Progress | None = None, mirrors: tuple[str, ...] = MIRRORS) -> Path:
    """The folder to read MNIST from: explicit dir, then $MNIST_DIR, then cache, then download.

    An explicit folder or $MNIST_DIR is taken at its word: if its files are missing or
    altered, that is an error, not a reason to look elsewhere.
    """
    for chosen, origin in ((data_dir, "the data directory given"), (os.environ.get("MNIST_DIR"), "MNIST_DIR")):
        if chosen:
            folder = Path(chosen).expanduser()
            try:
                verify_folder(folder)
            except DataError as exc:
                raise DataError(f"{origin}: {exc}") from None
            return folder
    cached = cache_dir()
    if not missing_files(cached):
        verify_folder(cached)
        return cached
    if not allow_download:
        raise DataError(
            f"MNIST not found: no data directory given, MNIST_DIR unset, and the cache {cached} "
            f"lacks {', '.join(missing_files(cached))}. {FIX_HINT}"
        )
    try:
        download(cached, progress, mirrors)
    except DataError as exc:
        raise DataError(
            f"MNIST not found: no data directory given, MNIST_DIR unset, cache {cached} empty, "
            f"and the download failed: {exc}"
        ) from None
    verify_folder(cached)
    return cached


def parse_folder(folder: Path) -> Mnist:
    """Read and split the four files of a verified folder."""
    paths = {name: _file_in(folder, name) for name in FILES}
    train_images = read_idx(paths["train-images-idx3-ubyte.gz"], _IMAGE_MAGIC, 3)
    train_labels = read_idx(paths["train-labels-idx1-ubyte.gz"], _LABEL_MAGIC, 1)
    test_images = read_idx(paths["t10k-images-idx3-ubyte.gz"], _IMAGE_MAGIC, 3)
    test_labels = read_idx(paths["t10k-labels-idx1-ubyte.gz"], _LABEL_MAGIC, 1)
    for images, labels, n in ((train_images, train_labels, 60_000), (test_images, test_labels, 10_000)):
        if images.shape != (n, IMAGE_SIDE, IMAGE_SIDE) or labels.shape != (n,):
            raise DataError(f"{folder}: unexpected MNIST shapes {images.shape} / {labels.shape}.")
    return Mnist(
        pixels=aligned_copy(train_images.reshape(-1, PIXELS)), labels=train_labels.astype(np.int32),
        test_pixels=aligned_copy(test_images.reshape(-1, PIXELS)), test_y=test_labels.astype(np.int32),
        train_size=TRAIN_SIZE, source=folder,
    )


def scaled(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels as float32 in [0, 1]."""
    return np.multiply(pixels, np.float32(1.0 / 255.0), dtype=np.float32)


def aligned_copy(array: np.ndarray) -> np.ndarray:
    """A C-contiguous copy on a 64-byte boundary, which TensorFlow can share without copying again."""
    out = aligned_empty(array.shape, array.dtype)
    out[...] = array
    return out


def aligned_empty(shape: tuple[int, ...], dtype: type, align: int = 64) -> np.ndarray:
    """An uninitialised array whose data starts on an ``align``-byte boundary."""
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    raw = np.empty(size + align, np.uint8)
    offset = (-raw.ctypes.data) % align
    return raw[offset:offset + size].view(dtype).reshape(shape)


_loaded: dict[Path, Mnist] = {}
_lock = threading.Lock()


def load_mnist(data_dir: str | os.PathLike | None = None, allow_download: bool = True,
               progress: Progress | None = None, mirrors: tuple[str, ...] = MIRRORS) -> Mnist:
    """MNIST as the tutorial splits it, parsed once per process and folder."""
    with _lock:
        folder = locate(data_dir, allow_download, progress, mirrors).resolve()
        if folder not in _loaded:
            _loaded[folder] = parse_folder(folder)
        return _loaded[folder]
