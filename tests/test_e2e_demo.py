"""`biomed-enrich demo` exactly as the README runs it (slow: the full 30 articles; run with -m slow)."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipelines.app.cli import app
from pipelines.subsets.recipe import PAPER_PRESETS

pytestmark = pytest.mark.slow


def test_demo_command_runs_every_stage_then_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv("BIOMED_ENRICH_CACHE", str(tmp_path / "cache"))  # as on a fresh machine
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--output", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    stages = json.loads((out / "_run.json").read_text())["stages"]
    assert {s: stages[s]["status"] for s in stages} == {
        s: "done" for s in ("ingest", "annotate", "train", "propagate", "subsets", "report")
    }
    articles = {r["article_id"] for r in pq.read_table(out / "ingest" / "paragraphs").to_pylist()}
    assert len(articles) == 30
    subsets = json.loads((out / "subsets" / "subsets_stats.json").read_text())["subsets"]
    assert set(subsets) == set(PAPER_PRESETS)
    assert subsets["BE-Base"]["articles"] == 30
    assert subsets["BE-ClinicalCase"]["documents"] > subsets["BE-Base"]["documents"]
    assert (out / "report.html").stat().st_size > 50_000

    again = CliRunner().invoke(app, ["demo", "--output", str(out), "--quiet"])
    assert again.exit_code == 0, again.output
    stages = json.loads((out / "_run.json").read_text())["stages"]
    assert all(
        stages[s]["status"] == "skipped" for s in ("ingest", "annotate", "train", "propagate", "subsets")
    )
