"""Weights: the ten 28x28 templates a run learned, and how they formed epoch by epoch.

Column k of W holds one weight per pixel; a digit's logit is the ink-weighted sum of its
column, so drawn as an image each column is the template the model matches digit k against.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from softmax_core.figures.digits import weight_evolution, weight_grid
from softmax_core.runs import RunError
from pages.run_arrays import evolution, weights
from pages.session import page_header, pick_run

WEIGHT_NOTE = ("Hover a pixel for its exact weight. The colour scale ends at the 99th percentile of |W|, "
               "so the few most extreme weights saturate.")
ADAM_NOTE = (" Adam scales every weight's steps by its own gradient history, so pixels that are rarely inked "
             "(near the border) still get large weights; they matter little, as ink seldom lands there.")

page_header(
    "Weights",
    "Each digit's 784 weights drawn as a 28x28 template, on one colour scale centred on zero: "
    "red pixels are where ink votes for the digit, blue where ink votes against it.",
)

run = pick_run("weights_run")
if run is None:
    st.stop()

W, b = weights(run)
final = run.final
left, middle, right, last = st.columns(4)
left.metric("Test accuracy", f"{final['test_accuracy']:.2%}" if "test_accuracy" in final else "–")
middle.metric("Epochs trained", run.epochs_completed)
right.metric("Largest |weight|", f"{np.abs(W).max():.3f}")
last.metric("Bias range", f"{b.min():+.2f} … {b.max():+.2f}")

final_tab, evolution_tab = st.tabs(["Final templates", "Epoch by epoch"])

with final_tab:
    st.plotly_chart(weight_grid(W), theme=None, key="weights_grid",
                    config={"displaylogo": False, "modeBarButtonsToRemove": ["select2d", "lasso2d"]})
    st.caption(WEIGHT_NOTE + (ADAM_NOTE if run.config and run.config.optimizer == "adam" else ""))

with evolution_tab:
    try:
        stack = evolution(run)
    except RunError as exc:
        st.info(f"This run kept no per-epoch weights ({exc}).", icon=":material/history:")
        st.stop()
    if len(stack) == 1:
        st.caption("This run trained a single epoch: there is one snapshot to show.")
    st.plotly_chart(weight_evolution(stack, start=len(stack) - 1), theme=None, key="weights_evolution",
                    config={"displayModeBar": False})  # the toolbar would cover Play
    st.caption("One colour scale spans every epoch, so the templates visibly sharpen and strengthen "
               "as training goes on.")
