"""TensorBoard event log of one run, written in its run folder beside the lab's own files.

The events sit directly in ``<runs>/<run id>/``, so ``tensorboard --logdir <runs>`` names each
run by its run id, and the HParams tab lists every run with its settings and final status.
Written by the process that trains; the web server never imports TensorFlow.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorboard.plugins.hparams import api as hp
from tensorboard.plugins.hparams import api_pb2
from tensorboard.plugins.hparams import summary as hparams_summary

from .config import TrainConfig
from .data import CLASSES, IMAGE_SIDE, PIXELS
from .train import EpochMetrics

SPLITS = ("train", "validation", "test")
GRID_ROWS, GRID_COLS = 2, 5
"""The ten templates as one 2x5 grid at 1:1; TensorBoard draws images pixelated when it
enlarges them, so upscaling here would only cost PNG encoding time."""
RED, BLUE = np.array([0.70, 0.09, 0.17], np.float32), np.array([0.13, 0.40, 0.67], np.float32)
SESSION_STATUS = {"completed": api_pb2.Status.STATUS_SUCCESS, "diverged": api_pb2.Status.STATUS_FAILURE,
                  "failed": api_pb2.Status.STATUS_FAILURE}
"""HParams session status of a final run status; TensorBoard has no 'aborted', so a stopped or
pruned run is STATUS_UNKNOWN there, and its lab status is in the ``status`` text summary."""


class EventLog:
    """Per-epoch scalars and weight templates, plus the run's settings for the HParams tab.

    One ``epoch`` call per finished epoch and one ``close`` when the run ends; 20 epochs cost
    about a tenth of a second.
    """

    def __init__(self, run_dir: Path, config: TrainConfig) -> None:
        self._writer = tf.summary.create_file_writer(str(run_dir))
        with self._writer.as_default():
            hp.hparams(config.to_dict(), trial_id=Path(run_dir).name)
        self._writer.flush()

    def epoch(self, metrics: EpochMetrics, W: np.ndarray) -> None:
        """``loss/<split>``, ``accuracy/<split>``, ``learning_rate`` and the ``weights`` image."""
        step = metrics.epoch
        with self._writer.as_default():
            for split in SPLITS:
                tf.summary.scalar(f"loss/{split}", getattr(metrics, f"{split}_loss"), step=step)
                tf.summary.scalar(f"accuracy/{split}", getattr(metrics, f"{split}_accuracy"), step=step)
            tf.summary.scalar("learning_rate", metrics.learning_rate, step=step)
            tf.summary.image("weights", template_grid(W)[None], step=step)
        self._writer.flush()

    def close(self, status: str) -> None:
        """Record how the run ended (HParams session status, ``status`` text) and release the file."""
        end = hparams_summary.session_end_pb(SESSION_STATUS.get(status, api_pb2.Status.STATUS_UNKNOWN))
        with self._writer.as_default():
            tf.summary.text("status", status, step=0)
            tf.summary.experimental.write_raw_pb(end.SerializeToString(), step=0)
        self._writer.close()


def template_grid(W: np.ndarray) -> np.ndarray:
    """The ten 28x28 columns of W as one RGB image on a single scale centred on zero.

    One image rather than ten: TensorBoard shows it in one card with one epoch slider, and one
    shared scale keeps the templates comparable, as the lab's own weight grid does. Blue is
    negative evidence, red positive, white zero (the ends of the lab's RdBu_r). uint8, so
    TensorBoard stores it as is.
    """
    limit = float(np.abs(W).max()) or 1.0
    t = np.clip(W.T.reshape(CLASSES, IMAGE_SIDE, IMAGE_SIDE, 1) / limit, -1.0, 1.0)
    colour = np.where(t > 0, RED - 1, 1 - BLUE)  # white + |t| * (colour - white)
    rgb = (255 * (1 + t * colour)).astype(np.uint8)
    grid = rgb.reshape(GRID_ROWS, GRID_COLS, IMAGE_SIDE, IMAGE_SIDE, 3).transpose(0, 2, 1, 3, 4)
    return grid.reshape(GRID_ROWS * IMAGE_SIDE, GRID_COLS * IMAGE_SIDE, 3)


def warm_up() -> None:
    """Write one throwaway log and delete it, so a worker's first run does not pay for it.

    A process's first event log took about 125 ms (TensorFlow's summary ops and the PNG encoder
    start up), and a run's first epoch reaches the live view only after its log is written.
    """
    with tempfile.TemporaryDirectory(prefix="softmax-lab-events-") as folder:
        log = EventLog(Path(folder), TrainConfig())
        log.epoch(EpochMetrics(1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0), np.zeros((PIXELS, CLASSES), np.float32))
        log.close("completed")
