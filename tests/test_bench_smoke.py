"""A fast smoke run of ``python -m bench`` on real MNIST rows: it must print the table and one
JSON line holding every figure, and its variants must do the same work (same final losses).

It runs every variant in one process (``--in-process``) on 2,000 rows: seconds, not minutes.
Correctness only: no timing is asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.speed import PAIRED_PEERS

PROJECT = Path(__file__).resolve().parents[1]
VARIANTS = ("engine", "engine_defaults", "keras", "tf1", "numpy", "floor", "paired")
TRAINERS = ("engine", "keras", "tf1", "numpy")
PEERS = ("keras", "tf1", "numpy", "floor")
BATCHES = ("100", "1000")
EXAMPLES = 2000


@pytest.fixture(scope="module")
def bench_run() -> tuple[str, dict]:
    if not os.environ.get("MNIST_DIR"):
        pytest.skip("set MNIST_DIR to the folder with the four MNIST files")
    command = [sys.executable, "-m", "bench", "--repeats", "1", "--epochs", "2", "--examples", str(EXAMPLES),
               "--canvas-calls", "20", "--skip-browser", "--skip-memory", "--in-process"]
    done = subprocess.run(command, cwd=PROJECT, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, MNIST_DIR=str(Path(os.environ["MNIST_DIR"]).resolve())))
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    return done.stdout, json.loads(lines[-1])


def test_json_line_has_every_figure(bench_run) -> None:
    _, figures = bench_run
    for variant in VARIANTS:
        for batch in BATCHES:
            row = figures["speed"][variant][batch]
            assert row["seconds_per_epoch"] > 0 and row["cpu_seconds_per_epoch"] > 0 and row["peak_rss_mb"] > 0
            assert row["repeats"] == 1
            low, high = row["spread_seconds_per_epoch"]
            assert 0 < low <= high
    for peer in PEERS:
        ratios = figures[f"engine_vs_{peer}"]
        assert set(ratios) == {f"batch_{b}" for b in BATCHES}
        assert all(isinstance(r, float) and r > 0 for r in ratios.values())
    assert set(figures["defaults_vs_sgd"]) == {f"batch_{b}" for b in BATCHES}
    separate = {f"engine_vs_{peer}_separate" for peer in PAIRED_PEERS}
    assert set(figures["cpu_ratios"]) == {f"engine_vs_{peer}" for peer in PEERS} | {"defaults_vs_sgd"} | separate
    assert figures["evaluation_seconds"] > 0 and figures["in_train_evaluation_seconds"] > 0
    assert figures["small_batch"] == 10 and figures["small_batch_seconds_per_epoch"] > 0
    assert figures["first_epoch"]["engine"]["100"]["first_epoch_seconds"] > 0
    assert figures["peak_rss_mb"]["engine"]["1000"] > 0
    assert figures["canvas"]["seconds"] > 0 and figures["canvas"]["calls"] == 20
    assert "skipped" in figures["browser"]["note"] and "skipped" in figures["memory"]["note"]
    assert figures["machine"]["cpus"] >= 1 and figures["machine"]["numpy_blas"]
    assert set(figures["targets"]) == {
        "engine_vs_numpy_batch_100", "engine_vs_numpy_batch_1000", "engine_vs_floor_batch_100",
        "engine_vs_floor_batch_1000", "engine_vs_keras_batch_100", "engine_vs_tf1_batch_100",
        "defaults_vs_sgd_batch_100", "defaults_vs_sgd_batch_1000", "evaluation_seconds",
        "small_batch_seconds_per_epoch", "canvas_to_probabilities_seconds", "memory_3_vs_1"}
    assert all(row["value"] is not None for key, row in figures["targets"].items() if key != "memory_3_vs_1")
    assert figures["targets"]["memory_3_vs_1"]["met"] is None


def test_variants_do_the_same_work(bench_run) -> None:
    """Same data, same batch order, same SGD: every trainer ends at the same train loss."""
    _, figures = bench_run
    for batch in BATCHES:
        losses = {v: figures["speed"][v][batch]["final_train_loss"] for v in TRAINERS}
        assert max(losses.values()) - min(losses.values()) < 1e-4, losses
        assert 0.1 < losses["engine"] < 2.3, losses  # trained: below an untrained model's ln 10
    assert figures["speed"]["floor"]["100"]["final_train_loss"] is None


def test_paired_ratios_are_the_side_by_side_epochs(bench_run) -> None:
    """engine / NumPy and / floor come from the paired process, whose NumPy epochs trained the same model."""
    _, figures = bench_run
    for batch in BATCHES:
        extra = figures["speed"]["paired"][batch]["extra"]
        for peer in PAIRED_PEERS:
            assert figures[f"engine_vs_{peer}"][f"batch_{batch}"] == extra[f"{peer}_ratio"]
            assert figures["cpu_ratios"][f"engine_vs_{peer}"][f"batch_{batch}"] == extra[f"{peer}_cpu_ratio"]
            assert figures[f"engine_vs_{peer}_separate"][f"batch_{batch}"] > 0
        engine_loss = figures["speed"]["paired"][batch]["final_train_loss"]
        assert abs(extra["numpy_final_train_loss"] - engine_loss) < 1e-4


def test_table_states_the_ratio_convention(bench_run) -> None:
    stdout, figures = bench_run
    assert "ratio = engine seconds / peer seconds (< 1: the engine is faster)" in stdout
    assert f"{EXAMPLES:,} x 784" in stdout
    for variant in VARIANTS:
        assert any(line.startswith(variant) for line in stdout.splitlines())
