"""Taxonomy validation, prompts, soft labels, sampling, cache and ledger: the pure parts of annotate."""

from __future__ import annotations

import json
import math
import sqlite3

import pytest
from annotate_helpers import paragraph_rows

from annotators.cache import AnswerCache, cache_key
from annotators.ledger import Ledger, load_price_table, price_for
from annotators.prompts import RESPONSE_SCHEMA, build_messages, paragraph_from_prompt, rubric
from annotators.sampling import sample_indices, sample_size, section_bucket, stratum
from annotators.taxonomy import (
    DOCUMENT_TYPE_LABELS,
    DOMAIN_LABELS,
    Answer,
    InvalidAnswer,
    normalise_label,
    normalise_score,
    parse_answer,
)
from annotators.teachers.completions import answer_from_completion, soft_labels
from pipelines.core.schemas import DOCUMENT_TYPE_LABELS as SCHEMA_DOCUMENT_TYPES


def test_taxonomy_orders_are_the_schema_orders():
    assert DOCUMENT_TYPE_LABELS == SCHEMA_DOCUMENT_TYPES == ("Study", "Other", "Review", "Clinical case")
    assert DOMAIN_LABELS == ("biomedical", "clinical", "other")
    assert RESPONSE_SCHEMA["schema"]["properties"]["document_type"]["enum"] == list(DOCUMENT_TYPE_LABELS)


@pytest.mark.parametrize(
    ("axis", "raw", "label"),
    [
        ("document_type", "clinical_case", "Clinical case"),
        ("document_type", " STUDY ", "Study"),
        ("document_type", "Case report", "Clinical case"),
        ("domain", "Biomedical", "biomedical"),
    ],
)
def test_labels_are_normalised(axis, raw, label):
    assert normalise_label(axis, raw) == label


@pytest.mark.parametrize("raw", ["Editorial", "", None, 3])
def test_out_of_taxonomy_labels_are_rejected(raw):
    with pytest.raises(InvalidAnswer) as e:
        normalise_label("document_type", raw)
    assert e.value.reason == "out_of_taxonomy"


def test_scores():
    assert normalise_score("4") == 4 and normalise_score(2.0) == 2
    for bad in (0, 6, 2.5, "three", True):
        with pytest.raises(InvalidAnswer):
            normalise_score(bad)


def test_parse_answer_accepts_fenced_and_prose_json_and_rejects_garbage():
    _, a = parse_answer(
        '```json\n{"document_type": "Review", "domain": "clinical", "educational_score": 4}\n```'
    )
    assert (a.document_type, a.domain, a.educational_score) == ("Review", "clinical", 4)
    _, b = parse_answer('Sure! {"document_type": "Other", "domain": "other", "educational_score": "1"} Done.')
    assert b.educational_score == 1
    for content, reason in [
        ('{"document_type": "Review", "domain": ', "invalid_json"),
        ('{"document_type": "Review", "domain": "clinical"}', "missing_field"),
        ("", "empty_answer"),
    ]:
        with pytest.raises(InvalidAnswer) as e:
            parse_answer(content)
        assert e.value.reason == reason


@pytest.mark.parametrize(
    "content",
    [
        'Answer: {"document_type":"Study","domain":"clinical","educational_score":3} (scale {1-5})',
        "Using the rubric {document_type, domain, educational_score}, my answer is "
        '{"document_type": "Study", "domain": "clinical", "educational_score": 3}.',
        'Considering {"note": "methods only"} first. Final: {"document_type": "study", '
        '"domain": "Clinical", "educational_score": "3"} Scores use {1..5}; {"confidence": 0.8}',
        'Here you go:\n```json\n{"answer": {"document_type": "Study", "domain": "clinical", '
        '"educational_score": 3}}\n```\nHope that helps {:}',
    ],
)
def test_parse_answer_finds_the_answer_among_other_braces_in_prose(content):
    obj, answer = parse_answer(content)
    assert (answer.document_type, answer.domain, answer.educational_score) == ("Study", "clinical", 3)
    assert obj["educational_score"] in (3, "3")


def test_parse_answer_in_prose_reports_why_no_object_validates():
    with pytest.raises(InvalidAnswer) as e:
        parse_answer(
            'I think {"document_type": "Editorial", "domain": "clinical", "educational_score": 2} {x}'
        )
    assert e.value.reason == "out_of_taxonomy"
    with pytest.raises(InvalidAnswer) as e:
        parse_answer("Answer: {document_type: Study} (scale {1-5})")
    assert e.value.reason == "invalid_json"


def test_prompt_carries_rubric_section_title_path_and_text(teacher_labels):
    row = paragraph_rows(teacher_labels, limit=1)[0]
    system, user = build_messages(row)
    assert rubric() in system["content"] and "Clinical case" in system["content"]
    assert row["section_title"] in user["content"] and row["path"] in user["content"]
    assert paragraph_from_prompt(user["content"]) == row["text"].strip()


def _tokens(content: str, alternatives: dict[str, list[tuple[str, float]]]) -> list[dict]:
    """Split `content` at the given label tokens (keys) and attach their alternatives."""
    tokens, pos = [], 0
    for tok, alts in alternatives.items():
        at = content.index(tok, pos)
        if at > pos:
            tokens.append({"token": content[pos:at], "logprob": 0.0, "top_logprobs": []})
        tokens.append(
            {
                "token": tok,
                "logprob": math.log(alts[0][1]),
                "top_logprobs": [{"token": t, "logprob": math.log(p)} for t, p in alts],
            }
        )
        pos = at + len(tok)
    tokens.append({"token": content[pos:], "logprob": 0.0, "top_logprobs": []})
    return tokens


