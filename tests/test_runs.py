"""RunStore: a run written epoch by epoch reads back whole; crash leftovers do not break it."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from softmax_core.config import TrainConfig
from softmax_core.runs import RunError, RunStore, check_run_id


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
