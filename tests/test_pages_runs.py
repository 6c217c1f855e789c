"""AppTest of the Runs page on real runs: table, unreadable runs, overlay, downloads, delete."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from apptest import DASHBOARD, open_page

from softmax_core.config import TrainConfig
from softmax_core.data import Mnist
from softmax_core.record import record_run
from softmax_core.runs import RunStore



def open_runs(**params: str) -> AppTest:
    return open_page("pages/runs.py", **params)


def trained(mnist: Mnist, runs_dir: Path, *configs: TrainConfig) -> list[str]:
    """Run ids of real, finished runs (oldest first)."""
    ids = []
    for config in configs:
        run_id, status, _ = record_run(RunStore(runs_dir), config, mnist)
        assert status == "completed"
        ids.append(run_id)
    return ids


@pytest.fixture
def two_runs_and_a_broken_one(mnist: Mnist, runs_dir: Path) -> tuple[str, str, str]:
    first, second = trained(mnist, runs_dir, TrainConfig(epochs=1), TrainConfig(epochs=2, optimizer="sgd",
                                                                               learning_rate=0.5))
    broken = runs_dir / "20000101-000000-bad000"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    (broken / "status.json").write_text('{"status": "completed"}')
    return first, second, broken.name


def overlay_traces(at: AppTest) -> list[dict]:
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert len(charts) == 1
    return charts[0]["data"]


def test_runs_renders_without_runs(runs_dir: Path) -> None:
    at = open_runs()
    assert [t.value for t in at.title] == ["Runs"]
    assert any("No saved runs" in i.value for i in at.info)


def test_every_run_is_listed_and_an_unreadable_one_with_its_reason(two_runs_and_a_broken_one) -> None:
    first, second, broken = two_runs_and_a_broken_one
    at = open_runs()
    table = at.dataframe[0].value
    assert list(table["Run id"]) == [second, first, broken]
    assert list(table["Status"]) == ["✓ completed", "✓ completed", "✕ unreadable"]
    assert list(table["Epochs"][:2]) == ["2 / 2", "1 / 1"]
    assert table["Test acc."][0] > 90
    assert any("cannot be read" in w.value for w in at.warning)
    reasons = at.dataframe[1].value
    assert list(reasons["Run id"]) == [broken] and "config.json is not valid JSON" in reasons["Reason"][0]


def test_chosen_runs_are_overlaid_in_one_figure(two_runs_and_a_broken_one) -> None:
    first, second, _ = two_runs_and_a_broken_one
    at = open_runs()
    assert [t["x"] for t in overlay_traces(at)] == [[1, 2], [1]]
    at.multiselect(key="runs_compare").set_value([first]).run()
    assert [t["x"] for t in overlay_traces(at)] == [[1]]


def test_downloads_hold_the_runs_files(two_runs_and_a_broken_one, runs_dir: Path) -> None:
    first, _, broken = two_runs_and_a_broken_one
    at = open_runs(run=first)
    assert at.selectbox(key="runs_manage").value == first
    buttons = {b.proto.label: b.proto for b in at.get("download_button")}
    assert not buttons["Weights (.npz)"].disabled and not buttons["Metrics (.csv)"].disabled
    at.selectbox(key="runs_manage").set_value(broken).run()
    buttons = {b.proto.label: b.proto for b in at.get("download_button")}
    assert buttons["Weights (.npz)"].disabled and buttons["Metrics (.csv)"].disabled


def test_delete_asks_first_then_removes_only_that_run(two_runs_and_a_broken_one, runs_dir: Path) -> None:
    first, second, broken = two_runs_and_a_broken_one
    at = open_runs(run=first)
    at.button(key="runs_delete").click().run()
    assert (runs_dir / first).is_dir()
    assert any("cannot be undone" in w.value for w in at.warning)
    at.button(key="runs_delete_cancel").click().run()
    assert (runs_dir / first).is_dir()
    at.button(key="runs_delete").click().run()
    at.button(key="runs_delete_confirm").click().run()
    assert not at.exception
    assert sorted(p.name for p in runs_dir.iterdir()) == sorted([second, broken])
    assert list(at.dataframe[0].value["Run id"]) == [second, broken]


def test_home_shows_the_latest_run(two_runs_and_a_broken_one) -> None:
    _, second, _ = two_runs_and_a_broken_one
    at = AppTest.from_file(DASHBOARD, default_timeout=120).run()
    assert not at.exception
    latest = RunStore().get(second).final
    assert {m.label: m.value for m in at.metric}["Test accuracy"] == f"{latest['test_accuracy']:.2%}"
    links = {p.proto.page: p.proto.query_string for p in at.get("page_link") if p.proto.query_string}
    assert links["weights"] == f"run={second}"


def test_several_runs_are_deleted_together_after_one_confirmation(two_runs_and_a_broken_one, runs_dir: Path) -> None:
    first, second, broken = two_runs_and_a_broken_one
    at = open_runs()
    assert list(at.dataframe[0].value.columns[:1]) == ["Run id"]  # pinned first, so it is never cut off
    at.multiselect(key="runs_delete_many").set_value([first, broken]).run()
    assert not at.get("button") or all(b.proto.label != "Delete 2 runs" for b in at.get("button"))
    assert sorted(p.name for p in runs_dir.iterdir()) == sorted([first, second, broken])
    at.toggle(key="runs_delete_many_confirm").set_value(True).run()
    at.button(key="runs_delete_many_go").click().run()
    assert not at.exception
    assert [p.name for p in runs_dir.iterdir()] == [second]
    assert list(at.dataframe[0].value["Run id"]) == [second]
