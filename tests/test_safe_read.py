"""The guarded reader (softmax_core/safe_read.py) through RunStore: one hostile file makes its run
unreadable with the reason, and never hangs, inflates a bomb or loads a pickle (docs/faults.md, kind 1).

Every run is a copy of one real run trained on the real MNIST, damaged by hand in a temporary folder.
"""

from __future__ import annotations

import io
import os
import threading
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from made_runs import BROKEN, GOOD, HOSTILE, store_with

from softmax_core.runs import RunError, RunStore

WAIT = 180.0
"""Seconds before a hung read counts as a failure: a deadline, not a timing check."""


def list_with_deadline(store: RunStore) -> dict:
    """store.all_runs() in a thread: a read that blocks (a FIFO) fails the test instead of hanging it."""
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update({r.run_id: r for r in store.all_runs()}), daemon=True)
    worker.start()
    worker.join(WAIT)
    assert not worker.is_alive(), "listing the runs hung"
    return result


@pytest.mark.parametrize("case", HOSTILE)
def test_a_hostile_file_makes_one_run_unreadable_with_the_reason(tmp_path, sgd_run, case):
    damage, reason = HOSTILE[case]
    root = tmp_path / "runs"
    store_with(sgd_run, root)
    damage(root / BROKEN)
    store = RunStore(root)
    runs = list_with_deadline(store)
    assert runs[BROKEN].status == "unreadable" and reason in runs[BROKEN].error, runs[BROKEN].error
    assert str(tmp_path) not in runs[BROKEN].error, "reasons name files, never the server's folders"
    assert runs[GOOD].status == "completed" and runs[GOOD].epochs_completed == 2
    assert store.get(BROKEN).status == "unreadable"
    with pytest.raises(RunError):
        store.metrics_csv(BROKEN)


def test_a_device_node_as_a_run_file_is_refused(tmp_path, sgd_run):
    root = tmp_path / "runs"
    store_with(sgd_run, root)
    (root / BROKEN / "metrics.jsonl").unlink()
    try:
        os.mknod(root / BROKEN / "metrics.jsonl", 0o644 | 0o020000, os.makedev(1, 5))  # /dev/zero's numbers
    except PermissionError:
        pytest.skip("creating a device node needs CAP_MKNOD")
    runs = list_with_deadline(RunStore(root))
    assert runs[BROKEN].status == "unreadable" and "metrics.jsonl is a device" in runs[BROKEN].error


def bomb_npz(path: Path, inflated: int) -> None:
    """weights.npz whose W has a valid (784, 10) float32 header followed by ``inflated`` bytes of zeros."""
    header = (path.parent / "W.tmp")
    with open(header, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": "<f4", "fortran_order": False, "shape": (784, 10)})
    head = header.read_bytes()
    header.unlink()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("W.npy", "w", force_zip64=True) as member:
            member.write(head)
            chunk = bytes(1 << 20)
            for _ in range(inflated >> 20):
                member.write(chunk)
        archive.writestr("b.npy", _npy(np.zeros(10, np.float32)))


def _npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


def test_a_small_npz_that_inflates_to_a_gigabyte_is_refused_before_inflating(tmp_path, sgd_run):
    root = tmp_path / "runs"
    store_with(sgd_run, root)
    bomb_npz(root / BROKEN / "weights.npz", 1 << 30)
    assert (root / BROKEN / "weights.npz").stat().st_size < 2 << 20, "small on disk"
    store = RunStore(root)
    tracemalloc.start()
    try:
        runs = {r.run_id: r for r in store.all_runs()}
        with pytest.raises(RunError, match="claims"):
            store.load_weights(BROKEN)
        with pytest.raises(RunError):
            store.weights_npz(BROKEN)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert runs[BROKEN].status == "unreadable" and "claims" in runs[BROKEN].error
    assert peak < 64 << 20, f"{peak / 2**20:.0f} MiB allocated: the bomb was inflated"


def test_an_evolution_npz_claiming_a_million_epochs_is_refused(tmp_path, sgd_run):
    root = tmp_path / "runs"
    store_with(sgd_run, root)
    path = root / BROKEN / "evolution.npz"
    with zipfile.ZipFile(path, "w") as archive:
        with archive.open("W.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_2_0(member, {"descr": "<f2", "fortran_order": False,
                                                         "shape": (1_000_000, 784, 10)})
    with pytest.raises(RunError, match="claims"):
        RunStore(root).evolution_epochs(BROKEN)
    with pytest.raises(RunError, match="claims"):
        RunStore(root).load_evolution(BROKEN, [0])
