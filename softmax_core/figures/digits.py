"""Plotly figures of 28x28 things: weight templates, digits, evidence maps, the confusion matrix.

Every image is a heatmap with row 0 at the top (so digits stand upright), square pixels, and a
hover that names the pixel. Signed quantities (weights, evidence) use the diverging scale with
white at zero and a symmetric range, so the same colour means the same value everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..analysis import evidence
from ..data import CLASSES, IMAGE_SIDE
from .theme import ACCENT, DIVERGING, INK, TEST, styled

INK_SCALE = [[0.0, "#0b0f14"], [1.0, "#ffffff"]]
"""Digits as MNIST stores them: white ink on black."""
CORRECT_SCALE = [[0.0, "#eef2ff"], [1.0, "#1e3a8a"]]
"""Confusion-matrix diagonal: right guesses in blue."""
ERROR_SCALE = [[0.0, "#fff7ed"], [1.0, TEST]]
"""Confusion-matrix off-diagonal: mistakes in orange."""
WEIGHT_PERCENTILE = 99.0
"""Weight colour scales end at this percentile of |W|; the hover still gives exact values."""
GALLERY_GAP = 2
"""Blank image pixels between gallery tiles, side by side."""
CAPTION_SPACE = 9
"""Blank image pixels above each gallery tile, for its caption."""


def _symmetric_limit(values: np.ndarray, percentile: float = 100.0) -> float:
    """A magnitude for both ends of a diverging scale, so that zero sits at its centre.

    Below 100, the ``percentile`` of the magnitudes: a few extreme weights on rarely inked
    border pixels would otherwise wash out every template's structure.
    """
    limit = float(np.percentile(np.abs(values), percentile)) if np.size(values) else 0.0
    return limit if limit > 0 else 1.0


def _image_axes(fig: go.Figure, rows: int = 1, cols: int = 1) -> None:
    """Upright, square, unlabelled pixel axes for every subplot."""
    for i in range(1, rows * cols + 1):
        suffix = "" if i == 1 else str(i)
        fig.update_layout({
            f"xaxis{suffix}": dict(visible=False, constrain="domain", scaleanchor=f"y{suffix}"),
            f"yaxis{suffix}": dict(visible=False, autorange="reversed", constrain="domain"),
        })


def _template_traces(W: np.ndarray, limit: float) -> list[go.Heatmap]:
    """One heatmap per digit column of W, sharing the colour scale and a single colour bar."""
    traces = []
    for digit in range(CLASSES):
        traces.append(go.Heatmap(
            z=W[:, digit].reshape(IMAGE_SIDE, IMAGE_SIDE), zmin=-limit, zmax=limit, zmid=0,
            colorscale=DIVERGING, showscale=digit == 0, name=str(digit),
            colorbar=dict(title=dict(text="weight", side="right"), thickness=12, len=0.9),
            hovertemplate=f"digit {digit}<br>pixel (row %{{y}}, col %{{x}})<br>weight %{{z:.4f}}<extra></extra>",
        ))
    return traces


def _template_grid(title: str | None, height: int) -> go.Figure:
    fig = make_subplots(rows=2, cols=5, subplot_titles=[f"<b>{d}</b>" for d in range(CLASSES)],
                        horizontal_spacing=0.02, vertical_spacing=0.08)
    _image_axes(fig, 2, 5)
    styled(fig, title, height)
    fig.update_annotations(font=dict(size=14, color=INK))
    fig.update_layout(margin=dict(l=8, r=8, t=64 if title else 28, b=8))
    return fig


def weight_grid(W: np.ndarray, title: str | None = None, height: int = 500) -> go.Figure:
    """The ten 28x28 weight templates, 2x5, red where ink votes for the digit, blue against."""
    fig = _template_grid(title, height)
    for digit, trace in enumerate(_template_traces(W, _symmetric_limit(W, WEIGHT_PERCENTILE))):
        fig.add_trace(trace, row=digit // 5 + 1, col=digit % 5 + 1)
    return fig


def weight_evolution(stack: np.ndarray, start: int = 0, height: int = 540, epochs: Sequence[int] | None = None,
                     total: int | None = None) -> go.Figure:
    """The templates after each epoch as animation frames, with Play/Pause and a slider that follows them.

    ``stack`` is (n, 784, 10): all epochs, or the ones named (1-based) in ``epochs`` out of
    ``total``, so a long run is animated from a sample instead of every epoch. One colour scale
    spans every frame, so templates visibly strengthen as they form instead of being re-stretched.
    """
    numbers = list(epochs) if epochs is not None else list(range(1, len(stack) + 1))
    total = total or len(stack)
    limit = _symmetric_limit(stack, WEIGHT_PERCENTILE)
    fig = _template_grid(_epoch_title(numbers[start], total), height)
    for digit, trace in enumerate(_template_traces(stack[start], limit)):
        fig.add_trace(trace, row=digit // 5 + 1, col=digit % 5 + 1)
    fig.frames = [
        go.Frame(name=str(number), traces=list(range(CLASSES)),
                 data=[go.Heatmap(z=W[:, d].reshape(IMAGE_SIDE, IMAGE_SIDE)) for d in range(CLASSES)],
                 layout=dict(title=dict(text=_epoch_title(number, total))))
        for number, W in zip(numbers, stack)
    ]
    fig.update_layout(updatemenus=[dict(
        type="buttons", direction="left", x=1, xanchor="right", y=1.13, yanchor="bottom", showactive=False,
        pad=dict(r=4, t=0), font=dict(size=12),
        buttons=[
            dict(label="▶ Play", method="animate",
                 args=[None, dict(frame=dict(duration=450, redraw=True), transition=dict(duration=0),
                                  fromcurrent=False, mode="immediate")]),
            dict(label="❚❚ Pause", method="animate",
                 args=[[None], dict(frame=dict(duration=0, redraw=False), mode="immediate")]),
        ],
    )], sliders=[_epoch_slider(numbers, start)])
    return fig


def _epoch_slider(numbers: Sequence[int], start: int) -> dict:
    """Plotly's own epoch slider over the frames' epochs: unlike a Streamlit slider, it follows Play."""
    return dict(
        active=start, currentvalue=dict(prefix="Epoch ", font=dict(size=13, color=INK)), pad=dict(t=36, b=8),
        len=1.0, x=0, steps=[dict(label=str(n), method="animate",
                                  args=[[str(n)], dict(mode="immediate", frame=dict(duration=0, redraw=True),
                                                       transition=dict(duration=0))])
                             for n in numbers],
    )


def _epoch_title(epoch: int, epochs: int) -> str:
    return f"Templates after epoch {epoch} of {epochs}"


def probability_bars(proba: np.ndarray, height: int = 300) -> go.Figure:
    """The ten class probabilities; the top guess in the accent colour, labelled with its share."""
    proba = np.asarray(proba, np.float64).reshape(CLASSES)
    top = int(proba.argmax())
    colours = [ACCENT if d == top else "#cbd2d9" for d in range(CLASSES)]
    fig = go.Figure(go.Bar(
        x=list(range(CLASSES)), y=proba, marker=dict(color=colours, line=dict(width=0)),
        text=[f"{p:.0%}" if p >= 0.005 else "" for p in proba], textposition="outside", cliponaxis=False,
        textfont=dict(size=12, color=INK),
        hovertemplate="digit %{x}: %{y:.2%}<extra></extra>",
    ))
    styled(fig, None, height)
    fig.update_layout(showlegend=False, bargap=0.25, margin=dict(l=56, r=16, t=28, b=44))
    fig.update_xaxes(title="Digit", tickmode="array", tickvals=list(range(CLASSES)), showgrid=False)
    fig.update_yaxes(title="Probability", range=[0, 1.08], tickformat=".0%", tickvals=[0, 0.25, 0.5, 0.75, 1])
    return fig


def digit_image(image: np.ndarray, title: str | None = None, height: int = 280) -> go.Figure:
    """A 28x28 image as the model sees it: white ink on black, one square per pixel."""
    fig = go.Figure(go.Heatmap(
        z=np.asarray(image).reshape(IMAGE_SIDE, IMAGE_SIDE), zmin=0, zmax=1, colorscale=INK_SCALE,
        showscale=False, hovertemplate="pixel (row %{y}, col %{x})<br>ink %{z:.2f}<extra></extra>",
    ))
    _image_axes(fig)
    styled(fig, title, height)
    fig.update_layout(margin=dict(l=4, r=4, t=40 if title else 4, b=4))
    return fig


def evidence_map(x: np.ndarray, W: np.ndarray, digit: int, limit: float | None = None,
                 height: int = 340) -> go.Figure:
    """Each pixel's vote ``x * W[:, digit]``: red strokes argue for ``digit``, blue against.

    ``limit`` sets both ends of the colour scale, so maps drawn side by side can share one.
    """
    x = np.asarray(x, np.float32).reshape(IMAGE_SIDE, IMAGE_SIDE)
    weights = W[:, digit].reshape(IMAGE_SIDE, IMAGE_SIDE)
    votes = evidence(x, W, digit)
    fig = go.Figure(go.Heatmap(
        z=votes, zmid=0, zmin=-(limit or _symmetric_limit(votes)), zmax=limit or _symmetric_limit(votes),
        colorscale=DIVERGING,
        customdata=np.stack([x, weights], axis=-1),
        colorbar=dict(title=dict(text="evidence", side="right"), thickness=12),
        hovertemplate=("pixel (row %{y}, col %{x})<br>ink %{customdata[0]:.2f} × weight %{customdata[1]:.3f}"
                       f"<br>evidence for {digit}: %{{z:+.3f}}<extra></extra>"),
    ))
    _image_axes(fig)
    styled(fig, f"Evidence for {digit}: x · W[:, {digit}]", height)
    fig.update_layout(margin=dict(l=8, r=8, t=40, b=8))
    return fig


def confusion_matrix(matrix: np.ndarray, normalised: bool = False, height: int = 500) -> go.Figure:
    """True digit (rows) against guess (columns): right guesses in blue, mistakes in orange.

    The diagonal and the mistakes get separate colour scales, so a handful of confusions stays
    visible next to a thousand right answers. ``normalised`` shows each row as shares. A layer
    of invisible square markers carries the labels, the hover and click-to-select (Plotly
    cannot select heatmap cells).
    """
    counts = np.asarray(matrix, np.int64)
    size = len(counts)
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    values = shares if normalised else counts.astype(np.float64)
    diagonal = np.eye(size, dtype=bool)
    fig = go.Figure()
    for mask, scale in ((diagonal, CORRECT_SCALE), (~diagonal, ERROR_SCALE)):
        z = np.where(mask, values, np.nan)
        top = float(np.nanmax(z)) if np.nanmax(z) > 0 else 1.0
        fig.add_trace(go.Heatmap(z=z, x=list(range(size)), y=list(range(size)), colorscale=scale, zmin=0, zmax=top,
                                 showscale=False, hoverinfo="skip", xgap=1, ygap=1))
    dark = _dark_cells(values, diagonal)
    rows, cols = np.indices(counts.shape)
    labels = [_cell_label(count, share, normalised) for count, share in zip(counts.ravel(), shares.ravel())]
    fig.add_trace(go.Scatter(
        x=cols.ravel(), y=rows.ravel(), mode="markers+text", text=labels,
        textfont=dict(size=12, color=np.where(dark.ravel(), "white", "black").tolist()),
        marker=dict(symbol="square", size=34, opacity=0), selected=dict(marker=dict(opacity=0)),
        unselected=dict(marker=dict(opacity=0)), customdata=np.stack([counts.ravel(), shares.ravel()], axis=-1),
        hovertemplate="true %{y} → guessed %{x}<br>%{customdata[0]} images · %{customdata[1]:.1%} of true %{y}s"
                      "<extra></extra>",
        hoverlabel=dict(bgcolor="white", bordercolor=INK, font=dict(color=INK)), showlegend=False,
    ))
    styled(fig, None, height)
    fig.update_layout(margin=dict(l=64, r=16, t=16, b=56), plot_bgcolor="white", clickmode="event+select",
                      dragmode=False)
    ticks = dict(tickmode="array", tickvals=list(range(size)), showgrid=False, zeroline=False, constrain="domain")
    fig.update_xaxes(title="Guessed digit", range=[-0.5, size - 0.5], **ticks)
    fig.update_yaxes(title="True digit", range=[size - 0.5, -0.5], scaleanchor="x", **ticks)
    return fig


def _luminance(hex_colour: str) -> float:
    """Relative luminance (WCAG) of a #rrggbb colour."""
    channels = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)]) / 255.0
    linear = np.where(channels <= 0.03928, channels / 12.92, ((channels + 0.055) / 1.055) ** 2.4)
    return float(linear @ [0.2126, 0.7152, 0.0722])


