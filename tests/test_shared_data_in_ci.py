"""Without ../shared a user's clone skips the data tests with the reason; CI (CI=true) fails instead."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NEEDS_LABELS = "tests/test_annotate_units.py::test_prompt_carries_rubric_section_title_path_and_text"


def run_without_shared(ci: str | None, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["BIOMED_ENRICH_SHARED"] = str(tmp_path / "nonexistent")
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", NEEDS_LABELS, "-q", "-rs", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(("ci", "exit_code", "says"), [(None, 0, "1 skipped"), ("true", 1, "1 error")])
def test_missing_shared_data_skips_for_users_and_fails_in_ci(ci, exit_code, says, tmp_path):
    result = run_without_shared(ci, tmp_path)
    assert result.returncode == exit_code, result.stdout + result.stderr
    assert says in result.stdout
    assert "teacher labels not found at" in result.stdout and "BIOMED_ENRICH_SHARED" in result.stdout
