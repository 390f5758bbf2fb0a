"""Cheaper students: fewer encoder layers and a shorter max length, distilled from a trained student.

Propagation cost is the encoder's layers times the paragraph's tokens. A variant keeps evenly spaced
layers of a trained student (its embeddings, lexical branch and heads too) and reads at most
`max_seq_length` tokens, then is trained on the source's recipe with two kinds of rows: the teacher's
labels on the training articles, and the source student's own outputs (calibrated class probabilities
and score) on unlabelled paragraphs of training-part articles. Validation and test articles stay out
of both, so the variant's agreement is measured on the same held-out articles as the source's. The
source's class weights (its recipe) apply to the teacher's rows only: the source's outputs already lean
towards the rare classes as far as it learnt to, and weighting them again pushes the variant further.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import torch
from tqdm.auto import tqdm

from distill.config import TrainConfig
from distill.data import LabelledSet, load_labels, split_by_article
from distill.inference import Scorer, load_model
from distill.inputs import student_input
from distill.int8 import quantize_encoder
from distill.model import StudentConfig, StudentModel


def evenly_spaced(total: int, keep: int) -> list[int]:
    """`keep` layer indices out of `total`, first and last included (the last layer feeds the heads)."""
    if not 1 <= keep <= total:
        raise ValueError(f"can keep 1..{total} layers, not {keep}")
    if keep == 1:
        return [total - 1]
    return sorted({round(i * (total - 1) / (keep - 1)) for i in range(keep)})


def drop_layers(model: StudentModel, keep: list[int], max_seq_length: int | None = None) -> StudentModel:
    """A copy of `model` whose encoder has only the layers `keep` (in order); everything else is copied."""
    total = model.encoder.config.num_hidden_layers
    if not keep or any(not 0 <= i < total for i in keep) or sorted(set(keep)) != list(keep):
        raise ValueError(f"keep must be increasing layer indices in 0..{total - 1}, not {keep}")
    encoder = dict(model.config.encoder, num_hidden_layers=len(keep))
    fields = {k: v for k, v in model.config.to_dict().items() if k not in ("encoder", "architectures")}
    config = StudentConfig(**{**fields, "encoder": encoder})
    if max_seq_length:
        config.max_seq_length = int(max_seq_length)
    small = StudentModel(config)
    renumber = {
        f"encoder.encoder.layer.{old}.": f"encoder.encoder.layer.{new}." for new, old in enumerate(keep)
    }
    state = {}
    for name, tensor in model.state_dict().items():
        if name.startswith("encoder.encoder.layer."):
            prefix = ".".join(name.split(".")[:4]) + "."
            if prefix not in renumber:
                continue
            name = renumber[prefix] + name[len(prefix) :]
        state[name] = tensor
    small.load_state_dict(state, strict=True)
    return small.eval()


def unlabelled_texts(
    paragraphs: list[str], input_format: str, exclude_ids: set[str]
) -> tuple[list, list, list]:
    """(ids, article ids, student inputs) of the ingested `paragraphs` whose id is not in `exclude_ids`."""
    columns = ["id", "article_id", "path", "section_title", "text"]
    table = ds.dataset([ds.dataset(p, format="parquet") for p in paragraphs]).to_table(columns=columns)
    ids, articles, texts = [], [], []
    for row in table.to_pylist():
        if row["id"] in exclude_ids or not (row["text"] or "").strip():
            continue
        ids.append(row["id"])
        articles.append(row["article_id"])
        texts.append(student_input(row, input_format))
    return ids, articles, texts


def training_part(articles: list[str], held_out: set[str], cfg: TrainConfig) -> list[int]:
    """Indices of paragraphs whose article falls in the training part of `cfg`'s split and is not one
    of the labels' `held_out` articles (those stay out whatever their hash says, e.g. a test part
    removed from the labels file before training)."""
    keep, _, _ = split_by_article(
        articles, valid_fraction=cfg.valid_fraction, test_fraction=cfg.test_fraction, seed=cfg.seed
    )
    return [int(i) for i in keep if articles[i] not in held_out]


def source_targets(
    model: StudentModel, tokenizer, ids, articles, texts, cache: Path | None = None, progress: bool = True
) -> LabelledSet:
    """The source student's answers as training targets: calibrated class probabilities and score.

    fp32, so every machine distils the same targets; cached in `cache` (an .npz) when given, as
    every variant of one source learns from the same answers."""
    from distill.inference import InferenceOptions
    from distill.predict import logits_to_labels

    if cache is not None and cache.exists():
        with np.load(cache) as saved:
            doc, dom, score = saved["doc"], saved["dom"], saved["score"]
    else:
        scorer = Scorer(model, tokenizer, InferenceOptions(precision="fp32"))
        with tqdm(total=len(texts), desc="source answers", unit="para", disable=not progress) as bar:
            doc, dom, score = scorer.predict_arrays(texts, bar.update)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache.with_suffix(".tmp.npz"), doc=doc, dom=dom, score=score)
            cache.with_suffix(".tmp.npz").replace(cache)
    cols = logits_to_labels(doc, dom, score, model.config)
    dt, dm = cols["document_type_scores"].astype(np.float32), cols["domain_scores"].astype(np.float32)
    return LabelledSet(
        ids=list(ids),
        articles=list(articles),
        texts=list(texts),
        document_type=dt.argmax(1),
        domain=dm.argmax(1),
        educational_score=cols["educational_score"].astype(np.float32),
        document_type_probs=dt,
        domain_probs=dm,
        distilled=np.ones(len(ids), dtype=bool),
    )


def _one_hot(labels: np.ndarray, k: int) -> np.ndarray:
    return np.eye(k, dtype=np.float32)[labels]


def concat(a: LabelledSet, b: LabelledSet, k_dt: int, k_dm: int) -> LabelledSet:
    """Rows of `a` then `b`; rows without probabilities get one-hot ones, so every row is a soft target."""
    probs = lambda s, name, k, hard: getattr(s, name) if getattr(s, name) is not None else _one_hot(hard, k)  # noqa: E731
    return LabelledSet(
        ids=a.ids + b.ids,
        articles=a.articles + b.articles,
        texts=a.texts + b.texts,
        document_type=np.concatenate([a.document_type, b.document_type]),
        domain=np.concatenate([a.domain, b.domain]),
        educational_score=np.concatenate([a.educational_score, b.educational_score]).astype(np.float32),
        document_type_probs=np.concatenate(
            [
                probs(a, "document_type_probs", k_dt, a.document_type),
                probs(b, "document_type_probs", k_dt, b.document_type),
            ]
        ),
        domain_probs=np.concatenate(
            [probs(a, "domain_probs", k_dm, a.domain), probs(b, "domain_probs", k_dm, b.domain)]
        ),
        distilled=np.concatenate([a.is_distilled(), b.is_distilled()]),
        teacher_models=a.teacher_models,
        prompt_versions=a.prompt_versions,
    )


def speed_vs_source(source_dir: str, variant_dir: str, texts: list[str], rounds: int = 2) -> dict:
    """Paragraphs per CPU-second of the variant and its source on the same texts, interleaved runs, each
    on its default path (`load_scorer`: int8 encoder on CPU, `auto` precision): what the card states."""
    from distill.inference import CALIBRATION_TEXTS, load_scorer, native_bf16

    scorers = {"source": load_scorer(source_dir), "variant": load_scorer(variant_dir)}
    seconds: dict[str, list[float]] = {k: [] for k in scorers}
    for scorer in scorers.values():
        scorer.score(texts[:CALIBRATION_TEXTS])  # warm-up; `auto` calibrates as on a run's first chunk
    for r in range(rounds):
        for name in sorted(scorers, reverse=bool(r % 2)):
            cpu = time.process_time()
            scorers[name].score(texts)
            seconds[name].append(time.process_time() - cpu)
    per_cpu_s = {k: len(texts) / min(v) for k, v in seconds.items()}
    bf16 = "native" if native_bf16(torch.device("cpu")) else "no native"
    threads = torch.get_num_threads()
    return {
        "paragraphs": len(texts),
        "per_cpu_s": {k: round(v, 1) for k, v in per_cpu_s.items()},
        "ratio": round(per_cpu_s["variant"] / per_cpu_s["source"], 2),
        "precision": {k: s.describe()["precision_used"] for k, s in scorers.items()},
        "machine": f"CPU {torch.backends.cpu.get_cpu_capability()}, {bf16} bf16, {threads} threads",
    }


def _source_config(source: str, **kw) -> tuple[dict, TrainConfig]:
    """The source's training summary and its recipe with `kw` applied (a plain fine-tune, no refit)."""
    summary = json.loads((Path(source) / "training.json").read_text())
    recorded = {k: v for k, v in summary.get("config", {}).items() if k in TrainConfig.__dataclass_fields__}
    cfg = replace(
        TrainConfig.from_kwargs(**recorded), refit_all=False, probe_first=False, freeze_encoder=False
    )
    return summary, replace(cfg, **kw)


