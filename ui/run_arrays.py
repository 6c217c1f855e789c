"""A run's arrays for the inspection pages, read from disk once per run and epoch count.

Keyed by the runs root, the run id and how many epochs it has finished, so a run that is still
training is re-read after each new epoch and a finished one never again.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from softmax_core.analysis import Predictions, predictions
from softmax_core.data import Mnist
from softmax_core.model import predict_proba
from softmax_core.runs import RunError, RunInfo, RunStore
from ui.session import literal, run_store


@st.cache_data(max_entries=32, show_spinner=False)
def _weights(root: str, run_id: str, epochs: int) -> tuple[np.ndarray, np.ndarray]:
    return RunStore(root).load_weights(run_id)


@st.cache_data(max_entries=32, show_spinner=False)
def _evolution_epochs(root: str, run_id: str, epochs: int) -> int:
    return RunStore(root).evolution_epochs(run_id)


@st.cache_data(max_entries=8, show_spinner=False)
def _evolution(root: str, run_id: str, epochs: int, picked: tuple[int, ...]) -> np.ndarray:
    return RunStore(root).load_evolution(run_id, picked)


@st.cache_data(max_entries=16, show_spinner="Scoring the 10,000 test digits …")
def _predictions_on_test(root: str, run_id: str, epochs: int, _data: Mnist) -> Predictions:

    W, b = RunStore(root).load_weights(run_id)
    return predictions(predict_proba(W, b, _data.images("test")), _data.test_y)


def _root() -> str:
    store: RunStore = run_store()
    return str(store.root)


def _or_stop(read, run: RunInfo):
    """``read()``; weights damaged after the run was listed stop the page with the reason instead."""
    try:
        return read()
    except RunError as exc:
        st.error(f"Run {run.run_id} cannot be used: {literal(exc)}", icon=":material/error:")
        st.stop()
        raise


def weights(run: RunInfo) -> tuple[np.ndarray, np.ndarray]:
    """W (784x10) and b (10) of the run's last finished epoch."""
    return _or_stop(lambda: _weights(_root(), run.run_id, run.epochs_completed), run)


def evolution_epochs(run: RunInfo) -> int:
    """How many per-epoch snapshots of W the run kept (from the file's header); RunError if none."""
    return _evolution_epochs(_root(), run.run_id, run.epochs_completed)


def evolution(run: RunInfo, picked: tuple[int, ...]) -> np.ndarray:
    """W after the 0-based epochs ``picked``, (len(picked), 784, 10): only what a page draws is read."""
    return _evolution(_root(), run.run_id, run.epochs_completed, picked)


def predictions_on_test(run: RunInfo, data: Mnist) -> Predictions:
    """The run's guess and confidence for every test digit."""
    return _or_stop(lambda: _predictions_on_test(_root(), run.run_id, run.epochs_completed, data), run)