def _dark_cells(values: np.ndarray, diagonal: np.ndarray) -> np.ndarray:
    """Cells where white text contrasts more than black (WCAG ratio); the better of the two is
    always at least 4.58:1, so every count passes AA. Each cell's colour is interpolated on its
    own scale (right guesses, mistakes) as Plotly does."""
    dark = np.zeros(values.shape, bool)
    for mask, scale in ((diagonal, CORRECT_SCALE), (~diagonal, ERROR_SCALE)):
        top = float(values[mask].max()) or 1.0
        t = np.clip(values / top, 0.0, 1.0)
        low, high = (np.array([int(c[i:i + 2], 16) for i in (1, 3, 5)], float) for _, c in scale)
        for index in zip(*np.nonzero(mask)):
            rgb = low + t[index] * (high - low)
            cell = _luminance("#" + "".join(f"{int(round(v)):02x}" for v in rgb))
            dark[index] = 1.05 / (cell + 0.05) > (cell + 0.05) / 0.05
    return dark


def _cell_label(count: int, share: float, normalised: bool) -> str:
    """A count, or a share with a decimal below 10% so that 0.3% does not read as none."""
    if not normalised or count == 0:
        return f"{count}"
    return f"{share:.0%}" if share >= 0.095 else f"{share:.1%}"


