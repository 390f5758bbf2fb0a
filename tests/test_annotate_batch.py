"""The Batch API teacher against the fake server: request files, submit, poll, ingest, retry, resume."""

from __future__ import annotations

import json

import pytest
from annotate_helpers import paragraph_rows
from fake_openai import FakeConfig, FakeOpenAI

from annotators.annotate import label_paragraphs
from annotators.cache import text_sha256
from annotators.ledger import Ledger
from annotators.teachers.batch import BatchTeacher


def test_batch_labels_everything_retries_invalid_and_resumes(teacher_labels, tmp_path):
    rows = paragraph_rows(teacher_labels, limit=40)
    always = {text_sha256(rows[0]["text"]): "refusal"}
    config = FakeConfig(
        faults={"server_error": 0.1, "out_of_taxonomy": 0.1}, always=always, batch_polls=2, seed=5
    )
    with FakeOpenAI(config, str(teacher_labels)) as fake:

        def batch_teacher() -> BatchTeacher:
            return BatchTeacher(
                "fake-teacher",
                fake.base_url,
                "sk-batch",
                workdir=str(tmp_path / "batch"),
                poll_interval_s=0.01,
                max_rounds=4,
            )

        teacher = batch_teacher()
        ledger = Ledger(model="fake-teacher", price_factor=teacher.price_factor)
        result = label_paragraphs(rows, teacher, None, ledger)
        first = len(fake.batches)
        assert first >= 2  # invalid answers and failed requests went into a follow-up batch
        dead = {d["source"]: d["reason"] for d in result.dead_letters}
        assert dead[rows[0]["id"]] == "refusal"  # refused on every round: dead-lettered with the reason
        assert set(dead.values()) <= {"refusal", "out_of_taxonomy", "server_error"}
        assert len(result.labels) + len(dead) == 40 and len(result.labels) >= 35
        assert all(label["domain_probs"] for label in result.labels)
        requests = [
            json.loads(x) for x in (tmp_path / "batch" / "requests-r0-00000.jsonl").read_text().splitlines()
        ]
        assert (
            requests[0]["url"] == "/v1/chat/completions"
            and requests[0]["body"]["response_format"]["type"] == "json_schema"
        )
        # rerun with the same requests: the recorded batches are resumed, nothing is submitted again
        again = label_paragraphs(
            rows,
            batch_teacher(),
            None,
            Ledger(),
        )
        assert len(fake.batches) == first
        assert [r["id"] for r in again.labels] == [r["id"] for r in result.labels]
    assert ledger.summary()["price_factor"] == pytest.approx(0.5)
