"""Runs: every saved run in one table; overlay their curves, download their files, delete them.

The store is shared by every session, the CLI and sweeps, so this page shows their runs too;
a damaged run folder is listed with its reason and never breaks the page.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import tempfile
import zipfile
from pathlib import Path

import streamlit as st

from ui.pages_mode import run_through_app
from ui.session import RUN_PARAM, job_service, literal, page_header, run_label, run_store, running_now, saved_runs
from softmax_core.figures.curves import METRICS, run_name, runs_overlay
from softmax_core.runs import RunError, RunInfo, RunStore

COMPARE_DEFAULT = 3
CONFIRM_KEY = "runs_confirm_delete"
STATUS_MARKS = {"completed": "✓ completed", "stopped": "■ stopped", "diverged": "⚠ diverged", "failed": "✕ failed",
                "interrupted": "○ interrupted", "running": "● running", "queued": "… queued",
                "cancelled": "– cancelled", "pruned": "✂ pruned", "unreadable": "✕ unreadable"}
OVERLAY_METRICS = ("test_accuracy", "validation_accuracy", "test_loss", "train_loss")


def table_row(run: RunInfo) -> dict:
    """One run as a table row: id, status, final accuracy, settings in one column, duration.

    The settings share one column (``TrainConfig.label``) so the table fits the page.
    """
    config, final = run.config, run.final
    return {
        "Run id": run.run_id,
        "Started": dt.datetime.fromtimestamp(run.created) if run.created else None,
        "Status": STATUS_MARKS.get(run.status, run.status),
        "Test acc.": final["test_accuracy"] * 100 if final else None,
        "Val. acc.": final["validation_accuracy"] * 100 if final else None,
        "Settings": config.label() if config else None,
        "Epochs": f"{run.epochs_completed} / {config.epochs}" if config else None,
        "Duration": run.duration,
        "Sweep": run.sweep.removeprefix("sweep-") if run.sweep else "",
    }


COLUMNS = {
    "Run id": st.column_config.TextColumn(pinned=True, width="medium"),
    "Started": st.column_config.DatetimeColumn(format="D MMM, HH:mm:ss"),
    "Test acc.": st.column_config.NumberColumn(format="%.2f%%", help="Test accuracy after the last finished epoch"),
    "Val. acc.": st.column_config.NumberColumn(format="%.2f%%", help="Validation accuracy, same epoch"),
    "Settings": st.column_config.TextColumn(width="large", help="Optimizer, learning rate, batch, epochs, extras"),
    "Duration": st.column_config.NumberColumn(format="%.1f s", help="Training time including evaluation"),
}


def runs_table(runs: list[RunInfo]) -> None:
    st.dataframe([table_row(r) for r in runs], hide_index=True, column_config=COLUMNS, placeholder="–",
                 key="runs_table", width="stretch")
    broken = [r for r in runs if r.status == "unreadable"]
    if broken:
        st.warning(f"{len(broken)} run folder{'s' * (len(broken) != 1)} cannot be read; the reasons:",
                   icon=":material/warning:")
        st.dataframe([{"Run id": r.run_id, "Reason": r.error} for r in broken], hide_index=True,
                     key="runs_broken")


def compare(runs: list[RunInfo]) -> None:
    st.subheader("Compare", anchor=False)
    with_curves = [r for r in runs if r.status != "unreadable" and r.metrics]
    if not with_curves:
        st.caption("No run has a finished epoch yet.")
        return
    by_id = {r.run_id: r for r in with_curves}
    chosen = st.multiselect("Runs to overlay", list(by_id), default=list(by_id)[:COMPARE_DEFAULT],
                            format_func=lambda run_id: run_name(by_id[run_id]), key="runs_compare")
    metric = st.segmented_control("Metric", OVERLAY_METRICS, default=OVERLAY_METRICS[0], required=True,
                                  format_func=lambda m: METRICS[m][0].capitalize(), key="runs_metric")
    if chosen:
        st.plotly_chart(runs_overlay([by_id[i] for i in chosen], metric or OVERLAY_METRICS[0]),
                        key="runs_overlay_chart", config={"displayModeBar": False})


def manage(store: RunStore, runs: list[RunInfo]) -> None:
    st.subheader("Download or delete", anchor=False)
    by_id = {r.run_id: r for r in runs}
    ids = list(by_id)
    wanted = st.query_params.get(RUN_PARAM)
    run_id = st.selectbox("Run", ids, index=ids.index(wanted) if wanted in by_id else 0, key="runs_manage",
                          format_func=lambda i: run_label(by_id[i]) if by_id[i].config else f"{i} · unreadable")
    run = by_id[run_id]
    try:
        weights = store.weights_npz(run_id)
    except RunError:
        weights = None
    cols = st.columns([1, 1, 1, 2])
    cols[0].download_button("Weights (.npz)", weights or b"", file_name=f"{run_id}-weights.npz",
                            mime="application/octet-stream", icon=":material/download:", disabled=weights is None,
                            key="runs_download_weights", on_click="ignore", width="stretch")
    cols[1].download_button("Metrics (.csv)", store.metrics_csv(run_id) if run.metrics else "",
                            file_name=f"{run_id}-metrics.csv", mime="text/csv", icon=":material/table_view:",
                            disabled=not run.metrics, key="runs_download_csv", on_click="ignore", width="stretch")
    export_buttons(store, run)
    job = job_service().snapshot(run_id)
    training = run.status in ("running", "queued") or (job is not None and not job.done)
    if job is not None and not job.done:
        label = "Cancel" if job.status == "queued" else "Stop"
        if cols[3].button(label, icon=":material/stop_circle:", key="runs_stop", disabled=job.stopping):
            job_service().stop(run_id)
            st.rerun()
    if cols[2].button("Delete …", icon=":material/delete:", key="runs_delete", disabled=training, width="stretch",
                      help="Still training: stop it first." if training else None):
        st.session_state[CONFIRM_KEY] = run_id
    if st.session_state.get(CONFIRM_KEY) == run_id:
        confirm_delete(store, run)


EXPORTS = (("keras", "Keras model (.keras)", ".keras", "application/octet-stream"),
           ("savedmodel", "SavedModel (.zip)", "-savedmodel.zip", "application/zip"),
           ("script", "Training script (.py)", "-train.py", "text/x-python"))
"""Format, button label, file name suffix, MIME type: see softmax_core/export.py."""


def exported_bytes(store: RunStore, run_id: str, fmt: str) -> bytes:
    """The run exported by the job service's worker (TensorFlow stays out of this server), as one file."""
    with tempfile.TemporaryDirectory(prefix="softmax-lab-export-") as folder:
        out = Path(folder) / ("model.keras" if fmt == "keras" else "model" if fmt == "savedmodel" else "train.py")
        path = job_service().export(store, run_id, fmt, out)
        if path.is_file():
            return path.read_bytes()
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for item in sorted(path.rglob("*")):
                archive.write(item, Path(run_id) / item.relative_to(path))
        return buffer.getvalue()