def class_accuracy_bars(accuracy: np.ndarray, height: int = 500) -> go.Figure:
    """Share of each true digit guessed right, as horizontal bars; the weakest digit highlighted."""
    accuracy = np.asarray(accuracy, np.float64)
    worst = int(accuracy.argmin())
    fig = go.Figure(go.Bar(
        x=accuracy, y=list(range(len(accuracy))), orientation="h",
        marker=dict(color=[TEST if d == worst else "#1e3a8a" for d in range(len(accuracy))]),
        text=[f"{a:.1%}" for a in accuracy], textposition="inside", insidetextanchor="end",
        textfont=dict(color="white", size=11), hovertemplate="digit %{y}: %{x:.2%} right<extra></extra>",
    ))
    styled(fig, None, height)
    low = max(0.0, np.floor(accuracy.min() * 10) / 10 - 0.1)
    fig.update_layout(showlegend=False, bargap=0.3, margin=dict(l=56, r=16, t=16, b=56))
    fig.update_xaxes(title="Right guesses", range=[low, 1], tickformat=".0%")
    fig.update_yaxes(title="True digit", tickmode="array", tickvals=list(range(len(accuracy))), autorange="reversed",
                     showgrid=False)
    return fig


def digit_gallery(images: np.ndarray, captions: Sequence[str], hover: Sequence[str], columns: int = 8,
                  pixel_size: float = 3.0) -> go.Figure:
    """Small 28x28 digits in a grid, each captioned above (e.g. "4 → 9 · 87%").

    One mosaic heatmap rather than a subplot per digit, so a page of 48 stays light.
    ``pixel_size`` (screen pixels per image pixel) sets the height to keep the pixels square.
    """
    images = np.asarray(images, np.float32).reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
    rows = max(1, -(-len(images) // columns))
    step_x, step_y = IMAGE_SIDE + GALLERY_GAP, IMAGE_SIDE + CAPTION_SPACE
    mosaic = np.full((rows * step_y, columns * step_x), np.nan, np.float32)
    centres_x, centres_y = [], []
    for i, image in enumerate(images):
        top, left = (i // columns) * step_y + CAPTION_SPACE, (i % columns) * step_x
        mosaic[top:top + IMAGE_SIDE, left:left + IMAGE_SIDE] = image
        centres_x.append(left + IMAGE_SIDE / 2 - 0.5)
        centres_y.append(top + IMAGE_SIDE / 2 - 0.5)
    fig = go.Figure(go.Heatmap(z=mosaic, zmin=0, zmax=1, colorscale=INK_SCALE, showscale=False, hoverinfo="skip"))
    fig.add_trace(go.Scatter(  # one hover label per digit, not per pixel: 2.8 MB of page less for 48 digits
        x=centres_x, y=centres_y, mode="markers", hovertext=list(hover), hovertemplate="%{hovertext}<extra></extra>",
        marker=dict(symbol="square", size=IMAGE_SIDE * pixel_size, opacity=0), showlegend=False))
    for i, caption in enumerate(captions):
        fig.add_annotation(x=(i % columns) * step_x + IMAGE_SIDE / 2 - 0.5,
                           y=(i // columns) * step_y + CAPTION_SPACE - 1, text=caption, showarrow=False,
                           yanchor="bottom", font=dict(size=11, color=INK))
    _image_axes(fig)
    styled(fig, None, round(rows * step_y * pixel_size) + 8)
    fig.update_layout(margin=dict(l=4, r=4, t=4, b=4), plot_bgcolor="white")
    fig.update_yaxes(range=[rows * step_y - 0.5, -0.5], autorange=False)
    fig.update_xaxes(range=[-0.5, columns * step_x - GALLERY_GAP - 0.5])
    return fig
