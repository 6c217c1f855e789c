"""``python -m bench.classroom``: a room of people training at once on one dashboard server.

``--browsers`` of the sessions are real Chromium sessions (a browser context each): each opens
the Train page with the default settings for ``--epochs`` epochs and its own seed, and presses
Start. The driver submits the other sessions' runs to the server's own job service (through
``bench.classroom_server``), as a page's Start does: twenty Chromium renderers on this 2-core
machine would measure the browsers, not the lab, and a real room's browsers run on their own
machines. All are submitted within a few seconds. One more session keeps opening Home, Weights and Draw from its sidebar while the queue is full; its
page render times are the room's experience of the lab under load. Afterwards each run is
compared with a solo run of the same settings and seed, trained back to back in this process
through the same engine (``record.record_run``), which also gives the wall time the room is
compared with. The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from softmax_core.worker import NICENESS

from .dashboard import DONE_TEXT, STATUS_WIDGET, chromium, open_train_page, start_button, streamlit_server

BROWSE = (("Home", "Softmax Lab"), ("Weights", "Weights"), ("Draw", "Draw"))
"""Home, Weights and Draw (sidebar link, page title): the pages the bystander keeps opening, from
the sidebar as a person does (a full reload each time would measure Chromium starting the app)."""
RUN_TIMEOUT = 900.0
"""Seconds for the whole room's runs to end: a deadline against hangs, not a target."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.classroom", description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20, help="sessions that each start a run")
    parser.add_argument("--browsers", type=int, default=6, help="of those, sessions in a real browser")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of each run (default settings otherwise)")
    parser.add_argument("--browser-nice", type=int, default=NICENESS,
                        help=f"niceness of Chromium (default {NICENESS}, the training worker's; 19: below it)")
    parser.add_argument("--dwell", type=float, default=0.0,
                        help="seconds the bystander looks at each page before opening the next (default 0)")
    return parser.parse_args(argv)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM of a live process, in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (the server's training worker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return found


def cpu_seconds_by_kind(server_pid: int) -> dict[str, float]:
    """CPU seconds used so far by the server, its training worker, and every Chromium process.

    On this 2-core machine the browsers share the cores with the lab, which a real room's
    browsers (on their own machines) would not: the split says who took the time."""
    tick = os.sysconf("SC_CLK_TCK")
    totals = {"server": 0.0, "worker": 0.0, "chromium": 0.0}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            name = (entry / "comm").read_text().strip()
        except OSError:
            continue
        pid, parent, used = int(entry.name), int(fields[1]), (int(fields[11]) + int(fields[12])) / tick
        kind = ("server" if pid == server_pid else "worker" if parent == server_pid
                else "chromium" if "chrom" in name else None)
        if kind:
            totals[kind] += used
    return totals


def render_seconds(page, link: str, title: str) -> float:
    """Click ``link`` in the bystander's sidebar; seconds until the page's title shows and nothing is loading."""
    started = time.perf_counter()
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=link, exact=True).click()
    page.get_by_role("heading", name=title, exact=True).wait_for(timeout=RUN_TIMEOUT * 1000)
    page.locator(STATUS_WIDGET).first.wait_for(state="detached", timeout=RUN_TIMEOUT * 1000)
    return time.perf_counter() - started


@contextmanager
def niced_chromium(niceness: int) -> Iterator:
    """Chromium at ``niceness``, by default the training worker's: it stands in for browsers on the
    room's own machines, so it must not outrank the lab's training on these two cores (the server
    keeps the upper hand over both). This process keeps that niceness afterwards; the solo runs alone."""
    os.nice(max(0, niceness - os.nice(0)))
    with chromium() as browser:
        yield browser


def run_ids_in(runs: Path) -> set[str]:
    return {p.name for p in runs.iterdir()} if runs.exists() else set()


