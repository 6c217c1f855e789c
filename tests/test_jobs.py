"""TrainingJob: training in a thread that writes the run store as it goes."""

from softmax_core.config import TrainConfig
from softmax_core.jobs import TrainingJob
from softmax_core.runs import RunStore


def test_job_trains_writes_and_reports(mnist, tmp_path):
    store = RunStore(tmp_path)
    job = TrainingJob(TrainConfig(epochs=2), mnist, store).start()
    job.join(60)
    snap = job.snapshot()
    assert snap.done and snap.status == "completed" and snap.progress == 1.0 and snap.eta is None
    run = store.get(job.run_id)
    assert run.status == "completed" and run.epochs_completed == 2
    assert [m.test_accuracy for m in snap.history] == [m["test_accuracy"] for m in run.metrics]


def test_stopped_job_is_saved_as_stopped_with_its_epochs(mnist, tmp_path):
    store = RunStore(tmp_path)
    job = TrainingJob(TrainConfig(epochs=200), mnist, store).start()
    while len(job.snapshot().history) < 1:
        job.join(0.05)
    job.stop()
    job.join(60)
    run = store.get(job.run_id)
    assert run.status == "stopped" and 1 <= run.epochs_completed < 200
    assert store.load_weights(run.run_id)[0].shape == (784, 10)


def test_concurrent_jobs_stay_apart(mnist, tmp_path):
    store = RunStore(tmp_path)
    configs = [TrainConfig(epochs=2, seed=0), TrainConfig(epochs=1, batch_size=500), TrainConfig(epochs=3, optimizer="sgd")]
    jobs = [TrainingJob(config, mnist, store).start() for config in configs]
    for job in jobs:
        job.join(120)
    runs = {run.run_id: run for run in store.list()}
    assert sorted(runs) == sorted(job.run_id for job in jobs)
    for job in jobs:  # each folder holds exactly its own job's config and epochs, nothing of another's
        run = runs[job.run_id]
        assert run.status == "completed" and run.config == job.config
        assert [m["train_loss"] for m in run.metrics] == [m.train_loss for m in job.snapshot().history]
