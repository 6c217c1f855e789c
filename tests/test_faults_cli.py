"""Fault matrix through the CLI, as a user runs it: bad input exits 2 with one line, never a traceback.

Every command runs in a subprocess against real MNIST copies and real runs in temporary folders.
The "offline" case points the HTTPS proxy at a closed local port, so no request leaves the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from made_runs import completed_sgd_run
from PIL import Image

from softmax_core.data import load_mnist
from softmax_core.runs import RunStore

WAIT = 180.0
"""Seconds before a hung command counts as a failure: a deadline, not a timing check."""


def cli(*args: str, runs_dir: Path, env: dict | None = None, unset: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "SOFTMAX_LAB_RUNS": str(runs_dir), **(env or {})}
    for name in unset:
        full_env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "softmax_core", *args], capture_output=True, text=True,
                          env=full_env, timeout=WAIT)


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


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, str]:
    """A runs folder holding one real completed run (sgd, 2 epochs), and the run's id."""
    run = completed_sgd_run(tmp_path_factory.mktemp("runs"), epochs=2)
    return run.parent, run.name


def runs_in(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


# --- damaged, missing or unreachable data ------------------------------------------------------

def flip_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


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


def test_evaluate_with_damaged_mnist_dir_is_one_line(tmp_path, mnist_copy, trained):
    root, run_id = trained
    flip_byte(mnist_copy / "t10k-images-idx3-ubyte.gz")
    done = cli("evaluate", run_id, runs_dir=root, env={"MNIST_DIR": str(mnist_copy)})
    line = only_error_line(done)
    assert line.startswith(f"error: MNIST_DIR: {mnist_copy / 't10k-images-idx3-ubyte.gz'} does not match the SHA-256")


def test_no_data_offline_says_where_it_looked_and_how_to_fix_it(tmp_path, trained):
    root, run_id = trained
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


# --- a diverging learning rate -----------------------------------------------------------------

def test_diverging_run_warns_without_a_trace_and_is_listed_as_diverged(tmp_path):
    done = cli("train", "--learning-rate", "1e4", "--optimizer", "sgd", "--schedule", "constant",
               "--epochs", "3", "--json", runs_dir=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["status"] == "diverged" and result["epochs_completed"] == 0
    assert "learning rate 10000 is too large for sgd" in done.stderr
    listing = json.loads(cli("runs", "--json", runs_dir=tmp_path).stdout)
    assert [(r["run_id"], r["status"]) for r in listing["runs"]] == [(result["run_id"], "diverged")]


# --- Ctrl-C: the CLI's Stop --------------------------------------------------------------------

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


# --- hostile run ids and corrupted runs --------------------------------------------------------

@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_run_id_reaching_outside_the_runs_folder_is_refused(tmp_path, trained, command):
    """The run exists one folder up: without the id check, the command would happily use it."""
    root, run_id = trained
    image = tmp_path / "digit.png"
    Image.new("L", (28, 28)).save(image)
    elsewhere = tmp_path / "runs"
    elsewhere.mkdir()
    extra = [str(image)] if command == "predict" else []
    hostiles = [f"../{root.name}/{run_id}", str(root / run_id), f"{run_id}/"]
    for hostile in hostiles if command == "evaluate" else hostiles[:1]:  # predict loads TF: one is enough
        line = error_line(cli(command, hostile, *extra, runs_dir=elsewhere))
        assert "invalid run id" in line


def test_corrupted_run_is_listed_unreadable_and_refused_by_evaluate(tmp_path, trained):
    root, run_id = trained
    runs = tmp_path / "runs"
    shutil.copytree(root / run_id, runs / run_id)
    broken = shutil.copytree(root / run_id, runs / "20000101-000000-bbbbbb")
    np.savez(broken / "weights.npz", W=np.zeros((10, 784), np.float32), b=np.zeros(10, np.float32))
    done = cli("runs", "--json", runs_dir=runs)
    assert done.returncode == 0, done.stderr
    listing = {r["run_id"]: r for r in json.loads(done.stdout)["runs"]}
    assert listing[run_id]["status"] == "completed"
    assert listing[broken.name]["status"] == "unreadable" and "expected (784, 10)" in listing[broken.name]["error"]
    assert cli("runs", runs_dir=runs).returncode == 0
    line = only_error_line(cli("evaluate", broken.name, runs_dir=runs))
    assert "expected (784, 10)" in line


# --- images given to predict -------------------------------------------------------------------

def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels; its pixel data is a few bytes."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def real_png(tmp_path: Path) -> bytes:
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
def test_predict_refuses_what_is_not_a_digit_image(tmp_path, trained, case):
    root, run_id = trained
    make, message = BAD_IMAGES[case]
    path = tmp_path / "input.png"
    path.write_bytes(make(tmp_path))
    line = error_line(cli("predict", run_id, str(path), runs_dir=root))
    assert line.startswith(f"error: {path}: ") and message in line


def test_predict_refuses_a_folder_and_a_blank_image(tmp_path, trained):
    root, run_id = trained
    assert "no such file" in error_line(cli("predict", run_id, str(tmp_path), runs_dir=root))
    Image.new("L", (280, 280), 255).save(tmp_path / "white.png")
    assert "blank" in error_line(cli("predict", run_id, str(tmp_path / "white.png"), runs_dir=root))