def test_soft_labels_from_top_logprobs_including_merged_quote_tokens():
    content = '{"document_type": "Clinical case", "domain": "clinical", "educational_score": 3}'
    tokens = _tokens(
        content,
        {
            ' "Clinical': [(' "Clinical', 0.6), (' "Study', 0.3), (' "Rev', 0.1)],
            "clinical": [("clinical", 0.8), ("bio", 0.2)],
            "3": [("3", 0.5), ("4", 0.4), ("2", 0.1)],
        },
    )
    probs = soft_labels(content, tokens)
    assert probs["document_type"] == pytest.approx([0.3, 0.0, 0.1, 0.6])
    assert probs["domain"] == pytest.approx([0.2, 0.8, 0.0])
    body = {
        "choices": [
            {"message": {"content": content}, "finish_reason": "stop", "logprobs": {"content": tokens}}
        ]
    }
    answer = answer_from_completion(body)
    assert answer.educational_score_expected == pytest.approx(0.1 * 2 + 0.5 * 3 + 0.4 * 4)
    # tokens that do not spell the content: no distribution rather than a wrong one
    assert soft_labels(content, tokens[:-1]) == {}


def test_refusal_and_truncation_reasons():
    refusal = {"choices": [{"message": {"content": None, "refusal": "I can't"}, "finish_reason": "stop"}]}
    cut = {"choices": [{"message": {"content": '{"document_type": "Stu'}, "finish_reason": "length"}]}
    for body, reason in [(refusal, "refusal"), (cut, "truncated")]:
        with pytest.raises(InvalidAnswer) as e:
            answer_from_completion(body)
        assert e.value.reason == reason


def test_sampling_is_deterministic_order_free_and_stratified(teacher_labels, pmc_sample):
    rows = paragraph_rows(teacher_labels, pmc_sample / "MANIFEST.tsv")
    picked = sample_indices(rows, sample=540, seed=7)
    assert len(picked) == 540 and picked == sample_indices(rows, sample=540, seed=7)
    assert picked != sample_indices(rows, sample=540, seed=8)
    reversed_rows = rows[::-1]
    ids = {rows[i]["id"] for i in picked}
    assert {reversed_rows[i]["id"] for i in sample_indices(reversed_rows, sample=540, seed=7)} == ids
    # proportional: every stratum with >= 10 paragraphs keeps its share within one paragraph
    from collections import Counter

    pool, sample = Counter(map(stratum, rows)), Counter(stratum(rows[i]) for i in picked)
    for key, n in pool.items():
        if n >= 10:
            assert abs(sample[key] - n * 540 / len(rows)) <= 1.0, key
    assert sample_size(5400, fraction=0.0033) == 18
    with pytest.raises(ValueError):
        sample_size(10, sample=1, fraction=0.5)


def test_section_buckets():
    assert section_bucket("Materials and Methods") == "methods"
    assert section_bucket("Case presentation") == "case"
    assert section_bucket(None) == "none"


def test_cache_survives_reopen_and_keys_ignore_whitespace(tmp_path):
    path = str(tmp_path / "c.sqlite")
    answer = Answer(
        "Study", "biomedical", 3, domain_probs=[0.7, 0.2, 0.1], input_tokens=100, output_tokens=20
    )
    key = cache_key("m", "v1", "Some  paragraph\ntext")
    assert key == cache_key("m", "v1", "Some paragraph text") != cache_key("m2", "v1", "Some paragraph text")
    cache = AnswerCache(path)
    cache.put(key, answer, "m", "v1")
    # no close(): a second connection (another process after a crash) sees the committed answer
    other = AnswerCache(path)
    assert other.get(key) == answer and other.get_many([key, "nope"]) == {key: answer}
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_ledger_cost_and_percentiles(tmp_path):
    table_path = tmp_path / "prices.json"
    table_path.write_text(json.dumps({"my-model": {"input": 1.0, "output": 4.0}}))
    ledger = Ledger(model="my-model-2025", prices=load_price_table(str(table_path)))
    for i in range(100):
        ledger.record_call(i / 100, input_tokens=1000, output_tokens=100)
    ledger.record_call(0.5, error="rate_limited")
    s = ledger.summary()
    assert s["calls"] == 101 and s["errors"] == {"rate_limited": 1}
    assert s["cost_usd"] == pytest.approx((100_000 * 1.0 + 10_000 * 4.0) / 1e6)
    assert s["latency_s"]["p50"] == pytest.approx(0.495, abs=0.01)
    assert price_for(load_price_table(), "gpt-4o-mini-2024-07-18")["input"] == 0.15
    assert price_for(load_price_table(), "llama-3.1-70b")["input"] == 0.0


def test_rate_limiter_spaces_requests_and_tokens():
    import asyncio

    from annotators.teachers.base import AsyncRateLimiter

    clock = {"now": 0.0}

    async def fake_sleep(seconds: float) -> None:
        clock["now"] += seconds

    async def run(limiter, n, tokens):
        for _ in range(n):
            await limiter.acquire(tokens)

    def limiter(**kw):
        return AsyncRateLimiter(clock=lambda: clock["now"], sleep=fake_sleep, **kw)

    # 600 requests/min = 10/s with a 10 s burst (100): 150 requests need 5 more seconds
    asyncio.run(run(limiter(rpm=600), 150, 0))
    assert clock["now"] == pytest.approx(5.0, abs=0.01)
    # 60,000 tokens/min = 1,000/s with a 10,000 burst: 30 requests of 1,000 tokens need 20 s
    clock["now"] = 0.0
    asyncio.run(run(limiter(tpm=60_000), 30, 1000))
    assert clock["now"] == pytest.approx(20.0, abs=0.01)
