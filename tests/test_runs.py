"""RunStore: a run written epoch by epoch reads back whole; crash leftovers, a killed process, run folders
corrupted by hand and run ids from outside do not break it (docs/faults.md's store rows).

The faults use copies of one real run trained on the real MNIST, damaged by hand in temporary folders.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from made_runs import BROKEN, GOOD, Marker, assert_weights_are_those_of_the_last_epoch, saved_epoch, store_with

from softmax_core import runs as runs_module
from softmax_core.config import TrainConfig
from softmax_core.runs import RunError, RunStore, check_run_id
from softmax_core.train import evaluate

WAIT = 180.0
"""Seconds to wait for a run to reach a state: a deadline against hangs, not a timing check."""


def metrics_row(epoch: int) -> dict:
    return {"epoch": epoch, "train_loss": 1.0 / epoch, "train_accuracy": 0.8, "validation_loss": 1.1,
            "validation_accuracy": 0.79, "test_loss": 1.2, "test_accuracy": 0.78, "learning_rate": 0.1,
            "seconds": 0.5 * epoch, "step_losses": [2.0, 1.0]}


def weights(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(784, 10)).astype(np.float32), rng.normal(size=10).astype(np.float32)


def test_round_trip(tmp_path):
    store = RunStore(tmp_path)
    config = TrainConfig(learning_rate=0.5, optimizer="sgd")
    writer = store.create(config, sweep="sweep-1")
    for epoch in (1, 2):
        writer.record_epoch(metrics_row(epoch), *weights(epoch))
    writer.finish("completed")
    [run] = store.all_runs()
    assert (run.run_id, run.status, run.config, run.sweep) == (writer.run_id, "completed", config, "sweep-1")
    assert run.epochs_completed == 2 and run.final["train_loss"] == 0.5 and "step_losses" not in run.final
    W, b = store.load_weights(run.run_id)
    np.testing.assert_array_equal(W, weights(2)[0])
    np.testing.assert_array_equal(b, weights(2)[1])
    evolution = store.load_evolution(run.run_id)
    assert evolution.shape == (2, 784, 10)
    np.testing.assert_allclose(evolution[0], weights(1)[0], rtol=1e-3, atol=1e-3)
    assert store.metrics_csv(run.run_id).splitlines()[0].startswith("epoch,train_loss")
    assert len(store.metrics_csv(run.run_id).splitlines()) == 3
    store.delete(run.run_id)
    assert store.all_runs() == []


def test_running_run_of_a_dead_process_lists_as_interrupted(tmp_path):
    script = ("import sys; from softmax_core.runs import RunStore; from softmax_core.config import TrainConfig;"
              "w = RunStore(sys.argv[1]).create(TrainConfig()); print(w.run_id)")
    run_id = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert RunStore(tmp_path).get(run_id).status == "interrupted"


def test_running_run_of_this_process_stays_running(tmp_path):
    writer = RunStore(tmp_path).create(TrainConfig())
    assert RunStore(tmp_path).get(writer.run_id).status == "running"


def test_crash_leftovers_torn_metrics_line_and_temp_files(tmp_path):
    store = RunStore(tmp_path)
    writer = store.create(TrainConfig())
    writer.record_epoch(metrics_row(1), *weights(1))
    with open(writer.path / "metrics.jsonl", "a") as handle:
        handle.write('{"epoch": 2, "train_lo')  # killed mid-write
    (writer.path / ".weights.npz.abc.tmp").write_bytes(b"half a file")
    run = store.get(writer.run_id)
    assert run.epochs_completed == 1 and run.error == ""
    np.testing.assert_array_equal(store.load_weights(run.run_id)[0], weights(1)[0])


def test_new_ids_are_unique_and_valid(tmp_path):
    store = RunStore(tmp_path)
    ids = {store.create(TrainConfig()).run_id for _ in range(20)}
    assert len(ids) == 20 and all(check_run_id(i) == i for i in ids)


@pytest.mark.parametrize("bad", ["../x", "a/b", "..", "", ".hidden", "x" * 81, "a\\b", "run id"])
def test_outside_ids_are_validated(tmp_path, bad):
    with pytest.raises(RunError, match="invalid run id"):
        RunStore(tmp_path).get(bad)


def test_status_and_config_files_are_plain_json(tmp_path):
    writer = RunStore(tmp_path).create(TrainConfig())
    writer.finish("stopped", "stopped by request")
    assert json.loads((writer.path / "status.json").read_text())["status"] == "stopped"
    assert json.loads((writer.path / "config.json").read_text())["config"]["optimizer"] == "adam"


# --- listing reads no arrays, and re-reads only what changed (kind 6) -------------------------------

def test_listing_reads_no_array_data(tmp_path, sgd_run):
    """W's data is damaged behind an intact header: only a reader that inflates W would notice."""
    root = tmp_path / "runs"
    store_with(sgd_run, root)
    weights = root / BROKEN / "weights.npz"
    raw = bytearray(weights.read_bytes())
    raw[2000] ^= 0xFF  # inside W's data (header is the first ~200 bytes of the stored member)
    weights.write_bytes(bytes(raw))
    store = RunStore(root)
    assert {r.run_id: r.status for r in store.all_runs()} == {GOOD: "completed", BROKEN: "completed"}
    with pytest.raises(RunError, match="cannot be loaded safely"):
        store.load_weights(BROKEN)


