"""Vega-Lite charts for the live Train view: one fixed spec per chart, only the data changes.

Streamlit swaps a Vega-Lite chart's data in place when its spec is unchanged, so a live chart
stays mounted and an epoch costs the browser one small data update. A Plotly chart gets a new
element id whenever its figure changes and is remounted, which is what saturated the page.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from . import theme
from .curves import ACCURACY_AXIS, EPOCH_AXIS, LOSS_AXIS, _rows, _step_points

MAX_BAND_POINTS = 400
"""Minibatch-loss points per chart at most, however long the run or small the batch."""
BAND = "minibatch loss"
SPLITS = (("train", theme.TRAIN, [1, 0]), ("validation", theme.VALIDATION, [2, 3]), ("test", theme.TEST, [1, 0]))


def curve_data(history: Iterable[Any], quantity: str) -> list[dict]:
    """Long-format rows {epoch, value, series} of ``<split>_<quantity>``; loss adds the minibatch band.

    The band is block-averaged to at most ``MAX_BAND_POINTS`` and capped at its 99th percentile,
    so a few spikes neither cost the browser nor squash the epoch curves.
    """
    rows = _rows(history)
    scale = 100.0 if quantity == "accuracy" else 1.0
    data = [{"epoch": row["epoch"], "value": row[f"{split}_{quantity}"] * scale, "series": f"{split} {quantity}"}
            for split, _, _ in SPLITS for row in rows]
    if quantity == "loss":
        xs, ys = _step_points(rows, MAX_BAND_POINTS)
        finite = ys[np.isfinite(ys)]
        if len(finite):
            ys = np.minimum(ys, np.percentile(finite, 99))
        data += [{"epoch": round(float(x), 4), "value": float(y), "series": BAND} for x, y in zip(xs, ys)
                 if np.isfinite(y)]
    return [row for row in data if np.isfinite(row["value"])]


def curve_spec(quantity: str, height: int) -> dict:
    """The chart of one quantity (loss or accuracy): epoch curves with points, the band behind loss.

    The x axis follows the data (no planned-epochs range), so a long run's first epochs fill the
    chart. SVG rendering keeps every point in the DOM, where the browser tests count them.
    """
    names = [f"{split} {quantity}" for split, _, _ in SPLITS]
    x = {"field": "epoch", "type": "quantitative", "title": EPOCH_AXIS,
         "scale": {"domainMin": 0, "nice": False}, "axis": {"tickMinStep": 1}}
    y = {"field": "value", "type": "quantitative", "title": LOSS_AXIS if quantity == "loss" else ACCURACY_AXIS,
         "scale": {"zero": quantity == "loss"}}
    curves = {
        "transform": [{"filter": {"field": "series", "oneOf": names}}],
        "mark": {"type": "line", "point": {"size": 36, "filled": True}, "strokeWidth": 2.5},
        "encoding": {
            "x": x, "y": y,
            "color": {"field": "series", "type": "nominal", "title": None,
                      "scale": {"domain": names, "range": [colour for _, colour, _ in SPLITS]},
                      "legend": {"orient": "top", "direction": "horizontal", "symbolType": "circle",
                                 "symbolStrokeWidth": 0}},
            "strokeDash": {"field": "series", "type": "nominal", "legend": None,
                           "scale": {"domain": names, "range": [dash for _, _, dash in SPLITS]}},
            "description": {"field": "series", "type": "nominal"},  # each point's aria label: its curve
            "tooltip": [{"field": "series", "title": "curve"}, {"field": "epoch", "title": EPOCH_AXIS},
                        {"field": "value", "title": "value", "format": ".4~f"}],
        },
    }
    layers = [curves]
    if quantity == "loss":
        layers.insert(0, {
            "transform": [{"filter": {"field": "series", "equal": BAND}}],
            "mark": {"type": "line", "strokeWidth": 0.8, "opacity": 0.3, "color": theme.TRAIN, "aria": False},
            "encoding": {"x": x, "y": y},
        })
    return {"height": height, "layer": layers, "usermeta": {"embedOptions": {"renderer": "svg"}},
            "config": {"font": "Inter, system-ui, sans-serif"}}
