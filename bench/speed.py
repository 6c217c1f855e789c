"""Training speed: every variant in its own process, interleaved across repeats, then summarised.

A repeat runs each variant once per batch size, in an order rotated by the repeat number so
that no variant always runs first (or last) on a machine whose load drifts, then the engine
alone at the small batch size (batch 10: the per-step cost laid bare).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import variants

PROJECT = Path(__file__).resolve().parents[1]
VARIANT_NAMES = ("engine", "engine_defaults", "keras", "tf1", "numpy", "floor", "paired")
PEERS = ("keras", "tf1", "numpy", "floor")
PAIRED_PEERS = ("numpy", "floor")
"""Peers the ``paired`` variant runs beside the engine, epoch by epoch, in one process."""
CHILD_TIMEOUT = 900.0
XLA_CACHE_ENV = "SOFTMAX_LAB_XLA_CACHE"
"""softmax_core.train's persistent compilation cache (named here: this module never imports TensorFlow)."""
OPENBLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
"""Set on some machines for old OpenBLAS builds; they slow a current NumPy, so children drop both."""


class BenchError(RuntimeError):
    """A benchmark child failed; the message carries its stderr tail."""


@dataclass(frozen=True)
class SpeedSettings:
    batch_sizes: tuple[int, ...] = (100, 1000)
    repeats: int = 3
    epochs: int = 6
    lr: float = 0.5
    seed: int = 0
    examples: int = 55_000
    keep_openblas_env: bool = False
    small_batch: int = 10
    """The engine alone also runs at this batch size each repeat; 0 skips it."""
    in_process: bool = False
    """Run the variants in this process (smoke runs only: one TensorFlow import, timings not comparable)."""


