"""Fault table (docs/faults.md), store and CLI rows: hostile files in run folders, filesystem faults,
and the smaller breaks of the CLI, config and predict.

Every run is a copy of one real run trained here on the real MNIST; the damage is done by hand
to real files in temporary folders. CLI rows run the command in a subprocess as a user would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import tracemalloc
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from made_runs import completed_sgd_run
from PIL import Image

from softmax_core import runs as runs_module
from softmax_core.config import ConfigError, TrainConfig
from softmax_core.data import load_mnist
from softmax_core.preprocess import image_file_to_mnist
from softmax_core.runs import RunError, RunStore

WAIT = 180.0
"""Seconds before a hung read or command counts as a failure: a deadline, not a timing check."""
GOOD = "20000101-000000-aaaaaa"
BROKEN = "20000101-000001-bbbbbb"


@pytest.fixture(scope="module")
def data():
    return load_mnist(allow_download=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data) -> Path:
    """One real completed run (sgd, 2 epochs) to copy into each test's store."""
    return completed_sgd_run(tmp_path_factory.mktemp("source"), epochs=2)


def store_with(trained: Path, root: Path) -> tuple[Path, Path]:
    """A store holding an intact copy and a copy to damage; returns (intact, broken) folders."""
    return shutil.copytree(trained, root / GOOD), shutil.copytree(trained, root / BROKEN)


def edit_json(path: Path, text: str) -> None:
    path.write_text(text)


def deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def with_key(path: Path, key: str, raw: str) -> None:
    """Replace (or add) ``key`` of the JSON object in ``path`` by the raw JSON text ``raw``."""
    value = json.loads(path.read_text())
    value[key] = "__RAW__"
    path.write_text(json.dumps(value).replace('"__RAW__"', raw))


def metrics_edit(run: Path, key: str, raw: str) -> None:
    """Set ``key`` of the first metrics line to the raw JSON text ``raw``."""
    lines = (run / "metrics.jsonl").read_text().splitlines()
    row = json.loads(lines[0])
    row[key] = "__RAW__"
    lines[0] = json.dumps(row).replace('"__RAW__"', raw)
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def link_to(target: str):
    def make(path: Path) -> None:
        path.unlink()
        path.symlink_to(target)
    return make


HOSTILE = {
    # kind 1: one bad file
    "config.json nested 100000 deep": (lambda r: edit_json(r / "config.json", deep(100_000)), "nested"),
    "config.json nested 50 deep": (lambda r: with_key(r / "config.json", "sweep", deep(50)), "nested more than"),
    "status.json nested 100000 deep": (lambda r: edit_json(r / "status.json", deep(100_000)), "nested"),
    "metrics line nested 100000 deep": (lambda r: metrics_edit(r, "extra", deep(100_000)), "nested"),
    "config.json number 1e999": (lambda r: with_key(r / "config.json", "created", "1e999"), "beyond float range"),
    "status.json number 1e999": (lambda r: with_key(r / "status.json", "ended", "-1e999"), "beyond float range"),
    "metrics number 1e999": (lambda r: metrics_edit(r, "test_accuracy", "1e999"), "beyond float range"),
    "metrics integer of 400 digits": (lambda r: metrics_edit(r, "test_loss", "9" * 400), "integer of 400 digits"),
    "metrics NaN": (lambda r: metrics_edit(r, "train_loss", "NaN"), "NaN"),
    "created 1e300": (lambda r: with_key(r / "config.json", "created", "1e300"), "between 1970 and 2100"),
    "created negative": (lambda r: with_key(r / "config.json", "created", "-5"), "between 1970 and 2100"),
    "step_losses a string": (lambda r: metrics_edit(r, "step_losses", '"abc"'), "'step_losses' is not a list"),
    "step_losses of objects": (lambda r: metrics_edit(r, "step_losses", '[{"a": 1}]'), "'step_losses' is not a list"),
    "completed with no epochs": (lambda r: (r / "metrics.jsonl").unlink(), "no finished epoch"),
    "config.json a FIFO": (lambda r: fifo(r / "config.json"), "config.json is a FIFO"),
    "metrics.jsonl a FIFO": (lambda r: fifo(r / "metrics.jsonl"), "metrics.jsonl is a FIFO"),
    "weights.npz a FIFO": (lambda r: fifo(r / "weights.npz"), "weights.npz is a FIFO"),
    "metrics.jsonl a symlink to /dev/zero": (lambda r: link_to("/dev/zero")(r / "metrics.jsonl"), "symbolic link"),
    "status.json a symlink to a FIFO": (lambda r: (os.mkfifo(r / "pipe"), link_to(str(r / "pipe"))(r / "status.json")),
                                        "symbolic link"),
    "config.json a folder": (lambda r: ((r / "config.json").unlink(), (r / "config.json").mkdir()), "a folder"),
    "status.json over 1 MiB": (lambda r: with_key(r / "status.json", "message", json.dumps("x" * (2 << 20))),
                               "at most"),
    "unknown status": (lambda r: with_key(r / "status.json", "status", '"exploded"'), "unknown status"),
    "sweep id with markup": (lambda r: with_key(r / "config.json", "sweep", '"[x](https://example.org)"'),
                             "not a plain id"),
}


