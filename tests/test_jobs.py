"""The job service on real MNIST with a real worker process: queue, Stop, worker death, failed finishes, restart,
and what a diverging or stopped run leaves in the store (docs/faults.md's run rows)."""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from made_runs import assert_weights_are_those_of_the_last_epoch

from apptest import PROJECT, WAIT
from softmax_core import runs, worker
from softmax_core.config import TrainConfig
from softmax_core.jobs import JobService, JobSnapshot, shared_service
from softmax_core.runs import RunStore
from softmax_core.train import DIVERGED_LOSS

LONG = TrainConfig(epochs=500, batch_size=10)
"""A run that trains far longer than any test waits: only Stop or a fault ends it."""
QUICK = TrainConfig(epochs=1, batch_size=1000, optimizer="sgd", learning_rate=0.5, schedule="constant", l2=0.0)


@pytest.fixture(scope="module")
def service() -> JobService:
    """One training slot, so that a second job must queue."""
    service = JobService(workers=1)
    yield service
    service.shutdown()
    assert service.worker_pids() == []


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_jobs_start_in_order_one_at_a_time_and_are_recorded(service: JobService, tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    first, second = service.submit(store, QUICK), service.submit(store, replace(QUICK, seed=1))
    assert store.get(second).status == "queued"
    assert service.wait_started(first, WAIT)
    assert not service.wait_started(second, 0.05)
    snap = service.snapshot(second)
    assert snap.status == "queued" and snap.position == 1  # one slot: it waits its turn
    done = service.wait(first, WAIT), service.wait(second, WAIT)
    assert [d.status for d in done] == ["completed", "completed"]
    assert [len(d.history) for d in done] == [1, 1] and done[0].progress == 1.0
    for d in done:  # the store holds what the service reported, epoch by epoch
        run = store.get(d.run_id)
        assert run.status == "completed" and [m["train_loss"] for m in run.metrics] == [h.train_loss for h in d.history]
    assert done[0].history[0].train_loss != done[1].history[0].train_loss  # different seeds, different runs


def test_stop_cancels_a_queued_job_and_stops_a_running_one(service: JobService, tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    running, queued = service.submit(store, LONG), service.submit(store, QUICK)
    assert service.stop(queued)
    assert service.snapshot(queued).status == "cancelled"  # at once, without waiting for the worker
    assert store.get(queued).status == "cancelled"
    wait_until(lambda: service.snapshot(running).progress > 0, "progress from the running job")
    assert [s.run_id for s in service.active()] == [running]
    assert service.stop(running)
    snap = service.wait(running, WAIT)
    assert snap.status == "stopped" and store.get(running).status == "stopped"
    assert not service.stop(running)  # already ended


def test_training_yields_the_cores_to_the_web_server(service: JobService, tmp_path: Path) -> None:
    """The worker runs at a lower priority than the server, so pages render while a room trains."""
    service.wait(service.submit(RunStore(tmp_path), QUICK), WAIT)
    [pid] = service.worker_pids()
    assert os.getpriority(os.PRIO_PROCESS, pid) - os.getpriority(os.PRIO_PROCESS, 0) == worker.NICENESS > 0


def test_a_killed_worker_interrupts_its_run_and_is_replaced(service: JobService, tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    victim = service.submit(store, TrainConfig(epochs=500, batch_size=1000))
    wait_until(lambda: service.snapshot(victim).history, "a finished epoch")
    [pid] = service.worker_pids()
    os.kill(pid, signal.SIGKILL)
    snap = service.wait(victim, WAIT)
    assert snap.status == "interrupted" and "SIGKILL" in snap.message
    run = store.get(victim)
    assert run.status == "interrupted" and run.epochs_completed >= 1
    after = service.wait(service.submit(store, QUICK), WAIT)
    assert after.status == "completed" and service.worker_pids() != [pid]


def test_a_run_folder_removed_mid_run_ends_failed_with_the_reason(service: JobService, tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    run_id = service.submit(store, TrainConfig(epochs=500, batch_size=1000))
    wait_until(lambda: service.snapshot(run_id).history, "a finished epoch")
    shutil.rmtree(store.path(run_id))
    snap = service.wait(run_id, WAIT)
    assert snap.status == "failed" and "removed" in snap.message
    assert not store.path(run_id).exists() and store.run_ids() == []


def test_a_full_disk_at_the_final_write_still_records_the_end(service: JobService, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    store = RunStore(tmp_path)
    run_id = service.submit(store, QUICK)
    service.wait(run_id, WAIT)  # let it finish first: then make new files fail as on a full disk
    full = OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(runs, "_atomic_write", lambda *a, **k: (_ for _ in ()).throw(full))
    writer = runs.RunWriter(store.path(run_id))
    writer.finish("stopped", "written over the old status in place")
    assert store.get(run_id).status == "stopped" and store.get(run_id).message.startswith("written over")


def test_shutdown_records_the_running_job_and_leaves_no_worker(tmp_path: Path) -> None:
    service = JobService(workers=1)
    store = RunStore(tmp_path)
    running, queued = service.submit(store, LONG), service.submit(store, LONG)
    wait_until(lambda: service.snapshot(running).status == "running", "the job to start")
    pids = service.worker_pids()
    service.shutdown()
    assert store.get(running).status == "stopped" and "shut down" in store.get(running).message
    assert store.get(queued).status == "cancelled"
    assert all(not Path(f"/proc/{pid}").exists() for pid in pids)


SERVER = """
import json, sys, time
from softmax_core.config import TrainConfig
from softmax_core.jobs import JobService
from softmax_core.runs import RunStore
service = JobService(workers=1)
store = RunStore(sys.argv[1])
ids = [service.submit(store, TrainConfig(epochs=500, batch_size=10)) for _ in range(2)]
while service.snapshot(ids[0]).status != "running":
    time.sleep(0.05)
print(json.dumps({"ids": ids, "workers": service.worker_pids()}), flush=True)
time.sleep(600)
"""


def test_after_a_killed_server_running_reads_interrupted_queued_cancelled_and_no_orphan(tmp_path: Path) -> None:
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              cwd=PROJECT)
    try:
        started = json.loads(server.stdout.readline())
    finally:
        server.kill()
        server.wait()
    store = RunStore(tmp_path)
    running, queued = started["ids"]
    assert store.get(running).status == "interrupted"
    assert store.get(queued).status == "cancelled"
    wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in started["workers"]), "the worker to exit")


def test_exports_are_made_by_the_worker_process(service: JobService, tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs")
    run_id = service.submit(store, QUICK)
    assert service.wait(run_id, WAIT).status == "completed"
    keras_file = service.export(store, run_id, "keras", tmp_path / "model.keras")
    assert keras_file.is_file() and keras_file.stat().st_size > 0
    saved = service.export(store, run_id, "savedmodel", tmp_path / "saved")
    assert (saved / "saved_model.pb").is_file()
    script = service.export(store, run_id, "script", tmp_path / "train.py")
    assert "MNIST_DIR" in script.read_text() and "softmax_core" not in script.read_text()
    with pytest.raises(runs.RunError, match="no run"):
        service.export(store, "20990101-000000-abcdef", "keras", tmp_path / "none.keras")


# --- a learning rate that diverges, Stop pressed mid-run: in the lab's own (shared) job service -------

def finish(run_id: str) -> JobSnapshot:
    """Wait for a job of the lab's job service (a real worker process) to end."""
    snap = shared_service().wait(run_id, WAIT)
    assert snap.done, "the training job did not end"
    return snap


def test_lr_1e4_diverges_in_epoch_1_with_a_message_and_no_weights(tmp_path, mnist):
    store = RunStore(tmp_path)
    config = TrainConfig(learning_rate=1e4, optimizer="sgd", schedule="constant", epochs=3)
    job = snap = finish(shared_service().submit(store, config))
    assert snap.status == "diverged" and snap.history == []
    run = store.get(job.run_id)
    assert run.status == "diverged" and run.epochs_completed == 0 and run.final == {}
    assert "in epoch 1" in run.message and "learning rate 10000 is too large for sgd" in run.message
    with pytest.raises(runs.RunError, match="no weights yet"):
        store.load_weights(job.run_id)


def test_late_divergence_keeps_every_finite_epoch_and_its_weights(tmp_path, mnist):
    """lr 700 (sgd, batch 1000, seed 1) trains a few finite epochs, then blows up (epoch 5 here)."""
    store = RunStore(tmp_path)
    config = TrainConfig(learning_rate=700, optimizer="sgd", schedule="constant", batch_size=1000, seed=1, epochs=12,
                         l2=0.0)
    job = finish(shared_service().submit(store, config))
    run = store.get(job.run_id)
    assert run.status == "diverged"
    kept = run.epochs_completed
    assert 1 <= kept < config.epochs, "this setting should diverge after at least one finite epoch"
    assert [m["epoch"] for m in run.metrics] == list(range(1, kept + 1))
    assert all(math.isfinite(m["train_loss"]) and m["train_loss"] <= DIVERGED_LOSS for m in run.metrics)
    assert f"in epoch {kept + 1}" in run.message and f"Kept the weights of epoch {kept}" in run.message
    assert_weights_are_those_of_the_last_epoch(store, job.run_id, mnist)
    assert np.isfinite(store.load_weights(job.run_id)[0]).all()


def test_stop_mid_run_saves_a_stopped_run_with_every_finished_epoch(tmp_path, mnist):
    store = RunStore(tmp_path)
    config = TrainConfig(learning_rate=0.1, optimizer="sgd", schedule="constant", epochs=200)
    service = shared_service()
    run_id = service.submit(store, config)
    wait_until(lambda: len(service.snapshot(run_id).history) >= 2, "two finished epochs")
    service.stop(run_id)
    job = snap = finish(run_id)
    assert snap.status == "stopped" and "stopped by request" in snap.message
    run = store.get(job.run_id)
    assert run.status == "stopped" and run.epochs_completed == len(snap.history) >= 2
    assert run.epochs_completed < config.epochs
    assert [m["epoch"] for m in run.metrics] == [h.epoch for h in snap.history]
    assert_weights_are_those_of_the_last_epoch(store, job.run_id, mnist)
