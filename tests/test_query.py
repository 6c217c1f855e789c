"""Training settings through the URL: a round trip keeps every value; bad values name the field."""

from __future__ import annotations

import pytest

from softmax_core.config import ConfigError, TrainConfig
from softmax_core.query import config_from_query, settings_from_query, to_query


def test_a_config_survives_the_round_trip_exactly() -> None:
    config = TrainConfig(learning_rate=0.123456789, batch_size=37, epochs=3, seed=5, optimizer="momentum",
                         l2=1e-5, schedule="constant", init="random")
    assert config_from_query(to_query(config)) == config


def test_missing_settings_default_and_other_parameters_are_ignored() -> None:
    assert config_from_query({"optimizer": "sgd", "run": "20260101-000000-abcdef"}) == TrainConfig(optimizer="sgd")
    assert settings_from_query({"run": "x"}) == {}


@pytest.mark.parametrize("params, field", [
    ({"batch_size": "0"}, "batch_size"), ({"batch_size": "1.5"}, "batch_size"), ({"epochs": "many"}, "epochs"),
    ({"learning_rate": "-0.1"}, "learning_rate"), ({"optimizer": "rmsprop"}, "optimizer"),
])
def test_bad_values_are_refused_with_the_field_named(params: dict, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_query(params)
    assert caught.value.field == field