def list_with_deadline(store: RunStore) -> dict:
    """store.all_runs() in a thread: a read that blocks (a FIFO) fails the test instead of hanging it."""
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update({r.run_id: r for r in store.all_runs()}), daemon=True)
    worker.start()
    worker.join(WAIT)
    assert not worker.is_alive(), "listing the runs hung"
    return result


@pytest.mark.parametrize("case", HOSTILE)
def test_a_hostile_file_makes_one_run_unreadable_with_the_reason(tmp_path, trained, case):
    damage, reason = HOSTILE[case]
    root = tmp_path / "runs"
    store_with(trained, root)
    damage(root / BROKEN)
    store = RunStore(root)
    runs = list_with_deadline(store)
    assert runs[BROKEN].status == "unreadable" and reason in runs[BROKEN].error, runs[BROKEN].error
    assert str(tmp_path) not in runs[BROKEN].error, "reasons name files, never the server's folders"
    assert runs[GOOD].status == "completed" and runs[GOOD].epochs_completed == 2
    assert store.get(BROKEN).status == "unreadable"
    with pytest.raises(RunError):
        store.metrics_csv(BROKEN)


def test_a_device_node_as_a_run_file_is_refused(tmp_path, trained):
    root = tmp_path / "runs"
    store_with(trained, root)
    (root / BROKEN / "metrics.jsonl").unlink()
    try:
        os.mknod(root / BROKEN / "metrics.jsonl", 0o644 | 0o020000, os.makedev(1, 5))  # /dev/zero's numbers
    except PermissionError:
        pytest.skip("creating a device node needs CAP_MKNOD")
    runs = list_with_deadline(RunStore(root))
    assert runs[BROKEN].status == "unreadable" and "metrics.jsonl is a device" in runs[BROKEN].error


