"""The compiled engine against an independent NumPy reference, and the tutorial's accuracy facts."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from softmax_core.config import TrainConfig
from softmax_core.data import Mnist
from softmax_core.train import DIVERGED_LOSS, EVAL_PARTS, _part_rows, evaluate, train, warm_up

PROJECT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small(mnist: Mnist) -> Mnist:
    """A real slice: 3,000 train, 500 validation, 1,000 test digits."""
    return mnist.head(3000, 500, 1000)


def numpy_reference(config: TrainConfig, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Minibatch training written plainly in NumPy (float64), same batch order as the engine."""
    W, b = np.zeros((784, 10)), np.zeros(10)
    slots = [np.zeros_like(W), np.zeros_like(b), np.zeros_like(W), np.zeros_like(b)]
    onehot = np.eye(10)[y]
    rng = np.random.default_rng(config.seed)
    steps_per_epoch = math.ceil(len(y) / config.batch_size)
    total, t, losses = steps_per_epoch * config.epochs, 0, []
    for _ in range(config.epochs):
        perm = rng.permutation(len(y))
        for i in range(steps_per_epoch):
            idx = perm[i * config.batch_size:(i + 1) * config.batch_size]
            logits = x[idx] @ W + b
            logits -= logits.max(axis=1, keepdims=True)
            p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
            losses.append(-np.mean(np.log(p[np.arange(len(idx)), y[idx]])))
            g = (p - onehot[idx]) / len(idx)
            grads = [x[idx].T @ g + config.l2 * W, g.sum(axis=0)]
            lr = config.learning_rate
            if config.schedule == "cosine":
                lr *= 0.5 * (1 + math.cos(math.pi * t / total))
            for k, (param, grad) in enumerate(zip((W, b), grads)):
                if config.optimizer == "sgd":
                    param -= lr * grad
                elif config.optimizer == "momentum":
                    slots[k] = 0.9 * slots[k] + grad
                    param -= lr * slots[k]
                else:
                    slots[k] = 0.9 * slots[k] + 0.1 * grad
                    slots[k + 2] = 0.999 * slots[k + 2] + 0.001 * grad**2
                    m_hat = slots[k] / (1 - 0.9 ** (t + 1))
                    v_hat = slots[k + 2] / (1 - 0.999 ** (t + 1))
                    param -= lr * m_hat / (np.sqrt(v_hat) + 1e-8)
            t += 1
    return W, b, losses


@pytest.mark.parametrize("optimizer, lr, schedule, l2, batch", [
    ("sgd", 0.5, "constant", 0.0, 100),
    ("sgd", 0.3, "cosine", 1e-3, 256),   # 3,000 / 256 leaves a partial last batch
    ("momentum", 0.05, "cosine", 0.0, 100),
    ("adam", 0.002, "cosine", 1e-4, 100),
    ("momentum", 0.05, "constant", 1e-3, 700),  # blocks of 234 rows (2 padded) and a partial last batch of 200
    ("adam", 0.002, "constant", 1e-3, 64),  # a partial last batch of 56
])
def test_engine_matches_numpy_reference(small, optimizer, lr, schedule, l2, batch):
    config = TrainConfig(learning_rate=lr, batch_size=batch, epochs=2, optimizer=optimizer, schedule=schedule, l2=l2)
    result = train(config, small)
    W, b, losses = numpy_reference(config, small.images("train").astype(np.float64), small.train_y)
    assert result.status == "completed"
    np.testing.assert_allclose(result.W, W, atol=2e-4, rtol=1e-3)
    np.testing.assert_allclose(result.b, b, atol=2e-4, rtol=1e-3)
    engine_losses = [x for epoch in result.history for x in epoch.step_losses]
    assert len(engine_losses) == len(losses) == 2 * math.ceil(3000 / batch)
    np.testing.assert_allclose(engine_losses, losses, rtol=1e-3, atol=1e-4)


def test_epoch_metrics_are_full_split_evaluations(small):
    result = train(TrainConfig(epochs=1), small)
    epoch = result.history[0]
    for name in ("train", "validation", "test"):
        x, y = small.split(name)
        logits = x.astype(np.float64) @ result.W + result.b
        log_p = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) - logits.max(1, keepdims=True)
        assert getattr(epoch, f"{name}_loss") == pytest.approx(-log_p[np.arange(len(y)), y].mean(), rel=1e-4)
        assert getattr(epoch, f"{name}_accuracy") == pytest.approx((logits.argmax(1) == y).mean(), abs=1e-6)
    assert evaluate(result.W, result.b, small)["test_accuracy"] == epoch.test_accuracy


def test_same_seed_same_numbers_other_seed_other_numbers(small):
    config = TrainConfig(epochs=2, optimizer="sgd", learning_rate=0.5)
    first, second = train(config, small), train(config, small)
    other = train(dataclasses.replace(config, seed=1), small)
    assert [e.step_losses for e in first.history] == [e.step_losses for e in second.history]
    assert np.array_equal(first.W, second.W)
    assert not np.array_equal(first.W, other.W)


