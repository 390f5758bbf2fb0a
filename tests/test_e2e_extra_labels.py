"""Extra training labels (the packaged recordings) mixed into a run: none from the run's own articles."""

from __future__ import annotations

from importlib import resources

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.app.extra_labels import prepare_extra_labels
from pipelines.core.io import write_table
from pipelines.core.schemas import LABELS


def test_recorded_labels_become_labels_without_the_runs_articles(tmp_path):
    recorded = str(resources.files("annotators").joinpath("data/recorded_labels.parquet"))
    source = pq.read_table(recorded)
    own = source.slice(0, 30).to_pylist()  # pretend the run ingested these paragraphs' articles
    own_articles = {r["pmcid"] for r in own}
    paragraphs = [
        {"article_id": r["pmcid"], "text": r["text"], "id": f"p{i}", "path": r["path"]}
        for i, r in enumerate(own)
    ]

    write_table(pa.Table.from_pylist(paragraphs), str(tmp_path), "paragraphs")
    out = tmp_path / "extra.parquet"
    stats = prepare_extra_labels([recorded], [str(tmp_path / "paragraphs")], str(out), sample=500, seed=3)
    table = pq.read_table(out)
    assert table.schema.remove_metadata() == LABELS.remove_metadata()
    rows = table.to_pylist()
    assert len(rows) == stats["written"] == 500
    assert not {r["article_id"] for r in rows} & own_articles
    expected_dropped = sum(1 for r in source.to_pylist() if r["pmcid"] in own_articles)
    assert stats["own_articles_dropped"] >= expected_dropped > 0
    again = tmp_path / "again.parquet"
    prepare_extra_labels([recorded], [str(tmp_path / "paragraphs")], str(again), sample=500, seed=3)
    assert pq.read_table(again).equals(table)  # deterministic for a seed


def test_sampled_extra_labels_are_not_all_held_out_by_the_trainer(tmp_path):
    """The sample and the trainer's article split both hash articles: they must not pick the same ones."""
    from distill.data import split_by_article

    recorded = str(resources.files("annotators").joinpath("data/recorded_labels.parquet"))
    write_table(pa.Table.from_pylist([{"article_id": "none", "text": "none"}]), str(tmp_path), "paragraphs")
    out = tmp_path / "extra.parquet"
    prepare_extra_labels([recorded], [str(tmp_path / "paragraphs")], str(out), sample=1000, seed=0)
    articles = pq.read_table(out)["article_id"].to_pylist()
    train, valid, test = split_by_article(articles, valid_fraction=0.1, test_fraction=0.1, seed=0)
    assert len(train) > 0.6 * len(articles)
