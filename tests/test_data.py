"""Real MNIST: the known facts of the canonical files, the search order, and a verified download;
damaged, missing or unreachable files give one clear message (docs/faults.md's data rows).

Faults work on copies of the real MNIST files in a temporary folder; nothing touches the network
(an unreachable mirror is a closed port on 127.0.0.1, a broken one a local server).
"""

from __future__ import annotations

import functools
import gzip
import http.server
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from made_runs import flip_byte

from softmax_core import data
from softmax_core.data import FILES, DataError, load_mnist, locate

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_split_shapes_and_ranges(mnist):
    shapes = {name: mnist.split_pixels(name)[0].shape for name in ("train", "validation", "test")}
    assert shapes == {"train": (55_000, 784), "validation": (5_000, 784), "test": (10_000, 784)}
    for name in ("train", "validation", "test"):
        x, y = mnist.split(name)
        assert x.dtype == np.float32 and x.min() == 0.0 and x.max() == 1.0 and len(y) == len(x)
    np.testing.assert_allclose(mnist.images("test", 7), mnist.test_pixels[7] / 255, rtol=1e-6)


def test_pixels_are_stored_once_as_uint8(mnist):
    assert mnist.pixels.dtype == mnist.test_pixels.dtype == np.uint8
    assert mnist.pixels.nbytes + mnist.test_pixels.nbytes == 70_000 * 784  # 55 MB; float32 would be 220 MB


def test_known_facts_of_the_canonical_files(mnist):
    all_train_y = np.concatenate([mnist.train_y, mnist.validation_y])
    assert np.bincount(all_train_y).tolist() == TRAIN_COUNTS
    assert np.bincount(mnist.test_y).tolist() == TEST_COUNTS
    assert mnist.train_y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert mnist.pixels.mean() == pytest.approx(33.318, abs=1e-3)


def test_train_and_validation_are_views_not_copies(mnist):
    for name in ("train", "validation"):
        assert np.shares_memory(mnist.pixels, mnist.split_pixels(name)[0])


def test_loaded_once_per_process():
    assert load_mnist() is load_mnist()


def test_explicit_folder_beats_mnist_dir(tmp_path, monkeypatch, mnist_files):
    monkeypatch.setenv("MNIST_DIR", str(tmp_path / "nowhere"))
    assert locate(mnist_files) == mnist_files


