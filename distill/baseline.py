"""TF-IDF + linear models: the baseline any student must clearly beat, on the same split.

Word 1-2-gram TF-IDF; logistic regression for the class heads, ridge regression for the score.
It gets the same care as the student: the student trains with class weights, so the classifiers may
too (`class_weight` None or "balanced"), and the student's choices are made on the validation
articles, so every knob here is too (class weighting and C per head, the ridge's alpha), never on
the held-out part.
"""

from __future__ import annotations

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import f1_score

from distill.data import LabelledSet
from distill.metrics import agreement

# Searched on the validation articles (the first entry is the default without validation data).
CLASS_WEIGHTS = ("balanced", None)
C_GRID = (2.0, 0.5, 8.0, 32.0, 128.0)
ALPHA_GRID = (1.0, 0.1, 0.3, 3.0, 10.0)


def _pick(make, grid, x, y, vx, vy, score):
    """The setting of `grid` whose model scores best on validation (the first one without validation)."""
    best = None
    for setting in grid if vx is not None else grid[:1]:
        model = make(setting).fit(x, y)
        s = score(vy, model.predict(vx)) if vx is not None else 0.0
        if best is None or s > best[0]:
            best = (s, setting, model)
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
    logreg = lambda s: LogisticRegression(class_weight=s[0], C=s[1], max_iter=3000)  # noqa: E731
    grid = [(w, c) for w in CLASS_WEIGHTS for c in C_GRID]
    models, chosen = {}, {}
    for head in ("document_type", "domain"):
        models[head], (weight, c) = _pick(
            logreg,
            grid,
            x,
            getattr(train, head),
            vx,
            None if vx is None else getattr(valid, head),
            macro,
        )
        chosen[head] = {"class_weight": weight, "C": c}
    models["educational_score"], alpha = _pick(
        lambda a: Ridge(alpha=a),
        ALPHA_GRID,
        x,
        train.educational_score,
        vx,
        None if vx is None else valid.educational_score,
        neg_mae,
    )
    chosen["educational_score"] = {"alpha": alpha}
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
    metrics["chosen_on_validation"] = baseline["chosen"]
    return metrics, pred