def export_buttons(store: RunStore, run: RunInfo) -> None:
    """Downloads that leave the lab: made when clicked, by the worker process."""
    ready = run.status != "unreadable" and run.epochs_completed > 0
    cols = st.columns(3)
    for col, (fmt, label, suffix, mime) in zip(cols, EXPORTS):
        col.download_button(label, functools.partial(exported_bytes, store, run.run_id, fmt),
                            file_name=f"{run.run_id}{suffix}", mime=mime, icon=":material/output:",
                            disabled=not ready, key=f"runs_export_{fmt}", on_click="ignore", width="stretch")
    st.caption("Keras and SavedModel files predict like the lab (float32 pixels in [0, 1], 784 per image); "
               "the script retrains this run with TensorFlow and NumPy alone.")


def delete_several(store: RunStore, runs: list[RunInfo]) -> None:
    """Pick any number of finished runs and delete them together, after one confirmation."""
    busy = {j.run_id for j in job_service().active()}
    deletable = [r.run_id for r in runs if r.status not in ("running", "queued") and r.run_id not in busy]
    chosen = st.multiselect("Delete several runs", deletable, key="runs_delete_many",
                            help="Runs still training are not offered: stop them first.",
                            placeholder="Choose runs to delete")
    if not chosen:
        return
    if not st.toggle(f"Yes, delete these {len(chosen)} run{'s' * (len(chosen) != 1)} and all their files",
                     key="runs_delete_many_confirm"):
        return
    if st.button(f"Delete {len(chosen)} run{'s' * (len(chosen) != 1)}", type="primary", icon=":material/delete:",
                 key="runs_delete_many_go"):
        for run_id in chosen:
            try:
                store.delete(run_id)
            except RunError as exc:
                st.error(f"Not deleted: {literal(exc)}", icon=":material/block:")
                return
        for key in ("runs_delete_many", "runs_delete_many_confirm"):
            st.session_state.pop(key, None)
        st.toast(f"Deleted {len(chosen)} run{'s' * (len(chosen) != 1)}", icon=":material/delete:")
        st.rerun()


def confirm_delete(store: RunStore, run: RunInfo) -> None:
    with st.container(border=True):
        st.warning(f"Delete run `{run.run_id}` and all its files? This cannot be undone.", icon=":material/delete:")
        yes, no, _ = st.columns([1, 1, 4])
        if yes.button("Delete", type="primary", key="runs_delete_confirm", width="stretch"):
            try:
                store.delete(run.run_id)
            except RunError as exc:
                st.error(f"Not deleted: {literal(exc)}", icon=":material/block:")
                return
            st.session_state.pop(CONFIRM_KEY, None)
            if st.query_params.get(RUN_PARAM) == run.run_id:
                del st.query_params[RUN_PARAM]
            st.toast(f"Deleted run {run.run_id}", icon=":material/delete:")
            st.rerun()
        if no.button("Cancel", key="runs_delete_cancel", width="stretch"):
            st.session_state.pop(CONFIRM_KEY, None)
            st.rerun()


def main() -> None:
    run_through_app()
    page_header("Runs", "Every run saved on this machine, from any session, the CLI or a sweep; newest first.")
    store = run_store()
    runs = saved_runs(store)
    if not runs:
        st.info("No saved runs yet.", icon=":material/info:")
        st.page_link("pages/train.py", label="Train a model", icon=":material/model_training:")
        return
    st.caption(f"{len(runs)} run{'s' * (len(runs) != 1)} in this lab's run store")
    if job_service().active():
        running_now()
    runs_table(runs)
    compare(runs)
    manage(store, runs)
    delete_several(store, runs)


main()
