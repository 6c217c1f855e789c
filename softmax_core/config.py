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
MAX_SEED = 2**31 - 1
LEARNING_RATES = (1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
"""The notches of every learning-rate picker (about x2 apart); any value in range is accepted."""
L2_PENALTIES = (0.0, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2)


@dataclass(frozen=True)
class Setting:
    """One TrainConfig field as every surface shows it: the form, the sweep, the CLI and the URL."""

    name: str
    label: str
    help: str
    kind: type
    low: float = 0.0
    high: float = 0.0
    open_low: bool = False
    """True when ``low`` itself is refused (a learning rate of 0 trains nothing)."""
    choices: tuple[str, ...] = ()
    choice_names: tuple[str, ...] = ()
    """How the form names each choice, in the order of ``choices``."""
    notches: tuple[float, ...] = ()
    """Values of a log-scale picker, for learning rate and L2."""

    def check(self, value: Any) -> Any:
        """``value`` as this setting's type; ConfigError naming the field if it is refused."""
        if self.choices:
            if value not in self.choices:
                raise ConfigError(self.name, f"{value!r} is not one of {', '.join(self.choices)}")
            return value
        _check_number(self.name, value, self.kind, self.low, self.high, self.open_low)
        return self.kind(value)

    def name_of(self, choice: str) -> str:
        """The form's name for a choice (the choice itself when it has none)."""
        return dict(zip(self.choices, self.choice_names)).get(choice, choice)


SETTINGS: dict[str, Setting] = {s.name: s for s in (
    Setting("learning_rate", "Learning rate", "Step size. Log scale: each notch is about ×2.", float,
            0.0, MAX_LEARNING_RATE, open_low=True, notches=LEARNING_RATES),
    Setting("batch_size", "Batch size", "Examples per gradient step (1 to 55,000).", int, 1, TRAIN_SIZE),
    Setting("epochs", "Epochs", "Passes over the 55,000 training images.", int, 1, MAX_EPOCHS),
    Setting("seed", "Seed", "Shuffling order (and initial weights if random).", int, 0, MAX_SEED),
    Setting("optimizer", "Optimizer", "How each step uses the gradient.", str, choices=OPTIMIZERS,
            choice_names=("SGD (the tutorial's)", "SGD + momentum 0.9", "Adam")),
    Setting("l2", "L2 penalty", "Weight decay on W.", float, 0.0, 1.0, notches=L2_PENALTIES),
    Setting("schedule", "Learning-rate schedule", "Constant, or cosine decay to 0 over the run.", str,
            choices=SCHEDULES, choice_names=("constant", "cosine decay to 0")),
    Setting("init", "Initial weights", "zeros (the tutorial) or small random values.", str, choices=INITS),
)}
"""Bounds, choices, labels and help of every TrainConfig field, written once."""


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
        for setting in SETTINGS.values():
            object.__setattr__(self, setting.name, setting.check(getattr(self, setting.name)))
        if np.float32(self.learning_rate) == 0:
            raise ConfigError("learning_rate", f"{self.learning_rate!r} is 0 in float32: training would change nothing")

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
