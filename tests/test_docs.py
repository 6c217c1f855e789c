"""docs/architecture.md stays true: every file and function it names exists."""

from __future__ import annotations

import importlib
import re

from apptest import PROJECT

MAP = (PROJECT / "docs" / "architecture.md").read_text()


def test_every_file_the_map_names_exists() -> None:
    paths = set(re.findall(r"`((?:softmax_core|ui|pages|bench|tests)/[\w/]+\.py)", MAP))
    assert len(paths) > 15
    assert [p for p in paths if not (PROJECT / p).is_file()] == []


def test_every_function_the_map_names_exists() -> None:
    named = set(re.findall(r"`(?:softmax_core\.|ui\.)?((?:record|train|jobs|preprocess|analysis|model|config|runs)"
                           r"\.\w+)", MAP))
    missing = []
    for name in named:
        module, attribute = name.split(".")
        package = "ui" if module == "session" else "softmax_core"
        if not hasattr(importlib.import_module(f"{package}.{module}"), attribute):
            missing.append(name)
    assert named and missing == []
