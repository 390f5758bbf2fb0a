"""The console layer: log lines never land inside a progress bar, -q hides bars, known noise is dropped,
a real SIGINT/SIGTERM is recognised however a library wrapped it, and thin input fails with its reason."""

from __future__ import annotations

import logging
import os
import shutil
import signal
from pathlib import Path

import pytest
from tqdm import tqdm
from typer.testing import CliRunner

from pipelines.app.cli import app
from pipelines.core import console

DEMO = Path(__file__).resolve().parents[1] / "demo" / "articles"


def test_log_lines_go_above_a_live_bar_and_noise_is_dropped(capsys):
    with console.session():
        bar = tqdm(total=10, desc="work")
        bar.update(3)
        logging.getLogger("some.library").warning("disk almost full")
        logging.getLogger().warning("apitools not found, and bigquery client libraries are not installed")
        console.close_bars()
    err = capsys.readouterr().err
    assert "WARNING: disk almost full\n" in err
    assert [line for line in err.replace("\r", "\n").splitlines() if "disk" in line] == [
        "WARNING: disk almost full"
    ]
    assert "apitools" not in err and "WARNING:root" not in err
    assert bar.disable  # closed: it cannot redraw under the next stage's lines


def test_quiet_hides_bars(capsys):
    with console.session(quiet=True):
        for _ in tqdm(range(5), desc="hidden", disable=False):  # as stages pass disable=not progress
            pass
    assert "hidden" not in capsys.readouterr().err
    assert "TQDM_DISABLE" not in os.environ or os.environ["TQDM_DISABLE"] != "1"


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_real_signal_is_an_interrupt_even_when_wrapped(signum, code):
    with console.catch_interrupts():
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signum)
            signal.sigtimedwait([], 1) if hasattr(signal, "sigtimedwait") else None
        wrapped = RuntimeError("KeyboardInterrupt [while running 'Score']")  # as Beam re-raises it
        with pytest.raises(console.Interrupted) as stop:
            console.raise_if_interrupted(wrapped, where="propagate")
    assert stop.value.exit_code == code and "during propagate" in str(stop.value)
    console.reset_interrupt()
    console.raise_if_interrupted(RuntimeError("a real failure"))  # no signal: nothing to do


def test_empty_and_thin_inputs_fail_with_the_reason(tmp_path):
    (tmp_path / "empty").mkdir()
    thin = tmp_path / "thin"
    thin.mkdir()
    (thin / "notes.txt").write_text("not an article")
    (thin / "PMC6092541.xml").write_bytes((DEMO / "PMC6092541.xml").read_bytes()[:3000])  # truncated
    runner = CliRunner()
    empty = runner.invoke(app, ["ingest", str(tmp_path / "empty"), "-o", str(tmp_path / "o1")])
    assert empty.exit_code == 1
    assert "error: ingest found nothing to read" in empty.stderr and "WARNING:root" not in empty.stderr
    bad = runner.invoke(app, ["ingest", str(thin), "-o", str(tmp_path / "o2")])
    assert bad.exit_code == 1
    summary = [line for line in bad.stderr.splitlines() if line.startswith("ingest: read")]
    assert summary == [
        f"ingest: read 1 articles, wrote 0 paragraphs, dead-lettered 1 (malformed_xml 1) in "
        f"{tmp_path / 'o2' / 'dead_letter'}"
    ]
    assert bad.stderr.strip().splitlines()[-1].startswith("error: ingest wrote no paragraphs from 1 articles")
    shutil.rmtree(tmp_path / "o2")
    allowed = runner.invoke(app, ["ingest", str(thin), "-o", str(tmp_path / "o2"), "--allow-empty"])
    assert allowed.exit_code == 0, allowed.output
