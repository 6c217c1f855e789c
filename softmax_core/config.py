"""TrainConfig: the one description of a training run that the CLI, the form and sweeps build.

Defaults were chosen on the validation split (see README, "Choosing the defaults").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from .data import TRAIN_SIZE

OPTIMIZERS = ("sgd", "momentum", "adam")
SCHEDULES = ("constant", "cosine")
INITS = ("zeros", "random")
MAX_EPOCHS = 500
MAX_LEARNING_RATE = 1e5


class ConfigError(ValueError):
    """A setting outside its allowed range; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class TrainConfig:
    learning_rate: float = 0.002
    batch_size: int = 100
    epochs: int = 20
    seed: int = 0
    optimizer: str = "adam"
    l2: float = 1e-4
    schedule: str = "cosine"
    init: str = "zeros"

    def __post_init__(self) -> None:
        for name, kind, low, high, open_low in (
            ("learning_rate", float, 0.0, MAX_LEARNING_RATE, True),
            ("batch_size", int, 1, TRAIN_SIZE, False),
            ("epochs", int, 1, MAX_EPOCHS, False),
            ("seed", int, 0, 2**31 - 1, False),
            ("l2", float, 0.0, 1.0, False),
        ):
            value = getattr(self, name)
            _check_number(name, value, kind, low, high, open_low)
            object.__setattr__(self, name, kind(value))
        if np.float32(self.learning_rate) == 0:
            raise ConfigError("learning_rate", f"{self.learning_rate!r} is 0 in float32: training would change nothing")
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("schedule", self.schedule, SCHEDULES)
        _check_choice("init", self.init, INITS)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """Build from JSON, a form or a URL; unknown keys are an error, missing ones default."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(unknown[0], f"unknown setting (known: {', '.join(sorted(known))})")
        return cls(**values)

    def label(self) -> str:
        """A short human summary, e.g. 'sgd lr 0.5 · batch 100 · 30 ep'."""
        extras = "" if self.l2 == 0 else f" · L2 {self.l2:g}"
        return f"{self.optimizer} lr {self.learning_rate:g} · batch {self.batch_size} · {self.epochs} ep{extras}"


def _check_number(name: str, value: Any, kind: type, low: float, high: float, open_low: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(name, f"must be a number, not {value!r}")
    if kind is int and int(value) != value:
        raise ConfigError(name, f"must be a whole number, not {value!r}")
    if value != value or (value <= low if open_low else value < low) or value > high:
        bracket = "(" if open_low else "["
        raise ConfigError(name, f"{value!r} is out of range {bracket}{low:g}, {high:g}]")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(name, f"{value!r} is not one of {', '.join(choices)}")
