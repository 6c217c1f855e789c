"""The run panel the Train page shows, live or finished: the same elements in the same order.

Every redraw calls the same Streamlit commands with the same keys, so the browser updates each
element in place: the curves are Plotly figures in one keyed ``live_figure`` each (redrawn with
Plotly.react when an epoch ends, untouched between epochs), the weight templates one image.
Figures are built once per run and epoch count, never per poll.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from ui.live_figure import live_figure
from ui.session import DRAWING_KEY, run_store
from softmax_core.data import CLASSES, PIXELS
from softmax_core.evolution import answers_by_epoch, weight_history
from softmax_core.figures.live import live_accuracy, live_loss
from softmax_core.figures.mosaic import template_mosaic
from softmax_core.runs import RunError

ANSWERS_SPEC = {
    "height": 250,
    "width": "container",
    "mark": {"type": "rect", "tooltip": True},
    "encoding": {
        "x": {"field": "epoch", "type": "ordinal", "title": "after epoch", "axis": {"labelAngle": 0, "labelOverlap": True}},
        "y": {"field": "digit", "type": "ordinal", "title": "digit", "axis": {"labelOverlap": False}},
        "color": {"field": "probability", "type": "quantitative", "title": "probability",
                  "scale": {"domain": [0, 1], "scheme": "purples"}, "legend": {"format": ".0%"}},
        "tooltip": [{"field": "epoch", "title": "after epoch"}, {"field": "digit"},
                    {"field": "probability", "format": ".1%"}],
    },
    "usermeta": {"embedOptions": {"renderer": "svg"}},
}
"""The drawing's probability of each digit (rows) after each epoch (columns)."""
METRIC_CARDS = (("test_accuracy", "Test accuracy", True), ("validation_accuracy", "Val. accuracy", True),
                ("test_loss", "Test loss", False), ("train_loss", "Train loss", False))


def metric_row(history: list, live: bool = False) -> None:
    """The latest epoch's numbers with their change: since the last epoch while live, else since epoch 1.

    Always the same elements (a dash before the first epoch), so live redraws replace them in place.
    """
    shown = (history[-2:] if live else history[:1] + history[-1:]) if len(history) > 1 else history
    rows = [h if isinstance(h, dict) else h.to_dict() for h in shown]  # asdict copies step losses: only these two
    last = rows[-1] if rows else None
    before = rows[0] if len(rows) > 1 else None
    for col, (name, label, percent) in zip(st.columns(4), METRIC_CARDS):
        value = "–" if last is None else f"{last[name]:.2%}" if percent else f"{last[name]:.4f}"
        delta = None if before is None else last[name] - before[name]
        col.metric(label, value,
                   None if delta is None else (f"{delta * 100:+.2f} pt" if percent else f"{delta:+.4f}"),
                   delta_color="normal" if percent else "inverse", border=True)


@st.cache_data(max_entries=64, show_spinner=False)
def _figure_json(run_id: str, epochs: int, quantity: str, _history: list) -> str:
    """A curve figure of a run at an epoch count, as JSON: built once, however often the page polls."""
    return (live_loss if quantity == "loss" else live_accuracy)(_history).to_json()


QUANTITIES = ("loss", "accuracy")


def curve_figures(run_id: str, history: list) -> list[str]:
    """The loss and accuracy figures' JSON, built (or found in the cache) before a panel draws anything,
    so that its first element and its curves reach the browser together.

    Before its first epoch every run shows the same empty figures, built once per server instead of
    once per run: the server would otherwise build them while the run's first epoch trains."""
    n = len(history)
    return [_figure_json(run_id if n else "", n, quantity, history) for quantity in QUANTITIES]


def curves(figures: list[str]) -> None:
    """Loss and accuracy (``curve_figures``), each a live Plotly figure in a keyed container (where tests find it)."""
    for quantity, figure in zip(QUANTITIES, figures):
        with st.container(key=f"train_{quantity}_chart"):
            live_figure(figure, key=f"train_{quantity}_figure")


@st.cache_data(max_entries=32, show_spinner=False)
def _mosaic(root: str, run_id: str, epochs: int) -> np.ndarray:
    """The templates after the run's latest epoch (blank before its first)."""
    try:
        W, _ = run_store().load_weights(run_id) if epochs else (np.zeros((PIXELS, CLASSES)), None)
    except RunError:
        W = np.zeros((PIXELS, CLASSES))
    return template_mosaic(W)


@st.cache_data(max_entries=32, show_spinner=False)
def _answers(root: str, run_id: str, epochs: int, drawing: bytes) -> list[dict] | None:
    """The drawing's ten probabilities after each finished epoch; None if the run kept no b per epoch."""
    history = weight_history(run_store().path(run_id)) if epochs else None
    if history is None:
        return None
    proba = answers_by_epoch(*history, np.frombuffer(drawing, np.float32))
    return [{"epoch": e + 1, "digit": d, "probability": float(p)} for e, row in enumerate(proba)
            for d, p in enumerate(row)]


def watch_it_learn(run_id: str, epochs: int) -> None:
    """The ten weight templates forming, and the person's drawing from Draw scored by every epoch."""
    st.subheader("Watch it learn", anchor=False)
    root = str(run_store().root)
    templates, answers = st.columns([1.25, 1], gap="medium")
    templates.image(_mosaic(root, run_id, epochs), width="stretch",
                    caption=(f"The ten templates (digits 0-4, then 5-9) after epoch {epochs}: red pixels vote for "
                             "the digit, blue against." if epochs else "The templates appear after epoch 1."))
    drawing = st.session_state.get(DRAWING_KEY)
    with answers:
        if drawing is None:
            st.info("Draw a digit on the **Draw** page and come back: this panel then shows what every epoch "
                    "of this run answers for your drawing.", icon=":material/draw:")
            return
        rows = _answers(root, run_id, epochs, np.asarray(drawing, np.float32).tobytes())
        with st.container(key="train_answers_chart"):
            st.vega_lite_chart(rows or [], ANSWERS_SPEC)
        if not rows:
            st.caption("Your drawing from Draw is scored here after each finished epoch.")
        else:
            last = [r for r in rows if r["epoch"] == epochs]
            top = max(last, key=lambda r: r["probability"])
            st.caption(f"Your drawing from Draw, scored after each epoch: the model now says **{top['digit']}** "
                       f"({top['probability']:.0%}). Darker is more probable.")
