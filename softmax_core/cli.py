"""Command line for headless runs: ``python -m softmax_core train|evaluate|predict|runs|sweep|tune|export``.

It drives the same ``TrainingJob`` (and so the same ``train`` function) as the dashboard.
Bad input exits with status 2 and one line on stderr, never a traceback; a filesystem fault
met while working (a full disk, a folder gone) exits 1 with one line.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

from .analysis import confusion_matrix, per_class_accuracy, predictions
from .config import MAX_EPOCHS, SETTINGS, ConfigError, TrainConfig
from .model import predict_proba
from .data import DataError, Mnist, load_mnist
from .jobs import JobSnapshot
from .sweeps import AXES, best_run, run_sweep, sweep_configs
from .runs import RunError, RunInfo, RunStore, failure_reason

EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """Bad input from the command line: printed as one line, exit status 2."""


FIXED = tuple(name for name in SETTINGS if name not in AXES)
"""Settings a sweep holds fixed; it takes a list of values for each of sweeps.AXES."""


def _add_settings(parser: argparse.ArgumentParser, names: Sequence[str], many: bool) -> None:
    """TrainConfig's settings as flags (from config.SETTINGS); with ``many``, each takes a list to sweep."""
    defaults = TrainConfig()
    for name in names:
        setting, default = SETTINGS[name], getattr(defaults, name)
        choices = f" One of {', '.join(setting.choices)}." if setting.choices else ""
        parser.add_argument("--" + name.replace("_", "-"), dest=name, type=setting.kind, nargs="+" if many else None,
                            default=[default] if many else default,
                            help=f"{setting.help}{choices} (default {default})")


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake in one line, like every other bad input."""

    def error(self, message: str) -> None:
        self.exit(EXIT_USAGE, f"error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m softmax_core", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder with the four MNIST files (default: $MNIST_DIR, cache, download)")
    parser.add_argument("--runs-dir", help="run store folder (default: $SOFTMAX_LAB_RUNS or ~/.local/share/softmax-lab/runs)")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last stdout line")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    train = commands.add_parser("train", help="train a softmax regression and save it as a run")
    _add_settings(train, tuple(SETTINGS), many=False)

    evaluate = commands.add_parser("evaluate", help="test accuracy, per-class accuracy and confusion matrix of a run")
    evaluate.add_argument("run")
    predict = commands.add_parser("predict", help="digit probabilities for a PNG/JPEG, preprocessed like the canvas")
    predict.add_argument("run")
    predict.add_argument("image")
    commands.add_parser("runs", help="list saved runs with status and final metrics")

    sweep = commands.add_parser("sweep", help="train every combination of the values given, one run each")
    _add_settings(sweep, AXES, many=True)
    _add_settings(sweep, FIXED, many=False)

    tune = commands.add_parser("tune", help="search settings with Optuna on validation accuracy; each trial a run")
    tune.add_argument("--trials", type=int, required=True, help="trials to run in this process")
    tune.add_argument("--epochs-max", type=int, help="most epochs a trial may train, fixed when the study is "
                                                     "created (default 30)")
    tune.add_argument("--storage", help="Optuna storage URL, e.g. postgresql://… (default: a journal file in "
                                        "the runs folder, shared by processes on this machine)")
    tune.add_argument("--study", help="study to create or join (default: a new study-<time> name)")
    tune.add_argument("--seed", type=int, help="sampler seed; give each worker of one study its own (default random)")

    export = commands.add_parser("export", help="write a run as a Keras model, a SavedModel or a standalone script")
    export.add_argument("run")
    export.add_argument("--format", required=True, choices=("keras", "savedmodel", "script"),
                        help="keras: a .keras file; savedmodel: a folder for TF Serving; script: one .py file")
    export.add_argument("--out", required=True, help="file (keras, script) or folder (savedmodel) to write")
    for sub in commands.choices.values():  # let --json, --data-dir, --runs-dir also follow the command
        for option in ("--data-dir", "--runs-dir"):
            sub.add_argument(option, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        sub.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (UsageError, DataError, RunError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_RUN_FAILED


def _store(args: argparse.Namespace, writing: bool = False) -> RunStore:
    """The run store named by --runs-dir (or the default); refused if it is not a folder we can use."""
    store = RunStore(args.runs_dir)
    root = store.root
    try:
        if root.exists() and not root.is_dir():
            raise UsageError(f"runs folder {root} is not a folder")
        if writing:
            existing = next(p for p in (root, *root.parents) if p.exists())
            if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
                raise UsageError(f"runs folder {root} cannot be written here ({existing} is read-only or not ours)")
    except PermissionError:
        raise UsageError(f"runs folder {root} cannot be reached: permission denied") from None
    return store


def _readable_run(store: RunStore, run_id: str) -> RunInfo:
    """The run, refused if ``runs`` would list it as unreadable: the CLI gives one answer per run."""
    run = store.get(run_id)
    if run.error:
        raise RunError(f"run {run_id} is unreadable: {run.error}")
    return run


def _data(args: argparse.Namespace) -> Mnist:
    def progress(name: str, done: int, total: int) -> None:
        share = f"{done / total:6.1%}" if total else f"{done >> 10} KiB"
        print(f"\rdownloading {name}: {share}", end="", file=sys.stderr, flush=True)

    return load_mnist(args.data_dir, progress=progress)


def _emit(args: argparse.Namespace, payload: dict, text: str) -> None:
    print(json.dumps(_finite(payload), allow_nan=False) if args.json else text)


def _finite(value):
    """``value`` with every NaN or infinity as None: ``--json`` prints JSON, which has neither."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def cmd_train(args: argparse.Namespace) -> int:
    config = TrainConfig.from_dict({name: getattr(args, name) for name in SETTINGS})
    store = _store(args, writing=True)
    data = _data(args)
    from .record import record_run  # TensorFlow loads only once settings and data are known good

    run = LocalRun(config)
    threading.Thread(target=run.train, args=(record_run, store, data), daemon=True).start()
    bar = ProgressBar(config.epochs)
    try:
        while not run.ended.wait(0.1):
            bar.show(run.snapshot())
    except KeyboardInterrupt:
        run.stop.set()
    run.ended.wait()  # an Event, not Thread.join: a join cut short by Ctrl-C can later return too early
    snap = run.snapshot()
    bar.show(snap)
    bar.close()
    if not snap.run_id:
        print(f"error: no run was started: {snap.message}", file=sys.stderr)
        return EXIT_RUN_FAILED
    final = snap.history[-1].to_dict() if snap.history else {}
    payload = {
        "run_id": snap.run_id, "run_dir": str(store.path(snap.run_id)), "status": snap.status,
        "message": snap.message, "epochs_completed": len(snap.history), "seconds": round(snap.elapsed, 3),
        "config": config.to_dict(),
        "final": {k: final.get(k) for k in ("train_loss", "test_loss", "test_accuracy", "validation_accuracy")},
    }
    summary = f"{snap.status}: {len(snap.history)} epochs in {snap.elapsed:.1f} s"
    if final:
        summary += f", test accuracy {final['test_accuracy']:.2%}"
    if snap.message:
        print(snap.message, file=sys.stderr)
    _emit(args, payload, f"{summary} (run {snap.run_id})")
    if snap.status == "stopped":
        return EXIT_INTERRUPTED
    return EXIT_OK if snap.status == "completed" else EXIT_RUN_FAILED


