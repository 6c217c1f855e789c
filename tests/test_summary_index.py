"""The summary index: a new process lists ended runs from it, reads again exactly the runs whose
files changed, and a damaged, foreign or unwritable index costs speed only, never a wrong listing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from made_runs import BROKEN, GOOD, store_with

from softmax_core import runs as runs_module
from softmax_core import summary_index
from softmax_core.runs import RunStore


def restarted(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Forget this process's cached summaries, as a new process starts; returns the folders read after."""
    monkeypatch.setattr(runs_module, "_SUMMARIES", {})
    monkeypatch.setattr(runs_module, "_SEEDED", set())
    reads: list[Path] = []
    real = runs_module._read
    monkeypatch.setattr(runs_module, "_read", lambda path, steps: reads.append(path) or real(path, steps))
    return reads


def listing(store: RunStore) -> dict[str, tuple]:
    return {r.run_id: (r.status, r.config, r.created, r.ended, r.message, r.metrics, r.sweep, r.error)
            for r in store.all_runs()}


@pytest.fixture
def store(tmp_path: Path, sgd_run: Path) -> RunStore:
    store_with(sgd_run, tmp_path / "runs")
    return RunStore(tmp_path / "runs")


def test_a_new_process_lists_ended_runs_without_reading_their_files(store, monkeypatch):
    before = listing(store)
    assert summary_index.index_path(store.root).is_file()
    reads = restarted(monkeypatch)
    assert listing(store) == before
    assert reads == []


def test_a_run_whose_files_changed_since_is_read_again_and_only_it(store, monkeypatch):
    listing(store)
    status = store.root / BROKEN / "status.json"
    status.write_text(json.dumps({**json.loads(status.read_text()), "status": "stopped", "message": "later"}))
    reads = restarted(monkeypatch)
    runs = {r.run_id: r for r in store.all_runs()}
    assert [p.name for p in reads] == [BROKEN]
    assert (runs[BROKEN].status, runs[BROKEN].message, runs[GOOD].status) == ("stopped", "later", "completed")


def test_a_file_altered_with_its_size_and_mtime_kept_is_read_again(store, monkeypatch):
    listing(store)
    config = store.root / BROKEN / "config.json"
    stat = config.stat()
    config.write_text(config.read_text().replace('"sgd"', '"SGD"'))  # same size; fails the config check
    os.utime(config, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    reads = restarted(monkeypatch)
    runs = {r.run_id: r for r in store.all_runs()}
    assert [p.name for p in reads] == [BROKEN] and runs[BROKEN].status == "unreadable"


def test_a_deleted_run_is_not_listed_from_the_index(store, monkeypatch):
    listing(store)
    store.delete(BROKEN)
    reads = restarted(monkeypatch)
    assert list(listing(store)) == [GOOD] and reads == []


@pytest.mark.parametrize("damage", ["garbage", "another folder's", "a FIFO", "an old version"])
def test_a_damaged_or_foreign_index_is_ignored_and_written_anew(store, monkeypatch, damage):
    before = listing(store)
    index = summary_index.index_path(store.root)
    saved = json.loads(index.read_text())
    index.unlink()
    if damage == "garbage":
        index.write_bytes(b"\x00{not json")
    elif damage == "a FIFO":
        os.mkfifo(index)
    else:
        key, value = ("root", "/elsewhere") if damage == "another folder's" else ("version", 0)
        index.write_text(json.dumps({**saved, key: value}))
    reads = restarted(monkeypatch)
    assert listing(store) == before
    assert sorted(p.name for p in reads) == [GOOD, BROKEN]
    assert json.loads(index.read_text())["version"] == summary_index.VERSION


def test_an_unwritable_cache_costs_speed_only(store, monkeypatch, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("SOFTMAX_LAB_CACHE", str(blocker))
    assert set(listing(store)) == {GOOD, BROKEN}
    assert not summary_index.save(store.root, {})


def test_runs_still_training_are_not_kept(store, monkeypatch):
    writer = store.create(runs_module.TrainConfig(epochs=3))
    assert listing(store)[writer.run_id][0] == "running"
    saved = json.loads(summary_index.index_path(store.root).read_text())["runs"]
    assert set(saved) == {GOOD, BROKEN}
    writer.finish("stopped", "by a test")
    assert listing(store)[writer.run_id][0] == "stopped"
    assert set(json.loads(summary_index.index_path(store.root).read_text())["runs"]) == {GOOD, BROKEN, writer.run_id}


@pytest.mark.parametrize("tamper", ["a metric that is text", "an epoch skipped", "a config out of range",
                                    "a status still running", "created in 3000"])
def test_a_tampered_entry_is_not_trusted_its_run_is_read_from_its_files(store, monkeypatch, tamper):
    before = listing(store)
    index = summary_index.index_path(store.root)
    saved = json.loads(index.read_text())
    entry = saved["runs"][GOOD][1]
    if tamper == "a metric that is text":
        entry["metrics"]["test_accuracy"][0] = "<b>99%</b>"
    elif tamper == "an epoch skipped":
        entry["metrics"]["epoch"][0] = 7
    elif tamper == "a config out of range":
        entry["config"]["batch_size"] = -1
    elif tamper == "a status still running":
        entry["status"] = "running"
    else:
        entry["created"] = 32503680000.0
    index.write_text(json.dumps(saved))
    reads = restarted(monkeypatch)
    assert listing(store) == before
    assert [p.name for p in reads] == [GOOD]
