"""Softmax Lab: `streamlit run dashboard.py`.

The entry script sets up the page, checks that MNIST is there (one explanation panel for every
page if not) and hands over to the page the user picked. Home lives here; the rest in pages/.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from ui.pages_mode import navigation_ready
from ui.session import job_service, literal, mnist, page_header, run_label, run_links, run_store, runs_with_weights
from softmax_core.config import TrainConfig
from softmax_core.data import IMAGE_SIDE, TEST_SIZE, TRAIN_SIZE, VALIDATION_SIZE, Mnist
from softmax_core.figures.curves import accuracy_curves
from softmax_core.query import to_query

TUTORIAL = TrainConfig(learning_rate=0.05, batch_size=1000, epochs=15, optimizer="sgd", schedule="constant", l2=0.0)
"""The TensorFlow tutorial's settings: about 90% test accuracy."""
SAMPLES_PER_DIGIT = 2


def digit_strip(data: Mnist, per_digit: int = SAMPLES_PER_DIGIT) -> tuple[np.ndarray, list[int]]:
    """The first ``per_digit`` test images of each digit side by side, dark ink on white."""
    picks = [int(i) for digit in range(10) for i in np.flatnonzero(data.test_y == digit)[:per_digit]]
    images = data.images("test", picks).reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
    return 1.0 - np.concatenate(list(images), axis=1), [int(data.test_y[i]) for i in picks]


def home() -> None:
    page_header("Softmax Lab", "The classic TensorFlow softmax regression on the real MNIST digits, in your browser.")
    data = mnist()
    st.markdown(
        "Softmax Lab trains the simplest classifier that works on handwritten digits, one linear layer "
        "and a softmax, and lets you watch it learn. Train it with your own settings, look at the ten "
        "weight templates it learns, draw a digit for it to read, and see where it goes wrong."
    )
    facts = st.columns(4)
    facts[0].metric("Training images", f"{TRAIN_SIZE:,}", border=True)
    facts[1].metric("Validation images", f"{VALIDATION_SIZE:,}", border=True)
    facts[2].metric("Test images", f"{TEST_SIZE:,}", border=True)
    facts[3].metric("Pixels × classes", "784 × 10", border=True)
    strip, labels = digit_strip(data)
    st.image(strip, width="stretch", clamp=True,
             caption=f"Test images, {SAMPLES_PER_DIGIT} of each digit: {' '.join(map(str, labels))}")

    latest, guide = st.columns([1.15, 1], gap="large")
    with latest:
        _latest_run()
    with guide:
        _expected_results()
    st.subheader("Pages", anchor=False)
    _page_cards()
    st.divider()
    st.caption(
        "MNIST by Yann LeCun, Corinna Cortes and Christopher J. C. Burges, used under "
        "[CC BY-SA 3.0](https://creativecommons.org/licenses/by-sa/3.0/). 55,000 training and 5,000 "
        "validation images are the first and last of its 60,000; the 10,000 test images are its test set."
    )


def _latest_run() -> None:
    st.subheader("Latest run", anchor=False)
    runs = runs_with_weights(run_store())
    if not runs:
        st.info("No run yet. The default settings reach about 92.7% test accuracy in a few seconds.",
                icon=":material/info:")
        st.page_link("pages/train.py", label="Train a model", icon=":material/model_training:")
        return
    run = runs[0]
    final = run.final
    st.caption(literal(run_label(run)))
    cols = st.columns(3)
    cols[0].metric("Test accuracy", f"{final['test_accuracy']:.2%}")
    cols[1].metric("Validation accuracy", f"{final['validation_accuracy']:.2%}")
    cols[2].metric("Epochs", f"{run.epochs_completed}", help=f"{run.duration:.1f} s of training")
    st.caption("Accuracy per epoch")
    st.plotly_chart(accuracy_curves(run.metrics, run.config.epochs, title=None, height=260),
                    key="home_latest_accuracy", config={"displayModeBar": False})
    run_links(run.run_id)


def _expected_results() -> None:
    st.subheader("What to expect", anchor=False)
    st.markdown(
        "A linear softmax on raw pixels tops out near 92.5–93% test accuracy. Getting there takes a "
        "decaying learning rate and a few tens of epochs, not a larger learning rate."
    )
    for config, name, result, icon in ((TUTORIAL, "The tutorial's settings", "≈ 90%", ":material/school:"),
                                       (TrainConfig(), "The lab's defaults", "≈ 92.7%", ":material/bolt:")):
        with st.container(border=True):
            st.metric(name, result, help="Test accuracy at the end of training")
            st.caption(f"{config.label()} · {config.schedule} learning rate")
            st.page_link("pages/train.py", label="Train with these settings", icon=icon,
                         query_params=to_query(config))


PAGE_GUIDE = (
    ("pages/train.py", "Train", ":material/model_training:", "Settings, Start and Stop, live loss and accuracy."),
    ("pages/weights.py", "Weights", ":material/grid_on:", "The ten learned 28×28 templates, epoch by epoch."),
    ("pages/draw.py", "Draw", ":material/draw:", "Draw a digit; see the probabilities and the evidence."),
    ("pages/runs.py", "Runs", ":material/history:", "Every saved run: compare curves, download, delete."),
    ("pages/errors.py", "Errors", ":material/rule:", "Confusion matrix and the test digits it gets wrong."),
    ("pages/sweep.py", "Sweep", ":material/tune:", "A grid of learning rates × batch sizes, run in turn."),
)


def _page_cards() -> None:
    for row in (PAGE_GUIDE[:3], PAGE_GUIDE[3:]):
        for col, (page, title, icon, text) in zip(st.columns(3), row):
            with col.container(border=True, height=112):
                st.page_link(page, label=title, icon=icon)
                st.caption(text)


PAGE_STYLE = """<style>
[data-testid="stMainBlockContainer"] { padding-top: 2.2rem; max-width: 1400px; }
</style>"""
"""Less empty space above each page's title, and lines that stay readable on wide screens."""


def main() -> None:
    st.set_page_config(page_title="Softmax Lab", page_icon=":material/grid_view:", layout="wide")
    st.html(PAGE_STYLE)
    page = st.navigation({"Softmax Lab": [
        st.Page(home, title="Home", icon=":material/home:", default=True),
        *(st.Page(path, title=title, icon=icon) for path, title, icon, _ in PAGE_GUIDE),
    ]})
    navigation_ready()
    mnist()
    job_service()  # started with the first page: its worker is warm before anyone presses Start
    page.run()


main()
