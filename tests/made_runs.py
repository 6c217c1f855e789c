"""Real runs for tests to copy, damage or read: trained on real MNIST and written by the lab itself."""

from __future__ import annotations

from pathlib import Path

from softmax_core.config import TrainConfig
from softmax_core.data import load_mnist
from softmax_core.record import record_run
from softmax_core.runs import RunStore


def completed_sgd_run(root: Path, epochs: int) -> Path:
    """The folder of one completed run in ``root`` (SGD lr 0.5, batch 1000: about 91% after one epoch)."""
    store = RunStore(root)
    config = TrainConfig(learning_rate=0.5, optimizer="sgd", schedule="constant", batch_size=1000, epochs=epochs)
    run_id, status, message = record_run(store, config, load_mnist(allow_download=False))
    assert status == "completed", message
    return store.path(run_id)
