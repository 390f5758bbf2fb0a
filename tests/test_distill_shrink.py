"""Cheaper student variants (distill.shrink, distill.int8) on real labels and real ingested articles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("openvino")

from distill.config import TrainConfig  # noqa: E402
from distill.data import load_labels, split_by_article  # noqa: E402
from distill.inference import Scorer, load_model, load_scorer, model_id  # noqa: E402
from distill.int8 import ENCODER_FILE, is_int8  # noqa: E402
from distill.predict import predict_logits  # noqa: E402
from distill.shrink import drop_layers, evenly_spaced, run_shrink, training_part  # noqa: E402
from distill.train import run_train  # noqa: E402

SPLIT = {"valid_fraction": 0.2, "test_fraction": 0.2, "seed": 0}


@pytest.fixture(scope="module")
def source(teacher_labels, pmc_sample, tmp_path_factory) -> dict:
    """A probe-trained source student on 400 real labels; the ingested paragraphs of 30 of their articles."""
    from pipelines.ingest.pipeline import run_ingest

    root = tmp_path_factory.mktemp("shrink")
    labels = root / "labels.parquet"
    table = pq.read_table(teacher_labels).slice(0, 400)
    pq.write_table(table, labels)
    run_train(
        [str(labels)],
        str(root / "source"),
        freeze_encoder=True,
        max_seq_length=64,
        head_epochs=30,
        cache_dir=str(root / "cache"),
        progress=False,
        **SPLIT,
    )
    articles = sorted(set(table.column("article_file").to_pylist()))[:30]
    run_ingest([str(pmc_sample / name) for name in articles], str(root / "ingest"))
    return {
        "root": root,
        "labels": str(labels),
        "dir": root / "source",
        "paragraphs": str(root / "ingest" / "paragraphs"),
    }


def test_evenly_spaced_keeps_first_and_last_layers():
    assert evenly_spaced(6, 6) == [0, 1, 2, 3, 4, 5]
    assert evenly_spaced(6, 2) == [0, 5]
    assert evenly_spaced(6, 3) == [0, 2, 5]
    assert evenly_spaced(6, 4) == [0, 2, 3, 5]
    assert evenly_spaced(6, 1) == [5]
    with pytest.raises(ValueError):
        evenly_spaced(6, 7)


def test_drop_layers_copies_the_kept_layers_and_everything_else(source, teacher_labels):
    model, tokenizer = load_model(source["dir"])
    texts = pq.read_table(teacher_labels, columns=["text"]).column("text").to_pylist()[400:440]
    same = drop_layers(model, list(range(6)))
    a, b = predict_logits(model, tokenizer, texts), predict_logits(same, tokenizer, texts)
    for key in a:  # all layers kept: the very same function
        np.testing.assert_array_equal(a[key], b[key])
    small = drop_layers(model, [1, 4], max_seq_length=32)
    assert small.config.encoder["num_hidden_layers"] == 2 and small.config.max_seq_length == 32
    assert model.config.encoder["num_hidden_layers"] == 6  # the source is untouched
    assert small.config.temperatures == model.config.temperatures
    for new, old in enumerate([1, 4]):
        np.testing.assert_array_equal(
            small.encoder.encoder.layer[new].attention.self.query.weight.detach(),
            model.encoder.encoder.layer[old].attention.self.query.weight.detach(),
        )
    np.testing.assert_array_equal(
        small.document_type_head.weight.detach(), model.document_type_head.weight.detach()
    )
    with pytest.raises(ValueError):
        drop_layers(model, [4, 1])


def test_training_part_never_takes_a_held_out_article(teacher_labels):
    data = load_labels([str(teacher_labels)])
    cfg = TrainConfig(**SPLIT)
    _, valid, test = split_by_article(data.articles, **SPLIT)
    held = {data.articles[i] for i in [*valid, *test]}
    removed = {data.articles[i] for i in test[:50]}  # e.g. a test part dropped from the labels file
    keep = training_part(data.articles, held, cfg)
    assert keep and not {data.articles[i] for i in keep} & held
    assert len({data.articles[i] for i in keep}) == len(set(data.articles) - held)
    # held-out articles count even when the hash alone would put them in training
    other = TrainConfig(valid_fraction=0.0, test_fraction=0.0, seed=0)
    assert not {data.articles[i] for i in training_part(data.articles, removed, other)} & removed


@pytest.fixture(scope="module")
def shrunk(source) -> tuple[dict, Path]:
    """A 1-layer, 32-token variant with an int8 encoder, distilled for one epoch."""
    out = source["root"] / "variant"
    summary = run_shrink(
        str(source["dir"]),
        str(out),
        labels=[source["labels"]],
        paragraphs=[source["paragraphs"]],
        layers=1,
        max_seq_length=32,
        int8=True,
        epochs=1,
        progress=False,
    )
    return summary, out


def test_shrink_distils_a_one_layer_int8_variant_that_propagate_loads(source, shrunk):
    summary, out = shrunk
    variant = summary["variant"]
    assert variant["layers_kept"] == [5] and variant["max_seq_length"] == 32 and variant["int8_encoder"]
    # it learned from the source's answers on unlabelled paragraphs of training-part articles only
    labelled = pq.read_table(source["labels"]).to_pylist()
    data = load_labels([source["labels"]])
    _, valid, test = split_by_article(data.articles, **SPLIT)
    assert variant["unlabelled_rows"] > 0
    assert summary["sizes"]["train"] == variant["unlabelled_rows"] + len(data.ids) - len(valid) - len(test)
    assert len(labelled) == len(data.ids)

    assert (out / ENCODER_FILE).exists()
    card = (out / "README.md").read_text()
    assert "cheaper variant" in card and f"{variant['speed']['ratio']}x" in card
    assert variant["class_weights"] == "teacher rows only" and "class weights on these only" in card
    assert json.loads((out / "training.json").read_text())["variant"]["layers_kept"] == [5]
    # the CPU default path runs the int8 encoder; the torch weights are still there for CUDA
    scorer = load_scorer(out)
    assert is_int8(scorer.model) and scorer.describe()["precision_used"].startswith("float32")
    torch_model, tokenizer = load_model(out)
    assert not is_int8(torch_model) and torch_model.config.encoder["num_hidden_layers"] == 1
    texts = [row["text"] for row in labelled[:200]]
    int8_labels = scorer.score(texts)
    fp32_labels = Scorer(torch_model, tokenizer).score(texts)
    for head in ("document_type", "domain"):
        kept = np.mean([a[head] == b[head] for a, b in zip(int8_labels, fp32_labels, strict=True)])
        assert kept >= 0.9, (head, kept)
    # the int8 file is part of the model's identity (scored rows name the exact weights)
    (out / ENCODER_FILE).rename(out / "moved.bin")
    try:
        assert model_id(out) != scorer.name
    finally:
        (out / "moved.bin").rename(out / ENCODER_FILE)


def test_int8_encoder_is_refused_with_dynamic_quantisation(shrunk):
    from distill.inference import InferenceOptions

    model, tokenizer = load_model(shrunk[1], int8=True)
    with pytest.raises(ValueError, match="int8 OpenVINO encoder runs on CPU"):
        Scorer(model, tokenizer, InferenceOptions(quantize=True))
    # asked for dynamic quantisation, load_scorer falls back to the torch encoder instead of failing
    assert not is_int8(load_scorer(shrunk[1], InferenceOptions(quantize=True)).model)


def test_int8_encoder_gives_each_thread_its_own_request(source, shrunk):
    """Beam runs DoFn threads over one shared model; an OpenVINO infer request is not thread-safe."""
    from concurrent.futures import ThreadPoolExecutor

    scorer = load_scorer(shrunk[1])
    texts = [row["text"] for row in pq.read_table(source["labels"]).slice(0, 120).to_pylist()]
    alone = scorer.predict_arrays(texts)
    with ThreadPoolExecutor(3) as pool:
        together = list(pool.map(lambda _: scorer.predict_arrays(texts), range(3)))
    for arrays in together:
        for a, b in zip(arrays, alone, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_propagate_scores_with_the_int8_variant(source, shrunk, tmp_path):
    from pipelines.propagate import run_propagate

    out = tmp_path / "scored"
    stats = run_propagate([source["paragraphs"]], str(shrunk[1]), str(out), progress=False)
    scored = pq.read_table(sorted((out / "scored").glob("part-*.parquet"))).to_pylist()
    assert stats["complete"] and len(scored) == stats["read"] > 0
    assert {row["model_id"] for row in scored} == {model_id(shrunk[1])}
    # the rows carry the int8 CPU path's answers (what load_scorer runs), in the variant's input format
    scorer = load_scorer(shrunk[1])
    rows = sorted(scored, key=lambda r: r["id"])[:100]
    expected = scorer.score_rows(rows)["predictions"]
    assert [r["document_type"] for r in rows] == [e["document_type"] for e in expected]