def bomb_npz(path: Path, inflated: int) -> None:
    """weights.npz whose W has a valid (784, 10) float32 header followed by ``inflated`` bytes of zeros."""
    header = (path.parent / "W.tmp")
    with open(header, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": "<f4", "fortran_order": False, "shape": (784, 10)})
    head = header.read_bytes()
    header.unlink()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("W.npy", "w", force_zip64=True) as member:
            member.write(head)
            chunk = bytes(1 << 20)
            for _ in range(inflated >> 20):
                member.write(chunk)
        archive.writestr("b.npy", _npy(np.zeros(10, np.float32)))


def _npy(array: np.ndarray) -> bytes:
    import io
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


def test_a_small_npz_that_inflates_to_a_gigabyte_is_refused_before_inflating(tmp_path, trained):
    root = tmp_path / "runs"
    store_with(trained, root)
    bomb_npz(root / BROKEN / "weights.npz", 1 << 30)
    assert (root / BROKEN / "weights.npz").stat().st_size < 2 << 20, "small on disk"
    store = RunStore(root)
    tracemalloc.start()
    try:
        runs = {r.run_id: r for r in store.all_runs()}
        with pytest.raises(RunError, match="claims"):
            store.load_weights(BROKEN)
        with pytest.raises(RunError):
            store.weights_npz(BROKEN)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert runs[BROKEN].status == "unreadable" and "claims" in runs[BROKEN].error
    assert peak < 64 << 20, f"{peak / 2**20:.0f} MiB allocated: the bomb was inflated"


def test_an_evolution_npz_claiming_a_million_epochs_is_refused(tmp_path, trained):
    root = tmp_path / "runs"
    store_with(trained, root)
    path = root / BROKEN / "evolution.npz"
    with zipfile.ZipFile(path, "w") as archive:
        with archive.open("W.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_2_0(member, {"descr": "<f2", "fortran_order": False,
                                                         "shape": (1_000_000, 784, 10)})
    with pytest.raises(RunError, match="claims"):
        RunStore(root).evolution_epochs(BROKEN)
    with pytest.raises(RunError, match="claims"):
        RunStore(root).load_evolution(BROKEN, [0])


# --- kind 6: listing reads no arrays, and re-reads only what changed -----------------------------

def test_listing_reads_no_array_data(tmp_path, trained):
    """W's data is damaged behind an intact header: only a reader that inflates W would notice."""
    root = tmp_path / "runs"
    store_with(trained, root)
    weights = root / BROKEN / "weights.npz"
    raw = bytearray(weights.read_bytes())
    raw[2000] ^= 0xFF  # inside W's data (header is the first ~200 bytes of the stored member)
    weights.write_bytes(bytes(raw))
    store = RunStore(root)
    assert {r.run_id: r.status for r in store.all_runs()} == {GOOD: "completed", BROKEN: "completed"}
    with pytest.raises(RunError, match="cannot be loaded safely"):
        store.load_weights(BROKEN)


def test_a_cached_listing_rereads_a_run_only_when_its_files_change(tmp_path, trained, monkeypatch):
    root = tmp_path / "runs"
    store_with(trained, root)
    store = RunStore(root)
    store.all_runs()
    reads: list[Path] = []
    real = runs_module.safe_read.read_json_object
    monkeypatch.setattr(runs_module.safe_read, "read_json_object", lambda p, limit: reads.append(p) or real(p, limit))
    store.all_runs()
    assert reads == [], "unchanged runs are not read again"
    status = json.loads((root / BROKEN / "status.json").read_text())
    (root / BROKEN / "status.json").write_text(json.dumps({**status, "status": "stopped", "message": "later"}))
    runs = {r.run_id: r for r in store.all_runs()}
    assert {p.parent.name for p in reads} == {BROKEN}
    assert runs[BROKEN].status == "stopped" and runs[BROKEN].message == "later"


def test_a_metrics_file_over_the_step_limit_is_read_without_its_step_losses(tmp_path, trained, monkeypatch):
    root = tmp_path / "runs"
    store_with(trained, root)
    store = RunStore(root)
    assert all(row["step_losses"] for row in store.get(GOOD).metrics), "a normal run keeps its step losses"
    assert not any(row["step_losses"] for r in store.all_runs() for row in r.metrics), "listings never carry them"
    assert store.summary(GOOD).metrics[-1]["test_accuracy"] == store.get(GOOD).final["test_accuracy"]
    assert not any(row["step_losses"] for row in store.summary(GOOD).metrics)
    monkeypatch.setattr(runs_module, "STEPS_LIMIT", 1000)
    run = store.get(GOOD)
    assert run.epochs_completed == 2 and not any(row["step_losses"] for row in run.metrics)
    assert run.final["test_accuracy"] > 0.85