def test_mnist_dir_taken_at_its_word(tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_DIR", str(tmp_path))
    with pytest.raises(DataError, match="MNIST_DIR: .* lacks train-images-idx3-ubyte.gz"):
        locate()


def test_cache_is_used_when_nothing_is_set(tmp_path, monkeypatch, mnist_files):
    cache = tmp_path / "cache"
    shutil.copytree(mnist_files, cache / "mnist")
    monkeypatch.delenv("MNIST_DIR")
    monkeypatch.setenv("SOFTMAX_LAB_CACHE", str(cache))
    assert locate(allow_download=False) == cache / "mnist"


def test_not_found_offline_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.delenv("MNIST_DIR")
    monkeypatch.setenv("SOFTMAX_LAB_CACHE", str(tmp_path))
    with pytest.raises(DataError) as info:
        locate(allow_download=False)
    assert "MNIST_DIR unset" in str(info.value) and str(tmp_path) in str(info.value)


@pytest.fixture
def serve():
    """Start local HTTP mirrors: ``serve(folder, handler)`` gives the URL of one; all stop after the test."""
    servers = []

    def start(folder: Path, handler: type | None = None) -> str:
        handler = functools.partial(handler or QuietHandler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def mirror(tmp_path, mnist_files, serve):
    """A local HTTP mirror: one folder with a corrupted train-labels file, one with the real files."""
    root = tmp_path / "www"
    shutil.copytree(mnist_files, root / "good")
    shutil.copytree(mnist_files, root / "bad")
    (root / "bad" / "train-labels-idx1-ubyte.gz").write_bytes(b"not mnist")
    return serve(root).rstrip("/")


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_download_verifies_checksums_and_falls_back_to_the_next_mirror(tmp_path, mirror):
    seen = []
    target = tmp_path / "cache"
    data.download(target, lambda name, done, total: seen.append((name, done, total)),
                  mirrors=(f"{mirror}/bad/", f"{mirror}/good/"))
    data.verify_folder(target)
    assert sorted(p.name for p in target.iterdir()) == sorted(FILES)
    assert {name for name, _, _ in seen} == set(FILES)
    for name in FILES:  # progress rises to each file's full size, which the mirror announced
        reports = [(done, total) for seen_name, done, total in seen if seen_name == name]
        size = (target / name).stat().st_size
        assert [done for done, _ in reports] == sorted(done for done, _ in reports)
        assert reports[-1] == (size, size)


def test_download_refuses_a_mirror_with_wrong_files(tmp_path, mirror):
    with pytest.raises(DataError, match="could not download train-labels-idx1-ubyte.gz"):
        data.download(tmp_path / "cache", mirrors=(f"{mirror}/bad/",))
    assert not (tmp_path / "cache" / "train-labels-idx1-ubyte.gz").exists()
    assert not list((tmp_path / "cache").glob("*.part"))


# --- damaged, missing or unreachable data --------------------------------------------------------

UNREACHABLE = ("http://127.0.0.1:9/",)
"""The discard port: nothing listens there, so a download fails at once, offline."""


@pytest.fixture
def empty_cache(tmp_path, monkeypatch) -> Path:
    """No data directory, no MNIST_DIR, and an empty cache folder of this test's own."""
    monkeypatch.delenv("MNIST_DIR", raising=False)
    monkeypatch.setenv("SOFTMAX_LAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "mnist"


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGE = {"truncated": truncate, "flipped byte": flip_byte, "missing": Path.unlink}


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("name", ["train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"])
def test_damaged_file_is_named_with_the_fix(mnist_copy, name, damage):
    DAMAGE[damage](mnist_copy / name)
    with pytest.raises(DataError) as info:
        load_mnist(mnist_copy, allow_download=False)
    message = str(info.value)
    assert name in message and "MNIST_DIR" in message
    assert len(message.splitlines()) == 1


@pytest.mark.parametrize("damage", ["truncated", "flipped byte"])
def test_damaged_unzipped_file_is_caught_by_its_checksum(mnist_copy, damage):
    """A folder of unzipped IDX files: a flipped pixel keeps the byte count, only a checksum sees it."""
    for name in FILES:
        raw = mnist_copy / name.removesuffix(".gz")
        raw.write_bytes(gzip.decompress((mnist_copy / name).read_bytes()))
        (mnist_copy / name).unlink()
    target = mnist_copy / "train-images-idx3-ubyte"
    DAMAGE[damage](target)
    with pytest.raises(DataError, match="train-images-idx3-ubyte does not match the SHA-256"):
        load_mnist(mnist_copy, allow_download=False)


def test_mnist_dir_pointing_at_a_file_says_so(tmp_path, monkeypatch):
    (tmp_path / "mnist.zip").write_bytes(b"PK")
    monkeypatch.setenv("MNIST_DIR", str(tmp_path / "mnist.zip"))
    with pytest.raises(DataError, match=r"MNIST_DIR: .*mnist.zip is not a folder\. Set MNIST_DIR"):
        locate(allow_download=False)


def test_damaged_data_writes_nothing(mnist_copy, empty_cache, monkeypatch):
    """A broken MNIST_DIR is an error, not a reason to download into the cache or touch the files."""
    flip_byte(mnist_copy / "train-labels-idx1-ubyte.gz")
    before = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in mnist_copy.iterdir())
    monkeypatch.setenv("MNIST_DIR", str(mnist_copy))
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz"):
        load_mnist(mirrors=UNREACHABLE)
    assert sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in mnist_copy.iterdir()) == before
    assert not empty_cache.exists()


def test_damaged_cache_file_says_delete_and_fetch_again(mnist_copy, empty_cache):
    shutil.copytree(mnist_copy, empty_cache)
    truncate(empty_cache / "t10k-images-idx3-ubyte.gz")
    with pytest.raises(DataError) as info:
        locate(allow_download=False)
    assert str(empty_cache / "t10k-images-idx3-ubyte.gz") in str(info.value)
    assert "Delete it and fetch it again" in str(info.value)


def test_no_data_offline_says_where_it_looked(empty_cache):
    with pytest.raises(DataError) as info:
        load_mnist(allow_download=False)
    message = str(info.value)
    assert "no data directory given" in message and "MNIST_DIR unset" in message
    assert str(empty_cache) in message and "Set MNIST_DIR to a folder" in message


def test_no_data_and_mirrors_unreachable_says_where_it_looked(empty_cache):
    with pytest.raises(DataError) as info:
        load_mnist(mirrors=UNREACHABLE)
    message = str(info.value)
    assert "MNIST_DIR unset" in message and str(empty_cache) in message
    assert "download failed" in message and "127.0.0.1:9" in message and "Set MNIST_DIR" in message
    assert not list(empty_cache.glob("*.part")) and not list(empty_cache.glob("*.gz"))


class CutShortHandler(QuietHandler):
    """Promises the whole file, sends half of it, and hangs up: a connection lost mid-download."""

    def do_GET(self) -> None:
        body = Path(self.translate_path(self.path)).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        self.close_connection = True


def test_download_cut_short_leaves_no_part_file_and_falls_back(tmp_path, mnist_copy, serve):
    cut, good = serve(mnist_copy, CutShortHandler), serve(mnist_copy)
    target = tmp_path / "cache"
    with pytest.raises(DataError, match="could not download train-images-idx3-ubyte.gz"):
        data.download(target, mirrors=(cut,))
    assert list(target.iterdir()) == []
    data.download(target, mirrors=(cut, good))
    data.verify_folder(target)
    assert sorted(p.name for p in target.iterdir()) == sorted(FILES)
