"""TrainConfig refuses out-of-range settings before anything trains, naming the field."""

import pytest

from softmax_core.config import ConfigError, TrainConfig


@pytest.mark.parametrize("field, value", [
    ("learning_rate", 0), ("learning_rate", -0.1), ("learning_rate", float("nan")), ("learning_rate", 1e6),
    ("batch_size", 0), ("batch_size", 55_001), ("batch_size", 2.5), ("epochs", 0), ("epochs", 501),
    ("seed", -1), ("l2", -1e-3), ("l2", 2.0), ("optimizer", "rmsprop"), ("schedule", "linear"),
    ("init", "ones"), ("batch_size", True), ("learning_rate", "0.5"),
])
def test_out_of_range_is_refused_with_the_field_named(field, value):
    with pytest.raises(ConfigError) as info:
        TrainConfig(**{field: value})
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}:")


def test_edges_are_accepted_and_whole_floats_become_ints():
    config = TrainConfig(batch_size=55_000.0, epochs=1, learning_rate=1e4, l2=1.0)
    assert config.batch_size == 55_000 and isinstance(config.batch_size, int)


def test_round_trip_through_a_dict():
    config = TrainConfig(learning_rate=0.5, optimizer="sgd", schedule="constant")
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_unknown_keys_are_refused():
    with pytest.raises(ConfigError, match="unknown setting"):
        TrainConfig.from_dict({"learning_rate": 0.1, "momentum": 0.5})


def test_label_is_short_and_human():
    assert TrainConfig(learning_rate=0.5, optimizer="sgd", epochs=15, l2=0).label() == "sgd lr 0.5 · batch 100 · 15 ep"
    assert TrainConfig().label() == "adam lr 0.002 · batch 100 · 20 ep · L2 0.0001"


@pytest.mark.parametrize("rate", [1e-320, 1e-46])
def test_a_learning_rate_that_is_zero_in_float32_is_refused(rate):
    with pytest.raises(ConfigError, match="0 in float32"):
        TrainConfig(learning_rate=rate)
    assert TrainConfig(learning_rate=1e-44).learning_rate == 1e-44  # a float32 subnormal still moves weights
