"""Selection logic of the annotation loop: uncertainty measures, ranking, and the diversity guard."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest

from annotators.active import (
    PoolPredictions,
    diverse_top_k,
    entropy,
    margin_uncertainty,
    select_random,
    select_uncertain,
    uncertainty_scores,
)


def test_entropy_and_margin_bounds():
    probs = np.array([[0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0]])
    assert entropy(probs) == pytest.approx([1.0, 0.0, 0.5], abs=1e-6)
    assert margin_uncertainty(probs) == pytest.approx([1.0, 0.0, 1.0])


def test_uncertain_on_every_head_ranks_first():
    sure, unsure = [0.97, 0.01, 0.01, 0.01], [0.3, 0.3, 0.2, 0.2]
    preds = PoolPredictions(
        document_type_probs=np.array([sure, unsure, sure]),
        domain_probs=np.array([[0.98, 0.01, 0.01], [0.4, 0.3, 0.3], [0.5, 0.5, 0.0]]),
        score_spread=np.array([0.05, 0.9, 0.1]),
    )
    scores = uncertainty_scores(preds)
    assert scores.argmax() == 1 and scores.argmin() == 0
    # dropping the class heads leaves the score spread alone to decide
    only_score = uncertainty_scores(preds, weights=(0, 0, 1))
    assert list(np.argsort(-only_score)) == [1, 2, 0]
    with pytest.raises(ValueError):
        uncertainty_scores(preds, measure="variance")


def test_diversity_guard_caps_articles_and_fills_the_batch(teacher_labels):
    rows = (
        pq.read_table(teacher_labels, columns=["pmcid", "article_file", "section_title"])
        .slice(0, 200)
        .to_pylist()
    )
    articles = [r["pmcid"] or r["article_file"] for r in rows]
    order = list(range(len(rows)))  # real rows come grouped by article: the worst case for diversity
    n_articles = len(set(articles))
    picked = diverse_top_k(order, n_articles, articles)
    assert len({articles[i] for i in picked}) == n_articles  # one per article
    # asking for more than there are articles relaxes the cap instead of returning a short batch
    picked = diverse_top_k(order, n_articles + 10, articles)
    assert len(picked) == n_articles + 10 and len(set(picked)) == len(picked)
    # the section cap: while the caps can be met, two picks of one article come from two sections
    sections = [r["section_title"] for r in rows]
    n_sections = {
        a: len({s for s, b in zip(sections, articles, strict=True) if b == a}) for a in set(articles)
    }
    k = sum(min(2, n) for n in n_sections.values())
    picked = diverse_top_k(order, k, articles, sections, max_per_article=2, max_per_section=1)
    pairs = [(articles[i], sections[i]) for i in picked]
    assert len(picked) == k and len(set(pairs)) == k
    assert max(Counter(articles[i] for i in picked).values()) == 2


def test_select_uncertain_prefers_uncertain_rows_under_the_guard():
    rng = np.random.default_rng(0)
    n = 60
    types = rng.dirichlet(np.ones(4) * 0.3, size=n)
    domains = rng.dirichlet(np.ones(3) * 0.3, size=n)
    spread = rng.random(n)
    articles = [f"a{i // 3}" for i in range(n)]  # 20 articles of 3 paragraphs
    preds = PoolPredictions(types, domains, spread)
    picked = select_uncertain(preds, 10, articles)
    assert len(picked) == 10 and len({articles[i] for i in picked}) == 10
    scores = uncertainty_scores(preds)
    # every pick is the most uncertain paragraph of its article
    for i in picked:
        same = [j for j in range(n) if articles[j] == articles[i]]
        assert scores[i] == max(scores[j] for j in same)
    # and the picked articles are the ones whose best paragraph is the most uncertain
    best_per_article = sorted(
        {a: max(scores[j] for j in range(n) if articles[j] == a) for a in set(articles)}.values()
    )
    assert min(scores[picked]) >= best_per_article[-10]


def test_select_random_is_seeded_and_distinct():
    a = select_random(100, 30, np.random.default_rng(1))
    b = select_random(100, 30, np.random.default_rng(1))
    assert a == b and len(set(a)) == 30
    assert select_random(5, 30, np.random.default_rng(1)) == [0, 1, 2, 3, 4]
