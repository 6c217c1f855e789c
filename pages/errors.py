"""Errors: where a run goes wrong on the 10,000 test digits, and the digits it gets wrong.

The confusion matrix counts (true digit, guess) pairs; the gallery shows the mistakes themselves,
most confident first, filtered by true digit and guess (or by clicking a matrix cell).
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from softmax_core.analysis import confusion_matrix, misclassified, per_class_accuracy
from softmax_core.figures.digits import class_accuracy_bars, digit_gallery
from softmax_core.figures.digits import confusion_matrix as confusion_figure
from ui.run_arrays import predictions_on_test
from ui.pages_mode import run_through_app
from ui.session import mnist, page_header, pick_run

ANY = "any"
TRUE_KEY, GUESS_KEY, PAGE_KEY = "errors_true", "errors_guess", "errors_page"
PER_PAGE = 50
COLUMNS = 10


def select_cell() -> None:
    """A click on a matrix cell sets both gallery filters to that (true, guess) pair."""
    points = st.session_state["errors_matrix"].selection.points
    if points:
        st.session_state[TRUE_KEY], st.session_state[GUESS_KEY] = int(points[0]["y"]), int(points[0]["x"])
        st.session_state[PAGE_KEY] = 1


def reset_page() -> None:
    st.session_state[PAGE_KEY] = 1


def main() -> None:
    run_through_app()
    page_header(
        "Errors",
        "Where a run goes wrong on the 10,000 test digits it never trained on: which digits it confuses, "
        "and the mistaken images themselves.",
    )
    run = pick_run("errors_run")
    if run is None:
        st.stop()
    data = mnist()
    result = predictions_on_test(run, data)
    matrix = confusion_matrix(result.labels, result.guesses)
    accuracy = per_class_accuracy(matrix)
    mistakes = np.where(np.eye(10, dtype=bool), 0, matrix)
    pair = np.unravel_index(mistakes.argmax(), mistakes.shape)

    left, middle, right, last = st.columns(4)
    left.metric("Test accuracy", f"{result.accuracy:.2%}")
    middle.metric("Mistakes", f"{int(mistakes.sum()):,} of {len(result.labels):,}")
    right.metric("Most confused", f"{pair[0]} → {pair[1]}", f"{int(mistakes[pair])} images", delta_color="orange", delta_arrow="off")
    last.metric("Hardest digit", f"{int(accuracy.argmin())}", f"{accuracy.min():.1%} right", delta_color="orange", delta_arrow="off")

    matrix_column, accuracy_column = st.columns([1.35, 1], gap="large")
    with matrix_column:
        st.subheader("Confusion matrix", anchor=False)
        normalised = st.toggle("Share of each true digit", key="errors_normalised",
                               help="Show each row as percentages of that digit's test images instead of counts.")
        st.plotly_chart(confusion_figure(matrix, normalised), theme=None, key="errors_matrix", on_select=select_cell,
                        selection_mode="points", config={"displayModeBar": False})
        st.caption("Rows are the true digit, columns the guess. Click a cell to show its digits below.")
    with accuracy_column:
        st.subheader("Accuracy per digit", anchor=False)
        st.plotly_chart(class_accuracy_bars(accuracy), theme=None, key="errors_accuracy",
                        config={"displayModeBar": False})

    st.divider()
    st.subheader("Misclassified test digits", anchor=False)
    options = [ANY, *range(10)]
    true_column, guess_column, page_column = st.columns([1, 1, 1])
    true_digit = true_column.selectbox("True digit", options, key=TRUE_KEY, on_change=reset_page)
    guessed_digit = guess_column.selectbox("Guessed as", options, key=GUESS_KEY, on_change=reset_page)
    shown = misclassified(result, None if true_digit == ANY else true_digit,
                          None if guessed_digit == ANY else guessed_digit)
    pages = max(1, -(-len(shown) // PER_PAGE))
    page = page_column.number_input(f"Page (of {pages})", 1, pages, key=PAGE_KEY) if pages > 1 else 1
    if not len(shown):
        st.info("No test digit was misclassified with these filters.", icon=":material/check_circle:")
        st.stop()
    first = (page - 1) * PER_PAGE
    index = shown[first:first + PER_PAGE]
    st.caption(f"Showing {first + 1}–{first + len(index)} of {len(shown):,} mistakes, most confident first. "
               "Each caption reads true → guess · the model's confidence in its guess.")
    captions = [f"{result.labels[i]} → <b>{result.guesses[i]}</b> · {result.confidence[i]:.0%}" for i in index]
    hover = [f"test image #{i}<br>true {result.labels[i]}, guessed {result.guesses[i]} "
             f"with {result.confidence[i]:.1%}" for i in index]
    st.plotly_chart(digit_gallery(data.images("test", index), captions, hover, columns=COLUMNS), theme=None,
                    key="errors_gallery", config={"displayModeBar": False})


main()
