"""Report section for incremental runs: which scored rows came from which student version, and the
change log of the updates applied to the corpus (`run --update` / `--rescore`: pipelines/app/update.py)."""

from __future__ import annotations

import html
from collections import Counter
from pathlib import Path

from pipelines.core.manifest import read_manifest
from pipelines.core.uris import join


def _table(headers: list[str], rows: list[list[object]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def update_rows(updates: list[dict]) -> list[list[object]]:
    """One line per update: when, articles by change kind, paragraphs scored vs carried."""
    rows = []
    for u in updates:
        arts = u.get("ingest", {}).get("articles", {})
        prop = u.get("propagate", {})
        rows.append(
            [
                u.get("at", "?"),
                "rescore" if u.get("rescore") else "update",
                ", ".join(f"{k} {v}" for k, v in arts.items() if v) or "none",
                prop.get("scored", 0),
                prop.get("carried", 0),
                prop.get("removed", 0),
            ]
        )
    return rows


def models_section(root: str | Path, model_ids: list[str] | None) -> str:
    """Rows per model version (always) and the update history (when the corpus was updated)."""
    if not model_ids:
        return ""
    counts = Counter(model_ids)
    total = sum(counts.values())
    parts = [
        "<section><h2>Scores by model version</h2>",
        "<p>Every scored row records the student that scored it (<code>model_id</code>): an update "
        "carries unchanged paragraphs' scores with their model; <code>--rescore</code> scores all again.</p>",
        _table(
            ["model_id", "rows", "share"],
            [[m, n, f"{n / total:.1%}"] for m, n in sorted(counts.items())],
        ),
    ]
    updates = (read_manifest(join(str(root), "ingest")) or {}).get("updates") or []
    if updates:
        parts.append("<h3>Incremental updates</h3>")
        parts.append(
            _table(
                ["at", "kind", "articles", "paragraphs scored", "scores carried", "removed"],
                update_rows(updates),
            )
        )
    parts.append("</section>")
    return "".join(parts)
