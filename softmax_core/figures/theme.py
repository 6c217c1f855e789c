"""One look for every figure: fonts, colours and margins shared by curves and digit images."""

from __future__ import annotations

import plotly.graph_objects as go

INK = "#1f2933"
GRID = "#e4e7eb"
TRAIN = "#2563eb"
"""Train curves: blue."""
TEST = "#ea580c"
"""Test curves: orange."""
VALIDATION = "#16a34a"
"""Validation curves: green."""
ACCENT = "#7c3aed"
"""Highlights: the top guess, the chosen run."""
DIVERGING = "RdBu_r"
"""Weights and evidence: red for positive, blue for negative, white at zero."""
RUN_COLOURS = ("#2563eb", "#ea580c", "#16a34a", "#7c3aed", "#db2777", "#0891b2", "#ca8a04", "#4b5563")


def styled(fig: go.Figure, title: str | None = None, height: int = 360) -> go.Figure:
    """Apply the lab's layout: white background, light grid, compact margins, legend on top."""
    fig.update_layout(
        template="plotly_white",
        title=dict(text=title, font=dict(size=15, color=INK), x=0, xanchor="left") if title else None,
        font=dict(family="Inter, system-ui, sans-serif", size=12, color=INK),
        height=height,
        margin=dict(l=56, r=16, t=48 if title else 16, b=44),
        legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="right", x=1, bgcolor="rgba(0,0,0,0)"),
        hoverlabel=dict(font_size=12),
        paper_bgcolor="white",
        plot_bgcolor="white",
    )
    fig.update_xaxes(gridcolor=GRID, zerolinecolor=GRID, linecolor=GRID)
    fig.update_yaxes(gridcolor=GRID, zerolinecolor=GRID, linecolor=GRID)
    return fig
