"""Fault matrix, run rows: divergence, Stop, SIGKILL, hand-corrupted run folders, hostile run ids.

Runs are real: trained on the real MNIST by the job service's worker (or the CLI in a subprocess) into a
temporary run store, then stopped, killed or damaged by hand.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from softmax_core.config import TrainConfig
from softmax_core.data import load_mnist
from softmax_core.jobs import JobSnapshot, shared_service
from softmax_core.runs import RunError, RunStore
from softmax_core.train import DIVERGED_LOSS, evaluate

WAIT = 180.0
"""Seconds to wait for a background run to reach a state: a deadline against hangs, not a timing check."""


@pytest.fixture(scope="module")
def data():
    return load_mnist(allow_download=False)


def finish(run_id: str) -> JobSnapshot:
    """Wait for a job of the lab's job service (a real worker process) to end."""
    snap = shared_service().wait(run_id, WAIT)
    assert snap.done, "the training job did not end"
    return snap


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def saved_epoch(store: RunStore, run_id: str) -> int:
    with np.load(store.path(run_id) / "weights.npz", allow_pickle=False) as npz:
        return int(npz["epoch"])


def assert_weights_are_those_of_the_last_epoch(store: RunStore, run_id: str, data) -> None:
    """The saved W, b reproduce the last recorded epoch's test metrics exactly: no epoch lost or mixed."""
    run = store.get(run_id)
    W, b = store.load_weights(run_id)
    assert saved_epoch(store, run_id) == run.epochs_completed
    measured = evaluate(W, b, data)
    assert measured["test_accuracy"] == run.final["test_accuracy"]
    assert measured["test_loss"] == pytest.approx(run.final["test_loss"], rel=1e-6)
    assert store.load_evolution(run_id).shape == (run.epochs_completed, 784, 10)


# --- a learning rate that diverges -------------------------------------------------------------

def test_lr_1e4_diverges_in_epoch_1_with_a_message_and_no_weights(tmp_path, data):
    store = RunStore(tmp_path)
    config = TrainConfig(learning_rate=1e4, optimizer="sgd", schedule="constant", epochs=3)
    job = snap = finish(shared_service().submit(store, config))
    assert snap.status == "diverged" and snap.history == []
    run = store.get(job.run_id)
    assert run.status == "diverged" and run.epochs_completed == 0 and run.final == {}
    assert "in epoch 1" in run.message and "learning rate 10000 is too large for sgd" in run.message
    with pytest.raises(RunError, match="no weights yet"):
        store.load_weights(job.run_id)


def test_late_divergence_keeps_every_finite_epoch_and_its_weights(tmp_path, data):
    """lr 700 (sgd, batch 1000, seed 1) trains a few finite epochs, then blows up (epoch 5 here)."""
    store = RunStore(tmp_path)
    config = TrainConfig(learning_rate=700, optimizer="sgd", schedule="constant", batch_size=1000, seed=1, epochs=12,
                         l2=0.0)
    job = finish(shared_service().submit(store, config))
    run = store.get(job.run_id)
    assert run.status == "diverged"
    kept = run.epochs_completed
    assert 1 <= kept < config.epochs, "this setting should diverge after at least one finite epoch"
    assert [m["epoch"] for m in run.metrics] == list(range(1, kept + 1))
    assert all(math.isfinite(m["train_loss"]) and m["train_loss"] <= DIVERGED_LOSS for m in run.metrics)
    assert f"in epoch {kept + 1}" in run.message and f"Kept the weights of epoch {kept}" in run.message
    assert_weights_are_those_of_the_last_epoch(store, job.run_id, data)
    assert np.isfinite(store.load_weights(job.run_id)[0]).all()


# --- Stop pressed mid-run ----------------------------------------------------------------------