def child_env(keep_openblas_env: bool = False) -> dict[str, str]:
    """The environment of every child: project importable, TF quiet, MNIST_DIR absolute."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(PROJECT), env.get("PYTHONPATH"))))
    if env.get("MNIST_DIR"):
        env["MNIST_DIR"] = str(Path(env["MNIST_DIR"]).resolve())
    if not keep_openblas_env:
        for name in OPENBLAS_OVERRIDES:
            env.pop(name, None)
    return env


def run_child(module: str, args: list[str], env: dict[str, str], timeout: float = CHILD_TIMEOUT) -> dict:
    """Run ``python -m module args`` and parse the JSON object on its last stdout line."""
    command = [sys.executable, "-m", module, *args]
    done = subprocess.run(command, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=timeout)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise BenchError(f"{' '.join(command)} exited with {done.returncode}:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])


def measure_speed(settings: SpeedSettings, report: Callable[[str], None] = print) -> list[dict]:
    """Every (repeat, batch size, variant) result, as the children printed them.

    The children share one persistent XLA cache that starts empty (unless SOFTMAX_LAB_XLA_CACHE
    is set): the first repeat's engine processes compile their programs, as a first run on a new
    machine does, and later repeats load them, as later CLI runs do when
    SOFTMAX_LAB_XLA_CACHE is set (without it, every CLI run pays the cold figure).
    """
    env = child_env(settings.keep_openblas_env)
    if XLA_CACHE_ENV in os.environ or settings.in_process:
        return _measure_speed(settings, env, report)
    with tempfile.TemporaryDirectory(prefix="bench-xla-cache-") as folder:
        return _measure_speed(settings, dict(env, **{XLA_CACHE_ENV: folder}), report)


def _measure_speed(settings: SpeedSettings, env: dict[str, str], report: Callable[[str], None]) -> list[dict]:
    results = []
    for repeat in range(settings.repeats):
        shift = repeat % len(VARIANT_NAMES)
        runs = [(batch_size, variant) for batch_size in settings.batch_sizes
                for variant in VARIANT_NAMES[shift:] + VARIANT_NAMES[:shift]]
        if settings.small_batch:
            runs.append((settings.small_batch, "engine"))
        for batch_size, variant in runs:
            args = [variant, "--batch-size", str(batch_size), "--epochs", str(settings.epochs),
                    "--lr", repr(settings.lr), "--seed", str(settings.seed), "--examples", str(settings.examples)]
            result = variants.measure(args) if settings.in_process else run_child("bench.variants", args, env)
            result["repeat"] = repeat
            results.append(result)
            steady = statistics.median(result["epoch_seconds"][1:] or result["epoch_seconds"])
            report(f"  repeat {repeat + 1}/{settings.repeats} batch {batch_size:>5} {variant:<15} "
                   f"{steady:.4f} s/epoch  final train loss {_loss_text(result['final_train_loss'])}")
    return results


def summarise(results: list[dict]) -> dict[str, dict[str, dict]]:
    """Per variant and batch size: steady seconds per epoch, first epoch, tracing, final losses.

    Steady = median over epochs 2..N of every repeat. The floor has no first call (its
    warm-up pass is untimed), so all its passes count. The first epoch is also given for the
    first repeat alone (``cold``: the XLA cache was empty) and for the later ones (``cached``).
    """
    summary: dict[str, dict[str, dict]] = {}
    for variant in VARIANT_NAMES:
        for batch_size in sorted({r["batch_size"] for r in results}):
            runs = [r for r in results if r["variant"] == variant and r["batch_size"] == batch_size]
            if not runs:
                continue
            skip = 0 if variant == "floor" else 1
            later = [s for r in runs for s in r["epoch_seconds"][skip:]]
            later_cpu = [s for r in runs for s in r["epoch_cpu_seconds"][skip:]]
            per_repeat = [statistics.median(r["epoch_seconds"][skip:]) for r in runs]
            first = statistics.median(r["epoch_seconds"][0] for r in runs)
            cold = [r for r in runs if r["repeat"] == 0]
            cached = [r["epoch_seconds"][0] for r in runs if r["repeat"] > 0]
            steady = statistics.median(later)
            losses = [r["final_train_loss"] for r in runs if r["final_train_loss"] is not None]
            summary.setdefault(variant, {})[str(batch_size)] = {
                "seconds_per_epoch": steady,
                "spread_seconds_per_epoch": [min(per_repeat), max(per_repeat)],
                "cpu_seconds_per_epoch": statistics.median(later_cpu),
                "first_epoch_seconds": None if variant == "floor" else first,
                "first_call_overhead_seconds": None if variant == "floor" else first - steady,
                "first_epoch_cold_seconds": cold[0]["epoch_seconds"][0] if cold and variant != "floor" else None,
                "first_epoch_cold_cpu_seconds": cold[0]["epoch_cpu_seconds"][0] if cold and variant != "floor" else None,
                "first_epoch_cached_seconds": statistics.median(cached) if cached and variant != "floor" else None,
                "final_train_loss": statistics.median(losses) if losses else None,
                "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs),
                "peak_rss_mb_cold": cold[0]["peak_rss_mb"] if cold else None,
                "epochs_timed": len(later),
                "repeats": len(runs),
                "extra": _merged_extra(runs),
            }
    return summary


def ratios(summary: dict[str, dict[str, dict]], key: str = "seconds_per_epoch") -> dict[str, dict[str, float]]:
    """engine seconds / peer seconds at each batch size both ran (or ``paired`` ran): below 1 the engine is faster.

    For the NumPy peer and the floor, when the ``paired`` variant ran, the ratio is its figure:
    the median over repeats of each process's median epoch-by-epoch ratio
    (``variants.paired``); the ratio of the separate processes' medians is kept as
    ``engine_vs_<peer>_separate``. ``defaults_vs_sgd`` is the engine with the lab's defaults over
    the engine with plain SGD, both trained alternately in each ``engine_defaults`` process
    (``variants.engine_defaults``): the median over repeats of each process's ratio.
    ``key="cpu_seconds_per_epoch"`` gives the same ratios of process CPU time, which a loaded
    machine disturbs far less than wall time.
    """
    cpu = key == "cpu_seconds_per_epoch"
    out: dict[str, dict[str, float]] = {}
    for peer in PEERS:
        out[f"engine_vs_{peer}"] = {f"batch_{batch}": row[key] / summary[peer][batch][key]
                                    for batch, row in summary.get("engine", {}).items() if batch in summary.get(peer, {})}
    for peer in PAIRED_PEERS:
        side_by_side = _measured_ratios(summary, "paired", variants.ratio_key(peer, cpu))
        if side_by_side:
            out[f"engine_vs_{peer}_separate"] = out[f"engine_vs_{peer}"]
            out[f"engine_vs_{peer}"] = side_by_side
    out["defaults_vs_sgd"] = _measured_ratios(summary, "engine_defaults", variants.ratio_key("defaults", cpu))
    return out


def _measured_ratios(summary: dict[str, dict[str, dict]], variant: str, name: str) -> dict[str, float]:
    """A ratio the variant measured in each of its processes (median over repeats), by batch size."""
    return {f"batch_{batch}": row["extra"][name] for batch, row in summary.get(variant, {}).items() if name in row["extra"]}


def _merged_extra(runs: list[dict]) -> dict:
    """Numeric extras as their median over repeats; anything else as the first run reported it."""
    merged = {}
    for key, value in runs[0]["extra"].items():
        values = [r["extra"].get(key) for r in runs]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        merged[key] = statistics.median(values) if numeric else value
    return merged


def _loss_text(loss: float | None) -> str:
    return "-" if loss is None else f"{loss:.6f}"
