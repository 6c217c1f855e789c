"""The docs stay true: every file and function docs/architecture.md names exists, and every test
docs/faults.md names is one pytest collects."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys

from apptest import PROJECT, WAIT

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


def test_every_row_of_the_fault_table_names_a_test_that_exists(request):
    """docs/faults.md promises a test per row: each id it names is one pytest collects.

    When this session collected them all (the whole suite), that is the answer; else pytest
    collects the files the table names in a child process.
    """
    table = (PROJECT / "docs" / "faults.md").read_text()
    named = {line.rsplit("`", 2)[1] for line in table.splitlines() if line.startswith("| ") and "::test_" in line}
    missing = named - {item.nodeid for item in request.session.items}
    if missing:
        files = sorted({test_id.split("::")[0] for test_id in named})
        done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                               *files], capture_output=True, text=True, cwd=PROJECT, timeout=WAIT)
        missing = named - set(done.stdout.splitlines())
    assert named and not missing, sorted(missing)
