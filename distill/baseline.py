"""TF-IDF + linear models: the baseline any student must clearly beat, on the same split.

Word 1-2-gram TF-IDF; logistic regression for the class heads, ridge regression for the score;
the regularisation strength of each is picked on the validation part, never on the held-out one.
"""

from __future__ import annotations

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import f1_score

from distill.data import LabelledSet
from distill.metrics import agreement


def _pick(make, grid, x, y, vx, vy, score):
    best = None
    for c in grid:
        model = make(c).fit(x, y)
        s = score(vy, model.predict(vx)) if vx is not None else 0.0
        if best is None or s > best[0]:
            best = (s, c, model)
    return best[2], best[1]


def fit_baseline(train: LabelledSet, valid: LabelledSet | None = None) -> dict:
    """Fit the vectoriser and the three linear models; returns them with the chosen regularisation."""
    vec = TfidfVectorizer(
        ngram_range=(1, 2), min_df=2, max_features=100_000, sublinear_tf=True, strip_accents="unicode"
    )
    x = vec.fit_transform(train.texts)
    vx = vec.transform(valid.texts) if valid is not None and len(valid) else None
    macro = lambda a, b: f1_score(a, b, average="macro")  # noqa: E731
    neg_mae = lambda a, b: -float(np.abs(a - b).mean())  # noqa: E731
    logreg = lambda c: LogisticRegression(C=c, max_iter=3000)  # noqa: E731
    models, chosen = {}, {}
    for head in ("document_type", "domain"):
        models[head], chosen[head] = _pick(
            logreg,
            (2.0, 8.0, 32.0),
            x,
            getattr(train, head),
            vx,
            None if vx is None else getattr(valid, head),
            macro,
        )
    models["educational_score"], chosen["educational_score"] = _pick(
        lambda a: Ridge(alpha=a),
        (0.3, 1.0, 3.0),
        x,
        train.educational_score,
        vx,
        None if vx is None else valid.educational_score,
        neg_mae,
    )
    return {"vectorizer": vec, "models": models, "chosen": chosen}


def _full_proba(model, x, k: int) -> np.ndarray:
    """Class probabilities over all k labels (a label absent from training gets probability 0)."""
    out = np.zeros((x.shape[0], k))
    out[:, model.classes_] = model.predict_proba(x)
    return out


def predict_baseline(baseline: dict, texts: list[str], n_classes: dict[str, int]) -> dict[str, np.ndarray]:
    x = baseline["vectorizer"].transform(texts)
    m = baseline["models"]
    return {
        "document_type": m["document_type"].predict(x),
        "domain": m["domain"].predict(x),
        "educational_score": np.clip(m["educational_score"].predict(x), 1.0, 5.0),
        "document_type_probs": _full_proba(m["document_type"], x, n_classes["document_type"]),
        "domain_probs": _full_proba(m["domain"], x, n_classes["domain"]),
    }


def evaluate_baseline(
    train: LabelledSet,
    valid: LabelledSet | None,
    held_out: LabelledSet,
    *,
    document_type_labels,
    domain_labels,
) -> tuple[dict, dict[str, np.ndarray]]:
    """Fit on `train` (tuned on `valid`), score `held_out`: the same metrics as the student, and the
    predictions they were computed from (for paired comparisons with the student)."""
    baseline = fit_baseline(train, valid)
    n_classes = {"document_type": len(document_type_labels), "domain": len(domain_labels)}
    pred = predict_baseline(baseline, held_out.texts, n_classes)
    metrics = agreement(
        held_out.truth(),
        pred,
        document_type_labels=list(document_type_labels),
        domain_labels=list(domain_labels),
    )
    metrics["chosen_regularisation"] = baseline["chosen"]
    return metrics, pred
