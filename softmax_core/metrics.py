"""EpochMetrics: one finished epoch's numbers, shared by the engine, the job service and the pages.

It lives apart from ``train`` so that the web server, which never imports TensorFlow, can hold
and draw a run's history.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class EpochMetrics:
    epoch: int
    train_loss: float
    train_accuracy: float
    validation_loss: float
    validation_accuracy: float
    test_loss: float
    test_accuracy: float
    learning_rate: float
    seconds: float
    """Wall time since training started, evaluation included."""
    step_losses: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)
