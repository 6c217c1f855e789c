"""What every page shares: MNIST and the run store once per server, a run picker, one header style.

Pages call ``mnist()`` and ``run_store()`` instead of loading anything themselves, so the data
is parsed once per server process and a missing dataset shows one friendly panel everywhere.
"""

from __future__ import annotations

import os
import re
import threading
import time

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

from softmax_core.data import DataError, Mnist, load_mnist
from softmax_core.jobs import JobService, JobSnapshot, shared_service
from softmax_core.runs import RunError, RunInfo, RunStore, check_run_id, default_root


TRAIN_PAGE = "pages/train.py"
RUN_PARAM = "run"
"""The query parameter that names the run a page shows, so links and reloads keep it."""
OPTIMIZER_NAMES = {"sgd": "SGD (the tutorial's)", "momentum": "SGD + momentum 0.9", "adam": "Adam"}
SCHEDULE_NAMES = {"constant": "constant", "cosine": "cosine decay to 0"}
"""How the Train and Sweep pages name the settings' choices."""
DRAWING_KEY = "drawn_digit"
"""The last digit drawn on Draw (28x28, as the model sees it); Train scores it with every epoch."""


@st.cache_resource(show_spinner="Loading MNIST …")
def _cached_mnist() -> Mnist:
    """MNIST from MNIST_DIR or the cache; a failure is not cached, so Retry can succeed."""
    return load_mnist(allow_download=False)


def mnist() -> Mnist:
    """The dataset, loaded once per server; without it, an explanation panel and ``st.stop()``."""
    try:
        return _cached_mnist()
    except DataError as exc:
        _missing_data_panel(str(exc))
        st.stop()
        raise  # st.stop() raises; this line only tells type checkers the function ends here


def _missing_data_panel(message: str) -> None:
    st.header("MNIST not found", anchor=False)
    st.error(message, icon=":material/dataset:")
    st.markdown(
        "Softmax Lab trains on the real MNIST digits: the four canonical files "
        "`train-images-idx3-ubyte.gz`, `train-labels-idx1-ubyte.gz`, `t10k-images-idx3-ubyte.gz`, "
        "`t10k-labels-idx1-ubyte.gz` (about 11 MB). Point the lab at a folder that holds them "
        "and restart it:"
    )
    st.code("MNIST_DIR=/path/to/mnist streamlit run dashboard.py", language="bash")
    if os.environ.get("MNIST_DIR"):
        st.caption(f"MNIST_DIR is set to `{os.environ['MNIST_DIR']}`: fix that folder, or unset it to download.")
    else:
        st.caption("Or download them once (checksum-verified) into the lab's cache folder.")
    left, right, _ = st.columns([1, 1, 4])
    if left.button("Download MNIST", icon=":material/download:", type="primary", key="mnist_download",
                   disabled=bool(os.environ.get("MNIST_DIR"))):
        _download()
    if right.button("Retry", icon=":material/refresh:", key="mnist_retry"):
        st.rerun()


def _download() -> None:
    bar = st.progress(0.0, text="Connecting …")

    def progress(name: str, done: int, total: int) -> None:
        fraction = min(done / total, 1.0) if total else 0.0
        bar.progress(fraction, text=f"{name}: {done / 1e6:.1f} MB" + (f" of {total / 1e6:.1f} MB" if total else ""))

    try:
        load_mnist(allow_download=True, progress=progress)
    except DataError as exc:
        bar.empty()
        st.error(f"Download failed. {exc}", icon=":material/cloud_off:")
        return
    st.rerun()


@st.cache_resource
def _store_at(root: str) -> RunStore:
    return RunStore(root)


def run_store() -> RunStore:
    """The shared run store (at $SOFTMAX_LAB_RUNS or the default folder), one per root."""
    return _store_at(str(default_root()))


def job_service() -> JobService:
    """The server's one job service: its queue and worker process are shared by every session."""
    return shared_service()


_MARKDOWN_ASCII = re.compile(r"([!-/:-@\[-`{-~])")
"""Every ASCII punctuation character: CommonMark lets a backslash make each of them literal."""


def literal(text: object) -> str:
    """Text from a URL or a run's files, escaped so Markdown shows it as typed.

    Every ASCII punctuation character is backslash-escaped and line breaks become spaces, so no
    link, image, emphasis, heading, HTML, LaTeX or colour directive can come out of it.
    """
    return _MARKDOWN_ASCII.sub(r"\\\1", " ".join(str(text).split()))


def run_label(info: RunInfo) -> str:
    """One line naming a run for pickers: when, settings, status, test accuracy."""
    when = time.strftime("%d %b %H:%M:%S", time.localtime(info.created))
    settings = info.config.label() if info.config else info.run_id
    accuracy = info.final.get("test_accuracy")
    score = f" · test {accuracy:.2%}" if accuracy is not None else ""
    return f"{when} · {settings} · {info.status}{score}"


