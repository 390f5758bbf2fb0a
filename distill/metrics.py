"""Agreement between the student (or any predictor) and the teacher: pure functions on arrays."""

from __future__ import annotations

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, cohen_kappa_score, confusion_matrix, f1_score

# The paper's student (XLM-R-base, 358K labels) against its teacher on 39,800 held-out paragraphs.
PAPER = {
    "educational_score": {"pearson": 0.876, "mae": 0.326},
    "domain": {"f1": 0.954},
    "document_type": {"f1": 0.925, "kappa": 0.821},
}


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    """Top-label ECE: confidence-vs-accuracy gap averaged over equal-width confidence bins."""
    probs, y = np.asarray(probs), np.asarray(y)
    if len(y) == 0:
        return float("nan")
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=False):
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            ece += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(ece)


def nll(probs: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(np.asarray(probs)[np.arange(len(y)), y], 1e-12, 1.0)
    return float(-np.log(p).mean())


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, labels: list[str], probs: np.ndarray | None = None
) -> dict:
    """Accuracy, macro-F1, Cohen's kappa, per-label F1 and the confusion matrix (rows = teacher)."""
    k = list(range(len(labels)))
    out = {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "f1": float(f1_score(y_true, y_pred, labels=k, average="macro", zero_division=0)),
        "f1_weighted": float(f1_score(y_true, y_pred, labels=k, average="weighted", zero_division=0)),
        "kappa": float(cohen_kappa_score(y_true, y_pred, labels=k)),
        "per_label_f1": dict(
            zip(
                labels,
                map(float, f1_score(y_true, y_pred, labels=k, average=None, zero_division=0)),
                strict=True,
            )
        ),
        "confusion_matrix": {
            "labels": list(labels),
            "matrix": confusion_matrix(y_true, y_pred, labels=k).tolist(),
        },
    }
    if probs is not None:
        out["ece"] = expected_calibration_error(probs, y_true)
        out["nll"] = nll(probs, y_true)
    return out


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """Pearson r, Spearman rho and MAE of the educational score (plus accuracy of the rounded score)."""
    y_true, y_pred = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    constant = np.ptp(y_true) == 0 or np.ptp(y_pred) == 0
    return {
        "n": int(len(y_true)),
        "pearson": float("nan") if constant else float(pearsonr(y_true, y_pred)[0]),
        "spearman": float("nan") if constant else float(spearmanr(y_true, y_pred)[0]),
        "mae": float(np.abs(y_true - y_pred).mean()),
        "rounded_accuracy": float((np.clip(np.rint(y_pred), 1, 5) == y_true).mean()),
    }


def agreement(
    truth: dict[str, np.ndarray],
    pred: dict[str, np.ndarray],
    *,
    document_type_labels: list[str],
    domain_labels: list[str],
) -> dict:
    """All agreement metrics. `truth`: class indices and scores; `pred`: the same plus optional `*_probs`."""
    return {
        "document_type": classification_metrics(
            truth["document_type"],
            pred["document_type"],
            document_type_labels,
            pred.get("document_type_probs"),
        ),
        "domain": classification_metrics(
            truth["domain"], pred["domain"], domain_labels, pred.get("domain_probs")
        ),
        "educational_score": regression_metrics(truth["educational_score"], pred["educational_score"]),
    }


def headline(metrics: dict) -> dict:
    """The paper's headline figures from a full metrics dict."""
    return {
        "document_type_f1": metrics["document_type"]["f1"],
        "document_type_kappa": metrics["document_type"]["kappa"],
        "domain_f1": metrics["domain"]["f1"],
        "educational_score_pearson": metrics["educational_score"]["pearson"],
        "educational_score_mae": metrics["educational_score"]["mae"],
    }


def bootstrap_headline_difference(
    truth: dict[str, np.ndarray],
    pred_a: dict[str, np.ndarray],
    pred_b: dict[str, np.ndarray],
    groups: list[str],
    *,
    document_type_labels: list[str],
    domain_labels: list[str],
    n: int = 1000,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Headline(a) - headline(b) with a 95% interval from a paired bootstrap over `groups` (articles).

    Paragraphs of one article are not independent, so whole articles are resampled, the same draws
    for both predictions: the interval says whether a's lead over b is larger than the luck of which
    articles were held out. Returns per metric the observed difference, 2.5% and 97.5% quantiles.
    """
    labels = {"document_type_labels": document_type_labels, "domain_labels": domain_labels}
    keys = ("document_type", "domain", "educational_score")

    def diff(idx: np.ndarray) -> dict[str, float]:
        t = {k: np.asarray(truth[k])[idx] for k in keys}
        a = headline(agreement(t, {k: np.asarray(pred_a[k])[idx] for k in keys}, **labels))
        b = headline(agreement(t, {k: np.asarray(pred_b[k])[idx] for k in keys}, **labels))
        return {k: a[k] - b[k] for k in a}

    rows: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        rows.setdefault(g, []).append(i)
    members = [np.array(r) for r in rows.values()]
    rng = np.random.default_rng(seed)
    draws = [
        diff(np.concatenate([members[j] for j in rng.integers(0, len(members), len(members))]))
        for _ in range(n)
    ]
    observed = diff(np.arange(len(groups)))
    return {
        k: {
            "difference": observed[k],
            "ci95_low": float(np.nanquantile([d[k] for d in draws], 0.025)),
            "ci95_high": float(np.nanquantile([d[k] for d in draws], 0.975)),
        }
        for k in observed
    }
