"""Export a run for the wider ecosystem: a Keras model, a TensorFlow SavedModel, or a script.

keras: a ``.keras`` file that ``keras.models.load_model`` opens (Dense(10, softmax) on 784 inputs).
savedmodel: a SavedModel whose ``serving_default`` signature maps ``pixels`` (float32 [None, 784]
in [0, 1]) to ``probabilities`` (float32 [None, 10]); point TF Serving at its parent folder with
the export in a numbered version folder, e.g. ``--out models/softmax/1``.
script: one Python file, TensorFlow and NumPy only, that retrains the run from MNIST_DIR with
the run's settings and seed and prints its test accuracy.
"""

from __future__ import annotations

from pathlib import Path
from string import Template

import numpy as np
import tensorflow as tf

from .data import CLASSES, PIXELS, TRAIN_SIZE
from .model import RANDOM_INIT_SCALE
from .runs import RunError, RunInfo, RunStore
from .train import ADAM_BETA1, ADAM_BETA2, ADAM_EPSILON, MOMENTUM

FORMATS = ("keras", "savedmodel", "script")
SIGNATURE = "serving_default"


def export_run(store: RunStore, run_id: str, fmt: str, out: Path) -> Path:
    """Write run ``run_id`` as ``fmt`` to ``out`` (a file, or a folder for savedmodel); return ``out``.

    Raises ValueError for an unknown format or a keras path not ending in ``.keras``, RunError
    for a run that is unknown, unreadable or without weights (keras, savedmodel).
    """
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    out = Path(out)
    if fmt == "keras" and out.suffix != ".keras":
        raise ValueError(f"{out}: a Keras model file must end in .keras")
    run = store.get(run_id)
    if run.config is None:
        raise RunError(f"run {run_id} is unreadable: {run.error}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "script":
        out.write_text(training_script(run))
        return out
    W, b = store.load_weights(run_id)
    if fmt == "keras":
        keras_model(W, b).save(out)
    else:
        _save_serving_model(W, b, out)
    return out


def keras_model(W: np.ndarray, b: np.ndarray):
    """The lab's model as Keras layers: probabilities = softmax(pixels @ W + b)."""
    import keras

    model = keras.Sequential([keras.Input((PIXELS,), name="pixels"),
                              keras.layers.Dense(CLASSES, activation="softmax", name="softmax")])
    model.get_layer("softmax").set_weights([W, b])
    return model


class _Serving(tf.Module):
    def __init__(self, W: np.ndarray, b: np.ndarray) -> None:
        super().__init__(name="softmax_regression")
        self.W = tf.Variable(W, trainable=False, name="W")
        self.b = tf.Variable(b, trainable=False, name="b")

    @tf.function(input_signature=[tf.TensorSpec([None, PIXELS], tf.float32, name="pixels")])
    def serve(self, pixels: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"probabilities": tf.nn.softmax(tf.matmul(pixels, self.W) + self.b)}


def _save_serving_model(W: np.ndarray, b: np.ndarray, out: Path) -> None:
    module = _Serving(W, b)
    tf.saved_model.save(module, str(out), signatures={SIGNATURE: module.serve})


def training_script(run: RunInfo) -> str:
    """The standalone script for ``run``: its settings as constants in SCRIPT."""
    config = run.config
    final = run.final
    lab = f"{final['test_accuracy']:.4f} after {run.epochs_completed} epochs ({run.status})" if final else "none yet"
    return SCRIPT.substitute(
        run_id=run.run_id, lab_accuracy=lab, label=config.label(),
        learning_rate=repr(config.learning_rate), batch_size=config.batch_size, epochs=config.epochs,
        seed=config.seed, optimizer=repr(config.optimizer), schedule=repr(config.schedule), l2=repr(config.l2),
        init=repr(config.init), momentum=MOMENTUM, beta1=ADAM_BETA1, beta2=ADAM_BETA2, epsilon=ADAM_EPSILON,
        init_scale=RANDOM_INIT_SCALE, train_size=TRAIN_SIZE)


SCRIPT = Template('''"""Softmax regression on MNIST: Softmax Lab run $run_id, as a standalone script.

Trains the tutorial's model, probabilities = softmax(x @ W + b), with the run's settings
($label) and seed, and prints its test accuracy as the last line.
The lab's run reached test accuracy $lab_accuracy.
Needs only TensorFlow and NumPy, and MNIST_DIR: a folder with the four MNIST IDX .gz files.
"""

import gzip
import math
import os

import numpy as np
import tensorflow as tf

# Settings of run $run_id
LEARNING_RATE = $learning_rate
BATCH_SIZE = $batch_size
EPOCHS = $epochs
SEED = $seed  # the shuffle of every epoch (and the random init) comes from it
OPTIMIZER = $optimizer  # sgd, momentum or adam
SCHEDULE = $schedule  # constant, or cosine: the rate decays to 0 over all steps
L2 = $l2  # weight decay on W only: the loss gains L2 / 2 * sum(W ** 2)
INIT = $init  # zeros (the tutorial), or random: W ~ N(0, $init_scale**2) from SEED
MOMENTUM = $momentum
BETA1, BETA2, EPSILON = $beta1, $beta2, $epsilon
TRAIN_SIZE = $train_size


# Prepare the data: the tutorial's split of the 60,000 training images into 55,000 train and
# 5,000 validation (the last ones), the 10,000 test images; pixels scaled to [0, 1].
def read_idx(name):
    with gzip.open(os.path.join(os.environ["MNIST_DIR"], name), "rb") as handle:
        raw = handle.read()
    dims = raw[3]
    shape = np.frombuffer(raw, ">u4", dims, offset=4)
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * dims).reshape(shape)


def images(name):
    return read_idx(name).reshape(-1, 784).astype(np.float32) * np.float32(1 / 255)


train_x, train_y = images("train-images-idx3-ubyte.gz"), read_idx("train-labels-idx1-ubyte.gz").astype(np.int32)
test_x, test_y = images("t10k-images-idx3-ubyte.gz"), read_idx("t10k-labels-idx1-ubyte.gz").astype(np.int32)
validation_x, validation_y = train_x[TRAIN_SIZE:], train_y[TRAIN_SIZE:]
train_x, train_y = tf.constant(train_x[:TRAIN_SIZE]), tf.constant(train_y[:TRAIN_SIZE])

# Build the model: W (784 x 10) and b (10), and the optimizer's state.
if INIT == "zeros":
    W0 = np.zeros((784, 10), np.float32)
else:
    W0 = np.random.default_rng(SEED).normal(0.0, $init_scale, (784, 10)).astype(np.float32)
W, b = tf.Variable(W0), tf.Variable(tf.zeros(10))
mW, mb = tf.Variable(tf.zeros((784, 10))), tf.Variable(tf.zeros(10))  # momentum / Adam first moments
vW, vb = tf.Variable(tf.zeros((784, 10))), tf.Variable(tf.zeros(10))  # Adam second moments
step = tf.Variable(0)
steps_per_epoch = math.ceil(TRAIN_SIZE / BATCH_SIZE)
total_steps = steps_per_epoch * EPOCHS


@tf.function(reduce_retracing=True)
def train_step(batch):
    x, y = tf.gather(train_x, batch), tf.gather(train_y, batch)
    with tf.GradientTape() as tape:
        logits = tf.matmul(x, W) + b
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        loss += 0.5 * L2 * tf.reduce_sum(W * W)
    gW, gb = tape.gradient(loss, [W, b])
    lr = tf.constant(LEARNING_RATE, tf.float32)
    if SCHEDULE == "cosine":
        lr = lr * 0.5 * (1.0 + tf.cos(math.pi * tf.cast(step, tf.float32) / total_steps))
    if OPTIMIZER == "sgd":
        W.assign_sub(lr * gW)
        b.assign_sub(lr * gb)
    elif OPTIMIZER == "momentum":
        W.assign_sub(lr * mW.assign(MOMENTUM * mW + gW))
        b.assign_sub(lr * mb.assign(MOMENTUM * mb + gb))
    else:  # adam, with bias correction folded into the step size
        k = tf.cast(step + 1, tf.float32)
        scale = lr * tf.sqrt(1 - BETA2 ** k) / (1 - BETA1 ** k)
        for var, m, v, g in ((W, mW, vW, gW), (b, mb, vb, gb)):
            m.assign(BETA1 * m + (1 - BETA1) * g)
            v.assign(BETA2 * v + (1 - BETA2) * g * g)
            var.assign_sub(scale * m / (tf.sqrt(v) + EPSILON))
    step.assign_add(1)


def accuracy(x, y):
    return float(np.mean(np.argmax(x @ W.numpy() + b.numpy(), axis=1) == y))


# Train: each epoch a fresh shuffle from one generator seeded with SEED; the last, partial
# batch (when BATCH_SIZE does not divide 55,000) is a step of its own.
rng = np.random.default_rng(SEED)
for epoch in range(EPOCHS):
    order = rng.permutation(TRAIN_SIZE).astype(np.int32)
    for start in range(0, TRAIN_SIZE, BATCH_SIZE):
        train_step(tf.constant(order[start:start + BATCH_SIZE]))
    print(f"epoch {epoch + 1}/{EPOCHS}: validation accuracy {accuracy(validation_x, validation_y):.4f}")

# Evaluate on the test set, once, at the end.
print(f"test accuracy {accuracy(test_x, test_y):.4f}")
''')
