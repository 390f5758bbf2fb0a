"""Reference prediction: texts -> labels, calibrated probabilities and scores (fp32, plain PyTorch).

`logits_to_labels` is the one conversion from raw head outputs to released columns; fast inference
paths import it so they cannot drift from this reference.
"""

from __future__ import annotations

import numpy as np
import torch

from distill.metrics import softmax


def logits_to_labels(
    document_type_logits: np.ndarray,
    domain_logits: np.ndarray,
    educational_score: np.ndarray,
    config,
) -> dict[str, np.ndarray]:
    """Temperature-scaled softmax, argmax label names in the release order, score clamped to the scale.

    Returns `document_type` / `domain` (label names), `document_type_scores` / `domain_scores`
    ([n, k] float64 probabilities in `config.*_labels` order) and `educational_score` (float64).
    """
    temps = config.temperatures or {}
    dt_probs = softmax(np.asarray(document_type_logits), float(temps.get("document_type", 1.0)))
    dm_probs = softmax(np.asarray(domain_logits), float(temps.get("domain", 1.0)))
    dt_names = np.asarray(config.document_type_labels, dtype=object)
    dm_names = np.asarray(config.domain_labels, dtype=object)
    score = np.clip(np.asarray(educational_score, dtype=np.float64), config.score_min, config.score_max)
    return {
        "document_type": dt_names[dt_probs.argmax(axis=1)],
        "domain": dm_names[dm_probs.argmax(axis=1)],
        "educational_score": score,
        "document_type_scores": dt_probs,
        "domain_scores": dm_probs,
    }


@torch.no_grad()
def predict_logits(
    model, tokenizer, texts: list[str], *, batch_size: int = 32, max_length: int | None = None
) -> dict:
    """Raw head outputs for `texts` in input order (model in eval mode, fp32)."""
    max_length = max_length or model.config.max_seq_length
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    parts: dict[str, list] = {"document_type_logits": [], "domain_logits": [], "educational_score": []}
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(
            list(texts[start : start + batch_size]),
            truncation=True,
            max_length=max_length,
            padding=True,
            return_tensors="pt",
        ).to(device)
        out = model(**enc)
        for key in parts:
            parts[key].append(getattr(out, key).float().cpu().numpy())
    model.train(was_training)
    k_dt, k_dm = len(model.config.document_type_labels), len(model.config.domain_labels)
    empty = {"document_type_logits": (0, k_dt), "domain_logits": (0, k_dm), "educational_score": (0,)}
    return {k: np.concatenate(v) if v else np.zeros(empty[k], dtype=np.float32) for k, v in parts.items()}


def predict(model, tokenizer, texts: list[str], batch_size: int = 32) -> dict[str, np.ndarray]:
    """Labels, calibrated class probabilities and educational scores for `texts`."""
    raw = predict_logits(model, tokenizer, texts, batch_size=batch_size)
    return logits_to_labels(
        raw["document_type_logits"], raw["domain_logits"], raw["educational_score"], model.config
    )
