"""Fixtures shared by the whole suite: the real MNIST once per session, a private run store per test."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

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
