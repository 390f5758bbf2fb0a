"""Helpers of the annotate tests: real paragraphs (from the real teacher labels) as a PARAGRAPHS dataset."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.core.schemas import PARAGRAPHS, conform


def paragraph_rows(labels_path: Path, manifest: Path | None = None, limit: int | None = None) -> list[dict]:
    """Paragraph rows (ingest conventions: article_id = PMCID, path, source = file) from the labels file."""
    article_types = {}
    if manifest and manifest.exists():
        with open(manifest, encoding="utf-8") as f:
            article_types = {r["file"]: r["article_type"] for r in csv.DictReader(f, delimiter="\t")}
    rows = []
    for i, r in enumerate(pq.read_table(labels_path).to_pylist()[:limit]):
        article_id = r["pmcid"] or r["article_file"].removesuffix(".xml")
        rows.append(
            {
                "id": hashlib.sha256(f"{article_id}/{r['path']}".encode()).hexdigest()[:16],
                "article_id": article_id,
                "path": r["path"],
                "text": r["text"],
                "section_title": r["section_title"],
                "language": r["language"],
                "article_type": article_types.get(r["article_file"]),
                "license_url": r["license"],
                "paragraph_index": i,
                "source": f"pmc-sample/{r['article_file']}",
            }
        )
    return rows


def write_paragraphs(rows: list[dict], root: Path, shards: int = 1) -> Path:
    out = root / "paragraphs"
    out.mkdir(parents=True, exist_ok=True)
    size = -(-len(rows) // shards)
    for k in range(shards):
        table = conform(pa.Table.from_pylist(rows[k * size : (k + 1) * size]), PARAGRAPHS)
        pq.write_table(table, out / f"part-{k:05d}.parquet")
    return out


def read_dead_letters(output: Path) -> list[dict]:
    import json

    return [
        json.loads(line)
        for f in sorted((output / "dead_letter").glob("annotate-*.jsonl"))
        for line in f.read_text().splitlines()
        if line.strip()
    ]
