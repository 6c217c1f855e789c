"""Train: choose settings, start a background run, watch its curves live, stop it.

The settings live in the URL (a link reproduces them) and the run id joins them once a run
starts. Runs train in the lab's job service, not in this session: a reload, a second tab or
another person's browser with the same ``?run=`` sees the live run and can stop it.
"""

from __future__ import annotations

import streamlit as st

from ui.live_view import curve_figures, curves, metric_row, watch_it_learn
from ui.pages_mode import run_through_app
from ui.session import (RUN_PARAM, config_refused, job_service, literal, page_header, progress_text, run_links,
                        run_store, running_now, url_run_id)
from softmax_core.analysis import loss_trouble
from softmax_core.config import SETTINGS, ConfigError, TrainConfig
from softmax_core.jobs import JobSnapshot
from softmax_core.query import PARAMS, config_from_query, to_query
from softmax_core.runs import RunError, RunInfo

RUN_KEY = "train_run"
"""The run id this browser session started last, shown when the URL names no run."""
STOPPED_KEY = "train_stopped"
"""The run this session last asked to stop."""
NEXT_POLL_SECONDS = 0.5
"""A run next in the queue is asked about twice a second: the page draws the running view soon after it starts."""
START_WAIT_SECONDS = 0.3
"""How long Start waits for a free slot to take its run, so the page draws the running view
(and its first point) without a poll in between; a run that must queue shows as queued."""
QUEUED_POLL_SECONDS = 2.0
"""A run's page asks less often while others are ahead of it in the queue: its position changes once a run ends, and a room of
queued pages polling twice a second would keep the server from the pages people are reading."""
RUNNING_POLL_SECONDS = 1.0
"""A running run's panel is redrawn every second: results change once an epoch (0.3 s or more), and
a second's delay is the price of a quieter browser. Progress and curves come from the same snapshot,
so the progress line never runs ahead of the curves."""
FIRST_POINT_POLL_SECONDS = 0.25
"""Until a run's first epoch is in, its panel is redrawn four times a second: the first point
shows within a quarter second of the epoch, not up to a second later; the page then reruns once
and polls at RUNNING_POLL_SECONDS."""


def link_settings(fallback: TrainConfig) -> tuple[TrainConfig, list[str]]:
    """The form's starting settings: the URL's, else ``fallback`` (the run on show, or the defaults).

    A refused URL value is reported (field named) and replaced by the default.
    """
    params = {k: v for k, v in st.query_params.to_dict().items() if k in PARAMS}
    if not params:
        return fallback, []
    refused = []
    while True:
        try:
            return config_from_query(params), refused
        except ConfigError as exc:
            refused.append(str(exc))
            if params.pop(exc.field, None) is None:
                return fallback, refused


def with_choice(options: tuple[float, ...], value: float) -> list[float]:
    """The options of a log-scale slider, plus ``value`` when a link brings one off the scale."""
    return sorted(set(options) | {value})


FORM_FIELDS = ("learning_rate", "batch_size", "epochs", "optimizer", "schedule", "l2", "seed")
"""The settings the form offers, in its order (init stays as the run on show has it)."""


def setting_widget(name: str, value: object) -> object:
    """One setting's widget, from config.SETTINGS: a log-scale slider, a choice or a whole number.

    Numbers have no upper bound here, so a value the lab refuses (batch 70000) is named next to
    Start instead of being silently clamped by the widget.
    """
    setting = SETTINGS[name]
    if setting.notches:
        return st.select_slider(setting.label, with_choice(setting.notches, value), value=value, key=name,
                                format_func=lambda v: f"{v:g}", help=setting.help)
    if setting.choices:
        return st.selectbox(setting.label, setting.choices, setting.choices.index(value), key=name,
                            format_func=setting.name_of, help=setting.help)
    return st.number_input(setting.label, int(setting.low), None, value, step=50 if name == "batch_size" else 1,
                           key=name, help=setting.help)


def settings_form(initial: TrainConfig, waiting: int) -> TrainConfig | None:
    """The settings form; the validated config when Start is pressed, else None."""
    with st.form("train_form"):
        values = {name: setting_widget(name, getattr(initial, name)) for name in FORM_FIELDS}
        start = st.form_submit_button("Start training", type="primary", icon=":material/play_arrow:",
                                      width="stretch")
    if waiting:
        st.caption(f"The lab is busy: a new run waits behind {waiting} queued run{'s' * (waiting != 1)}.")
    if not start:
        return None
    try:
        return TrainConfig.from_dict({**values, "init": initial.init})
    except ConfigError as exc:
        config_refused(exc)
        return None


def start_job(config: TrainConfig) -> bool:
    """Queue the run in the lab's job service and put its settings and id in the URL."""
    try:
        run_id = job_service().submit(run_store(), config)
    except (OSError, RunError) as exc:
        st.error(f"Not started: the run could not be saved ({exc.strerror if isinstance(exc, OSError) else exc}).",
                 icon=":material/block:")
        return False
    job_service().wait_started(run_id, START_WAIT_SECONDS)
    st.session_state[RUN_KEY] = run_id
    st.query_params.from_dict({**to_query(config), RUN_PARAM: run_id})
    return True