def test_stop_mid_run_saves_a_stopped_run_with_every_finished_epoch(tmp_path, data):
    store = RunStore(tmp_path)
    config = TrainConfig(learning_rate=0.1, optimizer="sgd", schedule="constant", epochs=200)
    service = shared_service()
    run_id = service.submit(store, config)
    wait_for(lambda: len(service.snapshot(run_id).history) >= 2, "two finished epochs")
    service.stop(run_id)
    job = snap = finish(run_id)
    assert snap.status == "stopped" and "stopped by request" in snap.message
    run = store.get(job.run_id)
    assert run.status == "stopped" and run.epochs_completed == len(snap.history) >= 2
    assert run.epochs_completed < config.epochs
    assert [m["epoch"] for m in run.metrics] == [h.epoch for h in snap.history]
    assert_weights_are_those_of_the_last_epoch(store, job.run_id, data)


# --- the process killed mid-run ----------------------------------------------------------------

@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, data) -> Path:
    """A real completed run (2 epochs), to copy into stores and damage."""
    store = RunStore(tmp_path_factory.mktemp("trained"))
    config = TrainConfig(learning_rate=0.5, optimizer="sgd", schedule="constant", batch_size=1000, epochs=2)
    job = finish(shared_service().submit(store, config))
    assert job.status == "completed"
    return store.path(job.run_id)


def copy_run(run: Path, root: Path, run_id: str) -> Path:
    return Path(shutil.copytree(run, root / run_id))


