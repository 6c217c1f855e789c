"""Real runs for tests to copy, damage or read: trained on real MNIST and written by the lab itself,
and the damage done to their files by hand (the fault table's hostile files, docs/faults.md)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from softmax_core.config import TrainConfig
from softmax_core.data import load_mnist
from softmax_core.record import record_run
from softmax_core.runs import RunStore

GOOD = "20000101-000000-aaaaaa"
BROKEN = "20000101-000001-bbbbbb"


def completed_sgd_run(root: Path, epochs: int) -> Path:
    """The folder of one completed run in ``root`` (SGD lr 0.5, batch 1000: about 91% after one epoch)."""
    store = RunStore(root)
    config = TrainConfig(learning_rate=0.5, optimizer="sgd", schedule="constant", batch_size=1000, epochs=epochs)
    run_id, status, message = record_run(store, config, load_mnist(allow_download=False))
    assert status == "completed", message
    return store.path(run_id)


def store_with(trained: Path, root: Path) -> tuple[Path, Path]:
    """A store holding an intact copy (GOOD) and a copy to damage (BROKEN); returns the two folders."""
    return shutil.copytree(trained, root / GOOD), shutil.copytree(trained, root / BROKEN)


class Marker:
    """Unpickling this creates a file: proof that a pickle was loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


def flip_byte(path: Path) -> None:
    """Flip the middle byte: the size stays, only a checksum (or a parser) notices."""
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


def deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def with_key(path: Path, key: str, raw: str) -> None:
    """Replace (or add) ``key`` of the JSON object in ``path`` by the raw JSON text ``raw``."""
    value = json.loads(path.read_text())
    value[key] = "__RAW__"
    path.write_text(json.dumps(value).replace('"__RAW__"', raw))


def metrics_edit(run: Path, key: str, raw: str) -> None:
    """Set ``key`` of the first metrics line to the raw JSON text ``raw``."""
    lines = (run / "metrics.jsonl").read_text().splitlines()
    row = json.loads(lines[0])
    row[key] = "__RAW__"
    lines[0] = json.dumps(row).replace('"__RAW__"', raw)
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def link_to(target: str):
    def make(path: Path) -> None:
        path.unlink()
        path.symlink_to(target)
    return make


HOSTILE = {
    # kind 1: one bad file; {case: (damage done to a run folder, words of the reason it is unreadable)}
    "config.json nested 100000 deep": (lambda r: (r / "config.json").write_text(deep(100_000)), "nested"),
    "config.json nested 50 deep": (lambda r: with_key(r / "config.json", "sweep", deep(50)), "nested more than"),
    "status.json nested 100000 deep": (lambda r: (r / "status.json").write_text(deep(100_000)), "nested"),
    "metrics line nested 100000 deep": (lambda r: metrics_edit(r, "extra", deep(100_000)), "nested"),
    "config.json number 1e999": (lambda r: with_key(r / "config.json", "created", "1e999"), "beyond float range"),
    "status.json number 1e999": (lambda r: with_key(r / "status.json", "ended", "-1e999"), "beyond float range"),
    "metrics number 1e999": (lambda r: metrics_edit(r, "test_accuracy", "1e999"), "beyond float range"),
    "metrics integer of 400 digits": (lambda r: metrics_edit(r, "test_loss", "9" * 400), "integer of 400 digits"),
    "metrics NaN": (lambda r: metrics_edit(r, "train_loss", "NaN"), "NaN"),
    "created 1e300": (lambda r: with_key(r / "config.json", "created", "1e300"), "between 1970 and 2100"),
    "created negative": (lambda r: with_key(r / "config.json", "created", "-5"), "between 1970 and 2100"),
    "step_losses a string": (lambda r: metrics_edit(r, "step_losses", '"abc"'), "'step_losses' is not a list"),
    "step_losses of objects": (lambda r: metrics_edit(r, "step_losses", '[{"a": 1}]'), "'step_losses' is not a list"),
    "completed with no epochs": (lambda r: (r / "metrics.jsonl").unlink(), "no finished epoch"),
    "config.json a FIFO": (lambda r: fifo(r / "config.json"), "config.json is a FIFO"),
    "metrics.jsonl a FIFO": (lambda r: fifo(r / "metrics.jsonl"), "metrics.jsonl is a FIFO"),
    "weights.npz a FIFO": (lambda r: fifo(r / "weights.npz"), "weights.npz is a FIFO"),
    "metrics.jsonl a symlink to /dev/zero": (lambda r: link_to("/dev/zero")(r / "metrics.jsonl"), "symbolic link"),
    "status.json a symlink to a FIFO": (lambda r: (os.mkfifo(r / "pipe"), link_to(str(r / "pipe"))(r / "status.json")),
                                        "symbolic link"),
    "config.json a folder": (lambda r: ((r / "config.json").unlink(), (r / "config.json").mkdir()), "a folder"),
    "status.json over 1 MiB": (lambda r: with_key(r / "status.json", "message", json.dumps("x" * (2 << 20))),
                               "at most"),
    "unknown status": (lambda r: with_key(r / "status.json", "status", '"exploded"'), "unknown status"),
    "sweep id with markup": (lambda r: with_key(r / "config.json", "sweep", '"[x](https://example.org)"'),
                             "not a plain id"),
}


def saved_epoch(store: RunStore, run_id: str) -> int:
    """The epoch weights.npz says its W and b are from."""
    with np.load(store.path(run_id) / "weights.npz", allow_pickle=False) as npz:
        return int(npz["epoch"])


def assert_weights_are_those_of_the_last_epoch(store: RunStore, run_id: str, data) -> None:
    """The saved W, b reproduce the last recorded epoch's test metrics exactly: no epoch lost or mixed."""
    from softmax_core.train import evaluate

    run = store.get(run_id)
    W, b = store.load_weights(run_id)
    assert saved_epoch(store, run_id) == run.epochs_completed
    measured = evaluate(W, b, data)
    assert measured["test_accuracy"] == run.final["test_accuracy"]
    assert measured["test_loss"] == pytest.approx(run.final["test_loss"], rel=1e-6)
    assert store.load_evolution(run_id).shape == (run.epochs_completed, 784, 10)