class LocalRun:
    """One run trained in a thread of the CLI's own process, seen through job-service snapshots."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.stop = threading.Event()
        self.ended = threading.Event()
        self._lock = threading.Lock()
        self._run_id, self._progress, self._history = "", 0.0, []
        self._status, self._message = "running", ""
        self._started, self._ended = time.monotonic(), None

    def train(self, record_run, store: RunStore, data: Mnist) -> None:
        try:
            run_id, status, message = record_run(store, self.config, data, self.stop, on_progress=self._on_progress,
                                                 on_epoch=self._on_epoch)
        except (OSError, RunError) as exc:  # the run folder could not even be made
            run_id, status, message = "", "failed", failure_reason(exc)
        with self._lock:
            self._run_id, self._status, self._message, self._ended = run_id, status, message, time.monotonic()
        self.ended.set()

    def _on_progress(self, fraction: float) -> None:
        with self._lock:
            self._progress = fraction

    def _on_epoch(self, metrics) -> None:
        with self._lock:
            self._history.append(metrics)

    def snapshot(self) -> JobSnapshot:
        with self._lock:
            elapsed = (self._ended or time.monotonic()) - self._started
            eta = elapsed * (1 - self._progress) / self._progress if self._progress > 0 and self._ended is None else None
            return JobSnapshot(self._run_id, self._status, self.config, self._progress, elapsed, eta,
                               list(self._history), self._message)


class ProgressBar:
    """Epoch, losses, accuracy and ETA on stderr: redrawn in place on a terminal, a line per epoch elsewhere."""

    WIDTH = 24

    def __init__(self, epochs: int, stream=sys.stderr) -> None:
        self.epochs, self.stream = epochs, stream
        self.tty = stream.isatty()
        self._last = ""
        self._epoch = 0

    def show(self, snap) -> None:
        line = self.render(snap)
        if self.tty and line != self._last:
            print("\r" + line.ljust(len(self._last)), end="", file=self.stream, flush=True)
        elif not self.tty and len(snap.history) > self._epoch:
            print(line, file=self.stream, flush=True)
        self._last, self._epoch = line, len(snap.history)

    def render(self, snap) -> str:
        filled = int(round(snap.progress * self.WIDTH))
        line = f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {snap.progress:4.0%}"
        if snap.history:
            last = snap.history[-1]
            line += (f" epoch {last.epoch}/{self.epochs} train loss {last.train_loss:.4f}"
                     f" test loss {last.test_loss:.4f} test acc {last.test_accuracy:.2%}")
        if snap.eta is not None:
            line += f" ETA {snap.eta:4.1f}s"
        return line

    def close(self) -> None:
        if self.tty:
            print(file=self.stream)


def cmd_evaluate(args: argparse.Namespace) -> int:
    store = _store(args)
    _readable_run(store, args.run)
    W, b = store.load_weights(args.run)
    data = _data(args)
    verdict = predictions(predict_proba(W, b, data.images("test")), data.test_y)
    matrix = confusion_matrix(verdict.labels, verdict.guesses)
    per_class = per_class_accuracy(matrix)
    accuracy = verdict.accuracy
    payload = {"run_id": args.run, "test_accuracy": accuracy, "per_class_accuracy": per_class.round(4).tolist(),
               "confusion_matrix": matrix.tolist()}
    rows = [f"run {args.run}: test accuracy {accuracy:.2%} on {matrix.sum()} images",
            "per-class accuracy: " + "  ".join(f"{d}:{a:.1%}" for d, a in enumerate(per_class)),
            "confusion matrix (rows true 0-9, columns predicted 0-9):"]
    rows += ["  " + " ".join(f"{v:5d}" for v in row) for row in matrix]
    _emit(args, payload, "\n".join(rows))
    return EXIT_OK


def cmd_predict(args: argparse.Namespace) -> int:
    from PIL import Image, UnidentifiedImageError

    from .preprocess import image_file_to_mnist

    store = _store(args)
    _readable_run(store, args.run)
    W, b = store.load_weights(args.run)
    if not Path(args.image).is_file():
        raise UsageError(f"{args.image}: no such file")
    try:
        image = image_file_to_mnist(args.image)
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise UsageError(f"{args.image}: not a readable image ({exc})") from None
    except (ValueError, OSError) as exc:
        raise UsageError(f"{args.image}: {exc}") from None
    if image is None:
        raise UsageError(f"{args.image}: the image is blank; no digit to read")
    probs = predict_proba(W, b, image.ravel())[0]
    guess = int(probs.argmax())
    payload = {"run_id": args.run, "image": args.image, "digit": guess, "confidence": float(probs[guess]),
               "probabilities": [round(float(p), 6) for p in probs]}
    bars = "\n".join(f"  {d}: {p:6.1%} {'█' * int(round(p * 30))}" for d, p in enumerate(probs))
    _emit(args, payload, f"digit {guess} ({probs[guess]:.1%})\n{bars}")
    return EXIT_OK


def cmd_runs(args: argparse.Namespace) -> int:
    runs = _store(args).all_runs()
    payload = {"runs": [_run_summary(r) for r in runs]}
    header = f"{'run':24} {'status':11} {'epochs':>6} {'test acc':>8} {'seconds':>8}  settings"
    lines = [header] + [_run_line(r) for r in runs] if runs else ["no runs yet: python -m softmax_core train"]
    _emit(args, payload, "\n".join(lines))
    return EXIT_OK


def _run_summary(run: RunInfo) -> dict:
    return {"run_id": run.run_id, "status": run.status, "epochs_completed": run.epochs_completed,
            "config": run.config.to_dict() if run.config else None, "final": run.final,
            "error": run.error or None}


def _run_line(run: RunInfo) -> str:
    if run.error:
        return f"{run.run_id:24} {run.status:11} {'':>6} {'':>8} {'':>8}  {run.error}"
    acc = f"{run.final['test_accuracy']:.2%}" if run.final else "-"
    secs = f"{run.duration:.1f}" if run.duration is not None else "-"
    return f"{run.run_id:24} {run.status:11} {run.epochs_completed:>6} {acc:>8} {secs:>8}  {run.config.label()}"


def cmd_sweep(args: argparse.Namespace) -> int:
    base = TrainConfig.from_dict({name: getattr(args, name) for name in FIXED})
    grid = {axis: getattr(args, axis) for axis in AXES}
    total = len(sweep_configs(base, grid))  # every value checked before TensorFlow loads
    store = _store(args, writing=True)
    data = _data(args)
    done: list[RunInfo] = []

    def report(run: RunInfo) -> None:
        done.append(run)
        print(f"[{len(done)}/{total}] {_run_line(run)}", file=sys.stderr, flush=True)

    stop = threading.Event()
    try:
        runs = run_sweep(base, grid, data, store, on_run=report, stop=stop)
    except KeyboardInterrupt:
        stop.set()
        runs = done
    best = best_run(runs)
    payload = {"sweep": runs[0].sweep if runs else None, "runs": [_run_summary(r) for r in runs],
               "best": _run_summary(best) if best else None}
    text = "no finished run" if best is None else (
        f"best on validation: {best.config.label()} — validation {best.final['validation_accuracy']:.2%}, "
        f"test {best.final['test_accuracy']:.2%} (run {best.run_id})")
    _emit(args, payload, text)
    return EXIT_OK if len(runs) == total and best else EXIT_RUN_FAILED


def cmd_tune(args: argparse.Namespace) -> int:
    if args.trials < 1:
        raise UsageError(f"--trials must be at least 1, not {args.trials}")
    if args.epochs_max is not None and not 1 <= args.epochs_max <= MAX_EPOCHS:
        raise UsageError(f"--epochs-max must be in 1..{MAX_EPOCHS}, not {args.epochs_max}")
    import optuna

    from . import tune  # Optuna loads only for this command

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    store = _store(args)
    try:
        study = tune.open_study(store, args.study, args.storage, args.seed, args.epochs_max)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except Exception as exc:  # Optuna and SQLAlchemy raise many kinds for a bad URL or an unreachable server
        raise UsageError(f"storage {args.storage or tune.journal_path(store)}: {exc}") from None
    data = _data(args)
    print(f"study {study.study_name}: {args.trials} trials, at most {study.user_attrs['epochs_max']} epochs each",
          file=sys.stderr)
    done = 0

    def report(trial) -> None:
        nonlocal done
        done += 1
        attrs = trial.user_attrs
        outcome = (f"{trial.state.name.lower()} after {attrs.get('epochs_trained', 0)}/{trial.params.get('epochs')} "
                   f"epochs" + (f", validation {trial.value:.2%}" if trial.value is not None else ""))
        config = TrainConfig.from_dict(attrs["config"]).label() if "config" in attrs else ""
        print(f"[{done}/{args.trials}] trial {trial.number} {outcome} (run {attrs.get('run_id')}) {config}",
              file=sys.stderr, flush=True)

    interrupted = False
    try:
        summary = tune.tune(study, args.trials, tune.local_trial(data, store), on_trial=report)
    except KeyboardInterrupt:
        interrupted, summary = True, tune.summarize(study)
    text = "no completed trial" if summary.best_run_id is None else (
        f"best on validation: {summary.best_validation_accuracy:.2%}, test {summary.best_test_accuracy:.2%} "
        f"(run {summary.best_run_id}); {summary.trials_completed} completed, {summary.trials_pruned} pruned, "
        f"pruning saved {summary.epochs_saved:.0%} of the epochs")
    _emit(args, summary.to_dict(), text)
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if summary.best_run_id else EXIT_RUN_FAILED


def cmd_export(args: argparse.Namespace) -> int:
    store = _store(args)
    store.get(args.run)  # an unknown run is a usage error before TensorFlow loads
    from .export import export_run

    try:
        out = export_run(store, args.run, args.format, Path(args.out))
    except (ValueError, OSError) as exc:
        raise UsageError(str(exc)) from None
    _emit(args, {"run_id": args.run, "format": args.format, "path": str(out)}, f"wrote {out} ({args.format})")
    return EXIT_OK


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict, "runs": cmd_runs,
            "sweep": cmd_sweep, "tune": cmd_tune, "export": cmd_export}
