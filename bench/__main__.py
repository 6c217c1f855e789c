"""``python -m bench``: training speed against the peers, evaluation cost, dashboard latency, memory.

Prints progress, then a table, then one JSON line (the last line of stdout) with every figure.
Run from the project folder with MNIST_DIR set; see bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
from typing import Any

from . import canvas, dashboard, report, speed
from .blas import blas_info
from .speed import BenchError, SpeedSettings, child_env, run_child


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="processes per variant and batch size (default 3)")
    parser.add_argument("--epochs", type=int, default=6, help="epochs per run; epoch 1 is reported apart (default 6)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--lr", type=float, default=0.5, help="constant SGD learning rate for every variant")
    parser.add_argument("--seed", type=int, default=0, help="seed of the per-epoch permutations")
    parser.add_argument("--examples", type=int, default=55_000,
                        help="train rows used (the first N); below 55000 only for smoke runs")
    parser.add_argument("--canvas-calls", type=int, default=300)
    parser.add_argument("--skip-browser", action="store_true", help="skip Start -> first point in chromium")
    parser.add_argument("--skip-memory", action="store_true", help="skip the server's peak RSS with 1 and 3 sessions")
    parser.add_argument("--keep-openblas-env", action="store_true",
                        help="keep OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE in the children (dropped by default)")
    parser.add_argument("--small-batch", type=int, default=10,
                        help="the engine alone also runs at this batch size (default 10; 0 skips it)")
    parser.add_argument("--in-process", action="store_true",
                        help="run every variant in this process: smoke runs only (one TensorFlow import, "
                             "shared state, timings not comparable)")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.epochs < 2:
        parser.error("need --repeats >= 1 and --epochs >= 2 (epoch 1 holds the tracing)")
    return args


def machine(keep_openblas_env: bool, in_process: bool) -> dict[str, Any]:
    """What the figures depend on: cores, load, Python, NumPy's BLAS kernel in the children."""
    probe = blas_info() if in_process else run_child("bench.blas", [], child_env(keep_openblas_env), timeout=120)
    return {
        "cpus": os.cpu_count(), "load_average_before": list(os.getloadavg()),
        "python": platform.python_version(), "numpy_blas": probe,
        "openblas_env_in_children": {k: os.environ.get(k) for k in speed.OPENBLAS_OVERRIDES} if keep_openblas_env else "unset",
    }


def evaluation(summary: dict) -> dict[str, float | None]:
    engine_runs = [row["extra"] for row in (summary.get("engine") or {}).values()]
    if not engine_runs:
        return {"evaluation_seconds": None, "in_train_evaluation_seconds": None}
    return {
        "evaluation_seconds": statistics.median(e["evaluate_seconds"] for e in engine_runs),
        "in_train_evaluation_seconds": statistics.median(e["in_train_evaluation_seconds"] for e in engine_runs),
    }


FIRST_EPOCH_KEYS = ("first_epoch_seconds", "first_call_overhead_seconds", "first_epoch_cold_seconds",
                    "first_epoch_cold_cpu_seconds", "first_epoch_cached_seconds")


def engine_costs(summary: dict, small_batch: int) -> dict[str, Any]:
    """The engine's figures beyond speed: the small batch, the first epoch, the training process's memory."""
    engines = {variant: summary.get(variant) or {} for variant in ("engine", "engine_defaults")}
    small = engines["engine"].get(str(small_batch))
    return {
        "small_batch": small_batch,
        "small_batch_seconds_per_epoch": small["seconds_per_epoch"] if small else None,
        "first_epoch": {variant: {batch: {key: row[key] for key in FIRST_EPOCH_KEYS} for batch, row in rows.items()}
                        for variant, rows in engines.items()},
        "peak_rss_mb": {variant: {batch: row["peak_rss_mb"] for batch, row in rows.items()}
                        for variant, rows in summary.items()},
    }


def memory(log) -> dict:
    """The server's peak RSS with 1 and 3 browser sessions, and one process's RSS stage by stage."""
    figures = dashboard.memory(log)
    log("memory: one process, stage by stage …")
    figures["process_stages"] = run_child("bench.memory", ["--cold"], child_env())["stages"]
    return figures


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = SpeedSettings(tuple(args.batch_sizes), args.repeats, args.epochs, args.lr, args.seed,
                             args.examples, args.keep_openblas_env, args.small_batch, args.in_process)
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731  progress goes to stderr
    try:
        figures: dict[str, Any] = {"settings": vars(args), "machine": machine(args.keep_openblas_env, args.in_process)}
        log("training speed …")
        results = speed.measure_speed(settings, log)
        summary = speed.summarise(results)
        figures["speed"] = summary
        figures.update(speed.ratios(summary))
        figures["cpu_ratios"] = speed.ratios(summary, "cpu_seconds_per_epoch")
        figures.update(evaluation(summary))
        figures.update(engine_costs(summary, args.small_batch))
        log("canvas -> probabilities …")
        figures["canvas"] = (canvas.canvas_latency(args.canvas_calls) if args.in_process
                             else run_child("bench.canvas", ["--calls", str(args.canvas_calls)], child_env()))
        figures["browser"] = dashboard.skipped("--skip-browser") if args.skip_browser else dashboard.start_latency(log)
        figures["live_view"] = dashboard.skipped("--skip-browser") if args.skip_browser else dashboard.live_view(log)
        figures["memory"] = dashboard.skipped("--skip-memory") if args.skip_memory else memory(log)
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    figures["machine"]["load_average_after"] = list(os.getloadavg())
    figures["targets"] = report.targets(figures)
    print(report.table(figures))
    print(report.json_line(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
