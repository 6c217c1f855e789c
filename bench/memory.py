"""Where a training process's memory goes, stage by stage, without a browser.

``python -m bench.memory --jobs 3`` imports TensorFlow, loads MNIST, makes the shared tensors,
trains one job, then ``--jobs`` jobs at once (the way 3 dashboard sessions would), and prints
VmRSS and VmHWM after each stage as one JSON line. Compare runs with ``MALLOC_ARENA_MAX=2`` in
the environment to see what glibc's per-thread arenas cost.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def status_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(field)


def stage(stages: list[dict], name: str) -> None:
    """Record RSS (and its anonymous and file-backed parts) and the peak so far."""
    row = {"stage": name, **{key: round(status_mb(field), 1) for key, field in
                             (("rss_mb", "VmRSS"), ("anon_mb", "RssAnon"), ("file_mb", "RssFile"), ("hwm_mb", "VmHWM"))}}
    stages.append(row)
    print(f"{name:<36} RSS {row['rss_mb']:>7.1f} MB (anon {row['anon_mb']:>6.1f}, files {row['file_mb']:>6.1f})"
          f"   peak {row['hwm_mb']:>7.1f} MB", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--cold", action="store_true",
                        help="start the jobs at once straight after load_mnist (no tensors made, nothing traced)")
    args = parser.parse_args(argv)
    stages: list[dict] = []
    stage(stages, "python + numpy")
    import tensorflow as tf  # noqa: F401

    stage(stages, "import tensorflow")
    from softmax_core.config import TrainConfig
    from softmax_core.data import load_mnist
    from softmax_core.record import record_run
    from softmax_core.runs import RunStore
    from softmax_core.train import _tensors

    data = load_mnist(allow_download=False)
    stage(stages, "load_mnist")
    if not args.cold:
        _tensors(data)
        stage(stages, "data as TF tensors (train._tensors)")
    config = TrainConfig(epochs=args.epochs)
    with tempfile.TemporaryDirectory() as root:
        store = RunStore(root)
        if not args.cold:
            record_run(store, config, data)
            stage(stages, "1 job trained")
        jobs = [threading.Thread(target=record_run, args=(store, config, data)) for _ in range(args.jobs)]
        for job in jobs:  # as the job service's worker runs them: threads of one process
            job.start()
        for job in jobs:
            job.join()
        stage(stages, f"{args.jobs} jobs at once")
    print(json.dumps({"stages": stages, "malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