def fingerprint(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def process_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_sigkill_mid_run_lists_as_interrupted_and_spares_other_runs(tmp_path, trained_run, data):
    root = tmp_path / "runs"
    copy_run(trained_run, root, "20000101-000000-aaaaaa")
    copy_run(trained_run, root, "20000101-000000-bbbbbb")
    before = fingerprint(root)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "softmax_core", "--runs-dir", str(root), "train", "--epochs", "500",
         "--optimizer", "sgd", "--learning-rate", "0.1", "--schedule", "constant"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        def new_run_has_two_epochs() -> bool:
            new = [p for p in root.iterdir() if not p.name.startswith("2000")]
            return bool(new) and (new[0] / "metrics.jsonl").is_file() and \
                len((new[0] / "metrics.jsonl").read_text().splitlines()) >= 2
        wait_for(new_run_has_two_epochs, "the CLI run to finish two epochs")
        store = RunStore(root)
        [killed_id] = [i for i in store.run_ids() if not i.startswith("2000")]
        assert store.get(killed_id).status == "running"
        os.kill(proc.pid, signal.SIGKILL)
        wait_for(lambda: process_state(proc.pid) == "Z", "the killed process to become a zombie")
        assert store.get(killed_id).status == "interrupted", "a killed but unreaped process is dead"
    finally:
        proc.kill()
        proc.wait()

    runs = {r.run_id: r for r in RunStore(root).all_runs()}  # as a restarted server sees them
    killed = runs.pop(killed_id)
    assert killed.status == "interrupted" and killed.error == ""
    assert killed.epochs_completed >= 2
    assert [m["epoch"] for m in killed.metrics] == list(range(1, killed.epochs_completed + 1))
    W, b = store.load_weights(killed_id)
    # weights are written just before their metrics line, so a kill between the two leaves them one epoch ahead
    assert saved_epoch(store, killed_id) in (killed.epochs_completed, killed.epochs_completed + 1)
    assert evaluate(W, b, data)["test_accuracy"] > 0.85
    assert {r.status for r in runs.values()} == {"completed"} and len(runs) == 2
    assert fingerprint(root) == {**before, **{k: v for k, v in fingerprint(root).items() if k.startswith(killed_id)}}


# --- run folders corrupted by hand -------------------------------------------------------------

class Marker:
    """Unpickling this creates a file: proof that a pickle was loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


def write_json(path: Path, value) -> None:
    path.write_text(json.dumps(value))


def edit_json(path: Path, **changes) -> None:
    write_json(path, {**json.loads(path.read_text()), **changes})


def edit_metrics(run: Path, change) -> None:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(change(row)) for row in rows) + "\n")


def npz_with_object_array(path: Path, marker: Path) -> None:
    path.unlink()
    np.savez(path, W=np.array([Marker(marker)], dtype=object), b=np.zeros(10, np.float32))


def pickle_posing_as_npz(path: Path, marker: Path) -> None:
    import pickle
    path.write_bytes(pickle.dumps({"W": Marker(marker)}))


CORRUPTIONS = {
    "config.json not JSON": (lambda run, m: (run / "config.json").write_text("{oops"), "config.json is not valid JSON"),
    "status.json not JSON": (lambda run, m: (run / "status.json").write_bytes(b"\x00\xff"), "status.json"),
    "config.json missing": (lambda run, m: (run / "config.json").unlink(), "config.json is missing"),
    "config.json a list": (lambda run, m: write_json(run / "config.json", [1]), "does not hold an object"),
    "config out of range": (lambda run, m: edit_json(run / "config.json", config={"batch_size": 0}), "batch_size"),
    "created not a number": (lambda run, m: edit_json(run / "config.json", created="yesterday"), "'created'"),
    "unknown status": (lambda run, m: edit_json(run / "status.json", status="exploded"), "unknown status"),
    "message not text": (lambda run, m: edit_json(run / "status.json", message=["x"]), "'message'"),
    "metrics torn mid-file": (lambda run, m: (run / "metrics.jsonl").write_text('{"epo\n{}\n'), "line 1 is not valid"),
    "metrics row a list": (lambda run, m: edit_metrics(run, lambda row: [row]), "line 1 is not an object"),
    "metrics row lacks a value": (lambda run, m: edit_metrics(run, lambda row: {k: v for k, v in row.items()
                                                                               if k != "test_accuracy"}),
                                  "'test_accuracy'"),
    "weights missing": (lambda run, m: (run / "weights.npz").unlink(), "weights.npz is missing"),
    "weights truncated": (lambda run, m: (run / "weights.npz").write_bytes((run / "weights.npz").read_bytes()[:5000]),
                          "weights.npz cannot be loaded safely"),
    "weights empty": (lambda run, m: (run / "weights.npz").write_bytes(b""), "weights.npz cannot be loaded safely"),
    "weights wrong shape": (lambda run, m: np.savez(run / "weights.npz", W=np.zeros((10, 784), np.float32),
                                                    b=np.zeros(10, np.float32)), "expected (784, 10)"),
    "weights not floats": (lambda run, m: np.savez(run / "weights.npz", W=np.zeros((784, 10), "U1"),
                                                   b=np.zeros(10, np.float32)), "floating-point"),
    "object array pickled in the npz": (lambda run, m: npz_with_object_array(run / "weights.npz", m),
                                        "weights.npz cannot be loaded safely"),
    "a pickle posing as the npz": (lambda run, m: pickle_posing_as_npz(run / "weights.npz", m),
                                   "weights.npz cannot be loaded safely"),
}


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_corrupted_run_is_unreadable_with_the_reason_and_the_rest_work(tmp_path, trained_run, corruption):
    damage, reason = CORRUPTIONS[corruption]
    root, marker = tmp_path / "runs", tmp_path / "PICKLE-WAS-LOADED"
    intact = copy_run(trained_run, root, "20000101-000000-aaaaaa").name
    broken = copy_run(trained_run, root, "20000101-000000-bbbbbb")
    damage(broken, marker)
    store = RunStore(root)
    runs = {r.run_id: r for r in store.all_runs()}
    assert runs[broken.name].status == "unreadable" and reason in runs[broken.name].error
    assert runs[intact].status == "completed" and runs[intact].epochs_completed == 2
    for run in runs.values():  # what the runs page and `runs` CLI read of every run
        run.final, run.duration, run.epochs_completed, run.config, run.message
    assert store.metrics_csv(intact).count("\n") == 3 and store.load_weights(intact)[0].shape == (784, 10)
    for read in (store.load_weights, store.load_evolution, store.weights_npz, store.metrics_csv):
        try:
            read(broken.name)
        except RunError:
            pass
    assert not marker.exists(), "a pickle was loaded"


def test_pickled_weight_history_is_refused_without_loading_it(tmp_path, trained_run):
    root, marker = tmp_path / "runs", tmp_path / "PICKLE-WAS-LOADED"
    run = copy_run(trained_run, root, "20000101-000000-aaaaaa")
    npz_with_object_array(run / "evolution.npz", marker)
    store = RunStore(root)
    with pytest.raises(RunError, match="evolution.npz cannot be loaded safely"):
        store.load_evolution(run.name)
    pickle_posing_as_npz(run / "evolution.npz", marker)
    with pytest.raises(RunError, match="evolution.npz cannot be loaded safely"):
        store.load_evolution(run.name)
    assert not marker.exists(), "a pickle was loaded"


def test_run_deleted_while_listing_is_left_out(tmp_path, trained_run):
    """Another session deletes a run between the folder scan and the read: the list still works."""
    root = tmp_path / "runs"
    keep = copy_run(trained_run, root, "20000101-000000-aaaaaa").name
    gone = copy_run(trained_run, root, "20000101-000000-bbbbbb").name

    class RacingStore(RunStore):
        def run_ids(self) -> list[str]:
            ids = super().run_ids()
            shutil.rmtree(self.root / gone)
            return ids

    assert [r.run_id for r in RacingStore(root).all_runs()] == [keep]


def test_deleting_a_symlinked_run_removes_the_link_not_its_target(tmp_path, trained_run):
    root = tmp_path / "runs"
    root.mkdir()
    target = copy_run(trained_run, tmp_path, "kept-elsewhere")
    (root / "20000101-000000-aaaaaa").symlink_to(target, target_is_directory=True)
    before = fingerprint(target)
    store = RunStore(root)
    assert store.get("20000101-000000-aaaaaa").status == "completed"
    store.delete("20000101-000000-aaaaaa")
    assert store.all_runs() == [] and fingerprint(target) == before


# --- run ids from outside ----------------------------------------------------------------------

HOSTILE_IDS = ["../victim", "../victim/", "..", "a/b", "{absolute victim}", "./20000101-000000-aaaaaa",
               "..\\victim", "%2e%2e%2fvictim", "victim\n", "", " victim"]


@pytest.mark.parametrize("run_id", HOSTILE_IDS)
def test_hostile_run_ids_are_refused_and_nothing_outside_is_touched(tmp_path, trained_run, run_id):
    root = tmp_path / "runs"
    root.mkdir()
    victim = copy_run(trained_run, tmp_path, "victim")
    run_id = run_id.replace("{absolute victim}", str(victim))
    before = fingerprint(tmp_path)
    store = RunStore(root)
    for action in (store.get, store.load_weights, store.load_evolution, store.metrics_csv, store.weights_npz,
                   store.delete, store.path):
        with pytest.raises(RunError, match="invalid run id"):
            action(run_id)
    assert victim.is_dir() and fingerprint(tmp_path) == before


def test_a_crash_between_the_metrics_line_and_the_weights_keeps_the_two_in_agreement(tmp_path, trained_run, data):
    """kill -9 after epoch 3's metrics line but before its weights: the run reads as 2 epochs, as its weights."""
    run = copy_run(trained_run, tmp_path, "20260101-000000-abcdef")
    store = RunStore(tmp_path)
    before = store.get(run.name)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    torn = json.loads(lines[-1]) | {"epoch": len(lines) + 1}
    (run / "metrics.jsonl").write_text("\n".join(lines + [json.dumps(torn)]) + "\n")
    after = RunStore(tmp_path).get(run.name)
    assert after.status == before.status and after.epochs_completed == before.epochs_completed
    assert saved_epoch(store, run.name) == after.epochs_completed
    assert_weights_are_those_of_the_last_epoch(store, run.name, data)
