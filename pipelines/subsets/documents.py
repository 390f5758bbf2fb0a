"""Training-subset documents of one article: the pure transforms behind the subsets stage.

An article's rows in, its documents (0..factor copies, filtered, prefixed) and a count record out;
no Beam here, so recipes can be tried on a list of rows and the pipeline only groups and writes.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Callable, Iterable

from pipelines.core.dead_letters import dead_letter
from pipelines.core.schemas import LICENSE_GROUPS
from pipelines.subsets.recipe import Recipe

STAGE = "subsets"


# ---------------------------------------------------------------- pure transforms (one article)


def _canonical(row: dict) -> str:
    """A total order on rows that depends on their content only (never on the order they arrived in)."""
    return json.dumps(row, sort_keys=True, default=str, ensure_ascii=False)


def clean_paragraphs(rows: Iterable[dict]) -> tuple[list[dict], list[tuple[dict, str]]]:
    """Body order (`paragraph_index`, then `id`), each paragraph id once, plus the rows left out and why.

    A row without `paragraph_index` cannot be placed in the article (`missing_paragraph_index`); of
    several rows with one id the one first in content order is kept (`duplicate_paragraph_id` for the
    rest), so the result never depends on input order.
    """
    rejected: list[tuple[dict, str]] = []
    by_id: dict[object, list[dict]] = {}
    for row in rows:
        if row.get("paragraph_index") is None:
            rejected.append((row, "missing_paragraph_index"))
        else:
            by_id.setdefault(row["id"], []).append(row)
    unique = []
    for same in by_id.values():
        same.sort(key=_canonical)
        unique.append(same[0])
        rejected.extend((row, "duplicate_paragraph_id") for row in same[1:])
    rejected.sort(key=lambda x: (x[1], _canonical(x[0])))
    return sorted(unique, key=lambda r: (r["paragraph_index"], str(r["id"]))), rejected


def order_paragraphs(rows: Iterable[dict]) -> list[dict]:
    """Body order, each paragraph id once (see `clean_paragraphs`)."""
    return clean_paragraphs(rows)[0]


def rejected_letters(article_id: str, rows: Iterable[dict]) -> list[dict]:
    """Dead letters for the paragraphs of one article that `clean_paragraphs` leaves out."""
    return [
        dead_letter(STAGE, str(row.get("id")), reason, f"article {article_id}")
        for row, reason in clean_paragraphs(rows)[1]
    ]


def article_factor(rows: list[dict], recipe: Recipe) -> tuple[int, list[str]]:
    """How many times the article is repeated, and the names of the rules it qualified for."""
    matched = [rule for rule in recipe.upsample if rule.qualifies(rows)]
    if not matched:
        return 1, []
    factors = [rule.factor for rule in matched]
    if recipe.combine == "max":
        factor = max(factors)
    elif recipe.combine == "product":
        factor = math.prod(factors)
    else:  # sum: each qualifying rule adds its extra copies
        factor = 1 + sum(f - 1 for f in factors)
    if recipe.max_factor is not None:
        factor = min(factor, recipe.max_factor)
    return factor, [rule.name for rule in matched]


def score_int(score: float | None) -> int | None:
    """The educational score rounded half-up and clamped to 1..5 (the paper bins the regression this way)."""
    if score is None:
        return None
    return int(min(5, max(1, math.floor(float(score) + 0.5))))


def render_paragraph(row: dict, recipe: Recipe) -> str:
    if not recipe.prefix:
        return row["text"]
    fields = {k: ("" if v is None else v) for k, v in row.items()}
    fields["score_int"] = score_int(row.get("educational_score")) or ""
    return recipe.prefix.format(**fields) + row["text"]


def license_group_of(rows: list[dict]) -> str:
    """The article's licence group (all its paragraphs share it); unknown ones go to `other`."""
    groups = Counter(r.get("license_group") for r in rows if r.get("license_group") in LICENSE_GROUPS)
    return groups.most_common(1)[0][0] if groups else "other"


