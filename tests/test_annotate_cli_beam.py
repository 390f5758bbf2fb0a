"""`biomed-enrich annotate` on the command line, and the stage as a Beam pipeline (RunInference)."""

from __future__ import annotations

import pytest
from annotate_helpers import paragraph_rows, read_dead_letters, write_paragraphs
from fake_openai import FAULTS, FakeConfig, FakeOpenAI
from typer.testing import CliRunner

from annotators.annotate import run_annotate
from pipelines.app.cli import app
from pipelines.core.io import read_json, read_table

KEY = "sk-cli-SECRET-7f3a9b21c0"


def test_cli_openai_with_key_file(teacher_labels, tmp_path, caplog):
    rows = paragraph_rows(teacher_labels, limit=30)
    paragraphs = write_paragraphs(rows, tmp_path / "in")
    key_file = tmp_path / "key.txt"
    key_file.write_text(KEY + "\n")
    out = tmp_path / "out"
    with FakeOpenAI(FakeConfig(api_key=KEY, faults={"rate_limit": 0.2}), str(teacher_labels)) as fake:
        result = CliRunner().invoke(
            app,
            [
                "annotate",
                str(paragraphs),
                "--output",
                str(out),
                "--sample",
                "20",
                "--teacher",
                "openai",
                "--base-url",
                fake.base_url,
                "--model",
                "gpt-4o-mini",
                "--api-key-file",
                str(key_file),
                "--concurrency",
                "4",
                "--rpm",
                "6000",
                "--tpm",
                "10000000",
            ],
        )
    assert result.exit_code == 0, result.output
    assert "ledger:" in result.output and "cost $" in result.output
    stats = read_json(str(out / "annotate_stats.json"))
    assert stats["written"] == 20 and stats["ledger"]["cost_usd"] > 0  # gpt-4o-mini has a list price
    assert KEY not in result.output and KEY not in caplog.text


def test_cli_replay_default_and_bad_input(teacher_labels, tmp_path):
    paragraphs = write_paragraphs(paragraph_rows(teacher_labels, limit=100), tmp_path / "in")
    result = CliRunner().invoke(
        app, ["annotate", str(paragraphs), "-o", str(tmp_path / "out"), "--fraction", "0.5"]
    )
    assert result.exit_code == 0, result.output
    assert read_json(str(tmp_path / "out" / "annotate_stats.json"))["read"] == 50
    bad = CliRunner().invoke(
        app, ["annotate", str(paragraphs), "-o", str(tmp_path / "o2"), "--sample", "5", "--fraction", "0.1"]
    )
    assert bad.exit_code == 2 and "not both" in bad.output  # a user error: one line, exit code 2


def test_beam_replay_matches_the_local_run(teacher_labels, tmp_path):
    paragraphs = write_paragraphs(paragraph_rows(teacher_labels, limit=200), tmp_path / "in")
    local = run_annotate([str(paragraphs)], str(tmp_path / "local"), sample=80, seed=2)
    beam = run_annotate([str(paragraphs)], str(tmp_path / "beam"), sample=80, seed=2, use_beam=True)
    assert (beam["written"], beam["dead_letter_reasons"]) == (local["written"], local["dead_letter_reasons"])
    a = read_table([str(tmp_path / "local" / "labels")]).sort_by("id")
    b = read_table([str(tmp_path / "beam" / "labels")]).sort_by("id")
    assert a.select(["id", "document_type", "domain", "educational_score"]).equals(
        b.select(["id", "document_type", "domain", "educational_score"])
    )


@pytest.mark.slow
def test_beam_openai_with_faults_labels_or_dead_letters_everything(teacher_labels, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    rows = paragraph_rows(teacher_labels, limit=60)
    paragraphs = write_paragraphs(rows, tmp_path / "in")
    faults = {f: 0.03 for f in FAULTS if f not in ("timeout",)}
    with FakeOpenAI(FakeConfig(faults=faults, retry_after_s=0.01), str(teacher_labels)) as fake:
        stats = run_annotate(
            [str(paragraphs)],
            str(tmp_path / "out"),
            teacher="openai",
            base_url=fake.base_url,
            model="fake-teacher",
            fraction=1.0,
            use_beam=True,
            timeout=2.0,
        )
        assert sum(fake.faults_sent.values()) > 0
    labels = read_table([str(tmp_path / "out" / "labels")])["id"].to_pylist()
    dead = [d["source"] for d in read_dead_letters(tmp_path / "out")]
    assert sorted(labels + dead) == sorted(r["id"] for r in rows) and stats["read"] == 60
