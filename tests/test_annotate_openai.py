"""The live `openai` teacher against a real HTTP fake server with injected faults (tests/fake_openai.py)."""

from __future__ import annotations

import logging

import pyarrow.parquet as pq
import pytest
from annotate_helpers import paragraph_rows, read_dead_letters, write_paragraphs
from fake_openai import FAULTS, FakeConfig, FakeOpenAI

from annotators.annotate import label_paragraphs, run_annotate
from annotators.cache import AnswerCache, text_sha256
from annotators.ledger import Ledger
from annotators.teachers import TeacherError
from annotators.teachers.base import retry_after_seconds
from annotators.teachers.openai_chat import OpenAITeacher
from pipelines.core.schemas import LABELS

KEY = "sk-test-Zq81SECRETkey0042xy"


@pytest.fixture(scope="module")
def rows(teacher_labels):
    return paragraph_rows(teacher_labels, limit=120)


def teacher(fake: FakeOpenAI, **kw) -> OpenAITeacher:
    kw = {"timeout": 0.5, "backoff_s": 0.005, "backoff_max_s": 0.05, "concurrency": 8, **kw}
    return OpenAITeacher("fake-teacher", fake.base_url, KEY, **kw)


def test_every_paragraph_ends_labelled_or_dead_lettered_once_under_all_faults(rows, teacher_labels):
    always = {  # these paragraphs fail the same way on every attempt
        text_sha256(rows[0]["text"]): "refusal",
        text_sha256(rows[1]["text"]): "out_of_taxonomy",
        text_sha256(rows[2]["text"]): "server_error",
        text_sha256(rows[3]["text"]): "malformed_json",
        text_sha256(rows[4]["text"]): "length",
    }
    config = FakeConfig(faults={f: 0.03 for f in FAULTS}, always=always, timeout_s=1.0, retry_after_s=0.01)
    duplicated = rows + [dict(rows[10])]  # the same id twice
    with FakeOpenAI(config, str(teacher_labels)) as fake:
        ledger = Ledger(model="fake-teacher")
        result = label_paragraphs(duplicated, teacher(fake, max_attempts=4, max_invalid=2), None, ledger)
        assert set(fake.faults_sent) >= {
            "rate_limit",
            "server_error",
            "timeout",
            "truncated_stream",
            "malformed_body",
        }
    labelled = [r["id"] for r in result.labels]
    dead = {d["source"]: d["reason"] for d in result.dead_letters if d["reason"] != "duplicate_id"}
    assert len(labelled) == len(set(labelled)) and not set(labelled) & set(dead)
    assert set(labelled) | set(dead) == {r["id"] for r in rows}
    assert [d["reason"] for d in result.dead_letters].count("duplicate_id") == 1
    assert dead == {
        rows[0]["id"]: "refusal",
        rows[1]["id"]: "out_of_taxonomy",
        rows[2]["id"]: "server_error",
        rows[3]["id"]: "invalid_json",
        rows[4]["id"]: "truncated",
    }
    # answers are the recorded labels of these real paragraphs, with soft labels from logprobs
    recorded = {r["text"]: r for r in pq.read_table(teacher_labels).to_pylist()}
    for label in result.labels:
        truth = recorded[label["text"]]
        assert (label["document_type"], label["domain"], label["educational_score"]) == (
            truth["document_type"],
            truth["domain"],
            truth["educational_score"],
        )
        assert label["domain_probs"][list(("biomedical", "clinical", "other")).index(label["domain"])] == max(
            label["domain_probs"]
        )
        assert 1 <= label["educational_score_expected"] <= 5
    summary = ledger.summary()
    assert summary["retries"] > 0 and summary["input_tokens"] > 0 and summary["errors"]


