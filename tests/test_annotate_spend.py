"""No silent spend, no silent zero: a paid teacher needs a sample or budget and can dry-run; a teacher
that labels nothing fails. Against the real fake OpenAI server on 127.0.0.1 (tests/fake_openai.py)."""

from __future__ import annotations

import pytest
from annotate_helpers import paragraph_rows, read_dead_letters, write_paragraphs
from fake_openai import FakeConfig, FakeOpenAI
from typer.testing import CliRunner

from annotators.annotate import NothingLabelled, run_annotate
from annotators.budget import SpendGuardError, row_tokens
from annotators.prompts import PROMPT_VERSION
from annotators.teachers.openai_chat import MAX_ANSWER_TOKENS
from pipelines.app.cli import app


@pytest.fixture(scope="module")
def rows(teacher_labels):
    return paragraph_rows(teacher_labels, limit=40)


@pytest.fixture()
def paragraphs(rows, tmp_path):
    return write_paragraphs(rows, tmp_path / "in")


def annotate(paragraphs, out, fake, *extra):
    args = ["annotate", str(paragraphs), "-o", str(out), "--teacher", "openai"]
    args += ["--base-url", fake.base_url, "--model", "gpt-4o-mini", *extra]
    return CliRunner().invoke(app, args)


def test_paid_teacher_without_sample_or_budget_is_refused_before_any_request(
    paragraphs, teacher_labels, tmp_path
):
    with FakeOpenAI(FakeConfig(), str(teacher_labels)) as fake:
        result = annotate(paragraphs, tmp_path / "out", fake)
        batch = CliRunner().invoke(
            app,
            ["annotate", str(paragraphs), "-o", str(tmp_path / "b"), "--teacher", "batch"]
            + ["--base-url", fake.base_url, "--model", "gpt-4o-mini"],
        )
        assert fake.requests == 0 and not fake.auth_headers
    for r in (result, batch):
        assert r.exit_code == 2, r.output
        assert "--sample" in r.output and "--budget-usd" in r.output
    assert not (tmp_path / "out" / "labels").exists()
    with pytest.raises(SpendGuardError):
        run_annotate([str(paragraphs)], str(tmp_path / "x"), teacher="openai", model="m", base_url="http://h")


def test_dry_run_prints_the_estimate_and_sends_nothing(paragraphs, rows, teacher_labels, tmp_path):
    with FakeOpenAI(FakeConfig(), str(teacher_labels)) as fake:
        result = annotate(paragraphs, tmp_path / "out", fake, "--sample", "25", "--dry-run")
        assert fake.requests == 0 and not fake.auth_headers
    assert result.exit_code == 0, result.output
    assert "dry run: would label 25 of 40 paragraphs with gpt-4o-mini" in result.output
    assert "no request sent" in result.output and "$" in result.output
    assert not (tmp_path / "out").exists()
    # The estimate is the sampled paragraphs' prompt sizes at the price table's gpt-4o-mini prices.
    stats = run_annotate(
        [str(paragraphs)], str(tmp_path / "o"), teacher="openai", model="gpt-4o-mini", sample=40, dry_run=True
    )
    plan = stats["estimate"]
    assert plan["input_tokens_estimated"] == sum(row_tokens(r, PROMPT_VERSION, 64)[0] for r in rows)
    assert plan["output_tokens_max"] == 40 * MAX_ANSWER_TOKENS
    expected = (plan["input_tokens_estimated"] * 0.15 + plan["output_tokens_max"] * 0.6) / 1e6
    assert plan["cost_usd_max"] == pytest.approx(expected, abs=1e-6)


def test_budget_stops_spending_at_the_budget(paragraphs, rows, teacher_labels, tmp_path):
    worst = [sum(row_tokens(r, PROMPT_VERSION, MAX_ANSWER_TOKENS)) for r in rows]
    budget = sum(sorted(worst)[:10])  # room for about ten paragraphs of forty
    with FakeOpenAI(FakeConfig(), str(teacher_labels)) as fake:
        # A sample larger than the budget: requests stop at the budget, the rest is dead-lettered.
        stats = run_annotate(
            [str(paragraphs)],
            str(tmp_path / "capped"),
            teacher="openai",
            base_url=fake.base_url,
            model="gpt-4o-mini",
            sample=40,
            budget_tokens=budget,
            concurrency=4,
            progress=False,
        )
        sent = fake.requests
        # A budget alone sizes the sample from the estimate, and it is then labelled within the budget.
        sized = run_annotate(
            [str(paragraphs)],
            str(tmp_path / "sized"),
            teacher="openai",
            base_url=fake.base_url,
            model="gpt-4o-mini",
            budget_tokens=budget,
            progress=False,
        )
    led = stats["ledger"]
    assert 0 < stats["written"] < 40 and sent == stats["written"]
    assert led["input_tokens"] + led["output_tokens"] <= budget
    assert stats["dead_letter_reasons"] == {"budget_exhausted": 40 - stats["written"]}
    assert {d["reason"] for d in read_dead_letters(tmp_path / "capped")} == {"budget_exhausted"}
    assert 0 < sized["read"] < 40 and sized["written"] == sized["read"]
    assert sized["ledger"]["input_tokens"] + sized["ledger"]["output_tokens"] <= budget
    assert sized["ledger"]["budget"] == {"tokens": budget, "usd": None}


def test_budget_usd_caps_the_sample(paragraphs, rows, tmp_path):
    plan = run_annotate(
        [str(paragraphs)], str(tmp_path / "o"), teacher="openai", model="gpt-4o-mini", sample=40, dry_run=True
    )["estimate"]
    half = plan["cost_usd_max"] / 2
    sized = run_annotate(
        [str(paragraphs)],
        str(tmp_path / "o"),
        teacher="openai",
        model="gpt-4o-mini",
        budget_usd=half,
        dry_run=True,
    )["estimate"]
    assert 10 <= sized["paragraphs"] <= 30 and sized["cost_usd_max"] <= half * 1.2


def test_replay_teacher_that_labels_nothing_fails_and_says_what_to_use(rows, tmp_path):
    unknown = [  # paragraphs of articles the packaged recordings do not cover
        dict(
            r,
            text=f"Unrecorded paragraph {i}: {r['text'][::-1]}",
            article_id=f"NEW{i}",
            source=f"new/{i}.xml",
        )
        for i, r in enumerate(rows)
    ]
    paragraphs = write_paragraphs(unknown, tmp_path / "in")
    out = tmp_path / "out"
    with pytest.raises(NothingLabelled, match="no_recording: 40") as err:
        run_annotate([str(paragraphs)], str(out), teacher="replay")
    assert "--teacher openai --base-url" in str(err.value) and "--recordings" in str(err.value)
    assert len(read_dead_letters(out)) == 40  # what happened is kept for inspection
    result = CliRunner().invoke(
        app, ["annotate", str(paragraphs), "-o", str(tmp_path / "cli"), "--sample", "10"]
    )
    assert result.exit_code == 1
    assert "labelled 0 of 10" in result.output and "--recordings" in result.output
