"""Which paragraphs to send to the teacher next: pure selection logic for the annotation loop.

The student's outputs on the unlabelled pool come from MC-dropout on its heads (several forward
passes with dropout on): the mean class distributions give the uncertainty of the class heads,
the spread (standard deviation) of the passes' score predictions gives the uncertainty of the
score head. A spread is used instead of the distance to a score boundary because a regression
head has no calibrated notion of "close to 2.5"; disagreement between passes measures how
weakly the labels so far pin the prediction down (an ensemble of refitted heads would give a
similar signal at one fit per member).

The three signals live on different scales, so each is turned into a percentile rank over the
pool and the ranks are averaged: a paragraph is "least sure" when it is uncertain on several
heads, and no single head's units dominate. A diversity guard then walks the ranking and caps
how many paragraphs one article (and one section title within it) may contribute per round, so a
single hard article (a long case report, say) cannot fill the batch with near-duplicates.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

STRATEGIES = ("random", "uncertainty")
UNCERTAINTY_MEASURES = ("entropy", "margin")


@dataclass(frozen=True)
class PoolPredictions:
    """Student outputs on the unlabelled pool (one row per candidate paragraph)."""

    document_type_probs: np.ndarray  # (n, n_types), rows sum to 1
    domain_probs: np.ndarray  # (n, n_domains), rows sum to 1
    score_spread: np.ndarray  # (n,), e.g. std of the score over MC-dropout passes

    def __post_init__(self) -> None:
        n = len(self.score_spread)
        if self.document_type_probs.shape[0] != n or self.domain_probs.shape[0] != n:
            raise ValueError(
                "document_type_probs, domain_probs and score_spread must have one row per candidate"
            )


def entropy(probs: np.ndarray) -> np.ndarray:
    """Normalised Shannon entropy of each row, in [0, 1] (1 = uniform)."""
    probs = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)
    k = probs.shape[1]
    return -(probs * np.log(probs)).sum(axis=1) / np.log(k) if k > 1 else np.zeros(len(probs))


def margin_uncertainty(probs: np.ndarray) -> np.ndarray:
    """1 - (top-1 minus top-2 probability) per row, in [0, 1] (1 = a tie between the two best labels)."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.shape[1] < 2:
        return np.zeros(len(probs))
    top2 = np.sort(probs, axis=1)[:, -2:]
    return 1.0 - (top2[:, 1] - top2[:, 0])


def percentile_rank(values: np.ndarray) -> np.ndarray:
    """Rank of each value among all, scaled to [0, 1]; ties share their mean rank."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if n <= 1:
        return np.zeros(n)
    from scipy.stats import rankdata

    return (rankdata(values, method="average") - 1.0) / (n - 1)


def uncertainty_scores(
    predictions: PoolPredictions,
    *,
    measure: str = "entropy",
    weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> np.ndarray:
    """One scalar per candidate, higher = less sure: weighted mean of per-head percentile ranks.

    `weights` are for (document_type, domain, score); a zero weight drops that head.
    """
    if measure not in UNCERTAINTY_MEASURES:
        raise ValueError(f"unknown uncertainty measure {measure!r}; expected one of {UNCERTAINTY_MEASURES}")
    per_class = entropy if measure == "entropy" else margin_uncertainty
    signals = (
        per_class(predictions.document_type_probs),
        per_class(predictions.domain_probs),
        np.asarray(predictions.score_spread, dtype=np.float64),
    )
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (3,) or (w < 0).any() or w.sum() == 0:
        raise ValueError(f"weights must be three non-negative numbers, not all zero; got {weights}")
    ranks = np.stack([percentile_rank(s) for s in signals])
    return (w[:, None] * ranks).sum(axis=0) / w.sum()


def diverse_top_k(
    order: Sequence[int],
    k: int,
    articles: Sequence[str],
    sections: Sequence[str | None] | None = None,
    *,
    max_per_article: int = 1,
    max_per_section: int = 1,
) -> list[int]:
    """Walk `order` (best first) and keep up to `k` indices, capping picks per article and per
    (article, section) within this round. If the caps leave fewer than `k`, the caps are raised
    one step at a time, so the batch is always full while candidates remain."""
    if k <= 0:
        return []
    chosen: list[int] = []
    taken: set[int] = set()
    per_article: Counter[str] = Counter()
    per_section: Counter[tuple[str, str | None]] = Counter()
    cap_a, cap_s = max(1, max_per_article), max(1, max_per_section)
    while len(chosen) < k and len(taken) < len(order):
        for i in order:
            if len(chosen) >= k:
                break
            if i in taken:
                continue
            a = articles[i]
            s = (a, sections[i] if sections is not None else None)
            if per_article[a] >= cap_a or per_section[s] >= cap_s:
                continue
            chosen.append(i)
            taken.add(i)
            per_article[a] += 1
            per_section[s] += 1
        cap_a += 1
        cap_s += 1
    return chosen


def select_uncertain(
    predictions: PoolPredictions,
    k: int,
    articles: Sequence[str],
    sections: Sequence[str | None] | None = None,
    *,
    measure: str = "entropy",
    weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
    max_per_article: int = 1,
    max_per_section: int = 1,
) -> list[int]:
    """Indices (into the pool) of the `k` least-sure candidates under the diversity guard."""
    scores = uncertainty_scores(predictions, measure=measure, weights=weights)
    # Stable sort on the negated score: ties keep pool order, so selection is deterministic.
    order = np.argsort(-scores, kind="stable").tolist()
    return diverse_top_k(
        order, k, articles, sections, max_per_article=max_per_article, max_per_section=max_per_section
    )


def select_random(n: int, k: int, rng: np.random.Generator) -> list[int]:
    """`k` distinct pool indices drawn uniformly (the baseline every pipeline uses)."""
    return sorted(rng.choice(n, size=min(k, n), replace=False).tolist())
