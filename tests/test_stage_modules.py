"""Each Beam stage runs on its own as `python -m <module>`, its flags split from Beam's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.ingest.pipeline import main as ingest_main

ROOT = Path(__file__).resolve().parents[1]
STAGE_MODULES = [
    "pipelines.ingest.pipeline",
    "annotators.annotate",
    "pipelines.propagate",
    "pipelines.subsets.pipeline",
]


@pytest.mark.parametrize("module", STAGE_MODULES)
def test_stage_module_help(module):
    run = subprocess.run(
        [sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.startswith(f"usage: python -m {module}") and "--output" in run.stdout


def test_ingest_main_splits_its_flags_from_beams(pmc_sample, tmp_path):
    articles = sorted(str(p) for p in pmc_sample.glob("*.xml"))[:4]
    beam_flags = ["--direct_num_workers=1", "--direct_running_mode=in_memory"]
    default = ingest_main([*articles, "--output", str(tmp_path / "a"), *beam_flags])
    every = ingest_main([*articles, "-o", str(tmp_path / "b"), "--min-tokens", "0", *beam_flags])
    assert default["articles_read"] == every["articles_read"] == 4
    assert default["min_tokens"] == 64 and every["min_tokens"] == 0
    assert 0 < default["paragraphs_written"] < every["paragraphs_written"]
    assert (tmp_path / "a" / "ingest_stats.json").exists()
