"""Recipes and the pure per-article transform, on real paragraphs with their teacher labels."""

from __future__ import annotations

import pytest
from subsets_scored import scored_rows

from pipelines.subsets.pipeline import (
    article_documents,
    article_factor,
    order_paragraphs,
    score_int,
    shuffle_key,
)
from pipelines.subsets.recipe import PAPER_PRESETS, RecipeError, load_recipe, load_recipes, parse_recipe


def words(text: str) -> int:
    return len(text.split())


@pytest.fixture(scope="module")
def articles(teacher_labels) -> dict[str, list[dict]]:
    by_article: dict[str, list[dict]] = {}
    for row in scored_rows(teacher_labels):
        by_article.setdefault(row["article_id"], []).append(row)
    return by_article


def test_every_paper_preset_loads_and_paper_expands_to_six():
    recipes = load_recipes("paper")
    assert [r.name for r in recipes] == list(PAPER_PRESETS)
    assert load_recipe("be-all").name == "BE-All"  # case-insensitive
    educational = load_recipe("BE-Educational")
    assert [str(c) for c in educational.filter] == ["educational_score >= 3"]
    all_ = load_recipe("BE-All")
    assert {r.name for r in all_.upsample} == {"clinical", "clinical_case", "french"}
    assert all(r.factor == 10 for r in all_.upsample) and all_.prefix and all_.combine == "max"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"filter": ["educational_scor >= 3"]}, "unknown column"),
        ({"filter": ["educational_score => 3"]}, "cannot parse"),
        ({"filter": ["language in fr"]}, "needs a list"),
        ({"upsample": [{"column": "domain", "values": ["clinical"], "factor": 10}]}, "exactly one of"),
        ({"upsample": [{"column": "domain", "values": ["x"], "factor": 0, "count_at_least": 1}]}, "factor"),
        (
            {"upsample": [{"column": "domain", "values": ["x"], "factor": 2, "share_above": 1.5}]},
            "share_above",
        ),
        ({"combine": "min"}, "combine"),
        ({"prefix": "[{domian}] "}, "unknown fields"),
        ({"output_format": "csv"}, "output_format"),
        ({"upsampel": []}, "unknown recipe keys"),
        ({"name": "../escape"}, "name"),
    ],
)
def test_invalid_recipes_fail_with_the_reason(change, message):
    with pytest.raises(RecipeError, match=message):
        parse_recipe({"name": "x", **change})


def test_missing_recipe_file_names_the_presets(tmp_path):
    with pytest.raises(RecipeError, match="BE-Educational"):
        load_recipe(str(tmp_path / "nope.yaml"))


def test_documents_keep_body_order_and_whole_paragraphs(articles):
    recipe = load_recipe("BE-Base")
    article_id, rows = max(articles.items(), key=lambda kv: len(kv[1]))
    shuffled = list(reversed(rows)) + rows[:1]  # out of order, one duplicate
    docs, stats = article_documents(article_id, shuffled, recipe, words)
    expected = [r["text"] for r in sorted(rows, key=lambda r: r["paragraph_index"])]
    assert len(docs) == 1 and docs[0]["repeat"] == 0
    assert docs[0]["text"].split("\n\n") == expected
    assert docs[0]["n_paragraphs"] == len(expected) == stats["paragraphs_read"]
    assert docs[0]["n_tokens"] == sum(words(t) for t in expected)


def test_duplicate_ids_and_missing_index_do_not_make_output_depend_on_input_order(articles):
    """A duplicated id with different labels kept the article as [a, b] and dropped it as [b, a];
    a null paragraph_index raised. Now: the same documents and stats in any order, rejects counted."""
    recipe = load_recipe("BE-Educational")
    article_id, rows = max(articles.items(), key=lambda kv: len(kv[1]))
    rows = [dict(r, educational_score=1.0) for r in rows]  # nothing qualifies on its own...
    twin = dict(rows[0], educational_score=4.0)  # ...except one copy of a duplicated id
    unplaced = dict(rows[1], id="no-index", paragraph_index=None)
    orders = (
        [twin, *rows, unplaced],
        [unplaced, *reversed(rows), twin],
        [*rows[::2], twin, unplaced, *rows[1::2]],
    )
    results = [article_documents(article_id, order, recipe, words) for order in orders]
    assert all(r == results[0] for r in results[1:])
    docs, stats = results[0]
    assert stats["paragraphs_rejected"] == {"duplicate_paragraph_id": 1, "missing_paragraph_index": 1}
    assert stats["paragraphs_read"] == len(rows)
    assert len(docs) <= 1 and all(d["n_paragraphs"] == 1 for d in docs)


