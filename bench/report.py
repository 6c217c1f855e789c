"""The benchmark's output: a readable table, then one JSON line with every figure.

Ratios are engine seconds / peer seconds, so below 1 means the engine is faster.
"""

from __future__ import annotations

import json
from typing import Any

from .speed import PAIRED_PEERS, PEERS, VARIANT_NAMES

TARGETS = {
    "engine_vs_numpy_batch_100": ("engine / NumPy at batch 100", "<=", 0.65),
    "engine_vs_numpy_batch_1000": ("engine / NumPy at batch 1000", "<=", 0.65),
    "engine_vs_floor_batch_100": ("engine / floor at batch 100", "<=", 1.4),
    "engine_vs_floor_batch_1000": ("engine / floor at batch 1000", "<=", 1.25),
    "engine_vs_keras_batch_100": ("engine / Keras fit at batch 100", "<=", 0.12),
    "engine_vs_tf1_batch_100": ("engine / TF1 Session at batch 100", "<=", 0.25),
    "defaults_vs_sgd_batch_100": ("defaults / SGD at batch 100", "<=", 1.15),
    "defaults_vs_sgd_batch_1000": ("defaults / SGD at batch 1000", "<=", 1.15),
    "evaluation_seconds": ("per-epoch evaluation (s)", "<=", 0.025),
    "small_batch_seconds_per_epoch": ("engine s/epoch at the small batch (10)", "<=", 0.1),
    "canvas_to_probabilities_seconds": ("canvas -> probabilities (s)", "<=", 0.020),
    "memory_3_vs_1": ("peak RSS, 3 sessions / 1 session", "<=", 1.5),
}
"""Issue 12's targets (issue 4's for canvas and memory): flat figure -> (description, comparison, limit)."""


def flat_figures(figures: dict[str, Any]) -> dict[str, float | None]:
    """The figures the targets speak of, by flat name."""
    flat: dict[str, float | None] = {}
    for name in [f"engine_vs_{peer}" for peer in PEERS] + ["defaults_vs_sgd"]:
        for batch, value in figures.get(name, {}).items():
            flat[f"{name}_{batch}"] = value
    flat["evaluation_seconds"] = figures.get("evaluation_seconds")
    flat["small_batch_seconds_per_epoch"] = figures.get("small_batch_seconds_per_epoch")
    flat["canvas_to_probabilities_seconds"] = (figures.get("canvas") or {}).get("seconds")
    flat["memory_3_vs_1"] = (figures.get("memory") or {}).get("ratio_3_vs_1")
    return flat


def targets(figures: dict[str, Any]) -> dict[str, dict]:
    """Each target with its measured value and whether it was met (None when not measured)."""
    flat = flat_figures(figures)
    out = {}
    for key, (label, _op, limit) in TARGETS.items():
        value = flat.get(key)
        out[key] = {"label": label, "limit": limit, "value": value, "met": None if value is None else value <= limit}
    return out


