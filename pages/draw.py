"""Draw: a digit drawn with the mouse, the 28x28 image the model sees, its ten probabilities, and why.

The canvas image goes through ``canvas_to_mnist`` (crop, fit 20x20, centre by mass, as MNIST
was made) and the chosen run's weights. The evidence maps split each logit into the votes of the
pixels, ``x[i] * W[i, k]``, plus the bias.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import streamlit as st

from softmax_core.analysis import digit_doubts, evidence, logit_parts, reference_digits
from softmax_core.config import TrainConfig
from softmax_core.figures.digits import digit_image, evidence_map, probability_bars
from softmax_core.model import predict_proba
from softmax_core.preprocess import canvas_to_mnist, ink_extent
from ui.run_arrays import weights
from ui.pages_mode import run_through_app
from ui.session import DRAWING_KEY, job_service, literal, mnist, page_header, pick_run, run_store

CANVAS_KEY = "draw_canvas_key"  # holds the canvas widget's current key; Clear moves it to a fresh one
JOB_KEY = "draw_training_run"
CANVAS_SIDE = 280
STROKE_WIDTH = 20  # ~2 px once a 200 px digit is fitted to MNIST's 20x20 box, like MNIST's pens


def clear_canvas() -> None:
    """A new widget key gives an empty canvas (the component has no clear call from Python)."""
    count = int(st.session_state[CANVAS_KEY].rsplit("_", 1)[1]) + 1
    st.session_state[CANVAS_KEY] = f"draw_canvas_{count}"


@st.cache_resource(show_spinner=False)
def references() -> np.ndarray:
    """10,000 real training digits, to tell a drawing that looks like none of them."""
    return reference_digits(mnist())


SUM_TO_ONE = ("A softmax has no \"none of these\" answer: it turns ten scores into ten shares of 100%, so "
              "the bars always sum to 1 and one of them wins, whatever was drawn.")


def answer(proba: np.ndarray, doubts: list[str]) -> None:
    """The top guess, or why the drawing is not taken for a digit; then all ten probabilities."""
    top = int(proba.argmax())
    if doubts:
        st.warning("**This does not look like a digit**, so the answer below means little: "
                   + "; ".join(doubts) + ".", icon=":material/help:")
    else:
        st.metric("Top guess", top, f"{proba[top]:.1%} confidence", delta_color="violet", delta_arrow="off")
    st.plotly_chart(probability_bars(proba), theme=None, key="draw_proba", config={"displayModeBar": False})
    st.caption(SUM_TO_ONE)


def offer_training() -> None:
    """With no run yet: queue one with the defaults right here, then predict with it."""
    config = TrainConfig()
    service = job_service()
    run_id = st.session_state.get(JOB_KEY)
    if run_id is None or service.snapshot(run_id) is None:
        st.markdown(f"Or train one here with the default settings ({config.epochs} epochs, a few seconds), "
                    "then come straight back to drawing.")
        if not st.button("Train a model with defaults", type="primary", icon=":material/bolt:", key="draw_train"):
            return
        run_id = st.session_state[JOB_KEY] = service.submit(run_store(), config)
    bar = st.progress(0.0, text="Starting …")
    while not (snapshot := service.snapshot(run_id)).done:
        text = (f"Queued: position {snapshot.position}" if snapshot.status == "queued" else
                f"Training with defaults: epoch {len(snapshot.history)} of {config.epochs} · {snapshot.elapsed:.1f} s")
        bar.progress(snapshot.progress, text=text)
        time.sleep(0.15)
    del st.session_state[JOB_KEY]
    if snapshot.history:
        st.rerun()
    st.error(f"Training ended as {snapshot.status} before its first epoch: {literal(snapshot.message)}",
             icon=":material/error:")


def main() -> None:
    run_through_app()
    page_header(
        "Draw",
        "Draw a digit with the mouse. When you lift the pen the drawing is cropped, fitted to 20x20 and "
        "centred in 28x28, as MNIST's digits were, and the chosen run says what it sees.",
    )
    run = pick_run("draw_run")
    if run is None:
        offer_training()
        st.stop()
    W, b = weights(run)
    st.session_state.setdefault(CANVAS_KEY, "draw_canvas_0")

    canvas_column, answer_column, seen_column = st.columns([1.35, 1.55, 1], gap="medium")
    with canvas_column:  # the answer column comes next, so on a phone it sits right under the canvas
        st.subheader("Your digit", anchor=False)
        from streamlit_drawable_canvas import st_canvas  # raises outside a running script

        drawing = st_canvas(stroke_width=STROKE_WIDTH, stroke_color="#FFFFFF", background_color="#000000",
                            width=CANVAS_SIDE, height=CANVAS_SIDE, drawing_mode="freedraw",
                            return_image_data=True, key=st.session_state[CANVAS_KEY])
        st.button("Clear", icon=":material/ink_eraser:", on_click=clear_canvas, key="draw_clear")

    rgba = drawing.image_data
    image = canvas_to_mnist(rgba) if rgba is not None else None
    if image is not None:
        st.session_state[DRAWING_KEY] = image  # the Train page scores it with every epoch of a run

    with answer_column:
        st.subheader("What it answers", anchor=False)
        if image is None:
            st.markdown("#### Draw a digit")
            st.caption("Draw on the black square; the probabilities of all ten digits appear when you lift the pen.")
        else:
            proba = predict_proba(W, b, image)[0]
            top = int(proba.argmax())
            answer(proba, digit_doubts(image, ink_extent(rgba), references()))

    with seen_column:
        st.subheader("What the model sees", anchor=False)
        seen = np.zeros((28, 28), np.float32) if image is None else image
        st.plotly_chart(digit_image(seen), theme=None, key="draw_seen", config={"displayModeBar": False})
        st.caption("Nothing drawn yet." if image is None else "28x28, as the model gets it: 784 inputs in [0, 1].")
    if image is None:
        st.stop()

    st.divider()
    st.subheader("Why: the evidence of each pixel", anchor=False)
    st.caption("A digit's score (logit) is the sum over pixels of ink × weight, plus a bias. Red pixels of your "
               "drawing voted for the digit, blue ones against; the bigger score wins after the softmax.")
    runner_up = int(np.argsort(proba)[-2])
    picked = st.pills("Compare with digit", list(range(10)), selection_mode="single", key="draw_compare",
                      help="With none picked, the right-hand map shows the runner-up.")
    other = runner_up if picked is None else int(picked)
    limit = max(float(np.abs(evidence(image, W, d)).max()) for d in (top, other)) or None  # one scale for both
    top_map, other_map = st.columns(2)
    top_map.plotly_chart(evidence_map(image, W, top, limit), theme=None, key="draw_evidence_top",
                         config={"displayModeBar": False})
    other_map.plotly_chart(evidence_map(image, W, other, limit), theme=None, key="draw_evidence_other",
                           config={"displayModeBar": False})

    parts = logit_parts(image, W, b)
    table = pd.DataFrame({  # probability next to the digit, so a narrow screen keeps it in view
        "digit": np.arange(10),
        "probability": proba,
        "logit": parts.logits,
        "evidence (Σ ink × weight)": parts.evidence,
        "bias": parts.bias,
    })
    st.dataframe(
        table.style.apply(lambda row: ["background-color: #ede9fe; font-weight: 600" if row["digit"] == top else ""
                                       for _ in row], axis=1),
        hide_index=True, width="stretch", key="draw_logits",
        column_config={
            "digit": st.column_config.NumberColumn("Digit", format="%d"),
            "evidence (Σ ink × weight)": st.column_config.NumberColumn("Evidence Σ ink × weight", format="%+.3f"),
            "bias": st.column_config.NumberColumn("Bias", format="%+.3f"),
            "logit": st.column_config.NumberColumn("Logit = evidence + bias", format="%+.3f"),
            "probability": st.column_config.ProgressColumn("Probability", format="percent", min_value=0.0,
                                                           max_value=1.0),
        },
    )


main()
