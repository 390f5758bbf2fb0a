"""Incremental runs on real PMC articles: a baseline plus two updates equals one full run on the union,
row by row; only new or changed paragraphs are scored; the change log is in the manifests; `--rescore`
re-scores with a new student and the report says which rows came from which model.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from incremental_data import canonical, make_deliveries, new_version, same_row, usable_articles
from typer.testing import CliRunner

from pipelines.app.cli import app
from pipelines.app.corpus_state import subset_digests
from pipelines.app.update import build_corpus, run_rescore, run_update
from pipelines.core import changes
from pipelines.core.manifest import read_manifest
from pipelines.core.schemas import ARTICLES, PARAGRAPHS, SCORED
from pipelines.ingest.pipeline import parse_payload


def parsed(path: Path, name: str, data: bytes | None = None):
    """(article id, Candidate) of a real article delivered as `name`."""
    return parse_payload(f"in/{name}", data if data is not None else path.read_bytes(), min_tokens=64)


def edited_article(pmc_sample: Path):
    """A real article whose new version (first body paragraph edited) changes exactly one kept paragraph."""
    for path in usable_articles(pmc_sample, 40):
        aid, old = parsed(path, path.name)
        _, new = parsed(path, f"{path.stem}.2.xml", new_version(path.read_bytes(), "Revised."))
        changed = {r["id"] for r in new.rows} ^ {r["id"] for r in old.rows} or {
            n["id"] for o, n in zip(old.rows, new.rows, strict=True) if o["text"] != n["text"]
        }
        if old.rows and len(changed) == 1:
            return path, aid, old, new
    pytest.fail("no sample article with an editable kept paragraph")


# ------------------------------------------------------------------------------- pure decisions


def test_ingest_dedup_rank_is_the_update_rank(pmc_sample):
    path, aid, old, new = edited_article(pmc_sample)
    assert new.version == 2 and old.version is None
    assert old.rank() == changes.record_rank(old.record(aid))
    assert new.rank() == changes.record_rank(new.record(aid))
    assert new.rank() > old.rank()
    record = new.record(aid)
    assert record["n_paragraphs"] == len(new.rows)
    assert record["content_hash"] != old.record(aid)["content_hash"]


def test_decide_per_article(pmc_sample):
    path, aid, old, new = edited_article(pmc_sample)
    before, after = old.record(aid), new.record(aid)
    _, late = parsed(path, f"{path.stem}.1.xml")  # version 1 delivered after version 2

    assert changes.decide(aid, None, after).kind == changes.ADDED
    updated = changes.decide(aid, before, after)
    assert (updated.kind, updated.keep, updated.record) == (changes.UPDATED, "new", after)
    superseded = changes.decide(aid, after, late.record(aid))
    assert (superseded.kind, superseded.keep, superseded.record) == (changes.SUPERSEDED, "old", after)
    assert changes.decide(aid, before, None).kind == changes.UNCHANGED
    assert changes.decide(aid, before, dict(before)).kind == changes.UNCHANGED  # delivered again
    retracted = changes.decide(aid, before, None, retracted_listed=True)
    assert (retracted.kind, retracted.keep, retracted.retract) == (changes.RETRACTED, "old", True)
    assert retracted.record["retracted"] and not before["retracted"]
    # already retracted: a listing again changes nothing
    assert changes.decide(aid, retracted.record, None, retracted_listed=True).kind == changes.UNCHANGED


def test_only_changed_text_is_scored_again(pmc_sample):
    path, aid, old, new = edited_article(pmc_sample)
    scores = {"document_type": "Study", "domain": "biomedical", "educational_score": 3.0, "model_id": "m@1"}
    old_scores = {changes.text_hash(r["text"]): scores for r in old.rows}
    plan = changes.plan_scores(new.rows, old_scores)
    assert len(plan.to_score) == 1 and len(plan.carried) == len(new.rows) - 1
    assert all(r["model_id"] == "m@1" for r in plan.carried)
    assert {r["text"] for r in plan.to_score}.isdisjoint(r["text"] for r in old.rows)
    assert len(changes.plan_scores(new.rows, old_scores, rescore=True).to_score) == len(new.rows)
    counts = changes.paragraph_changes(
        {r["id"]: changes.text_hash(r["text"]) for r in old.rows},
        {r["id"]: changes.text_hash(r["text"]) for r in new.rows},
    )
    assert counts["updated"] + counts["added"] == 1 and counts["unchanged"] == len(new.rows) - 1


# ------------------------------------------------------------------- baseline + 2 updates vs full


@pytest.fixture(scope="module")
def student(teacher_labels, tmp_path_factory) -> Path:
    from distill.quick_student import build_quick_student

    out = tmp_path_factory.mktemp("student") / "student-v1"
    return build_quick_student(teacher_labels, out, n=96, embed_max_length=48, max_seq_length=128)


@pytest.fixture(scope="module")
def runs(pmc_sample, student, tmp_path_factory):
    """The same articles as a full run, and as a baseline + update 1 (API) + update 2 (CLI)."""
    tmp = tmp_path_factory.mktemp("incremental")
    d = make_deliveries(
        pmc_sample, tmp / "in", baseline=5, new_per_update=[2, 2], versions_per_update=[1, 1], retractions=1
    )
    inc, full = tmp / "inc", tmp / "full"
    build_corpus(str(inc), d.baseline, str(student))
    log1 = run_update(str(inc), d.updates[0], model_dir=str(student))
    config = tmp / "config.yaml"
    subsets = {"recipes": "paper"}
    config.write_text(yaml.safe_dump({"output": str(inc), "inputs": d.baseline, "subsets": subsets}))
    cli = CliRunner().invoke(
        app,
        ["run", "--config", str(config), "--update", "--model", str(student), "-q"]
        + [a for i in d.updates[1] for a in ("--input", i)],
    )
    assert cli.exit_code == 0, cli.output
    build_corpus(str(full), d.union, str(student))
    return {"d": d, "inc": inc, "full": full, "log1": log1, "config": config, "tmp": tmp}


def test_update_equals_full_run_row_by_row(runs):
    inc, full = runs["inc"], runs["full"]
    for dataset, schema in (("ingest/paragraphs", PARAGRAPHS), ("ingest/articles", ARTICLES)):
        assert canonical(inc, dataset, schema) == canonical(full, dataset, schema), dataset
    a, b = canonical(inc, "propagate/scored", SCORED), canonical(full, "propagate/scored", SCORED)
    assert len(a) == len(b) > 0
    assert [r["id"] for r in a] == [r["id"] for r in b]
    unequal = [(x["id"], y["id"]) for x, y in zip(a, b, strict=True) if not same_row(x, y)]
    assert unequal == []
    digests = subset_digests(str(inc / "subsets"))
    assert digests == subset_digests(str(full / "subsets")) and sum(map(len, digests.values())) > 0


def test_retracted_flagged_superseded_dropped(runs):
    d, inc = runs["d"], runs["inc"]
    rows = canonical(inc, "ingest/paragraphs", PARAGRAPHS)
    by_article = {}
    for r in rows:
        by_article.setdefault(r["article_id"], []).append(r)
    for pmcid in d.retracted:
        assert by_article[pmcid] and all(r["retracted"] for r in by_article[pmcid])
    assert not any(r["retracted"] for a, rs in by_article.items() if a not in d.retracted for r in rs)
    articles = {r["article_id"]: r for r in canonical(inc, "ingest/articles", ARTICLES)}
    for pmcid in d.new_versions:
        assert articles[pmcid]["version"] >= 2  # the late `.1` copy did not win
        assert {r["source"] for r in by_article.get(pmcid, [])} <= {articles[pmcid]["source"]}


def test_change_log_in_manifests(runs):
    d, inc, log1 = runs["d"], runs["inc"], runs["log1"]
    manifest = read_manifest(str(inc / "ingest"))
    first, second = manifest["updates"]
    assert first == log1
    assert first["ingest"]["articles"] == {
        "added": 2,
        "updated": 1,
        "retracted": 1,
        "unchanged": 3,  # 5 baseline articles: 1 updated, 1 retracted; none superseded yet
        "superseded": 0,
    }
    assert second["ingest"]["articles"]["added"] == 2 and second["ingest"]["articles"]["updated"] == 1
    assert second["ingest"]["articles"]["superseded"] == 1  # the late `.1` copy
    assert manifest["changes"] == second and manifest["all_inputs"] == d.union
    for log in (first, second):
        paragraphs, scores = log["ingest"]["paragraphs"], log["propagate"]
        # only new or changed text is scored; every other row keeps its score and model
        assert scores["scored"] == paragraphs["added"] + paragraphs["updated"] > 0
        assert scores["carried"] == paragraphs["unchanged"] > 0
    assert set(read_manifest(str(inc / "propagate"))["changes"]) >= {"scored", "carried", "rows_by_model"}
    assert set(read_manifest(str(inc / "subsets"))["changes"]) >= {"BE-Base", "BE-All"}
    assert "Incremental updates" in (inc / "report.html").read_text()


def test_plain_run_does_not_rebuild_an_updated_corpus(runs):
    result = CliRunner().invoke(app, ["run", "--config", str(runs["config"]), "-q"])
    assert result.exit_code == 2
    assert "updated incrementally" in result.output


def test_rescore_with_a_new_student(runs, teacher_labels):
    from distill.quick_student import build_quick_student

    tmp = runs["tmp"]
    root = tmp / "rescored"
    shutil.copytree(runs["inc"], root)
    new_student = build_quick_student(
        teacher_labels, tmp / "student-v2", n=64, seed=1, embed_max_length=48, max_seq_length=128
    )
    before = {r["id"]: r for r in canonical(root, "propagate/scored", SCORED)}
    log = run_rescore(str(root), str(new_student))
    after = canonical(root, "propagate/scored", SCORED)
    assert log["propagate"]["carried"] == 0 and log["propagate"]["scored"] == len(after) == len(before)
    (new_model,) = {r["model_id"] for r in after}
    assert new_model.startswith("student-v2@") and new_model not in {r["model_id"] for r in before.values()}
    assert log["propagate"]["rows_by_model"] == {new_model: len(after)}
    assert log["ingest"]["articles"]["unchanged"] == len(canonical(root, "ingest/articles", ARTICLES))
    page = (root / "report.html").read_text()
    assert "Scores by model version" in page and new_model in page
