"""Optuna search on the real data: trials are runs, a hopeless one is pruned, processes share a study."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import optuna
import plotly.graph_objects as go
import pytest

from softmax_core import tune
from softmax_core.config import TrainConfig
from softmax_core.runs import RunStore

GOOD = {"learning_rate": 0.5, "batch_size": 500, "epochs": 4, "optimizer": "sgd", "schedule": "constant",
        "l2": 1e-4, "l2_on": False}
HOPELESS = {**GOOD, "learning_rate": 1e-4}
"""SGD at 1e-4 learns almost nothing in 4 epochs: any pruner must stop it."""
GOOD_TRIALS = 6


@pytest.fixture(scope="module")
def searched(mnist, tmp_path_factory):
    """A study of good trials, then a hopeless one, then two the sampler picks."""
    store = RunStore(tmp_path_factory.mktemp("runs"))
    study = tune.open_study(store, "small", seed=0, epochs_max=4)
    for params in [GOOD] * GOOD_TRIALS + [HOPELESS]:
        study.enqueue_trial(params)
    seen = []
    summary = tune.tune(study, GOOD_TRIALS + 3, tune.local_trial(mnist, store), on_trial=seen.append)
    return store, study, summary, seen


def test_every_trial_is_a_run_tagged_with_the_study(searched):
    store, study, summary, seen = searched
    runs = {run.run_id: run for run in store.all_runs()}
    assert len(runs) == len(seen) == len(study.trials)
    for trial in seen:
        run = runs[trial.user_attrs["run_id"]]
        assert run.sweep == "small" and run.config.to_dict() == trial.user_attrs["config"]
        if trial.state == optuna.trial.TrialState.COMPLETE:
            assert run.status == "completed" and trial.value == run.final["validation_accuracy"]
    assert tune.study_names(store) == ["small"]


def test_the_hopeless_trial_is_pruned_and_its_run_says_so(searched):
    store, _, summary, seen = searched
    hopeless = seen[GOOD_TRIALS]
    assert hopeless.params["learning_rate"] == HOPELESS["learning_rate"]
    assert hopeless.state == optuna.trial.TrialState.PRUNED
    run = store.get(hopeless.user_attrs["run_id"])
    assert run.status == "pruned" and 1 <= run.epochs_completed < 4
    assert list(hopeless.intermediate_values) == [m["epoch"] for m in run.metrics]
    assert summary.trials_pruned >= 1 and summary.epochs_trained < summary.epochs_planned


def test_best_trial_comes_back_as_a_config_and_a_summary(searched):
    store, study, summary, _ = searched
    best = max((t for t in study.trials if t.value is not None and t.state.name == "COMPLETE"),
               key=lambda t: t.value)
    config = tune.best_config(study)
    assert isinstance(config, TrainConfig) and config.to_dict() == best.user_attrs["config"]
    assert summary.best_run_id == best.user_attrs["run_id"]
    run = store.get(summary.best_run_id)
    assert summary.best_validation_accuracy == run.final["validation_accuracy"] > 0.9
    assert summary.best_test_accuracy == run.final["test_accuracy"]
    assert summary.best_params == {k: v for k, v in config.to_dict().items() if k not in ("seed", "init")}


def test_study_figures_are_optunas_four(searched):
    _, study, _, _ = searched
    figures = tune.study_figures(study)
    assert set(figures) == {"history", "importances", "parallel", "intermediate"}
    assert all(isinstance(f, go.Figure) and f.data for f in figures.values())
    pruned_curves = [t for t in figures["intermediate"].data if len(t.x) < 4]
    assert pruned_curves  # the pruned trial's shorter curve is drawn


def _tune_cli(runs_dir, *args):
    env = {**os.environ, "SOFTMAX_LAB_RUNS": str(runs_dir), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen([sys.executable, "-m", "softmax_core", "tune", *args, "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_two_processes_share_one_study_through_the_journal_file(tmp_path):
    runs_dir = tmp_path / "runs"
    workers = [_tune_cli(runs_dir, "--trials", "2", "--epochs-max", "2", "--study", "shared", "--seed", str(seed))
               for seed in (1, 2)]
    outputs = [w.communicate(timeout=600) for w in workers]
    for worker, (out, err) in zip(workers, outputs):
        assert worker.returncode == 0, err
    last = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    for result in last:
        assert {"study", "trials_completed", "trials_pruned", "best_params", "best_validation_accuracy",
                "best_run_id", "best_test_accuracy"} <= set(result)
        assert result["study"] == "shared"
    store = RunStore(runs_dir)
    study = tune.load_study(store, "shared")
    assert len(study.trials) == 4 and {t.number for t in study.trials} == {0, 1, 2, 3}
    run_ids = {t.user_attrs["run_id"] for t in study.trials}
    assert run_ids == {run.run_id for run in store.all_runs()} and len(run_ids) == 4
    assert {run.sweep for run in store.all_runs()} == {"shared"}
    writers = {json.loads((run.path / "status.json").read_text())["pid"] for run in store.all_runs()}
    assert len(writers) == 2  # both processes trained trials of the one study
    # the process that finished last saw all four trials
    assert max(r["trials_completed"] + r["trials_pruned"] for r in last) == 4


@pytest.mark.parametrize("args, message", [
    (["--trials", "0"], "--trials"),
    (["--trials", "1", "--epochs-max", "0"], "--epochs-max"),
    (["--trials", "1", "--storage", "nonsense://nowhere"], "storage"),
])
def test_bad_tune_input_is_one_line_and_exit_2(tmp_path, args, message):
    worker = _tune_cli(tmp_path / "runs", *args)
    out, err = worker.communicate(timeout=120)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert worker.returncode == 2 and len(errors) == 1 and message in errors[0], err


def test_a_study_keeps_the_epochs_max_it_was_created_with(tmp_path):
    store = RunStore(tmp_path / "runs")
    tune.open_study(store, "fixed", epochs_max=12)
    assert tune.open_study(store, "fixed").user_attrs["epochs_max"] == 12
    with pytest.raises(ValueError, match="up to 12 epochs"):
        tune.open_study(store, "fixed", epochs_max=20)


def test_the_sweep_page_runs_an_optuna_search_in_the_job_queue(mnist, runs_dir) -> None:
    """Trials are jobs of the lab's service (the worker process trains them); the page shows Optuna's figures."""
    from apptest import WAIT, open_page
    from softmax_core.jobs import shared_service
    from softmax_core.tune import running_search

    at = open_page("pages/sweep.py")
    at.segmented_control(key="sweep_mode").set_value("optuna").run()
    at.number_input(key="tune_trials").set_value(3)
    at.number_input(key="tune_epochs_max").set_value(2)
    at.button(key="FormSubmitter:tune_form-Start search").click().run()
    assert not at.exception, [e.message for e in at.exception]
    study = at.query_params["study"]
    study = study[0] if isinstance(study, list) else study
    search = running_search(study)
    assert search is not None and search.thread is not None
    search.thread.join(WAIT)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    runs = [r for r in RunStore(runs_dir).all_runs() if r.sweep == study]
    assert len(runs) == 3 and {r.status for r in runs} <= {"completed", "pruned", "diverged"}
    assert shared_service().snapshot(runs[0].run_id) is not None  # trained by the job service, not the page
    titles = {json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")}
    assert {"Optimisation history", "Parallel coordinates"} <= titles
    assert any(p.proto.page == "train" for p in at.get("page_link"))
