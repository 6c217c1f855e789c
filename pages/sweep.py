"""Sweep: train a grid of learning rates x batch sizes (and epochs, optimizers) one run at a time.

Each run is an ordinary saved run tagged with the sweep id. The best setting is chosen on the
validation split and is one click away on the Train page.
"""

from __future__ import annotations

import streamlit as st

from ui.pages_mode import run_through_app
from ui.session import config_refused, job_service, mnist, page_header, run_store
from softmax_core.config import L2_PENALTIES, LEARNING_RATES, MAX_SEED, OPTIMIZERS, SCHEDULES, SETTINGS, ConfigError, TrainConfig
from softmax_core.figures.curves import METRICS, runs_overlay, sweep_heatmap
from softmax_core.jobs import JobSnapshot
from softmax_core.query import to_query
from softmax_core.runs import RunError, RunInfo
from softmax_core.sweeps import MAX_RUNS, SELECTION_METRIC, best_run, saved_sweeps, submit_sweep
from softmax_core.tune import (best_config, load_study, running_search, start_search, stop_search, study_figures,
                               study_names, summarize)

JOB_KEY = "sweep_runs"
"""The sweep this browser session queued last: (sweep id, run ids in grid order)."""
SWEEP_PARAM = "sweep"
POLL_SECONDS = 0.5
BATCH_SIZES = (10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
EPOCHS = (1, 2, 3, 5, 10, 15, 20, 30, 50)
OVERLAY_METRICS = ("validation_loss", "test_loss", "train_loss", "validation_accuracy")


def grid_form() -> tuple[TrainConfig, dict[str, list]] | None:
    """The grid and the fixed settings; returned when Start is pressed.

    No ``st.form``: each choice reruns the page, so the run count under the grid is always current.
    """
    defaults = TrainConfig()
    with st.container(border=True):
        rates = st.multiselect("Learning rates", LEARNING_RATES, default=[5e-4, 1e-3, 2e-3, 5e-3],
                               format_func=lambda v: f"{v:g}", key="sweep_learning_rates",
                               help=SETTINGS["learning_rate"].help)
        batches = st.multiselect("Batch sizes", BATCH_SIZES, default=[50, 100, 500], key="sweep_batch_sizes")
        epochs = st.multiselect("Epochs", EPOCHS, default=[10], key="sweep_epochs")
        optimizers = st.multiselect("Optimizers", OPTIMIZERS, default=[defaults.optimizer], key="sweep_optimizers",
                                    format_func=SETTINGS["optimizer"].name_of)
        penalties = st.multiselect("L2 penalties", L2_PENALTIES, default=[defaults.l2], key="sweep_l2",
                                   format_func=lambda v: f"{v:g}", help=SETTINGS["l2"].help)
        schedule = st.selectbox(SETTINGS["schedule"].label, SCHEDULES, SCHEDULES.index(defaults.schedule),
                                format_func=SETTINGS["schedule"].name_of, key="sweep_schedule")
        seed = st.number_input(SETTINGS["seed"].label, 0, MAX_SEED, defaults.seed, key="sweep_seed")
        grid = {"learning_rate": rates, "batch_size": batches, "epochs": epochs, "optimizer": optimizers,
                "l2": penalties}
        count = 1
        for values in grid.values():
            count *= len(values)
        st.caption(f"This grid makes **{count} run{'s' * (count != 1)}** "
                   f"({' x '.join(str(len(v)) for v in grid.values())}); a sweep runs at most {MAX_RUNS}.")
        start = st.button("Start sweep", type="primary", icon=":material/play_arrow:", width="stretch",
                          key="sweep_start")
    if not start:
        return None
    return TrainConfig(seed=seed, schedule=schedule), grid


def start_sweep(base: TrainConfig, grid: dict[str, list]) -> bool:
    """Queue every run of the grid in the lab's job service; a bad grid is refused with the field named."""
    try:
        sweep_id, run_ids = submit_sweep(job_service(), run_store(), base, grid)
    except ConfigError as exc:
        config_refused(exc)
        return False
    except (OSError, RunError) as exc:
        st.error(f"Not started: the runs could not be saved ({exc.strerror if isinstance(exc, OSError) else exc}).",
                 icon=":material/block:")
        return False
    st.session_state[JOB_KEY] = (sweep_id, run_ids)
    st.query_params[SWEEP_PARAM] = sweep_id
    return True


def sweep_jobs(run_ids: list[str]) -> list[JobSnapshot]:
    """The sweep's jobs as the job service sees them (runs it no longer knows are left out)."""
    return [snap for run_id in run_ids if (snap := job_service().snapshot(run_id)) is not None]


def sweep_runs(run_ids: list[str]) -> list[RunInfo]:
    store = run_store()
    runs = []
    for run_id in run_ids:
        try:
            runs.append(store.summary(run_id))  # heatmaps and per-epoch curves: no step losses needed
        except RunError:
            continue  # deleted from the Runs page meanwhile
    return runs


@st.fragment(run_every=POLL_SECONDS)
def live_sweep(run_ids: list[str]) -> None:
    """Overall progress, the run in training, and the results so far."""
    jobs = sweep_jobs(run_ids)
    if all(job.done for job in jobs):
        st.rerun()
    finished = [job for job in jobs if job.done]
    current = next((job for job in jobs if job.status == "running"), None)
    progress = (len(finished) + (current.progress if current else 0.0)) / max(len(jobs), 1)
    now = ""
    if current is not None:
        epoch = min(int(current.progress * current.config.epochs) + 1, current.config.epochs)
        now = f" · now {current.config.label()}, epoch {epoch}"
    st.progress(progress, text=f"Run {min(len(finished) + 1, len(jobs))} of {len(jobs)}{now}")
    if st.button("Stop sweep", icon=":material/stop_circle:", key="sweep_stop"):
        for job in reversed(jobs):  # queued ones first, so none starts while the current one stops
            job_service().stop(job.run_id)
        st.caption("Stopping: the current run ends as stopped, the queued ones are cancelled …")
    results(sweep_runs([job.run_id for job in finished]), live=True)


def results(runs: list[RunInfo], live: bool = False) -> None:
    """Best setting, heatmaps of validation and test accuracy, loss curves overlaid."""
    finished = [r for r in runs if r.config is not None and r.metrics]
    if not finished:
        st.caption("Results appear here as runs finish.")
        return
    best = best_run(finished)
    if best is not None and not live:
        with st.container(border=True):
            st.markdown(f"**Best on validation:** {best.config.label()} — validation "
                        f"{best.final[SELECTION_METRIC]:.2%}, test {best.final['test_accuracy']:.2%}")
            st.page_link("pages/train.py", label="Open these settings on the Train page", icon=":material/arrow_forward:",
                         query_params=to_query(best.config))
    shared = {(r.config.learning_rate, r.config.batch_size) for r in finished}
    if len(shared) < len(finished):
        st.caption("Runs that differ only in epochs or optimizer share a cell; each cell shows the best of them.")
    left, right = st.columns(2)
    left.plotly_chart(sweep_heatmap(finished, "validation_accuracy"), key="sweep_heatmap_validation",
                      config={"displayModeBar": False})
    right.plotly_chart(sweep_heatmap(finished, "test_accuracy"), key="sweep_heatmap_test",
                       config={"displayModeBar": False})
    metric = st.segmented_control("Curves", OVERLAY_METRICS, default=OVERLAY_METRICS[0], required=True,
                                  format_func=lambda m: METRICS[m][0].capitalize(), key="sweep_curve_metric")
    st.plotly_chart(runs_overlay(finished, metric or OVERLAY_METRICS[0]), key="sweep_overlay",
                    config={"displayModeBar": False})


def pick_sweep(own: str | None) -> list[RunInfo] | None:
    """The saved sweep to show: ?sweep=, else this session's, else the newest."""
    sweeps = saved_sweeps(run_store())
    if not sweeps:
        return None
    ids = list(sweeps)
    wanted = st.query_params.get(SWEEP_PARAM) or own
    sweep_id = st.selectbox("Sweep", ids, index=ids.index(wanted) if wanted in sweeps else 0, key="sweep_pick",
                            format_func=lambda s: f"{s} · {len(sweeps[s])} runs · {sweep_summary(sweeps[s])}")
    if st.query_params.get(SWEEP_PARAM) != sweep_id:
        st.query_params[SWEEP_PARAM] = sweep_id
    return sweeps[sweep_id]


def sweep_summary(runs: list[RunInfo]) -> str:
    best = best_run(runs)
    if best is None:
        return "no finished run"
    return f"best {best.config.label()}, validation {best.final[SELECTION_METRIC]:.2%}"


STUDY_PARAM = "study"
TUNE_POLL_SECONDS = 2.0
FIGURE_TITLES = (("history", "Optimisation history"), ("importances", "Parameter importances"),
                 ("parallel", "Parallel coordinates"), ("intermediate", "Validation accuracy per epoch (pruned trials stop early)"))


def tune_form() -> tuple[int, int, int] | None:
    """Trials, most epochs per trial and the sampler's seed; returned when Start is pressed."""
    with st.form("tune_form"):
        trials = st.number_input("Trials", 2, 200, 30, key="tune_trials",
                                 help="Each trial is a run in the lab's queue, as many at once as it has slots.")
        epochs_max = st.number_input("Most epochs per trial", 2, 100, 20, key="tune_epochs_max",
                                     help="Optuna picks each trial's epochs up to this; the pruner stops "
                                          "hopeless trials early.")
        seed = st.number_input("Sampler seed", 0, MAX_SEED, 0, key="tune_seed")
        start = st.form_submit_button("Start search", type="primary", icon=":material/play_arrow:", width="stretch")
    st.caption("Optuna searches learning rate (log), batch size, epochs, optimizer, schedule and L2 (log, "
               "or none), maximising **validation** accuracy; the test split is never used to choose.")
    return (int(trials), int(epochs_max), int(seed)) if start else None


@st.fragment(run_every=TUNE_POLL_SECONDS)
def live_search(name: str) -> None:
    """The running search: trials so far, Stop, and Optuna's figures as trials finish."""
    if running_search(name) is None:
        st.rerun()
    study_view(name, live=True)
    if st.button("Stop search", icon=":material/stop_circle:", key="tune_stop"):
        stop_search(job_service(), name)
        st.caption("Stopping: no new trials; the running ones are stopped …")


def study_view(name: str, live: bool = False) -> None:
    """Counts, the best trial one click from Train, and Optuna's own figures."""
    study = load_study(run_store(), name)
    summary = summarize(study)
    search = running_search(name)
    asked = f" of {search.trials}" if search is not None else ""
    st.text(f"Study {name}: {summary.trials_completed} trials completed, {summary.trials_pruned} pruned{asked}"
            f"{' · searching …' if live else ''}")
    best = best_config(study)
    if best is not None:
        with st.container(border=True):
            st.text(f"Best on validation: {best.label()} · {best.schedule} · validation "
                    f"{summary.best_validation_accuracy:.2%}, test {summary.best_test_accuracy:.2%}")
            st.page_link("pages/train.py", label="Open these settings on the Train page",
                         icon=":material/arrow_forward:", query_params=to_query(best))
    if summary.epochs_planned:
        st.caption(f"Pruning saved {summary.epochs_saved:.0%} of the epochs: {summary.epochs_trained} trained "
                   f"of {summary.epochs_planned} the same trials would have trained unpruned.")
    figures = study_figures(study) if study.trials else {}
    for key, title in FIGURE_TITLES:
        if key in figures:
            st.plotly_chart(figures[key].update_layout(title=title, height=360), key=f"tune_{key}",
                            config={"displayModeBar": False})


def tune_mode() -> None:
    form_column, result_column = st.columns([1.3, 2.4], gap="large")
    with form_column:
        request = tune_form()
        if request is not None:
            trials, epochs_max, seed = request
            search = start_search(job_service(), run_store(), trials, epochs_max, seed)
            st.query_params[STUDY_PARAM] = search.study
            st.rerun()
    with result_column:
        names = study_names(run_store())
        if not names:
            st.info("No search yet. Each trial is an ordinary run (see Runs); the figures appear as trials finish.",
                    icon=":material/tune:")
            return
        wanted = st.query_params.get(STUDY_PARAM)
        name = st.selectbox("Study", names, index=names.index(wanted) if wanted in names else len(names) - 1,
                            key="tune_study")
        if st.query_params.get(STUDY_PARAM) != name:
            st.query_params[STUDY_PARAM] = name
        if running_search(name) is not None:
            live_search(name)
        else:
            study_view(name)


def main() -> None:
    run_through_app()
    page_header("Sweep", "Train a grid of settings, or let Optuna search them; pick the best on the validation "
                         "split, then train it from the Train page.")
    mnist()
    mode = st.segmented_control("Search", ("grid", "optuna"), default="grid", required=True, key="sweep_mode",
                                format_func={"grid": "Grid", "optuna": "Optuna search"}.get)
    if mode == "optuna":
        tune_mode()
        return
    sweep_id, run_ids = st.session_state.get(JOB_KEY, (None, []))
    jobs = sweep_jobs(run_ids)
    running = any(not job.done for job in jobs)
    form_column, result_column = st.columns([1.3, 2.4], gap="large")
    with form_column:
        request = grid_form()
        if request is not None and start_sweep(*request):
            st.rerun()  # show the new sweep live
    with result_column:
        if running:
            live_sweep(run_ids)
            return
        stopped = [job for job in jobs if job.status in ("stopped", "cancelled")]
        if stopped:
            kept = sum(1 for job in jobs if job.history)
            st.info(f"Sweep stopped; {kept} of its runs finished at least one epoch and are saved.",
                    icon=":material/stop_circle:")
        runs = pick_sweep(sweep_id)
        if runs is None:
            st.info("No sweep yet. Choose values on the left: every combination is queued as a run and "
                    "trained in turn.", icon=":material/tune:")
            return
        results(runs)


main()
