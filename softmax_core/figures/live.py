"""The live Train view's two Plotly figures: the lab's loss and accuracy curves, light enough to
send the browser once an epoch (the minibatch band block-averaged to at most 400 points).

They are the same figures as elsewhere (``curves``), with the x axis following the data (no
planned-epochs range), so a long run's first epochs fill the chart.
"""

from __future__ import annotations

from typing import Any, Iterable

import plotly.graph_objects as go

from .curves import accuracy_curves, loss_curves

MAX_BAND_POINTS = 400
"""Minibatch-loss points per chart at most, however long the run or small the batch."""
LOSS_HEIGHT, ACCURACY_HEIGHT = 330, 290
"""Pixels: fixed, so the page keeps its height from the empty charts before epoch 1 to the end."""


def live_loss(history: Iterable[Any]) -> go.Figure:
    """Train, validation and test loss per epoch, the minibatch band faint behind them."""
    return loss_curves(history, title="Loss", height=LOSS_HEIGHT, step_points=MAX_BAND_POINTS)


def live_accuracy(history: Iterable[Any]) -> go.Figure:
    """Train, validation and test accuracy per epoch, in percent."""
    return accuracy_curves(history, title="Accuracy", height=ACCURACY_HEIGHT)