def progress_bar(snap: JobSnapshot) -> None:
    st.progress(min(snap.progress, 1.0), text=progress_text(snap))


def status_panel(run_id: str) -> None:
    """A queued run's place in the queue and Cancel, or a finished run's outcome, in any session.

    While a queued run is polled (``queued_status``, ``next_status``), the whole page reruns once
    when it starts, to draw the running panel. A finished run's page (``finished_panel``) does not
    poll: a room of twenty finished pages would otherwise keep the server busy.
    """
    snap = job_service().snapshot(run_id)
    if snap is None:
        st.rerun()  # the service forgot the run: the whole page shows it from the store
    if snap.done:
        outcome(snap.status, snap.message, snap.history, snap.elapsed)
        if snap.history:
            run_links(run_id)
            st.caption("Final epoch; changes are since epoch 1.")
        return
    if snap.status != "queued":
        st.rerun()
    why = ("the training process is starting (TensorFlow loads once per server)" if job_service().warming
           else "starts when a training slot is free")
    st.progress(0.0, text=f"Queued: position {snap.position} · {why}")
    stop_controls(run_id, snap)


def stop_run(run_id: str) -> None:
    """Stop's callback: asks the job service to stop the run and notes that this session did, so the
    redraw the click starts says "Stopping" even when it reuses a snapshot taken before the click."""
    st.session_state[STOPPED_KEY] = run_id
    job_service().stop(run_id)


def stop_controls(run_id: str, snap: JobSnapshot) -> None:
    """Stop (Cancel while queued) and a caption: stopping, a loss in trouble, or what is training.

    Stop's callback runs before the redraw its click starts, so "Stopping" shows at once.
    """
    label = "Cancel" if snap.status == "queued" else "Stop"
    stopping = snap.stopping or st.session_state.get(STOPPED_KEY) == run_id
    st.button(label, icon=":material/stop_circle:", key="train_stop", disabled=stopping, on_click=stop_run,
              args=(run_id,))
    trouble = loss_trouble(snap.history)
    if stopping:
        st.caption("Stopping after the current chunk of steps …")
    elif trouble:
        st.caption(f"⚠ {trouble.capitalize()}: a smaller learning rate would settle.")
    else:
        st.caption(f"Training {snap.config.label()}; the curves gain a point as each epoch ends "
                   "(changes are since the epoch before).")


def running_panel(run_id: str) -> JobSnapshot:
    """Progress, Stop, numbers, curves and templates of a running run, all from one snapshot: the
    progress line names the epoch after the curves' last point, never one the curves have not reached.

    Every element keeps its place (see ``ui.live_view``), so a redraw between epochs changes no
    chart. Stop and its caption are a fragment within (``running_stop``): a click redraws only them.
    The run's end reruns the whole page once, to draw the finished view (which stops polling) over
    the same elements.
    """
    snap = job_service().snapshot(run_id)
    if snap is None:
        st.rerun()
    figures = curve_figures(run_id, snap.history)
    progress_bar(snap)
    running_stop(run_id, snap)
    run_details(run_id, snap.history, figures, live=True)
    if snap.done:  # after drawing: a fragment run that reran first would take its charts off the page
        st.rerun()
    return snap


def first_running_panel(run_id: str) -> None:
    """``running_panel`` until the run's first epoch is in; then the whole page reruns once, to poll
    at the slower pace (the same elements in the same places, so nothing remounts)."""
    if running_panel(run_id).history:
        st.rerun()


def finished_panel(run_id: str) -> None:
    """A finished run's outcome, then its numbers, curves and templates, in one fragment as the running
    panel is: its elements take the running panel's places and no chart remounts (two fragments in
    place of one did remount them). It does not poll."""
    status_panel(run_id)
    snap = job_service().snapshot(run_id)
    if snap is not None and snap.history:
        run_details(run_id, snap.history, curve_figures(run_id, snap.history))


running_stop = st.fragment(stop_controls)
"""Stop in the running panel, a fragment of its own: a click redraws the button and its caption (a few
ms) after the panel's last snapshot, instead of the whole panel, which first builds the figures of any
new epoch (0.2-0.4 s). Its id stays when the page switches from the first-point poll to the slower one
(the panel's changes), so a click at that moment is answered: one meant for the panel's old id was
dropped by Streamlit, either its redraw ("Stopping" at the next poll) or all of it, callback included."""
next_status = st.fragment(status_panel, run_every=NEXT_POLL_SECONDS)
queued_status = st.fragment(status_panel, run_every=QUEUED_POLL_SECONDS)
live_run = st.fragment(running_panel, run_every=RUNNING_POLL_SECONDS)
first_live_run = st.fragment(first_running_panel, run_every=FIRST_POINT_POLL_SECONDS)
final_panel = st.fragment(finished_panel)


