"""AppTest of Home and Train on real MNIST and real TensorFlow, with a private run store per test;
hostile links and tampered or diverged runs as the Train page shows them (docs/faults.md)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from made_runs import GOOD, with_key
from streamlit.testing.v1 import AppTest

from apptest import (ALL_PAGES, HOSTILE_TEXT, PROJECT, WAIT, assert_inert, curve_epochs, live_figures, open_page,
                     rendered, shown, texts)
from softmax_core.figures.curves import ACCURACY_AXIS, LOSS_AXIS
from softmax_core.config import TrainConfig
from softmax_core.data import Mnist
from softmax_core.jobs import JobSnapshot, shared_service
from softmax_core.metrics import EpochMetrics
from softmax_core.query import to_query
from softmax_core.record import record_run
from softmax_core.runs import RunStore


def run_param(at: AppTest) -> str:
    """The ?run= value the page wrote (AppTest may hold it as a one-item list)."""
    value = at.query_params["run"]
    return value[0] if isinstance(value, list) else value


def start(at: AppTest) -> JobSnapshot:
    """Press the form's Start button; the new job as the lab's job service sees it."""
    at.button(key="FormSubmitter:train_form-Start training").click()
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return shared_service().snapshot(run_param(at))


def finish(at: AppTest, run_id: str) -> JobSnapshot:
    """Rerun the page while the job trains (as the fragment's timer would), then once after it ends."""
    service = shared_service()
    while not service.snapshot(run_id).done:
        at.run()
        assert not at.exception, [e.message for e in at.exception]
        service.wait(run_id, 0.5)
    service.wait(run_id, WAIT)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return service.snapshot(run_id)


def test_home_renders_the_dataset_facts_without_runs(mnist: Mnist, runs_dir: Path) -> None:
    at = open_page()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Training images"] == "55,000"
    assert metrics["Validation images"] == "5,000"
    assert metrics["Test images"] == "10,000"
    assert any("CC BY-SA 3.0" in c.value for c in at.caption)
    assert any("No run yet" in i.value for i in at.info)
    links = [p.proto.query_string for p in at.get("page_link") if p.proto.label == "Train with these settings"]
    assert len(links) == 2
    assert "learning_rate=0.05" in links[0] and "batch_size=1000" in links[0] and "optimizer=sgd" in links[0]


def test_train_renders_without_runs(mnist: Mnist, runs_dir: Path) -> None:
    at = open_page("pages/train.py")
    assert [t.value for t in at.title] == ["Train"]
    assert at.select_slider(key="learning_rate").value == TrainConfig().learning_rate
    assert not live_figures(at)


def test_start_trains_in_the_background_and_the_curves_hold_every_epoch(mnist: Mnist, runs_dir: Path) -> None:
    at = open_page("pages/train.py")
    at.number_input(key="epochs").set_value(3)
    at.select_slider(key="learning_rate").set_value(0.005)
    job = start(at)
    assert job.config.epochs == 3 and job.config.learning_rate == 0.005
    job = finish(at, job.run_id)
    assert curve_epochs(at, LOSS_AXIS, "train loss") == [1, 2, 3]
    assert curve_epochs(at, LOSS_AXIS, "test loss") == [1, 2, 3]
    assert curve_epochs(at, ACCURACY_AXIS, "test accuracy") == [1, 2, 3]
    final = job.history[-1].test_accuracy
    assert final > 0.9
    assert any(f"{final:.2%}" in s.value for s in at.success)
    links = {p.proto.page: p.proto.query_string for p in at.get("page_link")}
    assert links["weights"] == links["draw"] == f"run={job.run_id}"
    assert RunStore(runs_dir).get(job.run_id).status == "completed"


def test_a_job_survives_page_switches_and_any_session_attaches_to_it(mnist: Mnist, runs_dir: Path) -> None:
    at = open_page("pages/train.py")
    at.number_input(key="epochs").set_value(200)
    job = start(at)
    at.switch_page("pages/runs.py").run()
    at.switch_page("pages/train.py").run()
    assert run_param(at) == job.run_id
    other = open_page("pages/train.py", run=job.run_id)  # a reload, a second tab, another person
    assert other.button(key="train_stop").label in ("Stop", "Cancel")
    other.button(key="train_stop").click().run()
    done = finish(at, job.run_id)
    assert done.status in ("stopped", "cancelled") and len(done.history) < 200
    assert RunStore(runs_dir).get(job.run_id).status == done.status


def test_stop_ends_the_run_as_stopped_with_its_finished_epochs(mnist: Mnist, runs_dir: Path) -> None:
    at = open_page("pages/train.py")
    at.number_input(key="epochs").set_value(500)
    job = start(at)
    service = shared_service()
    while not service.snapshot(job.run_id).history:
        service.wait(job.run_id, 0.05)
    at.run()
    at.button(key="train_stop").click().run()
    snap = finish(at, job.run_id)
    assert snap.status == "stopped" and 1 <= len(snap.history) < 500
    assert any("Stopped after" in i.value for i in at.info)
    saved = RunStore(runs_dir).get(job.run_id)
    assert saved.status == "stopped" and saved.epochs_completed == len(snap.history)


def test_a_diverging_learning_rate_shows_a_warning_not_a_trace(mnist: Mnist, runs_dir: Path) -> None:
    at = open_page("pages/train.py", learning_rate="10000", optimizer="sgd", schedule="constant", epochs="3")
    assert at.select_slider(key="learning_rate").value == 10000
    job = finish(at, start(at).run_id)
    assert job.status == "diverged"
    warnings = [w.value for w in at.warning]
    assert any("diverged" in w and "too large" in w for w in warnings), warnings
    assert RunStore(runs_dir).get(job.run_id).status == "diverged"


@pytest.mark.parametrize("field, value", [("batch_size", "0"), ("batch_size", "55001"), ("learning_rate", "-1"),
                                          ("epochs", "0"), ("optimizer", "rmsprop"), ("learning_rate", "fast")])
def test_out_of_range_link_settings_are_refused_with_the_field_named(
        mnist: Mnist, runs_dir: Path, field: str, value: str) -> None:
    at = open_page("pages/train.py", **{field: value})
    errors = [e.value for e in at.error]
    shown = re.sub(r"\\(.)", r"\1", errors[0])  # the value is escaped Markdown: compare what is displayed
    assert len(errors) == 1 and f"**{field}**" in errors[0] and value in shown
    assert str(at.session_state[field]) == str(getattr(TrainConfig(), field))
    assert "run" not in at.query_params


def test_a_link_fills_the_form(mnist: Mnist, runs_dir: Path) -> None:
    tutorial = TrainConfig(learning_rate=0.05, batch_size=1000, epochs=15, optimizer="sgd", schedule="constant")
    at = open_page("pages/train.py", **to_query(tutorial))
    assert at.select_slider(key="learning_rate").value == 0.05
    assert at.number_input(key="batch_size").value == 1000
    assert at.number_input(key="epochs").value == 15
    assert at.selectbox(key="optimizer").value == "sgd"
    assert at.selectbox(key="schedule").value == "constant"


def test_a_reload_shows_the_run_from_the_store(adam_run: Path, runs_dir: Path) -> None:
    run_id = shutil.copytree(adam_run, runs_dir / adam_run.name).name
    at = open_page("pages/train.py", run=run_id)
    assert curve_epochs(at, LOSS_AXIS, "test loss") == [1, 2]
    assert any("test accuracy" in s.value for s in at.success)


def run_of_a_dead_process(runs_dir: Path, settings: str, status: str) -> str:
    """A run another process created as ``status`` and then left by exiting, as a killed server does."""
    made = subprocess.run(
        [sys.executable, "-c", "import sys; from softmax_core.runs import RunStore; from softmax_core.config import "
         f"TrainConfig; print(RunStore(sys.argv[1]).create(TrainConfig({settings}), status='{status}').run_id)",
         str(runs_dir)],
        capture_output=True, text=True, check=True, cwd=PROJECT)
    return made.stdout.strip()


def test_a_run_whose_server_died_shows_as_interrupted(mnist: Mnist, runs_dir: Path) -> None:
    at = open_page("pages/train.py", run=run_of_a_dead_process(runs_dir, "epochs=7, optimizer='sgd'", "running"))
    assert any("interrupted" in w.value for w in at.warning)
    assert not live_figures(at)
    assert at.number_input(key="epochs").value == 7 and at.selectbox(key="optimizer").value == "sgd"


def test_a_queued_run_of_a_dead_server_shows_as_cancelled(mnist: Mnist, runs_dir: Path) -> None:
    at = open_page("pages/train.py", run=run_of_a_dead_process(runs_dir, "", "queued"))
    assert any("cancelled before it started" in i.value for i in at.info)


def test_no_page_imports_tensorflow_into_the_server(adam_run: Path, runs_dir: Path) -> None:
    """Every page rendered in a fresh process, with a trained run to show: TensorFlow stays out."""
    shutil.copytree(adam_run, runs_dir / adam_run.name)
    script = (
        "import sys\n"
        "from apptest import open_page\n"
        f"for page in {ALL_PAGES!r}:\n"
        "    open_page(page)\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
        "print(len(loaded), loaded[:5])\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          cwd=PROJECT / "tests", env={**__import__("os").environ, "PYTHONPATH": str(PROJECT)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "0 []"


# --- text from a link or a run file is shown literally ---------------------------------------------

def test_a_link_setting_with_markup_is_refused_and_shown_literally(runs_dir):
    at = open_page("pages/train.py", optimizer=HOSTILE_TEXT)
    [refusal] = [e for e in shown(at) if "Link setting refused" in e]
    assert_inert(refusal)
    assert "example.org" in rendered(refusal), "the value is shown, escaped"
    assert at.selectbox(key="optimizer").value == TrainConfig().optimizer


def test_a_learning_rate_that_underflows_in_a_link_is_refused(runs_dir):
    at = open_page("pages/train.py", learning_rate="1e-320")
    assert any("**learning_rate**" in e and "0 in float32" in e for e in shown(at))


@pytest.mark.parametrize("status", ["failed", "diverged"])
def test_a_tampered_status_message_is_shown_literally(sgd_run, runs_dir, status):
    run = shutil.copytree(sgd_run, runs_dir / GOOD)
    with_key(run / "status.json", "status", json.dumps(status))
    with_key(run / "status.json", "message", json.dumps(HOSTILE_TEXT))
    at = open_page("pages/train.py", run=GOOD)
    [message] = [e for e in shown(at) if "example.org" in rendered(e)]
    assert_inert(message)


def test_a_tampered_config_value_is_refused_and_the_reason_shown_literally(sgd_run, runs_dir):
    run = shutil.copytree(sgd_run, runs_dir / GOOD)
    config = json.loads((run / "config.json").read_text())
    config["config"]["optimizer"] = HOSTILE_TEXT
    (run / "config.json").write_text(json.dumps(config))
    at = open_page("pages/train.py", run=GOOD)
    [reason] = [e for e in at.error if "cannot be read" in e.value]
    assert_inert(reason.value)
    for page in ALL_PAGES:
        for text in shown(open_page(page, run=GOOD)):
            assert_inert(text)


def test_a_late_diverged_run_shows_a_warning_and_curves_that_stop_there(mnist: Mnist, runs_dir):
    config = TrainConfig(learning_rate=700, optimizer="sgd", schedule="constant", batch_size=1000, seed=1, epochs=12,
                         l2=0.0)
    run_id, _, _ = record_run(RunStore(runs_dir), config, mnist)
    run = RunStore(runs_dir).get(run_id)
    assert run.status == "diverged" and 1 <= run.epochs_completed < config.epochs
    at = open_page("pages/train.py", run=run_id)
    [warning] = texts(at.warning)
    assert "Training diverged" in warning and f"in epoch {run.epochs_completed + 1}" in warning
    for axis, trace in ((LOSS_AXIS, "train loss"), (LOSS_AXIS, "test loss"), (ACCURACY_AXIS, "test accuracy")):
        assert curve_epochs(at, axis, trace) == list(range(1, run.epochs_completed + 1))
    [table] = [d.value for d in open_page("pages/runs.py").dataframe if "Status" in d.value.columns]
    assert list(table["Status"]) == ["⚠ diverged"]


class AdvancingService:
    """A job service whose one running run has finished one more epoch each time it is asked: a page
    that asked twice for one redraw would draw two different moments of the run."""

    warming = False

    def __init__(self, run_id: str, epochs: int) -> None:
        self.run_id, self.config, self.asked = run_id, TrainConfig(epochs=epochs), 0

    def snapshot(self, run_id: str) -> JobSnapshot | None:
        if run_id != self.run_id:
            return None
        self.asked += 1
        done = min(self.asked, self.config.epochs - 1)
        history = [EpochMetrics(e, 0.5 / e, 0.9, 0.5 / e, 0.9, 0.5 / e, 0.9, 0.1, 0.4 * e, [0.6 / e, 0.5 / e])
                   for e in range(1, done + 1)]
        progress = (done + 1) / self.config.epochs  # the next epoch's steps are done; it is being evaluated
        return JobSnapshot(run_id, "running", self.config, progress, 0.4 * done + 0.2, 1.0, history)

    def active(self) -> list[JobSnapshot]:
        return []  # nothing else is queued or running

    def stop(self, run_id: str) -> bool:
        return False


def test_the_progress_line_names_the_epoch_after_the_curves_last_point(runs_dir, monkeypatch) -> None:
    """Progress, numbers and curves are drawn from one snapshot, and the line counts finished epochs (not
    steps, which run ahead while an epoch is evaluated): it never runs ahead of the curves."""
    service = AdvancingService("20260101-000000-feedface", epochs=30)
    monkeypatch.setattr("ui.session.job_service", lambda: service)
    at = open_page("pages/train.py", run=service.run_id)
    for _ in range(3):  # the first redraw, then the redraws of the live panel as its timer would run them
        (progress,) = at.get("progress")
        epoch = int(re.match(r"Epoch (\d+) of 30", progress.proto.text).group(1))
        assert curve_epochs(at, LOSS_AXIS, "train loss") == list(range(1, epoch))
        assert curve_epochs(at, ACCURACY_AXIS, "test accuracy") == list(range(1, epoch))
        at.run()
        assert not at.exception, [e.message for e in at.exception]


def test_stop_says_stopping_before_the_job_service_does(runs_dir, monkeypatch) -> None:
    """A click on Stop redraws only Stop, from the panel's last snapshot (taken before the click): the
    page says "Stopping" and disables Stop although that snapshot, like this service's, is not stopping."""
    service = AdvancingService("20260101-000000-feedface", epochs=30)
    monkeypatch.setattr("ui.session.job_service", lambda: service)
    at = open_page("pages/train.py", run=service.run_id)
    assert not at.button(key="train_stop").disabled
    at.button(key="train_stop").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("Stopping" in c.value for c in at.caption)
    assert at.button(key="train_stop").disabled
    at.run()  # the panel's next redraw, still from a service that has not caught up
    assert any("Stopping" in c.value for c in at.caption) and at.button(key="train_stop").disabled