def table(figures: dict[str, Any]) -> str:
    """The human-readable report."""
    lines = []
    settings = figures["settings"]
    speed = figures.get("speed") or {}
    if speed:
        lines += [
            f"Training speed: seconds per epoch on {settings['examples']:,} x 784, SGD lr {settings['lr']:g}, "
            f"median of epochs 2..{settings['epochs']} over {settings['repeats']} repeats "
            + ("(all in one process: a smoke run, not comparable)" if settings.get("in_process")
               else "(one process per variant per repeat)"),
            "ratio = engine seconds / peer seconds (< 1: the engine is faster)",
            "cpu s = process CPU seconds per epoch, all threads: the work, less disturbed by a busy machine",
            "engine_defaults = the engine with the lab's defaults (Adam, cosine, L2); its ratio is defaults / SGD,"
            " both trained alternately in each of its processes",
            "paired = the engine with the NumPy peer's same epoch and a floor pass after each of its epochs, in one"
            " process; engine / NumPy and engine / floor are its epoch-by-epoch ratios (the separate processes'"
            " ratios follow the table)",
            f"{'variant':<15} {'batch':>6} {'s/epoch':>9} {'cpu s':>8} {'1st epoch':>10} {'1st-call':>9} "
            f"{'final train loss':>17} {'peak RSS':>9} {'ratio':>6}",
        ]
        for variant in VARIANT_NAMES:
            ratio_name = _row_ratio(figures, variant)
            for batch, row in (speed.get(variant) or {}).items():
                ratio = figures.get(ratio_name, {}).get(f"batch_{batch}")
                lines.append(
                    f"{variant:<15} {batch:>6} {row['seconds_per_epoch']:>9.4f} {row['cpu_seconds_per_epoch']:>8.4f} "
                    f"{_num(row['first_epoch_seconds'], 10, 3)} "
                    f"{_num(row['first_call_overhead_seconds'], 9, 3)} {_num(row['final_train_loss'], 17, 6)} "
                    f"{_mb(row['peak_rss_mb']):>9} {_num(ratio, 6, 2)}")
        for peer in PAIRED_PEERS:
            if f"engine_vs_{peer}_separate" in figures:
                lines.append(f"engine / {peer}: side by side {_ratios_text(figures[f'engine_vs_{peer}'])}; "
                             f"separate processes {_ratios_text(figures[f'engine_vs_{peer}_separate'])}")
        lines.append(f"NumPy BLAS: {figures['machine'].get('numpy_blas')}")
        floor = (speed.get("floor") or {})
        if floor:
            extra = next(iter(floor.values()))["extra"]
            lines.append(f"floor passes: NumPy {extra.get('numpy_seconds', 0):.4f} s, "
                         f"TensorFlow {extra.get('tensorflow_seconds', 0):.4f} s (floor = the faster)")
        firsts = [f"{variant} {batch}: {_seconds(row.get('first_epoch_cold_seconds'))} cold, "
                  f"{_seconds(row.get('first_epoch_cached_seconds'))} cached"
                  for variant in ("engine", "engine_defaults") for batch, row in (speed.get(variant) or {}).items()]
        if firsts:
            lines.append("engine's first epoch in a fresh process (cold: XLA cache empty, first repeat; cached: later "
                         "repeats): " + "; ".join(firsts))
        lines.append("")
    lines.append("Dashboard and evaluation")
    lines.append(f"  per-epoch evaluation, train.evaluate on train+validation+test: "
                 f"{_seconds(figures.get('evaluation_seconds'))} (in train(), with bookkeeping: "
                 f"{_seconds(figures.get('in_train_evaluation_seconds'))})")
    canvas = figures.get("canvas") or {}
    lines.append(f"  canvas {canvas.get('canvas_side', '?')}px RGBA -> probabilities: {_seconds(canvas.get('seconds'))} "
                 f"median, {_seconds(canvas.get('p95_seconds'))} p95")
    browser = figures.get("browser") or {}
    lines.append(f"  Start -> first curve point in chromium: {_seconds(browser.get('start_to_first_point_seconds'))}"
                 + (f"  ({browser['note']})" if browser.get("note") else ""))
    if "tries" in browser:
        lines.append(f"    after the click: progress bar {_seconds(browser['click_to_progress_seconds'])}, chart mounted "
                     f"{_seconds(browser['click_to_chart_seconds'])}, epoch 1's numbers "
                     f"{_seconds(browser['click_to_metrics_seconds'])}; engine's epoch 1 took "
                     f"{_seconds(browser['engine_first_epoch_seconds'])}; first try (server's first training) "
                     f"{_seconds(browser['first_try']['total'])}")
    memory = figures.get("memory") or {}
    lines.append(f"  server peak RSS: idle {_mb(memory.get('idle_mb'))}, 1 session training {_mb(memory.get('peak_1_mb'))}, "
                 f"3 at once {_mb(memory.get('peak_3_mb'))} (ratio {_num(memory.get('ratio_3_vs_1'), 0, 2).strip()})"
                 + (f"  ({memory['note']})" if memory.get("note") else ""))
    lines += ["", "Targets (issue 12; canvas and memory from issue 4)"]
    for row in figures["targets"].values():
        verdict = {True: "met", False: "MISSED", None: "not measured"}[row["met"]]
        lines.append(f"  {row['label']:<40} {_num(row['value'], 9, 4)}  limit {row['limit']:.4g}  {verdict}")
    return "\n".join(lines)


def _row_ratio(figures: dict[str, Any], variant: str) -> str:
    """The ratio a table row shows: its own seconds against the engine's (``paired``: its side-by-side NumPy ratio)."""
    if variant == "engine_defaults":
        return "defaults_vs_sgd"
    if variant == "paired":
        return "engine_vs_numpy"
    separate = f"engine_vs_{variant}_separate"
    return separate if separate in figures else f"engine_vs_{variant}"


def _ratios_text(ratios: dict[str, float]) -> str:
    return ", ".join(f"{batch.removeprefix('batch_')} {value:.3f}" for batch, value in ratios.items())


def json_line(figures: dict[str, Any]) -> str:
    return json.dumps(figures, sort_keys=True, separators=(",", ":"))


def _num(value: float | None, width: int, digits: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


def _seconds(value: float | None) -> str:
    if value is None:
        return "not measured"
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def _mb(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.0f} MB"
