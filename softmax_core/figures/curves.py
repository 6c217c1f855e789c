"""Training curves: loss and accuracy per epoch, several runs overlaid, and a sweep's heatmap.

Every function takes plain per-epoch metrics (``EpochMetrics`` or the dicts the run store
keeps), so the live Train page, the Runs page and tests draw the same figures.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Iterable, Sequence

import numpy as np
import plotly.graph_objects as go

from . import theme

EPOCH_AXIS = "epoch"
LOSS_AXIS = "cross-entropy (nats)"
ACCURACY_AXIS = "accuracy (%)"
MAX_STEP_POINTS = 4000
"""Step losses drawn per figure at most (striding keeps their noise; batch 1 has 55,000 a epoch)."""
SVG_STEP_POINTS = 1000
"""Up to this many step losses are one SVG path; WebGL (a canvas and its context per chart, drawn
in software by a browser without a GPU) only pays beyond."""
METRICS = {
    "test_accuracy": ("test accuracy", ACCURACY_AXIS),
    "validation_accuracy": ("validation accuracy", ACCURACY_AXIS),
    "train_accuracy": ("train accuracy", ACCURACY_AXIS),
    "test_loss": ("test loss", LOSS_AXIS),
    "validation_loss": ("validation loss", LOSS_AXIS),
    "train_loss": ("train loss", LOSS_AXIS),
}
"""Per-epoch metrics a figure can plot: name -> (label, axis title)."""


def _rows(history: Iterable[Any]) -> list[dict]:
    """Per-epoch metrics as dicts, whether given as dataclasses or dicts."""
    return [dataclasses.asdict(h) if dataclasses.is_dataclass(h) else dict(h) for h in history]


def _values(rows: list[dict], metric: str) -> list[float]:
    scale = 100.0 if metric.endswith("accuracy") else 1.0
    return [row[metric] * scale for row in rows]


def _epoch_axis(fig: go.Figure, epochs: int | None, rows: list[dict]) -> None:
    """Fix the x range to the planned epochs, so a live chart does not rescale each epoch."""
    last = max(epochs or 0, len(rows), 1)
    fig.update_xaxes(title_text=EPOCH_AXIS, range=[0, last + 0.05 * last], dtick=None if last > 12 else 1)


def _step_points(rows: list[dict], max_points: int = MAX_STEP_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Minibatch losses at fractional epochs, averaged over blocks of consecutive steps.

    Block means keep the chart light and stop single noisy minibatches (many at small batch
    sizes) from drowning the epoch curves; step i of n in epoch e sits at e-1+(i+1)/n.
    """
    per_epoch = max(1, max_points // max(len(rows), 1))
    xs, ys = [], []
    for row in rows:
        losses = np.asarray(row.get("step_losses") or [], dtype=np.float64)
        if not len(losses):
            continue
        stride = max(1, math.ceil(len(losses) / per_epoch))
        starts = np.arange(0, len(losses), stride)
        ends = np.minimum(starts + stride, len(losses))
        xs.append(row["epoch"] - 1 + ends / len(losses))
        ys.append(np.add.reduceat(losses, starts) / (ends - starts))
    if not xs:
        return np.empty(0), np.empty(0)
    return np.concatenate(xs), np.concatenate(ys)


def _add_split_traces(fig: go.Figure, rows: list[dict], quantity: str, value_format: str) -> None:
    """One line per split (train blue, validation green dotted, test orange) of ``<split>_<quantity>``."""
    epoch_x = [row["epoch"] for row in rows]
    for split, colour, dash in (("train", theme.TRAIN, "solid"), ("validation", theme.VALIDATION, "dot"),
                                ("test", theme.TEST, "solid")):
        metric = f"{split}_{quantity}"
        fig.add_trace(go.Scatter(
            x=epoch_x, y=_values(rows, metric), mode="lines+markers", name=METRICS[metric][0],
            line=dict(color=colour, width=2.5, dash=dash), marker=dict(size=6),
            hovertemplate=f"epoch %{{x}}<br>{value_format}<extra>{METRICS[metric][0]}</extra>",
        ))


def loss_curves(history: Iterable[Any], epochs: int | None = None, title: str | None = "Loss",
                height: int = 340, step_points: int = MAX_STEP_POINTS) -> go.Figure:
    """Train, validation and test loss per epoch, with (at most ``step_points``) minibatch losses faint behind."""
    rows = _rows(history)
    fig = go.Figure()
    step_x, step_y = _step_points(rows, step_points)
    band = go.Scatter if len(step_x) <= SVG_STEP_POINTS else go.Scattergl
    fig.add_trace(band(
        x=step_x, y=step_y, mode="lines", name="minibatch loss", line=dict(color=theme.TRAIN, width=0.8),
        opacity=0.14, hoverinfo="skip",
    ))
    _add_split_traces(fig, rows, "loss", "%{y:.4f} nats")
    _epoch_axis(fig, epochs, rows)
    fig.update_yaxes(title_text=LOSS_AXIS, rangemode="tozero", range=_loss_range(rows, step_y))
    return theme.styled(fig, title, height)


def _loss_range(rows: list[dict], step_y: np.ndarray) -> list[float] | None:
    """A y range that keeps the epoch curves readable when a few minibatch losses spike."""
    values = [v for row in rows for v in (row["train_loss"], row["validation_loss"], row["test_loss"])]
    if len(step_y):
        values.append(float(np.percentile(step_y, 99)))
    finite = [v for v in values if math.isfinite(v)]
    return [0, max(finite) * 1.08] if finite else None


def accuracy_curves(history: Iterable[Any], epochs: int | None = None, title: str | None = "Accuracy",
                    height: int = 340) -> go.Figure:
    """Train, validation and test accuracy per epoch, in percent."""
    rows = _rows(history)
    fig = go.Figure()
    _add_split_traces(fig, rows, "accuracy", "%{y:.2f}%")
    _epoch_axis(fig, epochs, rows)
    fig.update_yaxes(title_text=ACCURACY_AXIS)
    return theme.styled(fig, title, height)


def run_name(run: Any) -> str:
    """A run's legend entry: its settings and the time of day it started."""
    settings = run.config.label() if run.config else run.run_id
    return f"{settings} · {time.strftime('%H:%M:%S', time.localtime(run.created))}"


def runs_overlay(runs: Sequence[Any], metric: str = "test_accuracy", title: str | None = None,
                 height: int = 400) -> go.Figure:
    """One metric per epoch for several saved runs (``RunInfo``), one colour each."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}: one of {', '.join(METRICS)}")
    label, axis = METRICS[metric]
    unit = "%" if metric.endswith("accuracy") else " nats"
    fig = go.Figure()
    for i, run in enumerate(runs):
        rows = _rows(run.metrics)
        fig.add_trace(go.Scatter(
            x=[row["epoch"] for row in rows], y=_values(rows, metric), mode="lines+markers", name=run_name(run),
            line=dict(color=theme.RUN_COLOURS[i % len(theme.RUN_COLOURS)], width=2.2), marker=dict(size=5),
            hovertemplate="epoch %{x}<br>%{y:.4g}" + unit + "<extra>%{fullData.name}</extra>",
        ))
    fig.update_xaxes(title_text=EPOCH_AXIS, rangemode="tozero")
    fig.update_yaxes(title_text=axis)
    styled = theme.styled(fig, title or f"{label[0].upper()}{label[1:]} per epoch", height)
    styled.update_layout(legend=dict(orientation="v", yanchor="top", y=-0.18, xanchor="left", x=0))
    return styled.update_layout(height=height + 22 * len(runs), margin=dict(b=60 + 22 * len(runs)))


def sweep_grid(runs: Sequence[Any], metric: str = "test_accuracy") -> tuple[list[float], list[int], np.ndarray]:
    """Learning rates (rows), batch sizes (columns) and the best final ``metric`` of each cell.

    Runs that differ in other settings (epochs, optimizer) share a cell; the cell keeps the best.
    Cells with no finished run are NaN.
    """
    done = [r for r in runs if r.config is not None and r.metrics]
    rates = sorted({r.config.learning_rate for r in done})
    batches = sorted({r.config.batch_size for r in done})
    grid = np.full((len(rates), len(batches)), np.nan)
    for run in done:
        i, j = rates.index(run.config.learning_rate), batches.index(run.config.batch_size)
        value = run.final[metric]
        if math.isfinite(value) and not value <= grid[i, j]:
            grid[i, j] = value
    return rates, batches, grid


def sweep_heatmap(runs: Sequence[Any], metric: str = "test_accuracy", title: str | None = None,
                  height: int = 360) -> go.Figure:
    """Final ``metric`` of a sweep's runs over learning rate x batch size, values written in."""
    label, _ = METRICS[metric]
    rates, batches, grid = sweep_grid(runs, metric)
    scale = 100.0 if metric.endswith("accuracy") else 1.0
    z = [[None if math.isnan(v) else v * scale for v in row] for row in grid]
    text = [["" if v is None else (f"{v:.2f}%" if scale == 100 else f"{v:.3f}") for v in row] for row in z]
    fig = go.Figure(go.Heatmap(
        x=[str(b) for b in batches], y=[f"{r:g}" for r in rates], z=z, text=text, texttemplate="%{text}",
        colorscale="Viridis" if scale == 100 else "Viridis_r", hoverongaps=False,
        colorbar=dict(title=dict(text="%" if scale == 100 else "nats", side="right"), thickness=12),
        hovertemplate="lr %{y} · batch %{x}<br>" + label + " %{text}<extra></extra>",
    ))
    fig.update_xaxes(title_text="batch size (examples)", type="category", showgrid=False)
    fig.update_yaxes(title_text="learning rate", type="category", showgrid=False)
    return theme.styled(fig, title or f"Final {label}", height)
