"""Training settings as a URL query string, so a link reproduces a configuration.

Parameter names are the ``TrainConfig`` field names (the CLI's flags), values plain text:
``?learning_rate=0.5&batch_size=100&optimizer=sgd``. Bad values are refused the same way a bad
form entry is: a ``ConfigError`` that names the field.
"""

from __future__ import annotations

from typing import Mapping

from .config import SETTINGS, ConfigError, TrainConfig

PARAMS = tuple(SETTINGS)
"""The query parameters that carry settings; any other (e.g. ``run``) is left alone."""


def to_query(config: TrainConfig) -> dict[str, str]:
    """Every setting of ``config`` as text, ready for ``st.query_params`` or a link."""
    return {name: repr(value) if isinstance(value, float) else str(value)
            for name, value in config.to_dict().items()}


def settings_from_query(params: Mapping[str, str]) -> dict[str, object]:
    """The settings named in ``params``, typed; other parameters are ignored.

    Raises ConfigError naming the first parameter that is not a number where one is needed.
    """
    settings: dict[str, object] = {}
    for name in PARAMS:
        if name not in params:
            continue
        text = str(params[name]).strip()
        kind = SETTINGS[name].kind
        try:
            settings[name] = kind(text)
        except ValueError:
            raise ConfigError(name, f"{text!r} is not a {'whole ' if kind is int else ''}number") from None
    return settings


def config_from_query(params: Mapping[str, str], base: TrainConfig | None = None) -> TrainConfig:
    """``base`` (default: the defaults) with the settings ``params`` names; validated."""
    values = (base or TrainConfig()).to_dict()
    values.update(settings_from_query(params))
    return TrainConfig.from_dict(values)