def outcome(status: str, message: str, history: list, seconds: float | None) -> None:
    """How a run ended, in words; never a traceback."""
    n = len(history)
    trouble = loss_trouble(history) if status == "completed" else None
    if trouble:
        final = history[-1] if isinstance(history[-1], dict) else history[-1].to_dict()
        st.warning(f"Finished at {final['test_accuracy']:.2%} test accuracy, but {trouble}. The learning rate "
                   "is too large for this optimizer: try one a few notches smaller.", icon=":material/warning:")
    elif status == "completed":
        final = history[-1] if isinstance(history[-1], dict) else history[-1].to_dict()
        st.success(f"Done: **{final['test_accuracy']:.2%}** test accuracy after {n} epochs "
                   f"({seconds:.1f} s).", icon=":material/check_circle:")
    elif status == "diverged":
        st.warning(f"**Training diverged.** {literal(message)}", icon=":material/warning:")
    elif status == "stopped":
        st.info(f"Stopped after {n} finished epoch{'s' * (n != 1)}; they are saved.", icon=":material/stop_circle:")
    elif status == "interrupted":
        kept = (f"Its {n} finished epochs are saved." if n > 1 else "Its one finished epoch is saved.") if n else "It had not finished an epoch."
        st.warning(f"This run was interrupted: the process training it stopped (a server restart?). {kept}",
                   icon=":material/history:")
    elif status == "running":
        st.info("This run is training in another process (the command line or another server); "
                "reload to see new epochs.", icon=":material/sync:")
    elif status == "cancelled":
        st.info("This run was cancelled before it started.", icon=":material/cancel:")
    elif status == "pruned":
        st.info(f"The search stopped this trial after {n} epoch{'s' * (n != 1)}: it was behind the others.",
                icon=":material/content_cut:")
    else:
        st.error(f"Training failed. {literal(message)}", icon=":material/error:")


def saved_run(info: RunInfo) -> None:
    """A run from the store: after a reload, a server restart, or a shared link."""
    if info.status == "unreadable":
        st.error(f"Run `{info.run_id}` cannot be read: {literal(info.error)}", icon=":material/error:")
        return
    st.caption(f"Run `{info.run_id}` · {info.config.label()}")
    run_result(info.run_id, info.status, info.message, info.metrics, info.duration,
               "Last finished epoch; changes are since epoch 1.")


def run_result(run_id: str, status: str, message: str, history: list, seconds: float | None,
               caption: str) -> None:
    """How a run ended, then (if it finished an epoch) its links, numbers, curves and templates.

    The same elements in the same places as the live view, so the end of a run changes them in place.
    """
    outcome(status, message, history, seconds)
    if history:
        run_links(run_id)
        st.caption(caption)
        run_details(run_id, history, curve_figures(run_id, history))


def run_details(run_id: str, history: list, figures: list[str], live: bool = False) -> None:
    """The metric cards, the curves and Watch it learn: the same elements live and finished."""
    metric_row(history, live=live)
    curves(figures)
    watch_it_learn(run_id, len(history))


def stored_run(run_id: str | None) -> RunInfo | None:
    if run_id is None:
        return None
    try:
        return run_store().get(run_id)
    except RunError:
        return None


def main() -> None:
    run_through_app()
    page_header("Train", "Softmax regression on the 55,000 training digits; validation and test "
                         "accuracy measured after every epoch.")
    service = job_service()
    wanted = url_run_id() or st.session_state.get(RUN_KEY)
    snap = service.snapshot(wanted) if wanted else None
    saved = None if snap else stored_run(wanted)
    shown_config = snap.config if snap else saved.config if saved and saved.config else None
    initial, refused = link_settings(shown_config or TrainConfig())
    form_column, run_column = st.columns([1, 2.6], gap="large")
    with form_column:
        for reason in refused:
            field, _, why = reason.partition(": ")
            st.error(f"Link setting refused: **{field}** {literal(why)}. Using the default instead.", icon=":material/block:")
        queued = sum(1 for job in service.active() if job.status == "queued")
        config = settings_form(initial, queued)
        if config is not None and start_job(config):
            st.rerun()  # show the new run from the URL
        running_now(exclude=wanted)
    with run_column:
        if snap is not None:
            if url_run_id() is None:
                st.query_params.update({**to_query(snap.config), RUN_PARAM: snap.run_id})
            if snap.done:
                final_panel(snap.run_id)
            elif snap.status == "running":
                (live_run if snap.history else first_live_run)(snap.run_id)
            else:  # next to start: a fresh Start's first point must not wait for a slow poll
                (next_status if snap.position == 1 else queued_status)(snap.run_id)
        elif saved is not None:
            saved_run(saved)
        elif wanted is not None:
            st.info(f"Run `{wanted}` from the link is not in this lab's run store.", icon=":material/search_off:")
        else:
            st.info("Choose settings and press **Start training**. The defaults reach about 92.7% test "
                    "accuracy in a few seconds; the tutorial's (SGD, lr 0.05, batch 1000, 15 epochs) about 90%.",
                    icon=":material/model_training:")

main()