def test_retry_after_is_honoured(rows, teacher_labels):
    sha = text_sha256(rows[0]["text"])
    config = FakeConfig(retry_after_s=0.2, seed=3)
    with FakeOpenAI(config, str(teacher_labels)) as fake:
        fake.config.always = {sha: "rate_limit"}
        t = teacher(fake, max_attempts=3)
        result = label_paragraphs(rows[:1], t, None, Ledger())
    times = [when for s, _, when in fake.history if s == sha]
    assert result.dead_letters[0]["reason"] == "rate_limited" and len(times) == 3
    assert all(b - a >= 0.19 for a, b in zip(times, times[1:], strict=False))
    assert retry_after_seconds({"retry-after-ms": "1500"}) == 1.5
    assert retry_after_seconds({"retry-after": "7"}) == 7.0


def test_falls_back_when_structured_output_and_logprobs_are_unsupported(rows, teacher_labels):
    config = FakeConfig(json_schema=False, logprobs=False)
    with FakeOpenAI(config, str(teacher_labels)) as fake:
        t = teacher(fake)
        result = label_paragraphs(rows[:20], t, None, Ledger())
    assert len(result.labels) == 20 and not result.dead_letters
    assert t.mode == "json_object" and t.logprobs is False
    assert all(label["domain_probs"] is None for label in result.labels)


def test_concurrency_is_bounded(rows, teacher_labels):
    with FakeOpenAI(FakeConfig(latency_s=0.01), str(teacher_labels)) as fake:
        result = label_paragraphs(rows[:60], teacher(fake, concurrency=5), None, Ledger())
        assert len(result.labels) == 60 and 1 < fake.max_in_flight <= 5


def test_cache_makes_a_rerun_free(rows, teacher_labels, tmp_path):
    with FakeOpenAI(FakeConfig(), str(teacher_labels)) as fake:
        cache = AnswerCache(str(tmp_path / "cache.sqlite"))
        first = label_paragraphs(rows[:30], teacher(fake), cache, Ledger())
        calls = fake.requests
        ledger = Ledger()
        again = label_paragraphs(rows[:30], teacher(fake), cache, ledger)
        assert fake.requests == calls and ledger.cache_hits == 30
    assert again.labels == first.labels


def test_api_key_never_appears_in_logs_errors_or_outputs(
    rows, teacher_labels, tmp_path, caplog, capsys, monkeypatch
):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    paragraphs = write_paragraphs(rows[:40], tmp_path / "in")
    config = FakeConfig(faults={"server_error": 0.2, "refusal": 0.2, "out_of_taxonomy": 0.2}, api_key=KEY)
    out = tmp_path / "out"
    with FakeOpenAI(config, str(teacher_labels)) as fake:
        stats = run_annotate(
            [str(paragraphs)],
            str(out),
            teacher="openai",
            base_url=fake.base_url,
            model="fake-teacher",
            fraction=1.0,
            max_invalid=0,
            max_attempts=2,
            backoff_s=0.001,
        )
        assert f"Bearer {KEY}" in fake.auth_headers  # the key was used...
        assert stats["written"] > 0 and stats["dead_lettered"] > 0
        monkeypatch.setenv("OPENAI_API_KEY", KEY[::-1])  # ...and a wrong one stops the run without echoing it
        with pytest.raises(TeacherError) as wrong:
            run_annotate(
                [str(paragraphs)],
                str(tmp_path / "wrong"),
                teacher="openai",
                base_url=fake.base_url,
                model="fake-teacher",
                fraction=1.0,
            )
    captured = capsys.readouterr()
    texts = [caplog.text, captured.out, captured.err, str(wrong.value), repr(wrong.value)]
    texts += [p.read_bytes().decode("latin-1") for p in out.rglob("*") if p.is_file()]
    for text in texts:
        assert KEY not in text and KEY[::-1] not in text and KEY[:12] not in text
    labels = pq.read_table(next((out / "labels").glob("*.parquet")))
    assert labels.schema.equals(LABELS, check_metadata=False)
    assert stats["written"] + stats["dead_lettered"] == stats["read"] == 40
    assert len(read_dead_letters(out)) == stats["dead_lettered"]


def test_missing_key_for_openai_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("BIOMED_ENRICH_API_KEY", raising=False)
    with pytest.raises(TeacherError, match="OPENAI_API_KEY"):
        OpenAITeacher("gpt-4o-mini", None, None)