def main_language(rows: list[dict]) -> str | None:
    langs = Counter(r.get("language") for r in rows if r.get("language"))
    return min(langs, key=lambda lang: (-langs[lang], lang)) if langs else None


def article_documents(
    article_id: str,
    rows: Iterable[dict],
    recipe: Recipe,
    count_tokens: Callable[[str], int],
) -> tuple[list[dict], dict]:
    """One article's documents under `recipe` (0..factor copies) and a stats record for it.

    The filter drops paragraphs inside the article; an article left empty yields no document.
    Upsampling rules judge the whole article (`judge_articles_on: all`) or only what the filter kept.
    """
    ordered, rejected = clean_paragraphs(rows)
    kept = [r for r in ordered if recipe.keep(r)]
    factor, rules = article_factor(ordered if recipe.judge_articles_on == "all" else kept, recipe)
    group = license_group_of(ordered)
    stats = {
        "license_group": group,
        "paragraphs_read": len(ordered),
        "paragraphs_kept": len(kept),
        "paragraphs_rejected": dict(Counter(reason for _, reason in rejected)),
        "factor": factor if kept else 0,
        "rules": rules if kept else [],
        "n_tokens": 0,
        "language": main_language(kept),
    }
    if not kept:
        return [], stats
    text = recipe.separator.join(render_paragraph(r, recipe) for r in kept)
    n_tokens = count_tokens(text)
    stats["n_tokens"] = n_tokens
    base = {
        "article_id": article_id,
        "text": text,
        "n_paragraphs": len(kept),
        "n_tokens": n_tokens,
        "license_group": group,
        "language": stats["language"],
        "recipe": recipe.name,
    }
    return [{"id": f"{article_id}_r{k}", **base, "repeat": k} for k in range(factor)], stats


def shuffle_key(seed: int, doc_id: str) -> int:
    """A stable 64-bit position for a document under `seed` (same seed, same order, any runner)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{doc_id}".encode()).digest()[:8], "big")


def num_shards(documents: int, docs_per_shard: int) -> int:
    return max(1, math.ceil(documents / docs_per_shard))


# ---------------------------------------------------------------- counts (summed by core.stats)


def empty_summary() -> dict:
    """The counts every subset summary has, even when no article was read."""
    return {
        "articles_read": 0,
        "paragraphs_read": 0,
        "paragraphs_kept": 0,
        "articles_dropped": 0,
        "groups": {},
        "rules": {},
        "factors": {},
        "languages": {},
        "paragraphs_rejected": {},
    }


def article_summary(stats: dict) -> dict:
    """One article's stats record (from `article_documents`) as counts to add to the subset summary."""
    part = {
        "articles_read": 1,
        "paragraphs_read": stats["paragraphs_read"],
        "paragraphs_kept": stats["paragraphs_kept"],
        "paragraphs_rejected": dict(stats.get("paragraphs_rejected", {})),
    }
    factor = stats["factor"]
    if not factor:
        return {**part, "articles_dropped": 1}
    part["groups"] = {
        stats["license_group"]: {
            "articles": 1,
            "documents": factor,
            "paragraphs": factor * stats["paragraphs_kept"],
            "tokens": factor * stats["n_tokens"],
            "unique_paragraphs": stats["paragraphs_kept"],
            "unique_tokens": stats["n_tokens"],
        }
    }
    part["rules"] = dict(Counter(stats["rules"]))
    part["factors"] = {str(factor): 1}
    if stats.get("language"):
        part["languages"] = {stats["language"]: 1}
    return part


def totals(summary: dict) -> dict:
    """Whole-subset figures: documents, paragraphs and tokens (with repeats) and unique ones."""
    keys = ("articles", "documents", "paragraphs", "tokens", "unique_paragraphs", "unique_tokens")
    return {k: sum(g[k] for g in summary["groups"].values()) for k in keys}
