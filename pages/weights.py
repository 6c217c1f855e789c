"""Weights: the ten 28x28 templates a run learned, and how they formed epoch by epoch.

Column k of W holds one weight per pixel; a digit's logit is the ink-weighted sum of its
column, so drawn as an image each column is the template the model matches digit k against.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from softmax_core.figures.digits import weight_evolution, weight_grid
from softmax_core.runs import RunError, RunInfo
from ui.run_arrays import evolution, evolution_epochs, weights
from ui.pages_mode import run_through_app
from ui.session import literal, page_header, pick_run

WEIGHT_NOTE = ("Hover a pixel for its exact weight. The colour scale ends at the 99th percentile of |W|, "
               "so the few most extreme weights saturate.")
MAX_FRAMES = 40
"""Animation frames drawn at most: a 2,000-epoch run is played from an even sample, not every epoch."""
TABS = ("Final templates", "Epoch by epoch")
TAB_KEY = "weights_tab"
"""The open tab's label in the session state; setting it to TABS[1] opens the animation."""
ADAM_NOTE = (" Adam scales every weight's steps by its own gradient history, so pixels that are rarely inked "
             "(near the border) still get large weights; they matter little, as ink seldom lands there.")


def frame_epochs(epochs: int, chosen: int) -> tuple[int, ...]:
    """0-based epochs to animate: every one up to MAX_FRAMES, else an even sample with the chosen and last."""
    if epochs <= MAX_FRAMES:
        return tuple(range(epochs))
    sample = {round(i * (epochs - 1) / (MAX_FRAMES - 1)) for i in range(MAX_FRAMES)}
    return tuple(sorted(sample | {chosen, epochs - 1}))


def main() -> None:
    run_through_app()
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

    # Each tab's figure is built only while its tab is open (on_change="rerun"): the animation is
    # about 0.9 MB of frames for 20 epochs, which a first visit to the page no longer waits for.
    final_tab, evolution_tab = st.tabs(TABS, key=TAB_KEY, on_change="rerun")

    if final_tab.open:
        with final_tab:
            st.plotly_chart(weight_grid(W), theme=None, key="weights_grid",
                            config={"displaylogo": False, "modeBarButtonsToRemove": ["select2d", "lasso2d"]})
            st.caption(WEIGHT_NOTE + (ADAM_NOTE if run.config and run.config.optimizer == "adam" else ""))
    if evolution_tab.open:
        with evolution_tab:
            evolution_panel(run)


def evolution_panel(run: RunInfo) -> None:
    """The templates after each epoch, animated (Play) on one colour scale, with the figure's own slider."""
    try:
        epochs = evolution_epochs(run)
    except RunError as exc:
        st.info(f"This run kept no per-epoch weights ({literal(exc)}).", icon=":material/history:")
        return
    if epochs == 1:
        st.caption("This run trained a single epoch: there is one snapshot to show.")
    picked = frame_epochs(epochs, epochs - 1)
    try:
        stack = evolution(run, picked)
    except RunError as exc:
        st.info(f"This run's per-epoch weights cannot be read ({literal(exc)}).", icon=":material/history:")
        return
    st.plotly_chart(weight_evolution(stack, start=len(picked) - 1, epochs=[e + 1 for e in picked], total=epochs),
                    theme=None, key="weights_evolution",
                    config={"displayModeBar": False})  # the toolbar would cover Play
    sampled = f" ▶ Play steps through {len(picked)} of the {epochs} epochs." if len(picked) < epochs else ""
    st.caption("One colour scale spans every epoch, so the templates visibly sharpen and strengthen "
               "as training goes on." + sampled)


main()