def saved_runs(store: RunStore) -> list[RunInfo]:
    """All runs, newest first by creation time; a store that cannot be read stops the page with why."""
    try:
        return store.list()
    except RunError as exc:
        st.error(f"The run store cannot be read: {literal(exc)}", icon=":material/folder_off:")
        st.stop()
        raise


def runs_with_weights(store: RunStore) -> list[RunInfo]:
    """Readable runs with at least one finished epoch, newest first."""
    return [r for r in saved_runs(store) if r.status != "unreadable" and r.epochs_completed >= 1]


def _run_from_url() -> str | None:
    value = st.query_params.get(RUN_PARAM)
    if not value:
        return None
    try:
        return check_run_id(value)
    except RunError:
        return None


def pick_run(key: str, label: str = "Run") -> RunInfo | None:
    """A run picker; defaults to ?run= when valid, else the newest run, and writes ?run= back."""
    runs = runs_with_weights(run_store())
    if not runs:
        st.info("No trained run yet: train one first (the defaults take a few seconds).",
                icon=":material/info:")
        st.page_link(TRAIN_PAGE, label="Train a model", icon=":material/model_training:")
        return None
    by_id = {r.run_id: r for r in runs}
    wanted = _run_from_url()
    if wanted and wanted not in by_id:
        st.caption(f"Run `{wanted}` from the link has no saved weights here; showing the newest run.")
        wanted = None
    ids = list(by_id)
    chosen = st.selectbox(label, ids, index=ids.index(wanted) if wanted else 0, key=key,
                          format_func=lambda run_id: run_label(by_id[run_id]))
    if st.query_params.get(RUN_PARAM) != chosen:
        st.query_params[RUN_PARAM] = chosen
    return by_id[chosen]


_ENTERED = "_softmax_lab_entered"
_this_run = threading.local()
"""Per script run (Streamlit runs each in a thread of its own): did dashboard.py's navigation run?"""


def navigation_ready() -> None:
    """Called by dashboard.py right after ``st.navigation``: this run goes through the app."""
    _this_run.navigated = True


def _through_entrypoint() -> None:
    """Make a page that Streamlit ran bare go through dashboard.py instead.

    Streamlit takes a folder named ``pages/`` for a v1 multipage app until some session has
    called ``st.navigation``: a shared link or a reload after a restart would then run the page
    bare (no page config, no navigation, the raw file list in the sidebar). Clearing the flag and
    rerunning sends this very request through the entry script, which keeps the page asked for.
    The test is per run, not the global flag: after a restart the reconnecting tab and a reload
    start bare at once, and the first to clear the flag must not leave the other one bare.
    Only a session's first run is rerun: a rerun later would drop the widget event behind it.
    """
    navigated, _this_run.navigated = getattr(_this_run, "navigated", False), False
    if navigated:
        return
    PagesManager.uses_pages_directory = False
    if not st.session_state.get(_ENTERED):  # a session's first run: no widget event to lose
        st.session_state[_ENTERED] = True
        st.rerun()


def page_header(title: str, caption: str) -> None:
    """The one title + caption style of every page."""
    _through_entrypoint()
    st.title(title, anchor=False)
    st.caption(caption)


def job_line(snap: JobSnapshot) -> str:
    """One line of a job's state: queue position, or epoch, progress and time left."""
    if snap.status == "queued":
        return f"queued · #{snap.position} in line"
    epoch = min(int(snap.progress * snap.config.epochs) + 1, snap.config.epochs)
    left = f" · ~{snap.eta:.0f} s left" if snap.eta is not None else ""
    state = "stopping" if snap.stopping else f"epoch {epoch}/{snap.config.epochs} · {snap.progress:.0%}"
    return f"{state}{left}"


RUNNING_NOW_ROWS = 5
"""Jobs listed with their own Stop; a room of twenty queued runs would otherwise fill the page."""


@st.fragment(run_every=1.0)
def running_now(exclude: str | None = None) -> None:
    """Every queued and running job of this server, from any session, each with Stop."""
    jobs = [j for j in job_service().active() if j.run_id != exclude]
    st.subheader("Running now", anchor=False)
    if not jobs:
        st.caption("Nothing else is queued or training in this lab.")
        return
    for snap in jobs[:RUNNING_NOW_ROWS]:
        with st.container(border=True, gap="small"):
            st.text(f"{snap.config.label()}\n{job_line(snap)}")
            with st.container(horizontal=True, gap="small"):
                st.page_link(TRAIN_PAGE, label="Watch", icon=":material/visibility:",
                             query_params={RUN_PARAM: snap.run_id})
                label = "Cancel run" if snap.status == "queued" else "Stop run"
                if st.button(label, key=f"running_now_stop_{snap.run_id}", icon=":material/stop_circle:",
                             disabled=snap.stopping):
                    job_service().stop(snap.run_id)
                    st.rerun(scope="fragment")
    if len(jobs) > RUNNING_NOW_ROWS:
        st.caption(f"… and {len(jobs) - RUNNING_NOW_ROWS} more queued: every run is on the Runs page.")