def room(args: argparse.Namespace) -> dict:
    """The server, the room's runs and the bystander's render times; everything the JSON reports."""
    from softmax_core.runs import RunStore

    sessions, epochs = args.sessions, args.epochs
    browsers = min(args.browsers, sessions)
    with (streamlit_server("bench.classroom_server") as (server, url, runs),
          niced_chromium(args.browser_nice) as browser):
        def submit(seed: int) -> None:
            """A run submitted through the server's job service, as another session's Start does."""
            server.stdin.write(json.dumps({"epochs": epochs, "seed": seed}).encode() + b"\n")
            server.stdin.flush()

        warm = open_train_page(browser, url, f"epochs=1&seed={10_000}")  # starts the job service's worker
        start_button(warm).click()
        warm.get_by_text(DONE_TEXT).first.wait_for(timeout=RUN_TIMEOUT * 1000)
        warm.context.close()
        before = run_ids_in(runs)
        pages = [open_train_page(browser, url, f"epochs={epochs}&seed={seed}") for seed in range(browsers)]
        bystander = browser.new_context(viewport={"width": 1366, "height": 900}).new_page()
        bystander.goto(f"{url}/runs")  # the app is loaded once; each render is a click in its sidebar
        bystander.locator(STATUS_WIDGET).first.wait_for(state="detached", timeout=RUN_TIMEOUT * 1000)
        log(f"classroom: {browsers} browser sessions press Start, {sessions - browsers} more submit …")
        cpu_before = cpu_seconds_by_kind(server.pid)
        clicked = time.perf_counter()
        for seed, page in enumerate(pages):
            start_button(page).click()
            if seed + browsers < sessions:  # interleaved, as a room's clicks would be
                submit(seed + browsers)
        for seed in range(2 * browsers, sessions):
            submit(seed)
        submit_seconds = time.perf_counter() - clicked
        store = RunStore(runs)
        renders: list[float] = []
        deadline = time.monotonic() + RUN_TIMEOUT
        while True:
            ours = run_ids_in(runs) - before
            ended = [r for r in ours if store.get(r).status not in ("queued", "running")]
            if len(ours) == sessions and len(ended) == sessions:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(ended)} of {sessions} runs ended in {RUN_TIMEOUT:.0f} s")
            link, title = BROWSE[len(renders) % len(BROWSE)]
            renders.append(render_seconds(bystander, link, title))
            bystander.wait_for_timeout(args.dwell * 1000)
        cpu_after = cpu_seconds_by_kind(server.pid)
        infos = [store.get(r) for r in ours]
        for info in infos:
            if info.status != "completed":
                log(f"classroom: run {info.run_id} (seed {info.config.seed}) ended {info.status}: {info.message}")
        wall = max(i.ended or time.time() for i in infos) - min(i.created for i in infos)
        server_mb = peak_rss_mb(server.pid)
        worker_mb = [peak_rss_mb(pid) for pid in children(server.pid)]
        runs_by_seed = {info.config.seed: info for info in infos}
        for page in pages:
            page.context.close()
    return {"submit_seconds": submit_seconds, "wall_seconds": wall, "renders": renders, "runs": runs_by_seed,
            "cpu_seconds": {k: round(cpu_after[k] - cpu_before[k], 1) for k in cpu_after},
            "server_peak_rss_mb": server_mb, "worker_peak_rss_mb": [m for m in worker_mb if m is not None]}


def solo_runs(sessions: int, epochs: int) -> tuple[dict, float]:
    """The same runs one after another in this process: final metrics by seed, and the wall time."""
    from softmax_core.config import TrainConfig
    from softmax_core.data import load_mnist
    from softmax_core.record import record_run
    from softmax_core.runs import RunStore

    data = load_mnist(allow_download=False)
    with tempfile.TemporaryDirectory(prefix="bench-solo-") as root:
        store = RunStore(root)
        record_run(store, TrainConfig(epochs=1, seed=10_000), data)  # tracing, as the server's warm worker did
        started = time.perf_counter()
        finals = {}
        for seed in range(sessions):
            run_id, _, _ = record_run(store, TrainConfig(epochs=epochs, seed=seed), data)
            finals[seed] = store.get(run_id).final
        return finals, time.perf_counter() - started


def report(args: argparse.Namespace) -> dict:
    load_before = os.getloadavg()
    measured = room(args)
    log("classroom: the same runs solo, back to back …")
    solo, solo_wall = solo_runs(args.sessions, args.epochs)
    runs = measured["runs"]
    completed = [seed for seed, run in runs.items() if run.status == "completed"]
    differences = [abs(runs[s].final[k] - solo[s][k]) for s in completed
                   for k in ("train_loss", "test_loss", "test_accuracy", "validation_accuracy")]
    renders = sorted(measured["renders"])
    p95 = renders[min(len(renders) - 1, math.ceil(0.95 * len(renders)) - 1)] if renders else None
    server_mb, workers_mb = measured["server_peak_rss_mb"], measured["worker_peak_rss_mb"]
    return {
        "sessions": args.sessions, "browser_sessions": min(args.browsers, args.sessions), "epochs": args.epochs,
        "browser_nice": args.browser_nice, "bystander_dwell_seconds": args.dwell,
        "submit_seconds": round(measured["submit_seconds"], 2),
        "runs_completed": len(completed), "runs_lost": args.sessions - len(completed),
        "max_metric_difference_vs_solo": max(differences) if differences else None,
        "wall_seconds": round(measured["wall_seconds"], 2), "solo_back_to_back_seconds": round(solo_wall, 2),
        "wall_ratio": round(measured["wall_seconds"] / solo_wall, 3),
        "bystander_renders": len(renders), "render_p50_seconds": round(statistics.median(renders), 3) if renders else None,
        "render_p95_seconds": round(p95, 3) if p95 is not None else None,
        "cpu_seconds_while_the_room_trained": measured["cpu_seconds"],
        "server_peak_rss_mb": round(server_mb, 1) if server_mb else None,
        "server_plus_workers_peak_rss_mb": round((server_mb or 0) + sum(workers_mb), 1),
        "workers": len(workers_mb), "load_average_before": [round(x, 2) for x in load_before],
    }


def main(argv: list[str] | None = None) -> int:
    figures = report(parse_args(argv))
    for key, value in figures.items():
        log(f"  {key}: {value}")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
