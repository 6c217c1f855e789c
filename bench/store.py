"""``python -m bench.store``: how long Home, Runs and Draw take to render with a big run store.

Trains one real run (the lab's defaults, through the CLI), copies it into a fresh store N times (hard links, with
its own creation time in each config.json), then times each page's script run under Streamlit's
AppTest. A first render of Home pays what a server pays once (imports, MNIST, Streamlit's component
scan) and is reported apart; then each page's first render as after a server restart (this process's
summaries forgotten, the saved summary index read) and the median of later renders (summaries
cached until a file changes). Draw is timed as a stroke: the canvas value changes, the page reruns.
The listing alone is timed with no index (every run's files read), from the index, and cached.
Prints a table, then one JSON line with every figure and the load average.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
PAGES = {"Home": None, "Runs": "pages/runs.py", "Draw": "pages/draw.py"}


def build_store(root: Path, count: int) -> str:
    """A store of ``count`` copies of one real default run; returns the source run's id.

    The run is trained by the CLI in a child process: like the real server (whose training runs
    in a worker process), this process never imports TensorFlow, so Streamlit's Keras cleanup
    after each script run does not distort the timings.
    """
    done = subprocess.run([sys.executable, "-m", "softmax_core", "--runs-dir", str(root / "source"), "--json",
                           "train"], capture_output=True, text=True, cwd=PROJECT)
    if done.returncode != 0:
        raise SystemExit(f"training the source run failed: {done.stderr.strip().splitlines()[-1:]}")
    run_id = json.loads(done.stdout.strip().splitlines()[-1])["run_id"]
    folder = root / "source" / run_id
    meta = json.loads((folder / "config.json").read_text())
    store = root / "runs"
    store.mkdir()
    for n in range(count):
        run = store / f"20260101-{n // 3600:02d}{n // 60 % 60:02d}{n % 60:02d}-{n:06x}"
        run.mkdir()
        for name in ("status.json", "metrics.jsonl", "weights.npz", "evolution.npz"):
            os.link(folder / name, run / name)
        (run / "config.json").write_text(json.dumps({**meta, "created": meta["created"] - count + n}))
    return run_id


def stroke(seed: int) -> dict:
    """The canvas component's value after one stroke: a vertical bar, as a PNG data URL."""
    from PIL import Image

    rgba = np.zeros((280, 280, 4), np.uint8)
    rgba[..., 3] = 255
    left = 120 + seed % 20
    rgba[40:240, left:left + 20, :3] = 255
    buffer = io.BytesIO()
    Image.fromarray(rgba).save(buffer, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    return {"drawing": {"raw": {"objects": [{"type": "path"}]}, "data": url}, "backgroundFit": None}


def timed_run(at) -> float:
    start = time.perf_counter()
    at.run()
    seconds = time.perf_counter() - start
    if at.exception:
        raise SystemExit(f"the page raised: {[e.message for e in at.exception]}")
    return seconds


def restart() -> None:
    """Forget this process's cached summaries and that it read the index, as a restarted server has."""
    from softmax_core import runs

    with runs._SUMMARIES_LOCK:
        runs._SUMMARIES.clear()
    runs._SEEDED.clear()


def measure(repeats: int) -> tuple[float, dict]:
    """Seconds of the process's first render of Home, then per page the first render after a
    restart and the median of ``repeats`` more."""
    from streamlit.testing.v1 import AppTest

    server_start = timed_run(AppTest.from_file(str(PROJECT / "dashboard.py"), default_timeout=600))
    results = {}
    for name, page in PAGES.items():
        at = AppTest.from_file(str(PROJECT / "dashboard.py"), default_timeout=600)
        if page:
            at.switch_page(page)
        restart()
        first = timed_run(at)
        later = []
        for n in range(repeats):
            if name == "Draw":
                at.session_state[at.session_state["draw_canvas_key"]] = stroke(n)
            later.append(timed_run(at))
        results[name] = {"first_s": round(first, 3), "median_s": round(statistics.median(later), 3),
                         "max_s": round(max(later), 3)}
    return server_start, results


def list_seconds(root: Path, repeats: int) -> dict:
    from softmax_core import runs, summary_index

    store = runs.RunStore(root)
    summary_index.index_path(root).unlink(missing_ok=True)
    restart()
    start = time.perf_counter()
    count = len(store.all_runs())
    cold = time.perf_counter() - start
    restarts = []
    for _ in range(repeats):
        restart()
        start = time.perf_counter()
        store.all_runs()
        restarts.append(time.perf_counter() - start)
    warm = []
    for _ in range(repeats):
        start = time.perf_counter()
        store.all_runs()
        warm.append(time.perf_counter() - start)
    return {"runs": count, "cold_s": round(cold, 3), "from_index_median_s": round(statistics.median(restarts), 3),
            "warm_median_s": round(statistics.median(warm), 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.store", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000, help="runs in the store (default 1000)")
    parser.add_argument("--repeats", type=int, default=5, help="timed renders per page after the first")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="softmax-lab-bench-store-") as tmp:
        root = Path(tmp)
        print(f"building a store of {args.runs} runs …", file=sys.stderr)
        build_store(root, args.runs)
        os.environ["SOFTMAX_LAB_RUNS"] = str(root / "runs")
        os.environ["SOFTMAX_LAB_CACHE"] = str(root / "cache")  # the summary index, gone with the store
        listing = list_seconds(root / "runs", args.repeats)
        print("rendering Home, Runs, Draw …", file=sys.stderr)
        server_start, pages = measure(args.repeats)
    load_after = os.getloadavg()
    print(f"server's first render (imports, MNIST, component scan; Home): {server_start:.3f} s")
    print(f"{'page':6} {'first s':>8} {'median s':>9} {'max s':>7}   ({args.runs} runs; first = after a restart)")
    for name, row in pages.items():
        print(f"{name:6} {row['first_s']:8.3f} {row['median_s']:9.3f} {row['max_s']:7.3f}")
    print(f"RunStore.all_runs: no index {listing['cold_s']:.3f} s, from the index {listing['from_index_median_s']:.3f} s, "
          f"cached {listing['warm_median_s']:.3f} s; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    print(json.dumps({"runs": args.runs, "repeats": args.repeats, "server_start_s": round(server_start, 3),
                      "pages": pages, "list": listing,
                      "loadavg_before": [round(x, 2) for x in load_before],
                      "loadavg_after": [round(x, 2) for x in load_after], "cpus": os.cpu_count(),
                      "tensorflow_in_process": "tensorflow" in sys.modules}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
