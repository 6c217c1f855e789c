"""TensorBoard events of a run, read back the way TensorBoard reads them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.util.tensor_util import make_ndarray

from softmax_core.config import TrainConfig
from softmax_core.events import EventLog, template_grid
from softmax_core.runs import RunStore
from softmax_core.train import train


def _events(run_dir) -> EventAccumulator:
    events = EventAccumulator(str(run_dir), size_guidance={"tensors": 0})
    events.Reload()
    return events


def _scalars(events: EventAccumulator, tag: str) -> dict[int, float]:
    """Value by step of one scalar tag."""
    return {e.step: float(make_ndarray(e.tensor_proto)) for e in events.Tensors(tag)}


@pytest.fixture(scope="module")
def logged_run(mnist, tmp_path_factory):
    """A real 3-epoch run written through RunStore with its EventLog, as a worker would."""
    config = TrainConfig(learning_rate=0.5, optimizer="sgd", batch_size=100, epochs=3, l2=0.0)
    writer = RunStore(tmp_path_factory.mktemp("runs")).create(config)
    log = EventLog(writer.path, config)
    seen = []

    def on_epoch(metrics, W, b):
        writer.record_epoch(metrics.to_dict(), W, b)
        log.epoch(metrics, W)
        seen.append((metrics, W))

    result = train(config, mnist, on_epoch)
    writer.finish(result.status)
    log.close(result.status)
    return writer.path, config, seen


def test_scalars_are_the_epoch_metrics(logged_run):
    run_dir, _, seen = logged_run
    events = _events(run_dir)
    for split in ("train", "validation", "test"):
        for kind in ("loss", "accuracy"):
            expected = {m.epoch: getattr(m, f"{split}_{kind}") for m, _ in seen}
            assert _scalars(events, f"{kind}/{split}") == pytest.approx(expected, rel=1e-6)
    assert _scalars(events, "learning_rate") == pytest.approx({m.epoch: m.learning_rate for m, _ in seen})
    assert seen[0][0].learning_rate < 0.5  # cosine: the rate each epoch ended with
    assert seen[-1][0].test_accuracy > 0.9


def test_weight_image_is_the_ten_templates_on_one_scale(logged_run):
    run_dir, _, seen = logged_run
    images = _events(run_dir).Tensors("weights")
    assert [e.step for e in images] == [1, 2, 3]
    width, height, png = make_ndarray(images[-1].tensor_proto)
    assert (int(width), int(height)) == (140, 56) and png.startswith(b"\x89PNG")
    W = seen[-1][1]
    grid = template_grid(W).astype(int)
    strongest = np.unravel_index(np.abs(W).argmax(), W.shape)
    pixel, digit = divmod(strongest[0], 28), strongest[1]
    row, col = divmod(digit, 5)
    tile = grid[row * 28:(row + 1) * 28, col * 28:(col + 1) * 28]
    r, g, b = tile[pixel]
    assert (r > b) == (W[strongest] > 0) and min(r, g, b) < 60  # the extreme is a saturated colour
    assert (grid[:, :, 0] == grid[:, :, 2]).sum() < grid[:, :, 0].size  # not greyscale


def test_template_grid_zero_is_white_and_signs_differ():
    W = np.zeros((784, 10), np.float32)
    W[0, 0], W[0, 1] = 2.0, -2.0
    grid = template_grid(W)
    assert grid.dtype == np.uint8 and grid.shape == (56, 140, 3)
    assert tuple(grid[27, 27]) == (255, 255, 255)
    assert grid[0, 0, 0] > grid[0, 0, 2] and grid[0, 28, 2] > grid[0, 28, 0]


def test_hparams_session_holds_the_settings_and_the_end(logged_run):
    run_dir, config, _ = logged_run
    events = _events(run_dir)
    start = events.SummaryMetadata(hparams_metadata.SESSION_START_INFO_TAG).plugin_data
    info = hparams_metadata.parse_session_start_info_plugin_data(start.content)
    values = {k: v.string_value or v.number_value for k, v in info.hparams.items()}
    assert values == pytest.approx(config.to_dict())
    assert info.group_name == run_dir.name
    end = events.SummaryMetadata(hparams_metadata.SESSION_END_INFO_TAG).plugin_data
    assert hparams_metadata.parse_session_end_info_plugin_data(end.content).status == 1  # STATUS_SUCCESS
    assert make_ndarray(events.Tensors("status")[0].tensor_proto) == b"completed"


def test_cli_train_writes_events_that_tensorboard_lists_by_run_id(tmp_path):
    runs_dir = tmp_path / "runs"
    env = {**os.environ, "SOFTMAX_LAB_RUNS": str(runs_dir)}
    done = subprocess.run([sys.executable, "-m", "softmax_core", "train", "--epochs", "2", "--json"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout.strip().splitlines()[-1])["run_id"]
    multiplexer = EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(runs_dir))
    multiplexer.Reload()
    assert list(multiplexer.Runs()) == [run_id]
    assert hparams_metadata.SESSION_START_INFO_TAG in multiplexer.Runs()[run_id]["tensors"]
    assert list(_scalars(_events(runs_dir / run_id), "accuracy/test")) == [1, 2]
