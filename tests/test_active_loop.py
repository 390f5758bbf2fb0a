"""The annotation loop on real labelled paragraphs: held-out articles never reach the teacher, nothing
is paid for twice, a run killed between (or inside) rounds resumes where it stopped, the budget holds."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from annotators.cache import AnswerCache
from annotators.ledger import Ledger
from annotators.sampling import uniform_draw
from annotators.teachers.replay import ReplayTeacher
from pipelines.app.loop import (
    EmbeddingStore,
    LoopConfig,
    article_key,
    read_states,
    run_loop,
    teacher_labeller,
)

N_ROWS = 240


class CountingTeacher:
    """The replay teacher behind the real Teacher interface, recording every paragraph it is asked
    about; cacheable, so answers go through the durable cache like a paid teacher's."""

    cacheable = True

    def __init__(self, recordings: str, crash_on_call: int | None = None):
        self.inner = ReplayTeacher(str(recordings))
        self.model, self.prompt_version = "counting-replay", self.inner.prompt_version
        self.asked: list[str] = []
        self.calls = 0
        self.crash_on_call = crash_on_call

    def label(self, rows, ledger, on_result=None):
        self.calls += 1
        self.asked.extend(r["id"] for r in rows)
        outcomes = self.inner.label(rows, ledger, on_result)
        if self.calls == self.crash_on_call:  # answers landed (and were cached), then the process "dies"
            raise KeyboardInterrupt("simulated kill")
        return outcomes


@pytest.fixture(scope="module")
def data(teacher_labels, tmp_path_factory):
    """A few hundred real labelled paragraphs, 20% of their articles held out, and real MiniLM
    embeddings (max length 16, computed once for the module)."""
    rows = pq.read_table(teacher_labels).slice(0, N_ROWS).to_pylist()
    for row in rows:
        row["article_id"] = article_key(row)
    held = {a for a in {r["article_id"] for r in rows} if uniform_draw(7, a) < 0.2}
    held_out = [r for r in rows if r["article_id"] in held]
    assert 0 < len(held_out) < len(rows)
    root = tmp_path_factory.mktemp("active")
    embeddings = str(root / "embeddings")
    EmbeddingStore(embeddings, max_length=16).matrix(rows)
    pq.write_table(pa.Table.from_pylist(rows), root / "paragraphs.parquet")
    pq.write_table(pa.Table.from_pylist(held_out), root / "eval.parquet")
    return {"rows": rows, "held_out": held_out, "embeddings": embeddings, "root": root}


def loop(data, out, teacher, config, **kw):
    with AnswerCache(str(out / "cache.sqlite")) as cache:
        labeller = teacher_labeller(teacher, cache, Ledger(model=teacher.model))
        store = EmbeddingStore(data["embeddings"], max_length=16)  # all cached by the fixture
        return run_loop(data["rows"], str(out), labeller, store, config, eval_labels=data["held_out"], **kw)


def test_held_out_never_sent_and_nothing_paid_twice(data, teacher_labels, tmp_path):
    teacher = CountingTeacher(teacher_labels)
    config = LoopConfig(strategy="uncertainty", budget=130, rounds=4, seed_size=40, mc_passes=5)
    stats = loop(data, tmp_path, teacher, config)
    held_articles = {r["article_id"] for r in data["held_out"]}
    asked_articles = {r["article_id"] for r in data["rows"] if r["id"] in set(teacher.asked)}
    assert not asked_articles & held_articles
    assert len(teacher.asked) == len(set(teacher.asked)) == 130
    assert stats["stop_reason"] == "budget" and stats["labels_spent"] == 130
    # the recorded answers came back as labels, one per paid paragraph, and agreement was tracked
    labels = pq.read_table(tmp_path / "labels").to_pylist()
    assert sorted(r["id"] for r in labels) == sorted(teacher.asked)
    assert all(0.0 <= p["agreement"] <= 1.0 for p in stats["curve"])
    assert [p["labels"] for p in stats["curve"]] == [40, 63, 86, 109, 130]


