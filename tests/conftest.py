"""Fixtures shared by the whole suite: the real MNIST and one real run once per session, a private
run store per test, tmpfs mounts that are full or read-only."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import pytest
from made_runs import GOOD, completed_sgd_run

from softmax_core.data import FILES, Mnist, load_mnist, locate

PROJECT = Path(__file__).resolve().parents[1]
SHARED_MNIST = PROJECT.parent / "shared" / "data" / "mnist"
"""Where this workplace keeps the four files, beside the checkout; elsewhere the lab's cache serves."""


def _find_mnist() -> None:
    """Point MNIST_DIR (for this process and every server, worker and CLI it starts) at real MNIST.

    As the product looks, plus one place: MNIST_DIR when set, else ../shared/data/mnist when
    present, else the lab's cache, downloading the files once (checksum-verified) when online.
    """
    if os.environ.get("MNIST_DIR"):
        return
    folder = SHARED_MNIST if SHARED_MNIST.is_dir() else locate(None, allow_download=True)
    os.environ["MNIST_DIR"] = str(Path(folder).resolve())


_find_mnist()
SESSION_CACHE = tempfile.mkdtemp(prefix="softmax-lab-test-cache-")
os.environ["SOFTMAX_LAB_CACHE"] = SESSION_CACHE
"""The lab's cache for this session (run summary indexes): tests never write into the user's.
Set after MNIST is found, so a newcomer's MNIST in the cache is still used (through MNIST_DIR)."""
os.environ["SOFTMAX_LAB_XLA_CACHE"] = os.path.join(SESSION_CACHE, "xla")
"""Compiled programs shared by every process the session starts (the product's opt-in cache).

Each worker a test starts (a server's job service, a CLI run) would otherwise compile the same
programs again, about 8 CPU seconds per worker; with the cache, only the first compiles them.
Tests of the cache itself name folders of their own."""


def pytest_sessionfinish() -> None:
    """The session's cache (indexes, compiled programs: some MB) goes with the session."""
    shutil.rmtree(SESSION_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def mnist() -> Mnist:
    """The real dataset, from MNIST_DIR (or the cache), parsed once for the whole test session."""
    return load_mnist()


@pytest.fixture
def runs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty runs folder that RunStore() and the dashboard use for this test (SOFTMAX_LAB_RUNS)."""
    root = tmp_path / "runs"
    monkeypatch.setenv("SOFTMAX_LAB_RUNS", str(root))
    return root


@pytest.fixture(scope="session")
def mnist_files() -> Path:
    """The folder holding the four real MNIST files (MNIST_DIR), for tests that copy or serve them."""
    return Path(os.environ["MNIST_DIR"]).resolve()


@pytest.fixture
def mnist_copy(tmp_path: Path, mnist_files: Path) -> Path:
    """The four real gzipped MNIST files, copied into a folder of this test's own to damage."""
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in FILES:
        shutil.copy(mnist_files / name, folder / name)
    return folder


@pytest.fixture(scope="session")
def sgd_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real completed run (SGD, 2 epochs), trained once per session: copy it, never change it."""
    return completed_sgd_run(tmp_path_factory.mktemp("sgd-run"), epochs=2)


@pytest.fixture(scope="session")
def adam_run(tmp_path_factory: pytest.TempPathFactory, mnist: Mnist) -> Path:
    """One real completed run of the default settings for 2 epochs, once per session: copy it, never change it."""
    from softmax_core.config import TrainConfig
    from softmax_core.record import record_run
    from softmax_core.runs import RunStore

    store = RunStore(tmp_path_factory.mktemp("adam-run"))
    run_id, status, message = record_run(store, TrainConfig(epochs=2), mnist)
    assert status == "completed", message
    return store.path(run_id)


@pytest.fixture(scope="session")
def default_training(mnist: Mnist):
    """train() with the lab's default settings (20 epochs of Adam) on real MNIST, once per session."""
    from softmax_core.config import TrainConfig
    from softmax_core.train import train

    return train(TrainConfig(), mnist)


@pytest.fixture
def mount_tmpfs(tmp_path: Path) -> Iterator[Callable[[str, str], Path]]:
    """Mount a tmpfs at tmp_path/name with the given options (root only: skips elsewhere); unmounted after."""
    mounted: list[Path] = []

    def mount(name: str, options: str) -> Path:
        point = tmp_path / name
        point.mkdir()
        if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
                          capture_output=True).returncode:
            pytest.skip("mounting a tmpfs needs root")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", str(point)], check=True)


@pytest.fixture
def read_only_mount(mount_tmpfs) -> Path:
    """An empty tmpfs mounted read-only."""
    return mount_tmpfs("ro", "ro,size=4m")


@pytest.fixture
def read_only_store(read_only_mount: Path, sgd_run: Path) -> Path:
    """A read-only runs folder holding one completed run, GOOD."""
    subprocess.run(["mount", "-o", "remount,rw", str(read_only_mount)], check=True)
    shutil.copytree(sgd_run, read_only_mount / GOOD)
    subprocess.run(["mount", "-o", "remount,ro", str(read_only_mount)], check=True)
    return read_only_mount


@pytest.fixture
def full_disk(mount_tmpfs) -> Path:
    """A 64 KiB tmpfs filled to the last byte, with an empty runs folder made before it filled."""
    point = mount_tmpfs("full", "size=64k")
    (point / "runs").mkdir()
    fd = os.open(point / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, bytes(4096)):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    return point


@pytest.fixture(autouse=True)
def no_jobs_left_behind():
    """Stop whatever a test left queued or training in this process's job service (shared by all tests)."""
    yield
    from softmax_core import jobs

    if jobs._shared is not None:
        for snap in jobs._shared.active():
            jobs._shared.stop(snap.run_id)
        for snap in jobs._shared.active():
            jobs._shared.wait(snap.run_id, 60)