def test_a_cached_listing_rereads_a_run_only_when_its_files_change(tmp_path, sgd_run, monkeypatch):
    root = tmp_path / "runs"
    store_with(sgd_run, root)
    store = RunStore(root)
    store.all_runs()
    reads: list[Path] = []
    real = runs_module.safe_read.read_json_object
    monkeypatch.setattr(runs_module.safe_read, "read_json_object", lambda p, limit: reads.append(p) or real(p, limit))
    store.all_runs()
    assert reads == [], "unchanged runs are not read again"
    status = json.loads((root / BROKEN / "status.json").read_text())
    (root / BROKEN / "status.json").write_text(json.dumps({**status, "status": "stopped", "message": "later"}))
    runs = {r.run_id: r for r in store.all_runs()}
    assert {p.parent.name for p in reads} == {BROKEN}
    assert runs[BROKEN].status == "stopped" and runs[BROKEN].message == "later"


def test_a_metrics_file_over_the_step_limit_is_read_without_its_step_losses(tmp_path, sgd_run, monkeypatch):
    root = tmp_path / "runs"
    store_with(sgd_run, root)
    store = RunStore(root)
    assert all(row["step_losses"] for row in store.get(GOOD).metrics), "a normal run keeps its step losses"
    assert not any(row["step_losses"] for r in store.all_runs() for row in r.metrics), "listings never carry them"
    assert store.summary(GOOD).metrics[-1]["test_accuracy"] == store.get(GOOD).final["test_accuracy"]
    assert not any(row["step_losses"] for row in store.summary(GOOD).metrics)
    monkeypatch.setattr(runs_module, "STEPS_LIMIT", 1000)
    run = store.get(GOOD)
    assert run.epochs_completed == 2 and not any(row["step_losses"] for row in run.metrics)
    assert run.final["test_accuracy"] > 0.85


def test_delete_in_a_read_only_store_loses_nothing_and_says_why(read_only_store):
    store = RunStore(read_only_store)
    with pytest.raises(RunError, match="cannot be deleted: Read-only file system"):
        store.delete(GOOD)
    assert store.get(GOOD).status == "completed"


# --- the process killed mid-run --------------------------------------------------------------------

def copy_run(run: Path, root: Path, run_id: str) -> Path:
    return Path(shutil.copytree(run, root / run_id))


