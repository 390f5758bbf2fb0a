"""Ablation of the student recipe on the probe (frozen encoder): one change per row, validation articles.

Every row is `biomed-enrich train --freeze-encoder` with one option changed from the reference, trained
on the release split's train articles (v2 labels, seed 1; the test articles are removed before training
and never read) and scored on its validation articles, with a paired article bootstrap of the row minus
the reference. The probe's epoch is also selected on those validation articles, so absolute figures are
slightly optimistic; the rows share that bias, which is what a comparison needs. Fine-tuning rows cost
~1 h each per epoch on 2 AVX2 cores and are not run here (docs/distill.md says which are measured).

    python benchmarks/distill_ablation.py [--rows NAME ...] [--out benchmarks/results/distill_ablation.json]

Embeddings are cached per input format and length (the cache dir of `distill.train`), so rows that
change only the heads cost about a minute after the first row of their format.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from distill.data import RELEASE_SPLIT  # noqa: E402  (the project's article split)

LABELS = ROOT.parent / "shared" / "data" / "labels" / "teacher_labels_v2.parquet"
REFERENCE = "reference"
ROWS: dict[str, dict] = {  # the reference reads `section title | text` (TrainConfig.input_format)
    REFERENCE: {},
    "text_only": {"input_format": "text"},
    "section_title_and_path": {"input_format": "title_path_text"},
    "no_lexical_branch": {"bow_dim": 0},
    "no_class_weights": {"class_balance": False},
    "hard_labels": {"soft_targets": False},
    "mse_score_loss": {"score_loss": "mse"},
    "linear_heads": {"head_hidden": 0},
    "max_length_256": {"max_seq_length": 256},
}


def evaluate_row(name: str, options: dict, labels: str, valid_ids: set[str], workdir: str) -> dict:
    """Train one probe and return its validation predictions and headline."""
    from transformers import AutoTokenizer

    from distill.data import load_labels
    from distill.evaluate import raw_to_predictions
    from distill.metrics import headline
    from distill.model import StudentModel
    from distill.predict import predict_logits
    from distill.train import run_train

    model_dir = str(Path(workdir) / name)
    started = time.time()
    summary = run_train(
        [labels],
        model_dir,
        freeze_encoder=True,
        valid_fraction=RELEASE_SPLIT["valid_fraction"],
        seed=RELEASE_SPLIT["seed"],
        progress=False,
        **options,
    )
    seconds = time.time() - started
    student = StudentModel.from_pretrained(model_dir)
    data = load_labels([labels], input_format=student.config.input_format)
    valid = data.subset([i for i, rid in enumerate(data.ids) if rid in valid_ids])
    raw = predict_logits(student, AutoTokenizer.from_pretrained(model_dir), valid.texts, batch_size=64)
    return {
        "options": options,
        "headline": headline(summary["metrics"]),
        "seconds": seconds,
        "valid": valid,
        "pred": raw_to_predictions(raw, student.config),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", default=str(LABELS))
    parser.add_argument("--rows", nargs="+", choices=sorted(ROWS), default=list(ROWS))
    parser.add_argument(
        "--max-seq-length",
        type=int,
        default=128,
        help="every row's length unless the row sets it (embedding cost)",
    )
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "distill_ablation.json"))
    args = parser.parse_args()

    from cpu import cpu_info

    from distill.data import load_labels, split_by_article, write_labels_without
    from distill.metrics import bootstrap_headline_difference
    from pipelines.core.schemas import DOCUMENT_TYPE_LABELS, DOMAIN_LABELS

    data = load_labels([args.labels])
    _, valid_idx, test_idx = split_by_article(data.articles, **RELEASE_SPLIT)
    valid_ids = {data.ids[i] for i in valid_idx}
    names = [REFERENCE] + [n for n in args.rows if n != REFERENCE]
    labels_kw = {"document_type_labels": list(DOCUMENT_TYPE_LABELS), "domain_labels": list(DOMAIN_LABELS)}
    result = {
        "what": "probe (frozen MiniLM-L6 + heads) ablation, one change per row from the reference "
        f"(distill.config.TrainConfig defaults with --freeze-encoder, {args.max_seq_length} tokens)",
        "labels": Path(args.labels).name,
        "split": RELEASE_SPLIT,
        "bootstrap": "paired, 1000 draws over validation articles; row minus reference, 95% interval",
        "rows": {},
        "cpu": cpu_info(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        labels = write_labels_without(args.labels, {data.ids[i] for i in test_idx}, tmp)
        for name in names:  # the file is rewritten after every row: a stopped run keeps what it measured
            options = {"max_seq_length": args.max_seq_length, **ROWS[name]}
            r = evaluate_row(name, options, labels, valid_ids, tmp)
            row = {
                "options": r["options"],
                "headline": r["headline"],
                "train_seconds": round(r["seconds"], 1),
            }
            if name == REFERENCE:
                ref = r
                result["evaluated_on"] = {
                    "part": "validation",
                    "paragraphs": len(ref["valid"]),
                    "articles": len(set(ref["valid"].articles)),
                }
            else:
                assert r["valid"].ids == ref["valid"].ids  # the same paragraphs in the same order
                row["minus_reference_bootstrap"] = bootstrap_headline_difference(
                    ref["valid"].truth(), r["pred"], ref["pred"], ref["valid"].articles, **labels_kw
                )
            result["rows"][name] = row
            Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
            print(f"{name:24s} {json.dumps({k: round(v, 3) for k, v in r['headline'].items()})}", flush=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
