"""What changed between a finished corpus and new inputs, decided per article: pure, no IO.

An incremental update must end where one full run on all inputs would: so the copy of an article
kept is chosen with the same ranking as ingest's deduplication (`copy_rank`: version, listed update
time, file time, source name), a retraction listed for a known article flags it like ingest would,
and a paragraph keeps its student scores exactly when the text the student reads is unchanged
(`text_hash`). Functions take plain dicts so they run as well in a Beam DoFn (one article per call)
as over in-memory tables.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

# Change kinds of an article, in the order the change log lists them.
ADDED, UPDATED, RETRACTED, UNCHANGED, SUPERSEDED = "added", "updated", "retracted", "unchanged", "superseded"
KINDS = (ADDED, UPDATED, RETRACTED, UNCHANGED, SUPERSEDED)


def text_hash(text: str | None) -> str:
    """Content hash of what the student scores (the paragraph text only)."""
    return hashlib.sha256((text or "").encode("utf-8", "surrogatepass")).hexdigest()[:32]


def copy_rank(version: int | None, last_updated: str | None, file_updated: str | None, source: str) -> tuple:
    """Latest copy of an article sorts last: version, listed update time, file time, then the source
    name so the choice never depends on input order (ingest's `Candidate.rank` is this)."""
    return (version or 0, last_updated or "", file_updated or "", source or "")


def record_rank(record: dict) -> tuple:
    return copy_rank(
        record.get("version"), record.get("last_updated"), record.get("file_updated"), record.get("source")
    )


def article_record(
    article_id: str,
    rows: list[dict],
    *,
    version: int | None,
    last_updated: str | None,
    file_updated: str | None,
    source: str,
    retracted: bool | None = None,
) -> dict:
    """One row of the `articles` dataset (`schemas.ARTICLES`): the kept copy of an article and what
    ranks it, so a later update can tell whether a new copy replaces it."""
    ordered = sorted(rows, key=lambda r: r["paragraph_index"])
    digest = hashlib.sha256()
    for row in ordered:
        digest.update(f"{row['id']}\t{text_hash(row['text'])}\n".encode())
    flagged = bool(retracted) or any(bool(r.get("retracted")) for r in rows)
    return {
        "article_id": article_id,
        "version": version,
        "last_updated": last_updated,
        "file_updated": file_updated,
        "source": source,
        "retracted": flagged,
        "n_paragraphs": len(rows),
        "content_hash": digest.hexdigest()[:32],
    }


@dataclass
class Decision:
    """What happens to one article: its change kind and which copy the corpus keeps."""

    article_id: str
    kind: str
    keep: str  # "old" | "new" | "none"
    record: dict | None  # the article's state after the update
    retract: bool = False  # keep the old rows but flag them retracted


def decide(article_id: str, old: dict | None, new: dict | None, retracted_listed: bool = False) -> Decision:
    """One article: its record in the corpus (`old`), the latest copy among the new inputs (`new`),
    and whether a new file list marks it retracted.

    A new copy replaces the old one only if it ranks higher (as one full run would choose); a listed
    retraction of a kept article flags its rows (ingest flags, it does not drop: recipes filter on
    `retracted`).
    """
    if old is None:
        if new is None:
            return Decision(article_id, UNCHANGED, "none", None)
        return Decision(article_id, ADDED, "new", new)
    if new is not None and record_rank(new) > record_rank(old):
        kind = RETRACTED if new["retracted"] and not old["retracted"] else UPDATED
        return Decision(article_id, kind, "new", new)
    if retracted_listed and not old["retracted"]:
        return Decision(article_id, RETRACTED, "old", {**old, "retracted": True}, retract=True)
    # a copy ranked below the kept one lost to it; the very same copy delivered again changes nothing
    kind = SUPERSEDED if new is not None and record_rank(new) < record_rank(old) else UNCHANGED
    return Decision(article_id, kind, "old", old)


def latest(records: Iterable[dict]) -> dict | None:
    """The highest-ranked of several records of one article (None if there are none)."""
    ordered = sorted(records, key=record_rank)
    return ordered[-1] if ordered else None


@dataclass
class ScorePlan:
    """Paragraph rows of the new corpus split into those whose scores carry forward and those to score."""

    carried: list[dict] = field(default_factory=list)
    to_score: list[dict] = field(default_factory=list)


def plan_scores(rows: Iterable[dict], old_scores: dict[str, dict], *, rescore: bool = False) -> ScorePlan:
    """Carry a paragraph's scores (and their `model_id`) when an old scored row had the same text hash;
    everything else (new or changed text, or `rescore`) is scored again.

    `old_scores`: text hash -> score columns of a scored row (see `SCORE_COLUMNS`).
    """
    out = ScorePlan()
    for row in rows:
        scores = None if rescore else old_scores.get(text_hash(row["text"]))
        if scores is None:
            out.to_score.append(row)
        else:
            out.carried.append({**row, **scores})
    return out


def paragraph_changes(old: dict[str, str], new: dict[str, str]) -> dict[str, int]:
    """Paragraph ids -> text hash before and after: added, updated (text changed), removed, unchanged."""
    counts = {"added": 0, "updated": 0, "removed": 0, "unchanged": 0}
    for pid, digest in new.items():
        before = old.get(pid)
        key = "added" if before is None else "unchanged" if before == digest else "updated"
        counts[key] += 1
    counts["removed"] = sum(1 for pid in old if pid not in new)
    return counts


def count_kinds(decisions: Iterable[Decision]) -> dict[str, int]:
    counts = dict.fromkeys(KINDS, 0)
    for d in decisions:
        counts[d.kind] += 1
    return counts
