"""Agreement of a trained student with teacher labels: `run_evaluate` is the stage's entry point."""

from __future__ import annotations

import numpy as np

from distill.data import LabelledSet
from distill.metrics import agreement


def raw_to_predictions(raw: dict[str, np.ndarray], config, *, temperatures: dict | None = None) -> dict:
    """Raw head outputs as `distill.metrics.agreement` takes predictions: class indices, clamped
    scores and (temperature-scaled, by default with the config's temperatures) class probabilities."""
    from distill.predict import logits_to_labels

    class _Cfg:  # the config with other temperatures, without mutating it
        pass

    cfg = config
    if temperatures is not None:
        cfg = _Cfg()
        cfg.__dict__.update(
            temperatures=temperatures,
            document_type_labels=config.document_type_labels,
            domain_labels=config.domain_labels,
            score_min=config.score_min,
            score_max=config.score_max,
        )
    pred = logits_to_labels(raw["document_type_logits"], raw["domain_logits"], raw["educational_score"], cfg)
    dt_index = {n: i for i, n in enumerate(config.document_type_labels)}
    dm_index = {n: i for i, n in enumerate(config.domain_labels)}
    return {
        "document_type": np.array([dt_index[n] for n in pred["document_type"]], dtype=np.int64),
        "domain": np.array([dm_index[n] for n in pred["domain"]], dtype=np.int64),
        "educational_score": pred["educational_score"],
        "document_type_probs": pred["document_type_scores"],
        "domain_probs": pred["domain_scores"],
    }


def evaluate_outputs(
    raw: dict[str, np.ndarray], data: LabelledSet, config, *, temperatures: dict | None = None
) -> dict:
    """Metrics of raw head outputs against `data` (temperatures default to the config's)."""
    return agreement(
        data.truth(),
        raw_to_predictions(raw, config, temperatures=temperatures),
        document_type_labels=list(config.document_type_labels),
        domain_labels=list(config.domain_labels),
    )


def run_evaluate(
    model_dir: str,
    labels: list[str],
    *,
    paragraphs: list[str] | None = None,
    output: str | None = None,
    batch_size: int = 32,
) -> dict:
    """Score every usable labelled paragraph with the student in `model_dir`; metrics to `output` (JSON).

    Evaluate on articles the student was not trained on (e.g. a later annotation round), otherwise
    the figures are optimistic. `output` defaults to `<model_dir>/evaluation.json`.
    """
    from transformers import AutoTokenizer

    from distill.data import load_labels
    from distill.model import StudentModel
    from distill.predict import predict_logits
    from pipelines.core.io import write_json

    model = StudentModel.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    data = load_labels(
        labels,
        paragraphs,
        document_type_labels=tuple(model.config.document_type_labels),
        domain_labels=tuple(model.config.domain_labels),
        input_format=getattr(model.config, "input_format", "text"),
    )
    if len(data) == 0:
        raise ValueError(f"no usable labelled paragraphs in {labels}: {data.stats()}")
    raw = predict_logits(model, tokenizer, data.texts, batch_size=batch_size)
    result = {
        "model_dir": model_dir,
        "labels": list(labels),
        "data": data.stats(),
        "metrics": evaluate_outputs(raw, data, model.config),
        "metrics_uncalibrated": evaluate_outputs(raw, data, model.config, temperatures={}),
    }
    write_json(result, output or f"{model_dir.rstrip('/')}/evaluation.json")
    return result
