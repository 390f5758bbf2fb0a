"""Extra labelled data for training (e.g. the packaged recorded labels), made safe to mix with a run's own.

Label files from elsewhere may carry another layout (`pmcid`/`article_file` instead of `article_id`)
and may label the very articles the run annotates: mixed in as is, those would be duplicates that can
land on both sides of the held-out split. This keeps only articles the run does not contain, casts the
rows to the LABELS schema, and optionally takes a deterministic sample to bound training time.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.core.io import read_table
from pipelines.core.schemas import LABELS, conform

RECORDED = "recorded"


def _article(row: dict) -> str | None:
    if row.get("article_id"):
        return str(row["article_id"])
    if row.get("pmcid"):
        return str(row["pmcid"])
    return Path(row["article_file"]).stem if row.get("article_file") else None


def _norm(text: str | None) -> str:
    return " ".join((text or "").split())


def select_extra_rows(rows: list[dict], own_articles: set[str], own_texts: set[str]) -> list[dict]:
    """Rows as LABELS dicts, minus those of the run's own articles (by article key or identical text)."""
    out = []
    for r in rows:
        article = _article(r)
        if article in own_articles or _norm(r.get("text")) in own_texts:
            continue
        out.append(
            {
                "id": r["id"],
                "document_type": r["document_type"],
                "domain": r["domain"],
                "educational_score": r["educational_score"],
                "teacher_model": r.get("teacher_model") or RECORDED,
                "prompt_version": r.get("prompt_version") or RECORDED,
                "article_id": article,
                "text": r.get("text"),
                "section_title": r.get("section_title"),
                "path": r.get("path"),
            }
        )
    return out


def sample_rows(rows: list[dict], n: int | None, seed: int = 0) -> list[dict]:
    """At most `n` rows, taken article by article in seeded-hash order (only the last may be cut)."""
    if n is None or len(rows) <= n:
        return rows

    def key(r: dict) -> tuple[bytes, str]:
        # Salted: an unsalted `seed:article` hash is what the trainer's split uses, and taking the
        # smallest hashes would then put nearly every sampled article in its validation/test parts.
        return hashlib.sha256(f"extra-labels:{seed}:{r['article_id'] or r['id']}".encode()).digest(), r["id"]

    return sorted(rows, key=key)[:n]


def prepare_extra_labels(
    sources: list[str], paragraphs: list[str], output: str, *, sample: int | None = None, seed: int = 0
) -> dict:
    """Write the usable extra labels to `output` (one Parquet file) and say what was kept and dropped."""
    own = read_table(paragraphs, columns=["article_id", "text"])
    own_articles = set(own["article_id"].to_pylist())
    own_texts = {_norm(t) for t in own["text"].to_pylist()}
    rows = [r for source in sources for r in read_table([source]).to_pylist()]
    kept = select_extra_rows(rows, own_articles, own_texts)
    chosen = sample_rows(kept, sample, seed)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    table = conform(pa.Table.from_pylist(chosen), LABELS) if chosen else LABELS.empty_table()
    pq.write_table(table, output)
    return {"read": len(rows), "own_articles_dropped": len(rows) - len(kept), "written": len(chosen)}
