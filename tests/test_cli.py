"""The CLI end to end, in subprocesses as a user runs it: JSON results and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image


def cli(*args: str, runs_dir, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "SOFTMAX_LAB_RUNS": str(runs_dir), **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "softmax_core", *args], capture_output=True, text=True,
                          env=env, timeout=300)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    runs_dir = tmp_path_factory.mktemp("runs")
    done = cli("train", "--epochs", "3", "--json", runs_dir=runs_dir)
    assert done.returncode == 0, done.stderr
    return runs_dir, json.loads(done.stdout.strip().splitlines()[-1])


def test_train_json_reports_the_run(trained):
    runs_dir, result = trained
    assert result["status"] == "completed" and result["epochs_completed"] == 3
    assert set(result["final"]) == {"train_loss", "test_loss", "test_accuracy", "validation_accuracy"}
    assert result["final"]["test_accuracy"] > 0.9
    assert os.path.isdir(result["run_dir"]) and result["seconds"] > 0


def test_runs_lists_it(trained):
    runs_dir, result = trained
    listing = json.loads(cli("runs", "--json", runs_dir=runs_dir).stdout)
    assert [r["run_id"] for r in listing["runs"]] == [result["run_id"]]


def test_evaluate_matches_training_metrics(trained):
    runs_dir, result = trained
    done = cli("evaluate", result["run_id"], "--json", runs_dir=runs_dir)
    report = json.loads(done.stdout)
    assert report["test_accuracy"] == pytest.approx(result["final"]["test_accuracy"], abs=1e-4)
    assert np.array(report["confusion_matrix"]).sum() == 10_000


def test_predict_reads_a_real_digit_from_a_png(trained, mnist, tmp_path):
    runs_dir, result = trained
    path = tmp_path / "seven.png"
    Image.fromarray((mnist.images("test", 0).reshape(28, 28) * 255).astype(np.uint8)).resize((140, 140)).save(path)
    assert mnist.test_y[0] == 7
    report = json.loads(cli("predict", result["run_id"], str(path), "--json", runs_dir=runs_dir).stdout)
    assert report["digit"] == 7 and sum(report["probabilities"]) == pytest.approx(1, abs=1e-4)


@pytest.mark.parametrize("args, message", [
    (["train", "--batch-size", "0"], "batch_size"),
    (["train", "--optimizer", "rmsprop"], "optimizer"),
    (["train", "--learning-rate", "-1"], "learning_rate"),
    (["train", "--data-dir", "/nonexistent", "--epochs", "1"], "/nonexistent"),
    (["evaluate", "../etc"], "invalid run id"),
    (["evaluate", "20990101-000000-abcdef"], "no run"),
    (["predict", "nope", "x.png"], "no run"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, args, message):
    done = cli(*args, runs_dir=tmp_path)
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and message in last
    assert "Traceback" not in done.stderr


def test_diverging_run_exits_1_and_is_saved_as_diverged(tmp_path):
    done = cli("train", "--learning-rate", "1e4", "--optimizer", "sgd", "--schedule", "constant",
               "--epochs", "2", "--json", runs_dir=tmp_path)
    assert done.returncode == 1
    assert json.loads(done.stdout.splitlines()[-1])["status"] == "diverged"


def test_sweep_trains_the_grid_and_names_the_best_on_validation(tmp_path):
    done = cli("sweep", "--learning-rate", "0.001", "0.002", "--batch-size", "100", "200", "--epochs", "1",
               "--json", runs_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert len(report["runs"]) == 4 and len({r["run_id"] for r in report["runs"]}) == 4
    best = max(report["runs"], key=lambda r: r["final"]["validation_accuracy"])
    assert report["best"]["run_id"] == best["run_id"]
    assert done.stderr.count("[") >= 4  # one progress line per finished run


def test_sweep_refuses_a_bad_value_before_training(tmp_path):
    done = cli("sweep", "--batch-size", "100", "0", runs_dir=tmp_path)
    assert done.returncode == 2 and "batch_size" in done.stderr.splitlines()[-1]
