"""The subsets Beam pipeline end to end on real paragraphs shaped as a scored dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from subsets_scored import scored_rows, write_scored
from typer.testing import CliRunner

from pipelines.app.cli import app
from pipelines.core.schemas import SUBSET_DOCUMENTS
from pipelines.subsets.pipeline import article_factor, read_documents, run_subsets
from pipelines.subsets.recipe import PAPER_PRESETS, load_recipe

N_ARTICLES = 160


@pytest.fixture(scope="module")
def built(teacher_labels, tmp_path_factory):
    root = tmp_path_factory.mktemp("subsets")
    rows = scored_rows(teacher_labels, max_articles=N_ARTICLES)
    # Include some Portuguese articles (they sort last by id), to exercise the language rule.
    rows += [r for r in scored_rows(teacher_labels) if r["language"] == "pt"][:40]
    scored = write_scored(rows, root / "in")
    pt_recipe = root / "pt.yaml"
    pt_recipe.write_text(
        yaml.safe_dump(
            {
                "name": "PT-jsonl",
                "upsample": [
                    {"name": "pt", "column": "language", "values": ["pt"], "count_at_least": 1, "factor": 3}
                ],
                "output_format": "jsonl",
            }
        )
    )
    stats = run_subsets([str(scored)], ["paper", str(pt_recipe)], str(root / "out"))
    return {"rows": rows, "scored": scored, "out": root / "out", "stats": stats}


def by_article(rows):
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r["article_id"], []).append(r)
    return out


def test_every_subset_is_written_per_licence_group_with_the_schema(built):
    out = built["out"]
    for name in PAPER_PRESETS:
        files = sorted((out / name).glob("*/part-*.parquet"))
        assert files, name
        for f in files:
            table = pq.read_table(f)
            assert table.schema.remove_metadata() == SUBSET_DOCUMENTS.remove_metadata()
            assert set(table["license_group"].to_pylist()) == {f.parent.name}
            assert set(table["recipe"].to_pylist()) == {name}
    groups = {f.parent.name for f in (out / "BE-Base").glob("*/part-*.parquet")}
    assert {"commercial", "noncommercial"} <= groups


def test_base_rebuilds_every_article_in_body_order(built):
    docs = read_documents(str(built["out"]), "BE-Base")
    articles = by_article(built["rows"])
    assert len(docs) == len(articles)
    for doc in docs:
        expected = [
            r["text"] for r in sorted(articles[doc["article_id"]], key=lambda r: r["paragraph_index"])
        ]
        assert doc["text"].split("\n\n") == expected


def test_educational_subset_has_no_paragraph_scored_below_3(built):
    score_of = {r["text"]: r["educational_score"] for r in built["rows"]}
    docs = read_documents(str(built["out"]), "BE-Educational")
    paragraphs = [p for d in docs for p in d["text"].split("\n\n")]
    assert paragraphs and all(score_of[p] >= 3 for p in paragraphs)
    expected = sum(1 for r in built["rows"] if r["educational_score"] >= 3)
    assert len(paragraphs) == expected


@pytest.mark.parametrize("name", ["BE-ClinicalCase", "BE-Clinical", "BE-All", "PT-jsonl"])
def test_upsampled_articles_appear_exactly_their_factor_times(built, name):
    docs = read_documents(str(built["out"]), name)
    counts: dict[str, list[int]] = {}
    for d in docs:
        counts.setdefault(d["article_id"], []).append(d["repeat"])
    recipe = load_recipe(name) if name != "PT-jsonl" else None
    upsampled = 0
    for article_id, rows in by_article(built["rows"]).items():
        if recipe is not None:
            factor = article_factor(rows, recipe)[0]
        else:
            factor = 3 if any(r["language"] == "pt" for r in rows) else 1
        if article_id in counts:
            assert sorted(counts[article_id]) == list(range(factor))
            upsampled += factor > 1
    assert upsampled > 0


def test_stats_and_dataset_cards_match_what_was_written(built):
    out, stats = built["out"], built["stats"]
    saved = json.loads((out / "subsets_stats.json").read_text())
    assert saved["subsets"].keys() == stats["subsets"].keys()
    for name, entry in stats["subsets"].items():
        docs = read_documents(str(out), name)
        assert entry["documents"] == len(docs)
        assert entry["tokens"] == sum(d["n_tokens"] for d in docs)
        assert entry["paragraphs"] == sum(d["n_paragraphs"] for d in docs)
        assert entry["articles"] == len({d["article_id"] for d in docs})
        card = (out / name / "README.md").read_text()
        header = yaml.safe_load(card.split("---")[1])
        splits = {s["name"]: s["num_examples"] for s in header["dataset_info"]["splits"]}
        for group, size in splits.items():
            assert size == sum(1 for d in docs if d["license_group"] == group)
        assert "## Recipe" in card and "## Licence split" in card
        assert yaml.safe_load((out / name / "recipe.yaml").read_text())["name"] == name
    assert stats["dead_letters"] == 0


def test_cli_is_deterministic_for_a_seed_and_shuffles_with_another(built, tmp_path):
    runner = CliRunner()
    # the fixture's run used the presets' seed 0: a second run with seed 0 must write the same order
    orders = [[d["id"] for d in read_documents(str(built["out"]), "BE-ClinicalCase")]]
    for seed, out in ((0, tmp_path / "a"), (7, tmp_path / "b")):
        result = runner.invoke(
            app,
            [
                "subsets",
                str(built["scored"]),
                "--recipe",
                "BE-ClinicalCase",
                "--output",
                str(out),
                "--seed",
                str(seed),
            ],
        )
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["BE-ClinicalCase"]["documents"] > 0  # the summary line: stderr
        orders.append([d["id"] for d in read_documents(str(out), "BE-ClinicalCase")])
    assert orders[0] == orders[1]
    assert orders[0] != orders[2] and sorted(orders[0]) == sorted(orders[2])


def test_cli_rejects_a_bad_recipe_clearly(built, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nfilter: ['educational_score >> 3']\n")
    result = CliRunner().invoke(
        app, ["subsets", str(built["scored"]), "-r", str(bad), "-o", str(tmp_path / "o")]
    )
    assert result.exit_code == 2
    assert "cannot parse filter" in result.output


def test_scored_input_must_exist(tmp_path):
    with pytest.raises(FileNotFoundError):
        run_subsets([str(Path(tmp_path) / "missing")], "BE-Base", str(tmp_path / "out"))


def test_duplicate_ids_and_null_index_give_the_same_subset_in_any_input_order(teacher_labels, tmp_path):
    rows = scored_rows(teacher_labels, max_articles=6)
    twin = dict(rows[0], educational_score=5.0 if rows[0]["educational_score"] < 3 else 1.0)
    unplaced = dict(rows[1], id="no-index", paragraph_index=None)
    outputs = []
    for k, order in enumerate(([twin, *rows, unplaced], [unplaced, *reversed(rows), twin])):
        scored = tmp_path / f"in{k}"
        scored.mkdir()  # written as-is: the SCORED schema itself forbids a null paragraph_index
        pq.write_table(pa.Table.from_pylist(order), scored / "part-0.parquet")
        stats = run_subsets([str(scored)], "BE-Educational", str(tmp_path / f"out{k}"))
        dead = sorted(
            (d["source"], d["reason"])
            for f in (tmp_path / f"out{k}" / "dead_letter").glob("*.jsonl")
            for d in map(json.loads, f.read_text().splitlines())
        )
        outputs.append((read_documents(str(tmp_path / f"out{k}"), "BE-Educational"), dead, stats))
    (docs_a, dead_a, stats_a), (docs_b, dead_b, stats_b) = outputs
    assert docs_a == docs_b
    assert (
        dead_a
        == dead_b
        == sorted([(rows[0]["id"], "duplicate_paragraph_id"), ("no-index", "missing_paragraph_index")])
    )
    assert stats_a["paragraphs_rejected"] == {"duplicate_paragraph_id": 1, "missing_paragraph_index": 1}
    assert stats_a["dead_letters"] == 2
