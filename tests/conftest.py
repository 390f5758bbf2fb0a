"""Shared test fixtures: where the real sample data lives.

In a user's clone without ../shared the tests that need it skip with the reason; in CI (`CI=true`,
which always has ../shared) a missing file is a failure, so a broken checkout cannot pass as skips.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `-n 2`: two test processes share the cores; one math thread each instead of two fighting for them
    # (set before torch is imported anywhere; inherited by the Beam and Dask workers the tests start)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

# bf16 autocast is the training and scoring default where the CPU has it natively (AVX512-BF16/AMX):
# pin detection off so a test compares the same fp32 numbers on every CPU (tests of bf16 set it themselves)
os.environ.setdefault("BIOMED_ENRICH_NATIVE_BF16", "0")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BIOMED_ENRICH_SHARED", REPO.parent / "shared"))
PMC_SAMPLE = SHARED / "data" / "pmc-sample"
LABELS = SHARED / "data" / "labels" / "teacher_labels_v2.parquet"
HOW_TO_GET_SHARED = "clone ../shared beside the repo or set BIOMED_ENRICH_SHARED"


def require_shared(path: Path, what: str) -> Path:
    """`path` if it exists; else skip (a user's clone) or fail (CI=true: there ../shared always exists)."""
    if path.exists():
        return path
    message = f"{what} not found at {path} ({HOW_TO_GET_SHARED})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI: {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def pmc_sample() -> Path:
    require_shared(PMC_SAMPLE / "MANIFEST.tsv", "real PMC sample")
    return PMC_SAMPLE


@pytest.fixture(scope="session")
def teacher_labels() -> Path:
    return require_shared(LABELS, "teacher labels")


# The S3 and GCS servers (session-scoped, started only when a test asks for them).
from objectstores import object_stores  # noqa: E402, F401
