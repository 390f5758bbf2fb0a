"""Stage manifests: a finished output is recognised, and any change or corruption is caught."""

from __future__ import annotations

from pathlib import Path

import pytest
from subsets_scored import scored_rows, write_scored

from pipelines.core.manifest import MANIFEST, input_fingerprint, read_manifest, verify, write_manifest


@pytest.fixture()
def stage(teacher_labels, tmp_path) -> tuple[Path, Path]:
    """An 'upstream' output with its manifest, and a 'downstream' output built from it."""
    rows = scored_rows(teacher_labels, max_articles=40)
    up = tmp_path / "up"
    write_scored(rows, up, shards=2)
    write_manifest(str(up), "upstream", {"k": 1}, [])
    down = tmp_path / "down"
    write_scored(rows[:50], down, shards=1)
    (down / "down_stats.json").write_text('{"n": 50}')
    write_manifest(str(down), "downstream", {"alpha": 2}, [str(up)])
    return up, down


def test_manifest_records_files_rows_and_versions(stage):
    up, down = stage
    manifest = read_manifest(str(down))
    assert manifest["rows"] == {"scored": 50}
    assert set(manifest["files"]) == {"scored/part-00000-of-00001.parquet", "down_stats.json"}
    assert all(len(f["sha256"]) == 64 and f["size"] > 0 for f in manifest["files"].values())
    assert manifest["schema_version"] == 1 and "+" in manifest["code_version"]
    assert MANIFEST not in manifest["files"]
    assert verify(str(down), config={"alpha": 2}, inputs=[str(up)]).ok


def test_truncated_parquet_is_detected(stage):
    up, down = stage
    part = down / "scored" / "part-00000-of-00001.parquet"
    data = part.read_bytes()
    part.write_bytes(data[: len(data) // 2])
    check = verify(str(down), config={"alpha": 2}, inputs=[str(up)])
    assert not check.ok and "part-00000" in check.reason


def test_same_size_corruption_and_missing_files_are_detected(stage):
    up, down = stage
    stats = down / "down_stats.json"
    stats.write_text('{"n": 51}')
    assert "sha256" in verify(str(down)).reason
    stats.unlink()
    assert "missing" in verify(str(down)).reason


def test_config_and_input_changes_invalidate(stage):
    up, down = stage
    assert verify(str(down), config={"alpha": 3}, inputs=[str(up)]).reason == "config changed"
    before = input_fingerprint([str(up)])
    write_scored(scored_rows_small(up), up, shards=1)  # upstream rewritten differently
    write_manifest(str(up), "upstream", {"k": 1}, [])
    assert input_fingerprint([str(up)]) != before
    assert verify(str(down), config={"alpha": 2}, inputs=[str(up)]).reason == "inputs changed"


def scored_rows_small(up: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(up / "scored" / "part-00000-of-00002.parquet").slice(0, 5).to_pylist()


def test_no_manifest_means_not_finished(tmp_path):
    assert verify(str(tmp_path / "never")).reason == "not run yet"  # a first run reads as one
    (tmp_path / "half").mkdir()
    check = verify(str(tmp_path / "half"))
    assert not check.ok and "unfinished" in check.reason
