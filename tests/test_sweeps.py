"""Sweeps on real MNIST: grid building, runs in turn (the CLI) or as jobs of the queue (the page), stop."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from apptest import WAIT, open_page

from softmax_core.config import ConfigError, TrainConfig
from softmax_core.data import Mnist
from softmax_core.figures.curves import sweep_grid, sweep_heatmap
from softmax_core.query import config_from_query
from softmax_core.runs import RunStore
from softmax_core.jobs import shared_service
from softmax_core.sweeps import MAX_RUNS, best_run, run_sweep, saved_sweeps, submit_sweep, sweep_configs

TUTORIAL_BASE = TrainConfig(epochs=1, optimizer="sgd", schedule="constant")
GRID = {"learning_rate": [0.05, 0.5], "batch_size": [100, 1000]}


def test_configs_are_every_combination_in_grid_order() -> None:
    configs = sweep_configs(TUTORIAL_BASE, {**GRID, "optimizer": ["sgd", "adam"]})
    assert len(configs) == 8
    assert [(c.learning_rate, c.batch_size, c.optimizer) for c in configs[:3]] == [
        (0.05, 100, "sgd"), (0.05, 100, "adam"), (0.05, 1000, "sgd")]
    assert all(c.epochs == 1 and c.schedule == "constant" for c in configs)


@pytest.mark.parametrize("grid, field", [
    ({"learning_rate": [0.1, -1.0]}, "learning_rate"),
    ({"batch_size": [0]}, "batch_size"),
    ({"batch_size": []}, "batch_size"),
    ({"seed": [1, 2]}, "seed"),
    ({"learning_rate": [i / 1000 for i in range(1, MAX_RUNS + 2)]}, "learning_rate"),
    ({"learning_rate": [0.1, 0.2, 0.5], "batch_size": [10, 20, 50, 100, 200], "epochs": [1, 2, 3, 5, 10]}, "batch_size"),
])
def test_bad_grids_are_refused_with_the_field_named(grid: dict, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        sweep_configs(TUTORIAL_BASE, grid)
    assert caught.value.field == field


def test_a_2x2_sweep_saves_four_tagged_runs_and_fills_the_heatmap(mnist: Mnist, runs_dir: Path) -> None:
    store = RunStore(runs_dir)
    seen = []
    runs = run_sweep(TUTORIAL_BASE, GRID, mnist, store, on_run=seen.append, sweep_id="sweep-test")
    assert [r.run_id for r in seen] == [r.run_id for r in runs]
    assert [(r.config.learning_rate, r.config.batch_size) for r in runs] == [(0.05, 100), (0.05, 1000),
                                                                           (0.5, 100), (0.5, 1000)]
    assert all(r.status == "completed" and r.epochs_completed == 1 and r.sweep == "sweep-test" for r in runs)
    assert [r.run_id for r in saved_sweeps(store)["sweep-test"]] == [r.run_id for r in runs]
    rates, batches, grid = sweep_grid(runs, "test_accuracy")
    assert rates == [0.05, 0.5] and batches == [100, 1000]
    assert grid[0, 0] == runs[0].final["test_accuracy"] and grid[1, 1] == runs[3].final["test_accuracy"]
    # One epoch of the tutorial's SGD: more steps (batch 100) and a larger rate both help.
    assert grid[0, 0] > grid[0, 1] and grid[1, 0] > grid[0, 0]
    z = sweep_heatmap(runs, "validation_accuracy").data[0].z
    assert sum(v is not None for row in z for v in row) == 4
    best = best_run(runs)
    assert best.final["validation_accuracy"] == max(r.final["validation_accuracy"] for r in runs)


def test_stop_ends_the_current_run_and_starts_no_more(mnist: Mnist, runs_dir: Path) -> None:
    stop = threading.Event()
    runs = run_sweep(TUTORIAL_BASE, GRID, mnist, RunStore(runs_dir), on_run=lambda info: stop.set(), stop=stop)
    assert len(runs) == 1
    assert len(RunStore(runs_dir).all_runs()) == 1


def test_a_submitted_sweep_is_jobs_in_the_lab_queue(mnist: Mnist, runs_dir: Path) -> None:
    service = shared_service()
    sweep_id, run_ids = submit_sweep(service, RunStore(runs_dir), TUTORIAL_BASE, {"learning_rate": [0.1, 0.2]})
    snaps = [service.wait(run_id, WAIT) for run_id in run_ids]
    assert [s.status for s in snaps] == ["completed", "completed"]
    assert [s.config.learning_rate for s in snaps] == [0.1, 0.2]
    assert [RunStore(runs_dir).get(i).sweep for i in run_ids] == [sweep_id] * 2


def open_sweep(**params: str) -> AppTest:
    return open_page("pages/sweep.py", **params)


def test_sweep_page_renders_without_sweeps(runs_dir: Path) -> None:
    at = open_sweep()
    assert [t.value for t in at.title] == ["Sweep"]
    assert any("No sweep yet" in i.value for i in at.info)


def test_sweep_page_runs_a_grid_and_links_the_best_setting_to_train(mnist: Mnist, runs_dir: Path) -> None:
    at = open_sweep()
    at.multiselect(key="sweep_learning_rates").set_value([0.05, 0.5])
    at.multiselect(key="sweep_batch_sizes").set_value([100, 1000])
    at.multiselect(key="sweep_epochs").set_value([1])
    at.multiselect(key="sweep_optimizers").set_value(["sgd"])
    at.selectbox(key="sweep_schedule").set_value("constant")
    at.button[0].click()
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    sweep_id, run_ids = at.session_state["sweep_runs"]
    service = shared_service()
    while not all(service.snapshot(r).done for r in run_ids):
        at.run()
        assert not at.exception, [e.message for e in at.exception]
        service.wait(run_ids[-1], 0.5)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    heatmaps = [t for c in at.get("plotly_chart") for t in json.loads(c.proto.spec)["data"] if t["type"] == "heatmap"]
    assert len(heatmaps) == 2  # validation and test accuracy
    for heatmap in heatmaps:
        assert heatmap["x"] == ["100", "1000"] and heatmap["y"] == ["0.05", "0.5"]
        assert sum(v is not None for row in heatmap["z"] for v in row) == 4
    best = best_run(saved_sweeps(RunStore(runs_dir))[sweep_id])
    link = next(p.proto for p in at.get("page_link") if p.proto.page == "train")
    params = dict(pair.split("=") for pair in link.query_string.split("&"))
    assert config_from_query(params) == best.config


def test_a_bad_grid_on_the_page_is_refused(runs_dir: Path) -> None:
    at = open_sweep()
    at.multiselect(key="sweep_batch_sizes").set_value([])
    at.button[0].click()
    at.run()
    assert any("**batch_size**" in e.value for e in at.error)
    assert "sweep_runs" not in at.session_state


def test_stop_on_the_sweep_page_ends_the_sweep(mnist: Mnist, runs_dir: Path) -> None:
    at = open_sweep()
    at.multiselect(key="sweep_learning_rates").set_value([0.001, 0.002])
    at.multiselect(key="sweep_batch_sizes").set_value([10])  # slow runs: Stop lands in the first
    at.multiselect(key="sweep_epochs").set_value([50])
    at.button[0].click()
    at.run()
    _, run_ids = at.session_state["sweep_runs"]
    at.button(key="sweep_stop").click().run()
    snaps = [shared_service().wait(run_id, WAIT) for run_id in run_ids]
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert {s.status for s in snaps} <= {"stopped", "cancelled"}
    assert [RunStore(runs_dir).get(r).status for r in run_ids] == [s.status for s in snaps]
    assert any("Sweep stopped" in i.value for i in at.info)


def test_sweep_page_counts_runs_before_start_and_names_the_widest_axis(runs_dir: Path) -> None:
    at = open_sweep()
    assert any("makes **12 runs**" in c.value for c in at.caption)  # 4 rates x 3 batches x 1 x 1 x 1
    at.multiselect(key="sweep_batch_sizes").set_value([10, 20, 50, 100, 200, 500, 1000, 2000, 5000]).run()
    at.multiselect(key="sweep_epochs").set_value([1, 2]).run()
    assert any("makes **72 runs**" in c.value for c in at.caption)
    assert at.multiselect(key="sweep_optimizers").format_func("adam") == "Adam"
    assert at.selectbox(key="sweep_schedule").format_func("cosine") == "cosine decay to 0"
    at.button(key="sweep_start").click().run()
    shown = [e.value.replace("\\", "") for e in at.error]  # the refused value is escaped Markdown: compare the text
    assert any("**batch_size** has 9 values, making 72 runs" in text for text in shown), shown
    assert "sweep_runs" not in at.session_state