def test_resumes_after_a_kill_between_and_inside_rounds(data, teacher_labels, tmp_path):
    config = LoopConfig(strategy="uncertainty", budget=160, rounds=4, seed_size=40, mc_passes=5)
    first = CountingTeacher(teacher_labels)
    stats = loop(data, tmp_path, first, config, max_rounds_this_run=2)  # stop after rounds 0 and 1
    assert stats["stop_reason"] == "paused" and stats["rounds_finished"] == 2
    # killed inside round 2: the teacher answered (answers cached), the round's state was never written
    crashing = CountingTeacher(teacher_labels, crash_on_call=1)
    with pytest.raises(KeyboardInterrupt):
        loop(data, tmp_path, crashing, config)
    assert len(read_states(str(tmp_path))) == 2
    round2 = set(crashing.asked)
    assert len(round2) == 30 and not round2 & set(first.asked)
    # restart: continues at round 2, picks the same paragraphs (all cached) and pays only for round 3
    last = CountingTeacher(teacher_labels)
    stats = loop(data, tmp_path, last, config)
    assert stats["stop_reason"] == "budget" and stats["rounds_this_run"] == 3
    states = read_states(str(tmp_path))
    assert [s["round"] for s in states] == [0, 1, 2, 3, 4]
    assert set(states[2]["acquired"]) == round2
    assert not set(last.asked) & (set(first.asked) | round2)
    paid = first.asked + crashing.asked + last.asked
    assert len(paid) == len(set(paid)) == 160


def test_budget_not_a_multiple_of_the_batch_and_random_strategy(data, teacher_labels, tmp_path):
    teacher = CountingTeacher(teacher_labels)
    config = LoopConfig(strategy="random", budget=95, rounds=10, seed_size=20, batch_size=30)
    stats = loop(data, tmp_path, teacher, config)
    assert stats["stop_reason"] == "budget"
    assert [p["labels"] for p in stats["curve"]] == [20, 50, 80, 95]
    assert len(set(teacher.asked)) == len(teacher.asked) == 95
    # a rerun of a finished loop spends nothing
    again = CountingTeacher(teacher_labels)
    assert loop(data, tmp_path, again, config)["labels_spent"] == 95 and again.asked == []
    # resuming with other settings is refused rather than mixing two experiments
    with pytest.raises(RuntimeError, match="other settings"):
        loop(
            data, tmp_path, again, LoopConfig(strategy="uncertainty", budget=95, seed_size=20, batch_size=30)
        )


def test_patience_stops_when_agreement_stalls(data, teacher_labels, tmp_path):
    config = LoopConfig(
        strategy="uncertainty", budget=300, rounds=10, seed_size=30, mc_passes=4, patience=1, min_delta=1.0
    )
    stats = loop(data, tmp_path, CountingTeacher(teacher_labels), config)
    assert stats["stop_reason"] == "patience" and stats["rounds_finished"] == 2


def test_cli_runs_and_resumes(data, teacher_labels, tmp_path):
    from typer.testing import CliRunner

    from pipelines.app.cli import app

    out = tmp_path / "out"
    args = [
        "loop",
        str(data["root"] / "paragraphs.parquet"),
        "--output",
        str(out),
        "--eval-labels",
        str(data["root"] / "eval.parquet"),
        "--recordings",
        str(teacher_labels),
        "--embeddings",
        data["embeddings"],
        "--max-length",
        "16",
        "--budget",
        "60",
        "--rounds",
        "2",
        "--seed-size",
        "20",
        "--mc-passes",
        "4",
    ]
    runner = CliRunner()
    result = runner.invoke(app, [*args, "--max-rounds-this-run", "1"])
    assert result.exit_code == 0, result.output
    assert "stopped: paused" in result.output
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    stats = json.loads((out / "loop_stats.json").read_text())
    assert stats["stop_reason"] == "budget" and stats["rounds_this_run"] == 2 and stats["labels_spent"] == 60
    assert pq.read_table(out / "labels").num_rows == 60