def test_stop_ends_cleanly_with_the_last_finished_epoch(small):
    stop = threading.Event()
    seen = []

    def on_epoch(metrics, W, b):
        seen.append(W.copy())
        if metrics.epoch == 2:
            stop.set()

    result = train(TrainConfig(epochs=50), small, on_epoch=on_epoch, stop=stop)
    assert result.status == "stopped"
    assert result.epochs_completed == 2
    assert np.array_equal(result.W, seen[-1])


def test_huge_learning_rate_diverges_and_keeps_last_finite_weights(small):
    result = train(TrainConfig(learning_rate=1e4, optimizer="sgd", schedule="constant", epochs=5), small)
    assert result.status == "diverged"
    assert result.epochs_completed == 0
    assert not result.W.any() and not result.b.any()  # the initial zeros: the last finite weights
    assert "too large" in result.message


def test_a_large_but_sane_learning_rate_is_not_called_divergence(small):
    """The threshold sits far above the losses of a merely aggressive run, which must complete."""
    result = train(TrainConfig(learning_rate=2.0, optimizer="sgd", schedule="constant", epochs=2, l2=0.0), small)
    assert result.status == "completed" and result.epochs_completed == 2
    assert max(m.train_loss for m in result.history) < DIVERGED_LOSS / 10


def test_progress_reaches_one(small):
    fractions = []
    train(TrainConfig(epochs=2, batch_size=50), small, on_progress=fractions.append)
    assert fractions == sorted(fractions)
    assert fractions[-1] == pytest.approx(1.0)


def test_progress_streams_within_an_epoch_and_stop_lands_mid_epoch(mnist):
    """An epoch of 55,000 rows runs as several compiled calls: Stop is seen between them."""
    stop, fractions = threading.Event(), []

    def on_progress(fraction):
        fractions.append(fraction)
        stop.set()

    result = train(TrainConfig(epochs=1, batch_size=1000, optimizer="sgd", learning_rate=0.5), mnist,
                   on_progress=on_progress, stop=stop)
    assert result.status == "stopped" and result.epochs_completed == 0
    assert len(fractions) == 1 and 0 < fractions[0] < 1


def test_warm_up_compiles_without_changing_results(small):
    config = TrainConfig(epochs=1, batch_size=100, optimizer="momentum", learning_rate=0.05)
    cold = train(config, small)
    assert warm_up(small, batch_sizes=(100,), optimizers=("momentum",)) > 0
    warm = train(config, small)
    assert np.array_equal(cold.W, warm.W) and cold.history[0].step_losses == warm.history[0].step_losses


def test_tutorial_settings_reproduce_about_90_percent(mnist):
    config = TrainConfig(learning_rate=0.05, batch_size=1000, epochs=15, optimizer="sgd", schedule="constant")
    accuracy = train(config, mnist).history[-1].test_accuracy
    assert 0.89 <= accuracy <= 0.91


def test_defaults_reach_92_5_percent(default_training):
    assert default_training.status == "completed" and len(default_training.history) == TrainConfig().epochs
    assert default_training.history[-1].test_accuracy >= 0.925


@pytest.mark.parametrize("sizes", [[55_000, 5_000, 10_000], [3_000, 500, 1_000], [10, 0, 7], [499, 1, 1]])
def test_evaluation_parts_cover_every_row_once(sizes):
    """The evaluation runs as parts on both cores: together they take each split's rows exactly once."""
    parts = [_part_rows(sizes, part) for part in range(EVAL_PARTS)]
    for split, size in enumerate(sizes):
        ranges = sorted(part[split] for part in parts if part[split][1] > part[split][0])
        assert [r for pair in ranges for r in pair][:1] in ([0], []) and (ranges[-1][1] if ranges else 0) == size
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))


FRESH_PROCESS = """
import json, sys
from softmax_core.config import TrainConfig
from softmax_core.data import load_mnist
from softmax_core.train import XLA_CACHE, train
result = train(TrainConfig(epochs=1, batch_size=250, optimizer="momentum", learning_rate=0.05),
               load_mnist(allow_download=False).head(1000, 200, 300))
print(json.dumps({"cache": str(XLA_CACHE), "W": float(result.W.sum()), "status": result.status}))
"""


def _fresh_process(cache: str) -> dict:
    done = subprocess.run([sys.executable, "-c", FRESH_PROCESS], cwd=PROJECT, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, SOFTMAX_LAB_XLA_CACHE=cache))
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_compiled_programs_are_kept_for_the_next_process(tmp_path):
    """A second process loads what the first compiled (no new entries) and trains to the same numbers."""
    cache = tmp_path / "xla"
    first = _fresh_process(str(cache))
    entries = sorted(p.name for p in cache.iterdir())
    assert first["cache"] == str(cache) and first["status"] == "completed" and entries
    second = _fresh_process(str(cache))
    assert sorted(p.name for p in cache.iterdir()) == entries
    assert second["W"] == first["W"]


def test_an_unusable_cache_folder_only_means_compiling_in_memory(tmp_path):
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    result = _fresh_process(str(blocker / "xla"))
    assert result["cache"] == "None" and result["status"] == "completed"