# --- kind 4: filesystem faults ---------------------------------------------------------------------

def cli(*args: str, runs_dir: Path | None = None, env: dict | None = None,
        prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    if runs_dir is not None:
        full_env["SOFTMAX_LAB_RUNS"] = str(runs_dir)
    return subprocess.run([*prefix, sys.executable, "-m", "softmax_core", *args], capture_output=True, text=True,
                          env=full_env, timeout=WAIT, cwd=Path(__file__).resolve().parents[1])


def only_error_line(done: subprocess.CompletedProcess, status: int = 2) -> str:
    assert done.returncode == status, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


@pytest.mark.parametrize("command", [["runs"], ["runs", "--json"], ["evaluate", GOOD], ["train", "--epochs", "1"],
                                     ["sweep", "--epochs", "1"]])
def test_runs_dir_naming_a_file_is_one_line_exit_2(tmp_path, command):
    afile = tmp_path / "runs.txt"
    afile.write_text("not a folder")
    line = only_error_line(cli(*command, "--runs-dir", str(afile), env={"TF_CPP_MIN_LOG_LEVEL": "0"}))
    assert "is not a folder" in line
    assert afile.read_text() == "not a folder"


@contextmanager
def tmpfs(point: Path, options: str) -> Iterator[Path]:
    """A tmpfs mounted at ``point`` with ``options`` (root only: skips elsewhere), unmounted afterwards."""
    point.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield point
    finally:
        subprocess.run(["umount", str(point)], check=True)


@pytest.fixture
def read_only_mount(tmp_path) -> Iterator[Path]:
    """A tmpfs mounted read-only."""
    with tmpfs(tmp_path / "ro", "ro,size=1m") as point:
        yield point


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


@pytest.fixture
def full_disk(tmp_path) -> Iterator[Path]:
    """A 64 KiB tmpfs filled to the last byte."""
    with tmpfs(tmp_path / "full", "size=64k") as point:
        (point / "runs").mkdir()
        fd = os.open(point / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, bytes(4096)):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        yield point


def test_a_full_disk_at_start_leaves_no_empty_run_behind(full_disk, data):
    store = RunStore(full_disk / "runs")
    with pytest.raises(OSError):
        store.create(TrainConfig())
    assert list((full_disk / "runs").iterdir()) == []
    done = cli("train", "--epochs", "1", "--runs-dir", str(full_disk / "runs"))
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    line = done.stderr.strip().splitlines()[-1]  # TensorFlow's start-up lines come first: it loads before create
    assert line.startswith("error: ") and "disk is full" in line
    assert list((full_disk / "runs").iterdir()) == []


def test_delete_in_a_read_only_store_loses_nothing_and_says_why(read_only_mount, trained):
    subprocess.run(["mount", "-o", "remount,rw", str(read_only_mount)], check=True)
    shutil.copytree(trained, read_only_mount / GOOD)
    subprocess.run(["mount", "-o", "remount,ro", str(read_only_mount)], check=True)
    store = RunStore(read_only_mount)
    with pytest.raises(RunError, match="cannot be deleted: Read-only file system"):
        store.delete(GOOD)
    assert store.get(GOOD).status == "completed"


# --- kind 5: the smaller breaks --------------------------------------------------------------------

def test_runs_json_is_strict_json_even_with_non_finite_numbers_in_a_run(tmp_path, trained):
    root = tmp_path / "runs"
    store_with(trained, root)
    metrics_edit(root / BROKEN, "test_loss", "Infinity")

    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    done = cli("runs", "--json", runs_dir=root)
    assert done.returncode == 0, done.stderr
    listing = {r["run_id"]: r for r in json.loads(done.stdout, parse_constant=refuse)["runs"]}
    assert listing[BROKEN]["status"] == "unreadable" and listing[GOOD]["final"]["test_loss"] > 0


@pytest.mark.parametrize("rate", [1e-320, 1e-46])
def test_a_learning_rate_that_is_zero_in_float32_is_refused(rate):
    with pytest.raises(ConfigError, match="0 in float32"):
        TrainConfig(learning_rate=rate)
    assert TrainConfig(learning_rate=1e-44).learning_rate == 1e-44  # a float32 subnormal still moves weights


def test_the_cli_refuses_a_learning_rate_that_underflows(tmp_path):
    line = only_error_line(cli("train", "--learning-rate", "1e-320", runs_dir=tmp_path / "runs"))
    assert "learning_rate" in line and "0 in float32" in line
    assert not (tmp_path / "runs").exists()


def test_bad_sweep_values_print_one_line_and_load_no_tensorflow(tmp_path):
    done = cli("sweep", "--learning-rate", "0.1", "-1", "--epochs", "1", runs_dir=tmp_path / "runs",
               env={"TF_CPP_MIN_LOG_LEVEL": "0"})
    assert "learning_rate" in only_error_line(done)
    assert not (tmp_path / "runs").exists()


def digit_image(data, index: int = 0) -> np.ndarray:
    return data.images("test", index).reshape(28, 28)


def test_a_16_bit_png_reads_like_its_8_bit_twin(tmp_path, data):
    digit = digit_image(data)
    Image.fromarray((digit * 255).astype(np.uint8)).resize((280, 280)).save(tmp_path / "d8.png")
    Image.fromarray(((1 - digit) * 65535).astype(np.uint16)).resize((280, 280)).save(tmp_path / "d16.png")
    assert Image.open(tmp_path / "d16.png").mode.startswith("I")
    eight, sixteen = image_file_to_mnist(str(tmp_path / "d8.png")), image_file_to_mnist(str(tmp_path / "d16.png"))
    assert sixteen is not None
    np.testing.assert_allclose(sixteen, eight, atol=0.01)


@pytest.mark.parametrize("ink", ["dark", "white"])
def test_a_digit_on_a_transparent_background_is_read(tmp_path, data, ink):
    digit = digit_image(data)
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., :3] = 0 if ink == "dark" else 255
    rgba[..., 3] = (digit * 255).astype(np.uint8)
    Image.fromarray(rgba).resize((280, 280)).save(tmp_path / "alpha.png")
    Image.fromarray((digit * 255).astype(np.uint8)).resize((280, 280)).save(tmp_path / "plain.png")
    read = image_file_to_mnist(str(tmp_path / "alpha.png"))
    assert read is not None
    np.testing.assert_allclose(read, image_file_to_mnist(str(tmp_path / "plain.png")), atol=0.01)


def test_predict_on_a_16_bit_png_names_the_digit(tmp_path, trained, data):
    root = tmp_path / "runs"
    shutil.copytree(trained, root / GOOD)
    index = int(np.flatnonzero(data.test_y == 7)[0])
    Image.fromarray(((1 - digit_image(data, index)) * 65535).astype(np.uint16)).resize((280, 280)).save(
        tmp_path / "seven16.png")
    done = cli("predict", GOOD, str(tmp_path / "seven16.png"), "--json", runs_dir=root)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["digit"] == 7


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_a_run_listed_unreadable_is_refused_by_evaluate_and_predict(tmp_path, trained, command):
    """Its weights are intact, its metrics are not: the CLI gives the one answer `runs` gives."""
    root = tmp_path / "runs"
    store_with(trained, root)
    metrics_edit(root / BROKEN, "test_accuracy", '"high"')
    assert RunStore(root).get(BROKEN).status == "unreadable"
    extra = [str(tmp_path / "x.png")] if command == "predict" else []
    line = only_error_line(cli(command, BROKEN, *extra, runs_dir=root))
    assert "is unreadable" in line and "'test_accuracy'" in line
