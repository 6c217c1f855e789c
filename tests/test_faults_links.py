"""Fault table (docs/faults.md), page rows: hostile links and run files as the pages show them,
filesystem faults met from a page, long histories, and the server's own settings.

Real runs trained here on the real MNIST, damaged by hand; the real pages under AppTest. What a
page renders as Markdown is checked by rendering it with a CommonMark parser (markdown-it).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from apptest import PROJECT, WAIT, open_page, open_tab
from made_runs import completed_sgd_run
from markdown_it import MarkdownIt
from test_faults_hostile import BROKEN, GOOD, HOSTILE, metrics_edit, with_key
from test_pages_inspect import array

from softmax_core.config import TrainConfig
from ui.session import literal

PAGES = (None, "pages/train.py", "pages/weights.py", "pages/draw.py", "pages/runs.py", "pages/errors.py",
         "pages/sweep.py")
HOSTILE_TEXT = "**x** [click](https://example.org) ![p](https://example.org/p.png) <img src=x> :red[r] $x$"
COMMONMARK = MarkdownIt("commonmark")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    return completed_sgd_run(tmp_path_factory.mktemp("source"), epochs=2)


def shown(at) -> list[str]:
    """The Markdown bodies of every text element a page drew."""
    kinds = (at.title, at.header, at.subheader, at.markdown, at.caption, at.info, at.warning, at.error, at.success)
    return [e.value for kind in kinds for e in kind]


def rendered(markdown: str) -> str:
    return COMMONMARK.render(markdown)


def assert_inert(markdown: str) -> None:
    """No link, image or emphasis came out of HOSTILE_TEXT (the pages' own links may stay)."""
    html = rendered(markdown)
    assert 'href="https://example.org' not in html and "<img" not in html and "<strong>x" not in html, html


# --- kind 2: text from a link or a file is shown literally ---------------------------------------

def test_literal_renders_as_the_very_text_given():
    for text in (HOSTILE_TEXT, "# heading", "1. list", "> quote", "a\nb", "`code`", "www.example.org", "&lt;"):
        html = rendered(literal(text))
        assert html.startswith("<p>") and "<a " not in html and "<img" not in html and "<h1>" not in html
        assert "<code>" not in html and "<ol>" not in html and "<blockquote>" not in html


def test_a_link_setting_with_markup_is_refused_and_shown_literally(runs_dir):
    at = open_page("pages/train.py", optimizer=HOSTILE_TEXT)
    [refusal] = [e for e in shown(at) if "Link setting refused" in e]
    assert_inert(refusal)
    assert "example.org" in rendered(refusal), "the value is shown, escaped"
    assert at.selectbox(key="optimizer").value == TrainConfig().optimizer


@pytest.mark.parametrize("status", ["failed", "diverged"])
def test_a_tampered_status_message_is_shown_literally(trained, runs_dir, status):
    run = shutil.copytree(trained, runs_dir / GOOD)
    with_key(run / "status.json", "status", json.dumps(status))
    with_key(run / "status.json", "message", json.dumps(HOSTILE_TEXT))
    at = open_page("pages/train.py", run=GOOD)
    [message] = [e for e in shown(at) if "example.org" in rendered(e)]
    assert_inert(message)


def test_a_tampered_config_value_is_refused_and_the_reason_shown_literally(trained, runs_dir):
    run = shutil.copytree(trained, runs_dir / GOOD)
    config = json.loads((run / "config.json").read_text())
    config["config"]["optimizer"] = HOSTILE_TEXT
    (run / "config.json").write_text(json.dumps(config))
    at = open_page("pages/train.py", run=GOOD)
    [reason] = [e for e in at.error if "cannot be read" in e.value]
    assert_inert(reason.value)
    for page in PAGES:
        for text in shown(open_page(page, run=GOOD)):
            assert_inert(text)


def test_a_learning_rate_that_underflows_in_a_link_is_refused(runs_dir):
    at = open_page("pages/train.py", learning_rate="1e-320")
    assert any("**learning_rate**" in e and "0 in float32" in e for e in shown(at))


# --- kind 1: one bad file never takes a page down -------------------------------------------------

def test_every_page_works_with_a_store_of_hostile_runs(trained, runs_dir):
    shutil.copytree(trained, runs_dir / GOOD)
    ids = {}
    for n, (case, (damage, _)) in enumerate(HOSTILE.items()):
        run = shutil.copytree(trained, runs_dir / f"20000101-000002-{n:06d}")
        damage(run)
        ids[run.name] = case
    for page in PAGES:
        at = open_page(page)
        if page in ("pages/weights.py", "pages/draw.py", "pages/errors.py"):
            assert at.selectbox(key=page.split("/")[1].removesuffix(".py") + "_run").value == GOOD
    at = open_page("pages/runs.py")
    [reasons] = [d.value for d in at.dataframe if "Reason" in d.value.columns]
    assert set(reasons["Run id"]) == set(ids)
    assert not any(str(runs_dir) in r for r in reasons["Reason"])
    for run_id in list(ids)[:5]:
        open_page("pages/train.py", run=run_id)


def test_weights_damaged_behind_an_intact_header_stop_the_page_with_the_reason(trained, runs_dir):
    run = shutil.copytree(trained, runs_dir / GOOD)
    raw = bytearray((run / "weights.npz").read_bytes())
    raw[2000] ^= 0xFF
    (run / "weights.npz").write_bytes(bytes(raw))
    for page in ("pages/weights.py", "pages/draw.py", "pages/errors.py"):
        at = open_page(page)
        assert any("cannot be used" in e.value for e in at.error)


# --- kind 4 and 5 on the pages ------------------------------------------------------------------

def test_the_runs_page_never_prints_the_server_folder(trained, runs_dir):
    shutil.copytree(trained, runs_dir / GOOD)
    broken = shutil.copytree(trained, runs_dir / BROKEN)
    metrics_edit(broken, "test_accuracy", '"high"')
    at = open_page("pages/runs.py")
    assert not any(str(runs_dir) in text for text in shown(at))
    assert not any(str(runs_dir) in str(d.value.to_dict()) for d in at.dataframe)


def test_a_runs_folder_that_is_a_file_breaks_no_page(tmp_path, monkeypatch):
    afile = tmp_path / "runs"
    afile.write_text("not a folder")
    monkeypatch.setenv("SOFTMAX_LAB_RUNS", str(afile))
    for page in PAGES:
        open_page(page)


@pytest.fixture
def read_only_store(tmp_path, trained, monkeypatch) -> Path:
    point = tmp_path / "ro"
    point.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(point)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root")
    try:
        shutil.copytree(trained, point / GOOD)
        subprocess.run(["mount", "-o", "remount,ro", str(point)], check=True)
        monkeypatch.setenv("SOFTMAX_LAB_RUNS", str(point))
        yield point
    finally:
        subprocess.run(["umount", str(point)], check=True)


def test_delete_in_a_read_only_store_shows_why_and_keeps_the_run(read_only_store):
    at = open_page("pages/runs.py")
    at.button(key="runs_delete").click().run()
    at.button(key="runs_delete_confirm").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("Not deleted" in e.value and "Read\\-only file system" in e.value for e in at.error)
    assert (read_only_store / GOOD / "weights.npz").is_file()


# --- kind 6: long histories are drawn from what is shown -------------------------------------------

def test_a_500_epoch_history_is_animated_from_a_sample(trained, runs_dir):
    run = shutil.copytree(trained, runs_dir / GOOD)
    epochs = 500
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    (run / "metrics.jsonl").write_text("".join(json.dumps({**rows[-1], "epoch": e + 1}) + "\n" for e in range(epochs)))
    config = json.loads((run / "config.json").read_text())
    config["config"]["epochs"] = epochs
    (run / "config.json").write_text(json.dumps(config))
    stack = np.random.default_rng(0).normal(size=(epochs, 784, 10)).astype(np.float16)
    np.savez(run / "evolution.npz", W=stack)
    at = open_tab(open_page("pages/weights.py"), "weights_tab", "Epoch by epoch")
    (animated,) = [json.loads(c.proto.spec) for c in at.get("plotly_chart")
                   if json.loads(c.proto.spec).get("frames")]
    names = [frame["name"] for frame in animated["frames"]]
    assert len(names) <= 41 and names[0] == "1" and names[-1] == str(epochs)
    assert [step["label"] for step in animated["layout"]["sliders"][0]["steps"]] == names
    assert animated["layout"]["title"]["text"] == f"Templates after epoch {epochs} of {epochs}"
    np.testing.assert_allclose(array(animated["data"][3]["z"]).astype(np.float32),
                               stack[epochs - 1][:, 3].reshape(28, 28).astype(np.float32), rtol=1e-3)


# --- kind 3 and 5: the server's settings --------------------------------------------------------

def test_the_server_listens_on_localhost_and_shows_error_types_only():
    settings = tomllib.loads((PROJECT / ".streamlit" / "config.toml").read_text())
    assert settings["server"]["address"] == "127.0.0.1"
    assert settings["client"]["showErrorDetails"] == "type"
    readme = (PROJECT / "README.md").read_text()
    assert "--server.address 0.0.0.0" in readme


def test_every_row_of_the_fault_table_names_a_test_that_exists():
    """docs/faults.md promises a test per row: each id it names is one pytest collects."""
    table = (PROJECT / "docs" / "faults.md").read_text()
    named = {line.rsplit("`", 2)[1] for line in table.splitlines() if line.startswith("| ") and "::test_" in line}
    files = sorted({test_id.split("::")[0] for test_id in named})
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *files],
                          capture_output=True, text=True, cwd=PROJECT, timeout=WAIT)
    collected = set(done.stdout.splitlines())
    assert named and not named - collected, sorted(named - collected)
