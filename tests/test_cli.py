"""The CLI end to end, in subprocesses as a user runs it: JSON results and exit codes; bad input, damaged
data or runs, full or read-only disks exit with one line, never a traceback (docs/faults.md's CLI rows).

Faults use real MNIST copies and copies of a real run in temporary folders. The "offline" case points
the HTTPS proxy at a closed local port, so no request leaves the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from made_runs import BROKEN, GOOD, flip_byte, metrics_edit, store_with
from PIL import Image

from apptest import PROJECT
from softmax_core.config import TrainConfig
from softmax_core.runs import RunStore

WAIT = 300.0
"""Seconds before a hung command counts as a failure: a deadline, not a timing check."""


def cli(*args: str, runs_dir: Path | None = None, env: dict | None = None, unset: tuple[str, ...] = (),
        prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """``python -m softmax_core args`` (after ``prefix``, e.g. setpriv), with SOFTMAX_LAB_RUNS=runs_dir."""
    full_env = {**os.environ, **(env or {})}
    if runs_dir is not None:
        full_env["SOFTMAX_LAB_RUNS"] = str(runs_dir)
    for name in unset:
        full_env.pop(name, None)
    return subprocess.run([*prefix, sys.executable, "-m", "softmax_core", *args], capture_output=True, text=True,
                          env=full_env, timeout=WAIT, cwd=PROJECT)


def error_line(done: subprocess.CompletedProcess) -> str:
    """The refusal: exit status 2, no traceback, and the last stderr line is the one-line message.

    Commands that import TensorFlow before refusing (train after its settings check, predict) may
    print TensorFlow's start-up lines above it.
    """
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ")
    return line


def only_error_line(done: subprocess.CompletedProcess) -> str:
    """As error_line, and nothing else on stderr."""
    line = error_line(done)
    assert done.stderr.strip().splitlines() == [line]
    return line


def runs_in(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    runs_dir = tmp_path_factory.mktemp("runs")
    done = cli("train", "--epochs", "3", "--json", runs_dir=runs_dir)
    assert done.returncode == 0, done.stderr
    return runs_dir, json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def sgd_runs(tmp_path_factory, sgd_run) -> tuple[Path, str]:
    """A runs folder holding a copy of the session's completed SGD run (2 epochs), and the run's id."""
    root = tmp_path_factory.mktemp("sgd-runs")
    shutil.copytree(sgd_run, root / GOOD)
    return root, GOOD


def test_train_json_reports_the_run(trained):
    runs_dir, result = trained
    assert result["status"] == "completed" and result["epochs_completed"] == 3
    assert set(result["final"]) == {"train_loss", "test_loss", "test_accuracy", "validation_accuracy"}
    assert result["final"]["test_accuracy"] > 0.9
    assert os.path.isdir(result["run_dir"]) and result["seconds"] > 0


def test_runs_lists_it(trained):
    runs_dir, result = trained
    listing = json.loads(cli("runs", "--json", runs_dir=runs_dir).stdout)
    assert [r["run_id"] for r in listing["runs"]] == [result["run_id"]]


def test_evaluate_matches_training_metrics(trained):
    runs_dir, result = trained
    done = cli("evaluate", result["run_id"], "--json", runs_dir=runs_dir)
    report = json.loads(done.stdout)
    assert report["test_accuracy"] == pytest.approx(result["final"]["test_accuracy"], abs=1e-4)
    assert np.array(report["confusion_matrix"]).sum() == 10_000


def test_predict_reads_a_real_digit_from_a_png(trained, mnist, tmp_path):
    runs_dir, result = trained
    path = tmp_path / "seven.png"
    Image.fromarray((mnist.images("test", 0).reshape(28, 28) * 255).astype(np.uint8)).resize((140, 140)).save(path)
    assert mnist.test_y[0] == 7
    report = json.loads(cli("predict", result["run_id"], str(path), "--json", runs_dir=runs_dir).stdout)
    assert report["digit"] == 7 and sum(report["probabilities"]) == pytest.approx(1, abs=1e-4)


@pytest.mark.parametrize("args, message", [
    (["train", "--batch-size", "0"], "batch_size"),
    (["train", "--optimizer", "rmsprop"], "optimizer"),
    (["train", "--learning-rate", "-1"], "learning_rate"),
    (["train", "--data-dir", "/nonexistent", "--epochs", "1"], "/nonexistent"),
    (["evaluate", "../etc"], "invalid run id"),
    (["evaluate", "20990101-000000-abcdef"], "no run"),
    (["predict", "nope", "x.png"], "no run"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, args, message):
    done = cli(*args, runs_dir=tmp_path)
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and message in last
    assert "Traceback" not in done.stderr


def test_diverging_run_exits_1_and_is_saved_as_diverged(tmp_path):
    done = cli("train", "--learning-rate", "1e4", "--optimizer", "sgd", "--schedule", "constant",
               "--epochs", "2", "--json", runs_dir=tmp_path)
    assert done.returncode == 1
    assert json.loads(done.stdout.splitlines()[-1])["status"] == "diverged"


def test_sweep_trains_the_grid_and_names_the_best_on_validation(tmp_path):
    done = cli("sweep", "--learning-rate", "0.001", "0.002", "--batch-size", "100", "200", "--epochs", "1",
               "--json", runs_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert len(report["runs"]) == 4 and len({r["run_id"] for r in report["runs"]}) == 4
    best = max(report["runs"], key=lambda r: r["final"]["validation_accuracy"])
    assert report["best"]["run_id"] == best["run_id"]
    assert done.stderr.count("[") >= 4  # one progress line per finished run


def test_sweep_refuses_a_bad_value_before_training(tmp_path):
    done = cli("sweep", "--batch-size", "100", "0", runs_dir=tmp_path)
    assert done.returncode == 2 and "batch_size" in done.stderr.splitlines()[-1]


# --- damaged, missing or unreachable data ------------------------------------------------------

DAMAGE = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 3]),
    "flipped byte": flip_byte,
    "missing": Path.unlink,
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_train_on_damaged_data_names_the_file_and_writes_nothing(tmp_path, mnist_copy, damage):
    DAMAGE[damage](mnist_copy / "train-labels-idx1-ubyte.gz")
    runs, cache = tmp_path / "runs", tmp_path / "cache"
    done = cli("train", "--data-dir", str(mnist_copy), "--epochs", "1", runs_dir=runs,
               env={"SOFTMAX_LAB_CACHE": str(cache)})
    line = error_line(done)
    assert "train-labels-idx1-ubyte.gz" in line and "Set MNIST_DIR" in line
    assert runs_in(runs) == [] and not cache.exists()


def test_evaluate_with_damaged_mnist_dir_is_one_line(tmp_path, mnist_copy, sgd_runs):
    root, run_id = sgd_runs
    flip_byte(mnist_copy / "t10k-images-idx3-ubyte.gz")
    done = cli("evaluate", run_id, runs_dir=root, env={"MNIST_DIR": str(mnist_copy)})
    line = only_error_line(done)
    assert line.startswith(f"error: MNIST_DIR: {mnist_copy / 't10k-images-idx3-ubyte.gz'} does not match the SHA-256")


def test_no_data_offline_says_where_it_looked_and_how_to_fix_it(tmp_path, sgd_runs):
    root, run_id = sgd_runs
    closed_port = "http://127.0.0.1:9"
    offline = {"SOFTMAX_LAB_CACHE": str(tmp_path / "cache"), "https_proxy": closed_port,
               "HTTPS_PROXY": closed_port, "http_proxy": closed_port, "HTTP_PROXY": closed_port,
               "no_proxy": "", "NO_PROXY": ""}
    done = cli("evaluate", run_id, runs_dir=root, env=offline, unset=("MNIST_DIR",))
    line = only_error_line(done)
    assert "MNIST not found" in line and "MNIST_DIR unset" in line and str(tmp_path / "cache") in line
    assert "Connection refused" in line, "the download must have gone to the closed local port"
    assert "Set MNIST_DIR to a folder" in line
    assert not list((tmp_path / "cache").rglob("*.part"))


# --- out-of-range settings ---------------------------------------------------------------------

@pytest.mark.parametrize("flag, value, field", [
    ("--batch-size", "0", "batch_size"),
    ("--batch-size", "55001", "batch_size"),
    ("--learning-rate", "0", "learning_rate"),
    ("--learning-rate", "-0.1", "learning_rate"),
    ("--learning-rate", "nan", "learning_rate"),
    ("--learning-rate", "inf", "learning_rate"),
    ("--epochs", "0", "epochs"),
    ("--optimizer", "rmsprop", "optimizer"),
    ("--l2", "-1", "l2"),
])
def test_out_of_range_setting_is_refused_before_training(tmp_path, flag, value, field):
    runs = tmp_path / "runs"
    done = cli("train", flag, value, runs_dir=runs)
    line = only_error_line(done)
    assert line.startswith(f"error: {field}: ")
    assert "out of range" in line or "is not one of sgd, momentum, adam" in line
    assert runs_in(runs) == []


def test_the_cli_refuses_a_learning_rate_that_underflows(tmp_path):
    line = only_error_line(cli("train", "--learning-rate", "1e-320", runs_dir=tmp_path / "runs"))
    assert "learning_rate" in line and "0 in float32" in line
    assert not (tmp_path / "runs").exists()


def test_bad_sweep_values_print_one_line_and_load_no_tensorflow(tmp_path):
    done = cli("sweep", "--learning-rate", "0.1", "-1", "--epochs", "1", runs_dir=tmp_path / "runs",
               env={"TF_CPP_MIN_LOG_LEVEL": "0"})
    assert "learning_rate" in only_error_line(done)
    assert not (tmp_path / "runs").exists()


# --- a diverging learning rate, and Ctrl-C (the CLI's Stop) ---------------------------------------

def test_diverging_run_warns_without_a_trace_and_is_listed_as_diverged(tmp_path):
    done = cli("train", "--learning-rate", "1e4", "--optimizer", "sgd", "--schedule", "constant",
               "--epochs", "3", "--json", runs_dir=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["status"] == "diverged" and result["epochs_completed"] == 0
    assert "learning rate 10000 is too large for sgd" in done.stderr
    listing = json.loads(cli("runs", "--json", runs_dir=tmp_path).stdout)
    assert [(r["run_id"], r["status"]) for r in listing["runs"]] == [(result["run_id"], "diverged")]


def test_ctrl_c_mid_run_saves_a_stopped_run(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "softmax_core", "train", "--epochs", "500", "--optimizer", "sgd",
         "--learning-rate", "0.1", "--schedule", "constant", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "SOFTMAX_LAB_RUNS": str(tmp_path)})
    try:
        deadline = time.monotonic() + WAIT
        while not any(len((p / "metrics.jsonl").read_text().splitlines()) >= 2
                      for p in tmp_path.iterdir() if (p / "metrics.jsonl").is_file()):
            assert time.monotonic() < deadline and proc.poll() is None, "no two epochs in time"
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=WAIT)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130 and "Traceback" not in err
    result = json.loads(out.strip().splitlines()[-1])
    run = RunStore(tmp_path).get(result["run_id"])
    assert result["status"] == run.status == "stopped"
    assert run.epochs_completed == result["epochs_completed"] >= 2
    assert RunStore(tmp_path).load_weights(run.run_id)[0].shape == (784, 10)


# --- hostile run ids, corrupted and unreadable runs ---------------------------------------------

@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_run_id_reaching_outside_the_runs_folder_is_refused(tmp_path, sgd_runs, command):
    """The run exists one folder up: without the id check, the command would happily use it."""
    root, run_id = sgd_runs
    image = tmp_path / "digit.png"
    Image.new("L", (28, 28)).save(image)
    elsewhere = tmp_path / "runs"
    elsewhere.mkdir()
    extra = [str(image)] if command == "predict" else []
    hostiles = [f"../{root.name}/{run_id}", str(root / run_id), f"{run_id}/"]
    for hostile in hostiles if command == "evaluate" else hostiles[:1]:  # predict loads TF: one is enough
        line = error_line(cli(command, hostile, *extra, runs_dir=elsewhere))
        assert "invalid run id" in line


def test_corrupted_run_is_listed_unreadable_and_refused_by_evaluate(tmp_path, sgd_run):
    runs = tmp_path / "runs"
    good, broken = store_with(sgd_run, runs)
    np.savez(broken / "weights.npz", W=np.zeros((10, 784), np.float32), b=np.zeros(10, np.float32))
    done = cli("runs", "--json", runs_dir=runs)
    assert done.returncode == 0, done.stderr
    listing = {r["run_id"]: r for r in json.loads(done.stdout)["runs"]}
    assert listing[good.name]["status"] == "completed"
    assert listing[broken.name]["status"] == "unreadable" and "expected (784, 10)" in listing[broken.name]["error"]
    assert cli("runs", runs_dir=runs).returncode == 0
    line = only_error_line(cli("evaluate", broken.name, runs_dir=runs))
    assert "expected (784, 10)" in line


def test_runs_json_is_strict_json_even_with_non_finite_numbers_in_a_run(tmp_path, sgd_run):
    root = tmp_path / "runs"
    store_with(sgd_run, root)
    metrics_edit(root / BROKEN, "test_loss", "Infinity")

    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    done = cli("runs", "--json", runs_dir=root)
    assert done.returncode == 0, done.stderr
    listing = {r["run_id"]: r for r in json.loads(done.stdout, parse_constant=refuse)["runs"]}
    assert listing[BROKEN]["status"] == "unreadable" and listing[GOOD]["final"]["test_loss"] > 0


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_a_run_listed_unreadable_is_refused_by_evaluate_and_predict(tmp_path, sgd_run, command):
    """Its weights are intact, its metrics are not: the CLI gives the one answer `runs` gives."""
    root = tmp_path / "runs"
    store_with(sgd_run, root)
    metrics_edit(root / BROKEN, "test_accuracy", '"high"')
    assert RunStore(root).get(BROKEN).status == "unreadable"
    extra = [str(tmp_path / "x.png")] if command == "predict" else []
    line = only_error_line(cli(command, BROKEN, *extra, runs_dir=root))
    assert "is unreadable" in line and "'test_accuracy'" in line


# --- images given to predict -------------------------------------------------------------------

def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels; its pixel data is a few bytes."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def real_png(tmp_path: Path) -> bytes:
    from softmax_core.data import load_mnist

    digit = (load_mnist(allow_download=False).images("test", 0).reshape(28, 28) * 255).astype(np.uint8)
    Image.fromarray(digit).resize((280, 280)).save(tmp_path / "seven.png")
    return (tmp_path / "seven.png").read_bytes()


BAD_IMAGES = {
    "text file": (lambda tmp: b"this is not an image\n", "not an image that can be read"),
    "empty file": (lambda tmp: b"", "not an image that can be read"),
    "truncated png": (lambda tmp: real_png(tmp)[:300], "damaged image"),
    "header claims 100000x100000": (lambda tmp: png_claiming(100_000, 100_000), "too large"),
    "header claims 10000x10000": (lambda tmp: png_claiming(10_000, 10_000), "too large"),
    "header claims 5000x5000": (lambda tmp: png_claiming(5_000, 5_000), "at most 16777216 pixels"),
}


@pytest.mark.parametrize("case", BAD_IMAGES)
def test_predict_refuses_what_is_not_a_digit_image(tmp_path, sgd_runs, case):
    root, run_id = sgd_runs
    make, message = BAD_IMAGES[case]
    path = tmp_path / "input.png"
    path.write_bytes(make(tmp_path))
    line = error_line(cli("predict", run_id, str(path), runs_dir=root))
    assert line.startswith(f"error: {path}: ") and message in line


def test_predict_refuses_a_folder_and_a_blank_image(tmp_path, sgd_runs):
    root, run_id = sgd_runs
    assert "no such file" in error_line(cli("predict", run_id, str(tmp_path), runs_dir=root))
    Image.new("L", (280, 280), 255).save(tmp_path / "white.png")
    assert "blank" in error_line(cli("predict", run_id, str(tmp_path / "white.png"), runs_dir=root))


def test_predict_on_a_16_bit_png_names_the_digit(tmp_path, sgd_runs, mnist):
    root, run_id = sgd_runs
    index = int(np.flatnonzero(mnist.test_y == 7)[0])
    digit = mnist.images("test", index).reshape(28, 28)
    Image.fromarray(((1 - digit) * 65535).astype(np.uint16)).resize((280, 280)).save(tmp_path / "seven16.png")
    done = cli("predict", run_id, str(tmp_path / "seven16.png"), "--json", runs_dir=root)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["digit"] == 7


# --- filesystem faults: a file for a folder, read-only, no permission, full ----------------------

@pytest.mark.parametrize("command", [["runs"], ["runs", "--json"], ["evaluate", GOOD], ["train", "--epochs", "1"],
                                     ["sweep", "--epochs", "1"]])
def test_runs_dir_naming_a_file_is_one_line_exit_2(tmp_path, command):
    afile = tmp_path / "runs.txt"
    afile.write_text("not a folder")
    line = only_error_line(cli(*command, "--runs-dir", str(afile), env={"TF_CPP_MIN_LOG_LEVEL": "0"}))
    assert "is not a folder" in line
    assert afile.read_text() == "not a folder"


@pytest.mark.parametrize("command", [["train", "--epochs", "1"], ["sweep", "--epochs", "1"]])
def test_training_into_a_read_only_mount_is_refused_in_one_line(read_only_mount, command):
    line = only_error_line(cli(*command, "--runs-dir", str(read_only_mount / "runs")))
    assert "cannot be written" in line
    assert list(read_only_mount.iterdir()) == []


def test_training_into_a_folder_without_write_permission_is_refused(tmp_path):
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root to run the CLI as another user")
    shared = Path(tempfile.mkdtemp(prefix="softmax-lab-perm-"))  # pytest's own tmp folder is root's alone
    try:
        shared.chmod(0o755)
        runs = shared / "runs"
        runs.mkdir()
        as_nobody = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
        for target in (runs, runs / "sub"):
            line = only_error_line(cli("train", "--epochs", "1", "--runs-dir", str(target), prefix=as_nobody,
                                       env={"HOME": str(shared)}))
            assert "cannot be written" in line and list(runs.iterdir()) == []
        runs.chmod(0o700)
        line = only_error_line(cli("runs", "--runs-dir", str(runs / "inner"), prefix=as_nobody,
                                   env={"HOME": str(shared)}))
        assert "permission denied" in line
    finally:
        shutil.rmtree(shared)


def test_a_full_disk_at_start_leaves_no_empty_run_behind(full_disk):
    store = RunStore(full_disk / "runs")
    with pytest.raises(OSError):
        store.create(TrainConfig())
    assert list((full_disk / "runs").iterdir()) == []
    done = cli("train", "--epochs", "1", "--runs-dir", str(full_disk / "runs"))
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    line = done.stderr.strip().splitlines()[-1]  # TensorFlow's start-up lines come first: it loads before create
    assert line.startswith("error: ") and "disk is full" in line
    assert list((full_disk / "runs").iterdir()) == []