def fingerprint(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def process_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_sigkill_mid_run_lists_as_interrupted_and_spares_other_runs(tmp_path, sgd_run, mnist):
    root = tmp_path / "runs"
    store_with(sgd_run, root)
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
    assert evaluate(W, b, mnist)["test_accuracy"] > 0.85
    assert {r.status for r in runs.values()} == {"completed"} and len(runs) == 2
    assert fingerprint(root) == {**before, **{k: v for k, v in fingerprint(root).items() if k.startswith(killed_id)}}


def test_a_crash_between_the_metrics_line_and_the_weights_keeps_the_two_in_agreement(tmp_path, sgd_run, mnist):
    """kill -9 after epoch 3's metrics line but before its weights: the run reads as 2 epochs, as its weights."""
    run = copy_run(sgd_run, tmp_path, "20260101-000000-abcdef")
    store = RunStore(tmp_path)
    before = store.get(run.name)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    torn = json.loads(lines[-1]) | {"epoch": len(lines) + 1}
    (run / "metrics.jsonl").write_text("\n".join(lines + [json.dumps(torn)]) + "\n")
    after = RunStore(tmp_path).get(run.name)
    assert after.status == before.status and after.epochs_completed == before.epochs_completed
    assert saved_epoch(store, run.name) == after.epochs_completed
    assert_weights_are_those_of_the_last_epoch(store, run.name, mnist)


# --- run folders corrupted by hand -------------------------------------------------------------

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
def test_corrupted_run_is_unreadable_with_the_reason_and_the_rest_work(tmp_path, sgd_run, corruption):
    damage, reason = CORRUPTIONS[corruption]
    root, marker = tmp_path / "runs", tmp_path / "PICKLE-WAS-LOADED"
    intact, broken = store_with(sgd_run, root)
    damage(broken, marker)
    store = RunStore(root)
    runs = {r.run_id: r for r in store.all_runs()}
    assert runs[broken.name].status == "unreadable" and reason in runs[broken.name].error
    assert runs[intact.name].status == "completed" and runs[intact.name].epochs_completed == 2
    for run in runs.values():  # what the runs page and `runs` CLI read of every run
        run.final, run.duration, run.epochs_completed, run.config, run.message
    assert store.metrics_csv(intact.name).count("\n") == 3 and store.load_weights(intact.name)[0].shape == (784, 10)
    for read in (store.load_weights, store.load_evolution, store.weights_npz, store.metrics_csv):
        try:
            read(broken.name)
        except RunError:
            pass
    assert not marker.exists(), "a pickle was loaded"


def test_pickled_weight_history_is_refused_without_loading_it(tmp_path, sgd_run):
    root, marker = tmp_path / "runs", tmp_path / "PICKLE-WAS-LOADED"
    run = copy_run(sgd_run, root, GOOD)
    npz_with_object_array(run / "evolution.npz", marker)
    store = RunStore(root)
    with pytest.raises(RunError, match="evolution.npz cannot be loaded safely"):
        store.load_evolution(run.name)
    pickle_posing_as_npz(run / "evolution.npz", marker)
    with pytest.raises(RunError, match="evolution.npz cannot be loaded safely"):
        store.load_evolution(run.name)
    assert not marker.exists(), "a pickle was loaded"


def test_run_deleted_while_listing_is_left_out(tmp_path, sgd_run):
    """Another session deletes a run between the folder scan and the read: the list still works."""
    root = tmp_path / "runs"
    keep, gone = (run.name for run in store_with(sgd_run, root))

    class RacingStore(RunStore):
        def run_ids(self) -> list[str]:
            ids = super().run_ids()
            shutil.rmtree(self.root / gone)
            return ids

    assert [r.run_id for r in RacingStore(root).all_runs()] == [keep]


def test_deleting_a_symlinked_run_removes_the_link_not_its_target(tmp_path, sgd_run):
    root = tmp_path / "runs"
    root.mkdir()
    target = copy_run(sgd_run, tmp_path, "kept-elsewhere")
    (root / GOOD).symlink_to(target, target_is_directory=True)
    before = fingerprint(target)
    store = RunStore(root)
    assert store.get(GOOD).status == "completed"
    store.delete(GOOD)
    assert store.all_runs() == [] and fingerprint(target) == before


# --- run ids from outside ----------------------------------------------------------------------

HOSTILE_IDS = ["../victim", "../victim/", "..", "a/b", "{absolute victim}", f"./{GOOD}",
               "..\\victim", "%2e%2e%2fvictim", "victim\n", "", " victim"]


@pytest.mark.parametrize("run_id", HOSTILE_IDS)
def test_hostile_run_ids_are_refused_and_nothing_outside_is_touched(tmp_path, sgd_run, run_id):
    root = tmp_path / "runs"
    root.mkdir()
    victim = copy_run(sgd_run, tmp_path, "victim")
    run_id = run_id.replace("{absolute victim}", str(victim))
    before = fingerprint(tmp_path)
    store = RunStore(root)
    for action in (store.get, store.load_weights, store.load_evolution, store.metrics_csv, store.weights_npz,
                   store.delete, store.path):
        with pytest.raises(RunError, match="invalid run id"):
            action(run_id)
    assert victim.is_dir() and fingerprint(tmp_path) == before