def test_educational_filter_drops_low_paragraphs_inside_articles(articles):
    recipe = load_recipe("BE-Educational")
    emptied = kept_some = 0
    for article_id, rows in articles.items():
        docs, _ = article_documents(article_id, rows, recipe, words)
        high = [r["text"] for r in order_paragraphs(rows) if r["educational_score"] >= 3]
        if not high:
            assert docs == []
            emptied += 1
        else:
            assert docs[0]["text"].split("\n\n") == high
            kept_some += 1
    assert emptied and kept_some  # the real labels exercise both cases


def test_clinical_rule_is_a_strict_majority_of_paragraphs(articles):
    recipe = load_recipe("BE-Clinical")
    seen = set()
    for rows in articles.values():
        share = sum(r["domain"] == "clinical" for r in rows) / len(rows)
        factor, rules = article_factor(rows, recipe)
        assert factor == (10 if share > 0.5 else 1)
        assert rules == (["clinical"] if share > 0.5 else [])
        seen.add((share > 0.5, share == 0.5))
    assert (True, False) in seen and (False, False) in seen


def test_clinical_case_and_french_rules(articles):
    case = load_recipe("BE-ClinicalCase")
    french = load_recipe("BE-French")
    portuguese = parse_recipe(
        {
            "name": "pt",
            "upsample": [{"column": "language", "values": ["pt"], "count_at_least": 1, "factor": 4}],
        }
    )
    n_case = n_pt = 0
    for rows in articles.values():
        has_case = any(r["document_type"] == "Clinical case" for r in rows)
        has_pt = any(r["language"] == "pt" for r in rows)
        assert article_factor(rows, case)[0] == (10 if has_case else 1)
        assert article_factor(rows, french)[0] == 1  # the sample has no French paragraph
        assert article_factor(rows, portuguese)[0] == (4 if has_pt else 1)
        n_case += has_case
        n_pt += has_pt
    assert n_case > 10 and n_pt > 3


def test_factors_combine_as_configured(articles):
    rows = next(
        rows
        for rows in articles.values()
        if any(r["document_type"] == "Clinical case" for r in rows)
        and sum(r["domain"] == "clinical" for r in rows) / len(rows) > 0.5
    )
    rules = [
        {"name": "a", "column": "domain", "values": ["clinical"], "share_above": 0.5, "factor": 3},
        {
            "name": "b",
            "column": "document_type",
            "values": ["Clinical case"],
            "count_at_least": 1,
            "factor": 5,
        },
    ]
    expected = {"max": 5, "product": 15, "sum": 7}
    for combine, factor in expected.items():
        assert (
            article_factor(rows, parse_recipe({"name": "x", "upsample": rules, "combine": combine}))[0]
            == factor
        )
    capped = parse_recipe({"name": "x", "upsample": rules, "combine": "product", "max_factor": 8})
    assert article_factor(rows, capped) == (8, ["a", "b"])


def test_judging_on_kept_paragraphs_differs_from_all(articles):
    rule = {
        "name": "case",
        "column": "document_type",
        "values": ["Clinical case"],
        "count_at_least": 1,
        "factor": 2,
    }
    on_all = parse_recipe({"name": "a", "filter": ["educational_score >= 3"], "upsample": [rule]})
    on_kept = parse_recipe({**on_all.source, "judge_articles_on": "kept"})
    differs = 0
    for article_id, rows in articles.items():
        kept_cases = any(r["document_type"] == "Clinical case" and r["educational_score"] >= 3 for r in rows)
        docs, _ = article_documents(article_id, rows, on_kept, words)
        if docs:
            assert len(docs) == (2 if kept_cases else 1)
            differs += len(docs) != len(article_documents(article_id, rows, on_all, words)[0])
    assert differs > 0


def test_metadata_prefix_names_each_paragraphs_labels(articles):
    recipe = load_recipe("BE-All")
    article_id, rows = next(
        (a, r) for a, r in articles.items() if any(x["educational_score"] >= 3 for x in r)
    )
    docs, _ = article_documents(article_id, rows, recipe, words)
    kept = [r for r in order_paragraphs(rows) if r["educational_score"] >= 3]
    for paragraph, row in zip(docs[0]["text"].split("\n\n"), kept, strict=True):
        assert paragraph == (
            f"[type: {row['document_type']} | domain: {row['domain']} | educational score: "
            f"{score_int(row['educational_score'])}] {row['text']}"
        )


def test_score_rounding_and_shuffle_key():
    assert [score_int(x) for x in (0.2, 2.49, 2.5, 3.7, 5.4)] == [1, 2, 3, 4, 5]
    assert shuffle_key(0, "PMC1_r0") == shuffle_key(0, "PMC1_r0")
    assert shuffle_key(0, "PMC1_r0") != shuffle_key(1, "PMC1_r0")
