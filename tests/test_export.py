"""Exports, checked by their consumers: Keras loads the model, TensorFlow runs the SavedModel, Python
runs the script; each must agree with the lab's own NumPy forward pass or its run."""

from __future__ import annotations

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from softmax_core.config import TrainConfig
from softmax_core.export import export_run
from softmax_core.model import predict_proba
from softmax_core.runs import RunStore
from softmax_core.train import train


def _lab_run(store: RunStore, config: TrainConfig, data) -> str:
    """A run trained and saved as the CLI and the workers do."""
    writer = store.create(config)
    result = train(config, data, lambda m, W, b: writer.record_epoch(m.to_dict(), W, b))
    writer.finish(result.status, result.message)
    return writer.run_id


@pytest.fixture(scope="module")
def trained(mnist, tmp_path_factory):
    store = RunStore(tmp_path_factory.mktemp("runs"))
    run_id = _lab_run(store, TrainConfig(epochs=2), mnist)
    W, b = store.load_weights(run_id)
    return store, run_id, predict_proba(W, b, mnist.test_x)


def test_keras_file_predicts_as_the_lab(trained, mnist, tmp_path):
    store, run_id, expected = trained
    path = export_run(store, run_id, "keras", tmp_path / "model.keras")
    model = keras.models.load_model(path)
    probs = model.predict(mnist.test_x, batch_size=10_000, verbose=0)
    assert (probs.argmax(axis=1) == expected.argmax(axis=1)).all()
    assert np.abs(probs - expected).max() < 1e-5


def test_savedmodel_serving_signature_predicts_as_the_lab(trained, mnist, tmp_path):
    store, run_id, expected = trained
    path = export_run(store, run_id, "savedmodel", tmp_path / "softmax" / "1")
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    (spec,) = serve.structured_input_signature[1].values()
    assert (spec.name, spec.dtype, spec.shape.as_list()) == ("pixels", tf.float32, [None, 784])
    assert list(serve.structured_outputs) == ["probabilities"]
    probs = serve(pixels=tf.constant(mnist.test_x))["probabilities"].numpy()
    assert probs.shape == (10_000, 10)
    assert (probs.argmax(axis=1) == expected.argmax(axis=1)).all()
    assert np.abs(probs - expected).max() < 1e-5


@pytest.mark.parametrize("config", [
    TrainConfig(epochs=2),  # the lab's defaults: adam, cosine, L2 1e-4, batch 100
    TrainConfig(epochs=2, optimizer="momentum", learning_rate=0.05, schedule="constant", l2=0.0,
                batch_size=128, init="random", seed=3),  # a partial last batch, a random start
], ids=["adam-cosine-l2", "momentum-partial-batch-random-init"])
def test_script_retrains_the_run_standalone(config, mnist, mnist_files, tmp_path):
    store = RunStore(tmp_path / "runs")
    run_id = _lab_run(store, config, mnist)
    script = export_run(store, run_id, "script", tmp_path / "elsewhere" / "softmax.py")
    source = script.read_text()
    assert "softmax_core" not in source.replace(f"Softmax Lab run {run_id}", "")
    env = {"PATH": os.environ["PATH"], "MNIST_DIR": str(mnist_files), "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env,
                          cwd=script.parent, timeout=600)
    assert done.returncode == 0, done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("test accuracy ")
    lab = store.get(run_id).final["test_accuracy"]
    assert abs(float(last.split()[-1]) - lab) <= 0.003


def test_export_refuses_bad_requests(trained, tmp_path):
    store, run_id, _ = trained
    with pytest.raises(ValueError, match="onnx"):
        export_run(store, run_id, "onnx", tmp_path / "m")
    with pytest.raises(ValueError, match=".keras"):
        export_run(store, run_id, "keras", tmp_path / "m.h5")


def test_cli_export_writes_and_reports_bad_input_in_one_line(trained, tmp_path):
    store, run_id, _ = trained
    env = {**os.environ, "SOFTMAX_LAB_RUNS": str(store.root)}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "softmax_core", "export", *args, "--json"],
                              capture_output=True, text=True, env=env, timeout=300)

    done = cli(run_id, "--format", "script", "--out", str(tmp_path / "run.py"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "run.py").is_file() and f'"path": "{tmp_path / "run.py"}"' in done.stdout
    for args in ([run_id, "--format", "onnx", "--out", "x"], ["no-such-run", "--format", "keras", "--out", "x.keras"],
                 [run_id, "--format", "keras", "--out", str(tmp_path / "m.h5")]):
        done = cli(*args)
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert done.returncode == 2 and len(errors) == 1 and "Traceback" not in done.stderr
