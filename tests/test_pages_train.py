"""AppTest of Home and Train on real MNIST and real TensorFlow, with a private run store per test."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from apptest import PROJECT, WAIT, open_page
from softmax_core.config import TrainConfig
from softmax_core.data import Mnist
from softmax_core.jobs import TrainingJob
from softmax_core.query import to_query
from softmax_core.runs import RunStore

def trace_epochs(at: AppTest, chart_title: str, trace: str) -> list:
    """The x values (epochs) of one trace of the page's Plotly chart with that title."""
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        if spec["layout"].get("title", {}).get("text") == chart_title:
            return next(data["x"] for data in spec["data"] if data.get("name") == trace)
    raise AssertionError(f"no chart titled {chart_title!r}")


def start(at: AppTest) -> TrainingJob:
    at.button[0].click()  # the form's Start button: the only button before a run exists
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at.session_state["train_job"]


def finish(at: AppTest, job: TrainingJob) -> None:
    """Rerun the page while the job trains (as the fragment's timer would), then once after it ends."""
    while not job.snapshot().done:
        at.run()
        assert not at.exception, [e.message for e in at.exception]
        job.join(0.5)
    job.join(WAIT)
    at.run()
    assert not at.exception, [e.message for e in at.exception]


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
    assert not at.get("plotly_chart")


def test_start_trains_in_the_background_and_the_curves_hold_every_epoch(mnist: Mnist, runs_dir: Path) -> None:
    at = open_page("pages/train.py")
    at.number_input(key="epochs").set_value(3)
    at.select_slider(key="learning_rate").set_value(0.005)
    job = start(at)
    assert job.config.epochs == 3 and job.config.learning_rate == 0.005
    assert at.query_params["run"] == job.run_id
    finish(at, job)
    assert trace_epochs(at, "Loss", "train loss") == [1, 2, 3]
    assert trace_epochs(at, "Loss", "test loss") == [1, 2, 3]
    assert trace_epochs(at, "Accuracy", "test accuracy") == [1, 2, 3]
    final = job.snapshot().history[-1].test_accuracy
    assert final > 0.9
    assert any(f"{final:.2%}" in s.value for s in at.success)
    links = {p.proto.page: p.proto.query_string for p in at.get("page_link")}
    assert links["weights"] == links["draw"] == f"run={job.run_id}"
    assert RunStore(runs_dir).get(job.run_id).status == "completed"


def test_a_job_belongs_to_its_session_and_survives_page_switches(mnist: Mnist, runs_dir: Path) -> None:
    at = open_page("pages/train.py")
    at.number_input(key="epochs").set_value(1)
    job = start(at)
    at.switch_page("pages/runs.py").run()
    at.switch_page("pages/train.py").run()
    assert at.session_state["train_job"] is job
    finish(at, job)
    assert trace_epochs(at, "Loss", "test loss") == [1]
    other = open_page("pages/train.py")
    assert "train_job" not in other.session_state
    assert not other.get("plotly_chart")


def test_stop_ends_the_run_as_stopped_with_its_finished_epochs(mnist: Mnist, runs_dir: Path) -> None:
    at = open_page("pages/train.py")
    at.number_input(key="epochs").set_value(500)
    job = start(at)
    at.button(key="train_stop").click().run()
    job.join(WAIT)
    at.run()
    snap = job.snapshot()
    assert snap.status == "stopped" and len(snap.history) < 500
    assert any("Stopped after" in i.value for i in at.info)
    saved = RunStore(runs_dir).get(job.run_id)
    assert saved.status == "stopped" and saved.epochs_completed == len(snap.history)


def test_a_diverging_learning_rate_shows_a_warning_not_a_trace(mnist: Mnist, runs_dir: Path) -> None:
    at = open_page("pages/train.py", learning_rate="10000", optimizer="sgd", schedule="constant", epochs="3")
    assert at.select_slider(key="learning_rate").value == 10000
    job = start(at)
    finish(at, job)
    assert job.snapshot().status == "diverged"
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
    assert "train_job" not in at.session_state


def test_a_link_fills_the_form(mnist: Mnist, runs_dir: Path) -> None:
    tutorial = TrainConfig(learning_rate=0.05, batch_size=1000, epochs=15, optimizer="sgd", schedule="constant")
    at = open_page("pages/train.py", **to_query(tutorial))
    assert at.select_slider(key="learning_rate").value == 0.05
    assert at.number_input(key="batch_size").value == 1000
    assert at.number_input(key="epochs").value == 15
    assert at.selectbox(key="optimizer").value == "sgd"
    assert at.selectbox(key="schedule").value == "constant"


def test_a_reload_shows_the_run_from_the_store(mnist: Mnist, runs_dir: Path) -> None:
    job = TrainingJob(TrainConfig(epochs=2), mnist, RunStore(runs_dir)).start()
    job.join(WAIT)
    at = open_page("pages/train.py", run=job.run_id)
    assert trace_epochs(at, "Loss", "test loss") == [1, 2]
    assert any("test accuracy" in s.value for s in at.success)


def test_a_run_whose_server_died_shows_as_interrupted(mnist: Mnist, runs_dir: Path) -> None:
    """A run created by another process that then exited, as after a server restart."""
    made = subprocess.run(
        [sys.executable, "-c", "import sys; from softmax_core.runs import RunStore; from softmax_core.config "
         "import TrainConfig; print(RunStore(sys.argv[1]).create(TrainConfig(epochs=7, optimizer='sgd')).run_id)",
         str(runs_dir)],
        capture_output=True, text=True, check=True, cwd=PROJECT)
    at = open_page("pages/train.py", run=made.stdout.strip())
    assert any("interrupted" in w.value for w in at.warning)
    assert not at.get("plotly_chart")
    assert at.number_input(key="epochs").value == 7 and at.selectbox(key="optimizer").value == "sgd"


def test_streamlit_no_longer_clears_keras_after_each_run(mnist: Mnist, runs_dir: Path) -> None:
    """Streamlit's post-run cleanup would reset TF/Keras state after every 0.5 s poll (see pages/session.py)."""
    from streamlit.runtime.scriptrunner import script_runner

    open_page()
    import keras

    keras.backend.clear_session()  # warm: the first call builds state of its own
    calls = []
    original = keras.backend.clear_session
    keras.backend.clear_session = lambda *a, **k: calls.append(1)
    try:
        script_runner._clean_problem_modules()
    finally:
        keras.backend.clear_session = original
    assert calls == []
