"""What every page shares: MNIST and the run store once per server, a run picker, one header style.

Pages call ``mnist()`` and ``run_store()`` instead of loading anything themselves, so the data
is parsed once per server process and a missing dataset shows one friendly panel everywhere.
"""

from __future__ import annotations

import os
import re
import time

# Plotly takes pandas from sys.modules when it is there: two sessions starting at once could hand
# one a half-imported pandas ("partially initialized module 'pandas' has no attribute 'Series'",
# seen on Home in the browser suite). Every page imports this module first, so pandas is whole
# before any figure is built.
import pandas  # noqa: F401
import streamlit as st

from softmax_core.data import DataError, Mnist, load_mnist
from softmax_core.jobs import JobService, JobSnapshot, shared_service
from softmax_core.config import ConfigError
from softmax_core.runs import RunError, RunInfo, RunStore, check_run_id, default_root
from ui.live_figure import load_plotly_js


TRAIN_PAGE = "pages/train.py"
RUN_PARAM = "run"
"""The query parameter that names the run a page shows, so links and reloads keep it."""
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
        return store.all_runs()
    except RunError as exc:
        st.error(f"The run store cannot be read: {literal(exc)}", icon=":material/folder_off:")
        st.stop()
        raise


def runs_with_weights(store: RunStore) -> list[RunInfo]:
    """Readable runs with at least one finished epoch, newest first."""
    return [r for r in saved_runs(store) if r.status != "unreadable" and r.epochs_completed >= 1]


def url_run_id() -> str | None:
    """The run a link or a reload names (``?run=``), when it is a valid run id."""
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
    wanted = url_run_id()
    if wanted and wanted not in by_id:
        st.caption(f"Run `{wanted}` from the link has no saved weights here; showing the newest run.")
        wanted = None
    ids = list(by_id)
    chosen = st.selectbox(label, ids, index=ids.index(wanted) if wanted else 0, key=key,
                          format_func=lambda run_id: run_label(by_id[run_id]))
    if st.query_params.get(RUN_PARAM) != chosen:
        st.query_params[RUN_PARAM] = chosen
    return by_id[chosen]


RUN_LINKS = (("pages/weights.py", "Its weight templates", ":material/grid_on:"),
             ("pages/draw.py", "Draw a digit for it", ":material/draw:"),
             ("pages/errors.py", "Its mistakes", ":material/rule:"))


def run_links(run_id: str) -> None:
    """Links from a run to the pages that inspect it, in one row."""
    with st.container(horizontal=True, gap="medium"):
        for page, label, icon in RUN_LINKS:
            st.page_link(page, label=label, icon=icon, query_params={RUN_PARAM: run_id})


def config_refused(exc: ConfigError) -> None:
    """A setting the lab refused, named next to Start; the refused value shown literally."""
    st.error(f"Not started: **{exc.field}** {literal(str(exc).removeprefix(exc.field + ': '))}",
             icon=":material/block:")


def page_header(title: str, caption: str) -> None:
    """The one title + caption style of every page; first, the hidden element that has the browser
    load plotly.js for the Train page's live curves (once per tab, whichever page opens first)."""
    load_plotly_js()
    st.title(title, anchor=False)
    st.caption(caption)


ETA_FROM = 0.25
"""Time left is estimated once a quarter of the first epoch is done (progress streams within an epoch)."""


def time_left(snap: JobSnapshot) -> str:
    """'about 12 s left', or '' while there is too little progress to tell."""
    if snap.eta is None or snap.progress * snap.config.epochs < ETA_FROM:
        return ""
    return f"about {snap.eta:.0f} s left" if snap.eta < 120 else f"about {snap.eta / 60:.0f} min left"


def current_epoch(snap: JobSnapshot) -> int:
    """The epoch a running job is in: the one after its last finished epoch. Counted from the finished
    epochs, not the steps done, so it is still epoch k while epoch k's steps are done and it is being
    evaluated: the Train page's curves then have k - 1 points."""
    return min(len(snap.history) + 1, snap.config.epochs)


def progress_text(snap: JobSnapshot) -> str:
    """A running job's epoch, epochs to go, seconds so far and time left: the Train page's progress bar."""
    epochs = snap.config.epochs
    epoch = current_epoch(snap)
    to_go = f" · {epochs - epoch} more to go" if epochs - epoch else " · the last one"
    left = time_left(snap)
    return f"Epoch {epoch} of {epochs}{to_go} · {snap.elapsed:.1f} s{' · ' + left if left else ''}"


def job_line(snap: JobSnapshot) -> str:
    """One short line of a job's state for Running now: queue position, or epoch and time left."""
    if snap.status == "queued":
        return f"queued · #{snap.position} in line"
    left = time_left(snap)
    state = "stopping" if snap.stopping else f"epoch {current_epoch(snap)}/{snap.config.epochs} · {snap.progress:.0%}"
    return f"{state}{' · ' + left if left else ''}"


RUNNING_NOW_ROWS = 5
"""Jobs listed with their own Stop; a room of twenty queued runs would otherwise fill the page."""


@st.fragment(run_every=2.0)
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