def run_shrink(
    source: str,
    output: str,
    *,
    labels: list[str],
    paragraphs: list[str],
    layers: int | None = None,
    max_seq_length: int | None = None,
    int8: bool = False,
    **kw,
) -> dict:
    """A cheaper variant of the student in `source`, exported to `output` with its card.

    `layers`/`max_seq_length` below the source's: distilled as the module docstring says. `int8`: adds a
    static int8 encoder calibrated on unlabelled training-part paragraphs. Split, input format and recipe
    default to the source's (its training.json), so the held-out articles are the ones its agreement
    was measured on; `kw` overrides `TrainConfig` fields. The test articles are never looked at: the
    variant's agreement is on the validation articles, like the figures its choices were made on.
    """
    from transformers import AutoTokenizer

    from distill.export import export_student
    from distill.inference import model_id
    from distill.train import (
        calibrate_and_evaluate,
        default_cache_dir,
        seed_everything,
        split_labels,
        train_parts,
        train_summary,
    )

    started = time.time()
    source_summary, cfg = _source_config(source, **kw)
    model = StudentModel.from_pretrained(source).eval()
    tokenizer = AutoTokenizer.from_pretrained(source)
    total = model.encoder.config.num_hidden_layers
    cfg = replace(cfg, max_seq_length=int(max_seq_length or model.config.max_seq_length))
    layer_ids = evenly_spaced(total, layers or total)

    data = load_labels(labels, input_format=cfg.input_format)
    train, valid, test = split_labels(data, cfg)
    ids, articles, texts = unlabelled_texts(paragraphs, cfg.input_format, set(data.ids))
    keep = training_part(articles, set(valid.articles) | set(test.articles), cfg)
    if not keep:
        raise ValueError(f"no unlabelled paragraphs of training-part articles in {paragraphs}")
    record = {
        "source": model_id(source),
        "layers_kept": layer_ids,
        "source_layers": total,
        "max_seq_length": cfg.max_seq_length,
        "int8_encoder": int8,
        "class_weights": "teacher rows only" if cfg.class_balance else "none",
    }
    workdir = Path(output)
    workdir.mkdir(parents=True, exist_ok=True)
    distil = len(layer_ids) < total or cfg.max_seq_length != model.config.max_seq_length
    if distil:
        t0 = time.time()
        kept_ids = [ids[i] for i in keep]
        key = hashlib.sha256("\n".join([model_id(source), *kept_ids]).encode()).hexdigest()[:16]
        cache = Path(cfg.cache_dir or default_cache_dir()) / "shrink-targets" / f"{key}.npz"
        pseudo = source_targets(
            model,
            tokenizer,
            kept_ids,
            [articles[i] for i in keep],
            [texts[i] for i in keep],
            cache,
            cfg.progress,
        )
        record.update(unlabelled_rows=len(pseudo), unlabelled_articles=len(set(pseudo.articles)))
        record["target_seconds"] = round(time.time() - t0, 1)
        k_dt, k_dm = len(model.config.document_type_labels), len(model.config.domain_labels)
        mixed = concat(train, pseudo, k_dt, k_dm)
        variant = drop_layers(model, layer_ids, cfg.max_seq_length)
        seed_everything(cfg.seed)
        none = data.subset([])
        t0 = time.time()
        trained = train_parts(variant, tokenizer, (mixed, valid, none), cfg, workdir)
        if trained is None:  # not rank 0
            return {}
        fit, _, valid_raw, held_raw = trained
        train_seconds = time.time() - t0
        parts = (mixed, valid, none)
    else:  # same weights: only the int8 encoder differs
        from distill.predict import predict_logits

        variant, fit, train_seconds, parts = model, {}, 0.0, (train, valid, data.subset([]))
        valid_raw = None  # the source's temperatures stay
        held_raw = predict_logits(variant, tokenizer, valid.texts, batch_size=64)
    metrics = calibrate_and_evaluate(variant, valid, valid_raw, valid, held_raw)
    summary = train_summary(
        labels, source_summary["backbone"], cfg, data, parts, variant, metrics, fit, train_seconds
    )
    export_student(variant, tokenizer, str(workdir), summary)  # the torch weights: what CUDA runs
    if int8:
        rng = np.random.default_rng(cfg.seed)
        calibration = [texts[i] for i in rng.choice(keep, size=min(512, len(keep)), replace=False)]
        quantize_encoder(variant, tokenizer, calibration, workdir)
        int8_model, _ = load_model(workdir, int8=True)
        int8_raw = dict(
            zip(
                ("document_type_logits", "domain_logits", "educational_score"),
                Scorer(int8_model, tokenizer).predict_arrays(valid.texts),
                strict=True,
            )
        )
        summary["metrics_torch"] = summary["metrics"]  # what CUDA runs; the card states the CPU path's
        summary["metrics"], _ = calibrate_and_evaluate(variant, valid, None, valid, int8_raw)
    record["speed"] = speed_vs_source(source, str(workdir), valid.texts[:512])
    summary["variant"] = record
    export_student(variant, tokenizer, str(workdir), summary)
    if not cfg.keep_checkpoints:
        shutil.rmtree(workdir / "checkpoint", ignore_errors=True)
    summary["seconds"] = time.time() - started
    return summary
