"""Which paragraphs the teacher labels: a deterministic, stratified sample (article type, section, language).

Every paragraph gets a uniform draw u = hash(seed, id): the sample depends only on the seed and the
ids, not on file order or sharding, and growing the pool keeps most earlier picks. The size (a count
or a fraction, the paper used ~0.33%) is split over strata proportionally with largest remainders,
so rare strata (case reports, non-English text) keep their share instead of vanishing by chance.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import defaultdict

import pyarrow as pa

SECTION_BUCKETS: tuple[tuple[str, str], ...] = (
    ("case", r"\bcase|patient presentation|clinical presentation"),
    ("abstract", r"abstract|summary"),
    ("introduction", r"introduc|background"),
    ("methods", r"method|material|experimental|procedure|statistic|design|participants|setting"),
    ("results", r"result|finding|outcome"),
    ("discussion", r"discussion|conclusion|limitation|implication|perspective"),
    ("back_matter", r"acknowledg|funding|conflict|competing|contribution|ethic|consent|availability"),
)


def section_bucket(section_title: str | None) -> str:
    """Coarse section family of a section title (IMRaD-like); 'other' when no keyword matches."""
    title = (section_title or "").lower()
    for bucket, pattern in SECTION_BUCKETS:
        if re.search(pattern, title):
            return bucket
    return "other" if title.strip() else "none"


def stratum(row: dict) -> tuple[str, str, str]:
    return (
        row.get("article_type") or "unknown",
        section_bucket(row.get("section_title")),
        row.get("language") or "und",
    )


def uniform_draw(seed: int, key: str) -> float:
    """A reproducible uniform number in [0, 1) for (seed, key)."""
    digest = hashlib.blake2b(f"{seed}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def allocate(sizes: dict, total: int) -> dict:
    """Split `total` over strata proportionally to `sizes` (largest remainders, capped by size)."""
    n = sum(sizes.values())
    total = min(total, n)
    if n == 0 or total == 0:
        return {k: 0 for k in sizes}
    quotas = {k: total * v / n for k, v in sizes.items()}
    alloc = {k: min(sizes[k], math.floor(q)) for k, q in quotas.items()}
    order = sorted(sizes, key=lambda k: (-(quotas[k] - math.floor(quotas[k])), str(k)))
    left = total - sum(alloc.values())
    while left > 0:
        progressed = False
        for k in order:
            if left and alloc[k] < sizes[k]:
                alloc[k] += 1
                left -= 1
                progressed = True
        if not progressed:
            break
    return alloc


def sample_size(n_rows: int, sample: int | None = None, fraction: float | None = None) -> int:
    if sample is not None and fraction is not None:
        raise ValueError("give the sample size as a count or as a fraction, not both")
    if sample is not None:
        if sample < 0:
            raise ValueError(f"sample must be >= 0, got {sample}")
        return min(sample, n_rows)
    if fraction is not None:
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        return min(n_rows, max(1, round(n_rows * fraction)))
    return n_rows


def sample_indices(
    rows: list[dict], sample: int | None = None, fraction: float | None = None, seed: int = 0
) -> list[int]:
    """Sorted indices of a stratified sample of `rows` (dicts: id, article_type, section_title, language)."""
    total = sample_size(len(rows), sample, fraction)
    if total == len(rows):
        return list(range(len(rows)))
    groups: dict[tuple, list[tuple[float, int]]] = defaultdict(list)
    for i, row in enumerate(rows):
        groups[stratum(row)].append((uniform_draw(seed, row["id"]), i))
    alloc = allocate({k: len(v) for k, v in groups.items()}, total)
    picked = [i for k, members in groups.items() for _, i in sorted(members)[: alloc[k]]]
    return sorted(picked)


STRATA_COLUMNS = ["id", "article_type", "section_title", "language"]


def sample_table(
    table: pa.Table, sample: int | None = None, fraction: float | None = None, seed: int = 0
) -> pa.Table:
    """The stratified sample of a paragraphs table (columns missing from the table count as unknown)."""
    cols = [c for c in STRATA_COLUMNS if c in table.column_names]
    rows = table.select(cols).to_pylist()
    return table.take(sample_indices(rows, sample, fraction, seed))
