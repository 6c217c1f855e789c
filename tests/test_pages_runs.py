"""AppTest of the Runs page on real runs: table, unreadable runs, overlay, downloads, delete; a store of
hostile, damaged or read-only runs, or no store at all, on every page (docs/faults.md).

Damaged runs are copies of a real run, damaged by hand.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from made_runs import BROKEN, GOOD, HOSTILE, Marker, metrics_edit
from streamlit.testing.v1 import AppTest

from apptest import ALL_PAGES, DASHBOARD, open_page, shown, texts

from softmax_core.config import TrainConfig
from softmax_core.data import Mnist
from softmax_core.record import record_run
from softmax_core.runs import RunStore
from ui.session import literal


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


# --- hostile and damaged runs: one bad file never takes a page down ----------------------------------

def test_every_page_works_with_a_store_of_hostile_runs(sgd_run, runs_dir):
    shutil.copytree(sgd_run, runs_dir / GOOD)
    ids = {}
    for n, (case, (damage, _)) in enumerate(HOSTILE.items()):
        run = shutil.copytree(sgd_run, runs_dir / f"20000101-000002-{n:06d}")
        damage(run)
        ids[run.name] = case
    for page in ALL_PAGES:
        at = open_page(page)
        if page in ("pages/weights.py", "pages/draw.py", "pages/errors.py"):
            assert at.selectbox(key=page.split("/")[1].removesuffix(".py") + "_run").value == GOOD
    at = open_page("pages/runs.py")
    [reasons] = [d.value for d in at.dataframe if "Reason" in d.value.columns]
    assert set(reasons["Run id"]) == set(ids)
    assert not any(str(runs_dir) in r for r in reasons["Reason"])
    for run_id in list(ids)[:5]:
        open_page("pages/train.py", run=run_id)


def damaged_store(source_run: Path, runs_dir: Path, marker: Path) -> dict[str, str]:
    """A good run plus one copy per kind of damage; returns {run id: expected reason}."""
    good = shutil.copytree(source_run, runs_dir / GOOD)
    broken = {name: shutil.copytree(source_run, runs_dir / f"20000101-000001-{name}")
              for name in ("trunc0", "pickle", "shape0", "listrow", "badjson")}
    (broken["trunc0"] / "weights.npz").write_bytes((broken["trunc0"] / "weights.npz").read_bytes()[:4000])
    np.savez(broken["pickle"] / "weights.npz", W=np.array([Marker(marker)], dtype=object), b=np.zeros(10))
    np.savez(broken["shape0"] / "weights.npz", W=np.zeros((28, 28)), b=np.zeros(10))
    metrics = broken["listrow"] / "metrics.jsonl"
    metrics.write_text(json.dumps([json.loads(metrics.read_text().splitlines()[0])]) + "\n")
    (broken["badjson"] / "config.json").write_text('{"config": {')
    np.savez(good / "evolution.npz", W=np.array([Marker(marker)], dtype=object))  # weights fine, history pickled
    return {good.name: "", broken["trunc0"].name: "weights.npz cannot be loaded safely",
            broken["pickle"].name: "weights.npz cannot be loaded safely", broken["shape0"].name: "expected (784, 10)",
            broken["listrow"].name: "not an object", broken["badjson"].name: "config.json is not valid JSON"}


def test_damaged_runs_are_listed_with_their_reason_and_no_page_breaks(sgd_run, runs_dir, tmp_path):
    marker = tmp_path / "PICKLE-WAS-LOADED"
    expected = damaged_store(sgd_run, runs_dir, marker)
    at = open_page("pages/runs.py")
    assert any("5 run folders cannot be read" in w for w in texts(at.warning))
    [reasons] = [d.value for d in at.dataframe if "Reason" in d.value.columns]
    listed = dict(zip(reasons["Run id"], reasons["Reason"]))
    for run_id, reason in expected.items():
        if reason:
            assert reason in listed[run_id]
    good = next(run_id for run_id, reason in expected.items() if not reason)
    assert good not in listed
    for page in ALL_PAGES:  # every page with the damaged store, as a user clicks through
        open_page(page)
    weights = open_page("pages/weights.py")
    assert weights.selectbox(key="weights_run").value == good
    for run_id, reason in expected.items():
        if reason:
            assert any(literal(reason) in e for e in texts(open_page("pages/train.py", run=run_id).error))
    assert not marker.exists(), "a pickle was loaded"


def test_the_runs_page_never_prints_the_server_folder(sgd_run, runs_dir):
    shutil.copytree(sgd_run, runs_dir / GOOD)
    broken = shutil.copytree(sgd_run, runs_dir / BROKEN)
    metrics_edit(broken, "test_accuracy", '"high"')
    at = open_page("pages/runs.py")
    assert not any(str(runs_dir) in text for text in shown(at))
    assert not any(str(runs_dir) in str(d.value.to_dict()) for d in at.dataframe)


# --- a runs folder that is a file, or read-only ---------------------------------------------------

def test_a_runs_folder_that_is_a_file_breaks_no_page(tmp_path, monkeypatch):
    afile = tmp_path / "runs"
    afile.write_text("not a folder")
    monkeypatch.setenv("SOFTMAX_LAB_RUNS", str(afile))
    for page in ALL_PAGES:
        open_page(page)


def test_delete_in_a_read_only_store_shows_why_and_keeps_the_run(read_only_store, monkeypatch):
    monkeypatch.setenv("SOFTMAX_LAB_RUNS", str(read_only_store))
    at = open_page("pages/runs.py")
    at.button(key="runs_delete").click().run()
    at.button(key="runs_delete_confirm").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("Not deleted" in e.value and "Read\\-only file system" in e.value for e in at.error)
    assert (read_only_store / GOOD / "weights.npz").is_file()
