"""Shared test fixtures: where the real sample data lives, skipping cleanly where it does not."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BIOMED_ENRICH_SHARED", REPO.parent / "shared"))
PMC_SAMPLE = SHARED / "data" / "pmc-sample"
LABELS = SHARED / "data" / "labels" / "teacher_labels_v1.parquet"
HOW_TO_GET_SHARED = "clone ../shared beside the repo or set BIOMED_ENRICH_SHARED"


@pytest.fixture(scope="session")
def pmc_sample() -> Path:
    if not (PMC_SAMPLE / "MANIFEST.tsv").exists():
        pytest.skip(f"real PMC sample not found at {PMC_SAMPLE} ({HOW_TO_GET_SHARED})")
    return PMC_SAMPLE


@pytest.fixture(scope="session")
def teacher_labels() -> Path:
    if not LABELS.exists():
        pytest.skip(f"teacher labels not found at {LABELS} ({HOW_TO_GET_SHARED})")
    return LABELS
