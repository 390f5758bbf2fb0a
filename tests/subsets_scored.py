"""Real paragraphs shaped as a SCORED dataset: the teacher labels' text and labels stand in for the student's.

Articles are the labels' PMCIDs (else file stems), body order comes from the paths, licence groups
from the manifest licences: realistic input for the subsets stage without running the other stages.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.core.io import write_table
from pipelines.core.schemas import DOCUMENT_TYPE_LABELS, DOMAIN_LABELS, SCORED, conform


def path_key(path: str) -> tuple[int, ...]:
    return tuple(int(i) for i in re.findall(r"\[(\d+)\]", path))


def license_group(license_norm: str | None) -> str:
    text = (license_norm or "").upper()
    if "NC" in text:
        return "noncommercial"
    if text.startswith("CC BY") or text.startswith("CC0") or "PUBLIC DOMAIN" in text:
        return "commercial"
    return "other"


def scored_rows(labels_path: Path, max_articles: int | None = None) -> list[dict]:
    labels = pq.read_table(labels_path).to_pylist()
    by_article: dict[str, list[dict]] = {}
    for row in labels:
        article = row["pmcid"] or Path(row["article_file"]).stem
        by_article.setdefault(article, []).append(row)
    rows = []
    for article in sorted(by_article)[:max_articles]:
        for k, r in enumerate(sorted(by_article[article], key=lambda r: path_key(r["path"]))):
            score = float(r["educational_score"])
            rows.append(
                {
                    "id": r["id"],
                    "article_id": article,
                    "path": r["path"],
                    "text": r["text"],
                    "section_title": r["section_title"],
                    "language": r["language"],
                    "language_score": 0.99,
                    "license_group": license_group(r["license"]),
                    "paragraph_index": k,
                    "document_type": r["document_type"],
                    "domain": r["domain"],
                    # A float as the student writes; +-0.3 keeps the label's bin but exercises the >= 3 edge.
                    "educational_score": score + (0.3 if int(r["id"], 16) % 2 else -0.3),
                    "document_type_scores": [float(t == r["document_type"]) for t in DOCUMENT_TYPE_LABELS],
                    "domain_scores": [float(d == r["domain"]) for d in DOMAIN_LABELS],
                    "model_id": "teacher-labels-as-student",
                }
            )
    return rows


def write_scored(rows: list[dict], root: Path, shards: int = 2) -> Path:
    """Write rows as `<root>/scored/part-*.parquet`, shuffled across shards so grouping is really needed."""
    for s in range(shards):
        part = [r for i, r in enumerate(reversed(rows)) if i % shards == s]
        table = conform(pa.Table.from_pylist(part), SCORED)
        write_table(table, str(root), "scored", shard=f"part-{s:05d}-of-{shards:05d}")
    return root / "scored"
