"""Benchmark: the default student vs the plain fine-tune and a TF-IDF + linear baseline, release split.

The release split (`distill.data.split_by_article(valid_fraction=0.1, test_fraction=0.2, seed=1)`
on teacher_labels_v2.parquet): the student and the baseline train on the train articles and make
every choice on the validation articles (the student's epoch, loss, temperatures; the baseline's class
weighting and regularisation, `distill.baseline`). By default both are scored on the validation
articles only, written to `benchmarks/results/distill_validation.json`: that is what development
looks at. `--final` scores the test articles instead, once per release, and writes
`benchmarks/results/distill.json`; it is the only way test metrics are computed.

    python benchmarks/distill.py [--final] [--baseline-only] [--freeze-encoder] [--labels P --split-seed S]

The plain fine-tune of issue 16 (`benchmarks/plain_finetune.py`: linear heads, hard labels, CE+CE+MSE,
3 epochs, no selection) is the second baseline, on the validation articles: the benchmark runs it (it
resumes, and reuses a finished run with the same options) and compares the student with its last epoch,
paired bootstrap over the same articles.

The student is `biomed-enrich train`'s default (`distill.config.TrainConfig`): a 3-epoch fine-tune at
192 tokens of `section title | text`, ~30 min on 2 CPU cores with native bf16, about a minute on a GPU
(`--freeze-encoder`: the probe only). Without `--final` it is trained
on the labels minus the test articles, so not even its training summary sees them. `--baseline-only`
refits only the baseline (minutes) and compares it with the student figures already recorded in the
output file for the same labels, split and part (they are kept as recorded, marked as such).
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
RESULTS = {"validation": "distill_validation.json", "test": "distill.json"}
LOWER_IS_BETTER = {"educational_score_mae"}


def train_student(args, split: dict, test_ids: set[str], part, labels_kw: dict) -> tuple[dict, dict]:
    """Train the default student; its summary and its paired bootstrap lead over the baseline on `part`."""
    from transformers import AutoTokenizer

    from distill.data import write_labels_without
    from distill.evaluate import raw_to_predictions
    from distill.model import StudentModel
    from distill.predict import predict_logits
    from distill.train import run_train

    options = dict(
        max_seq_length=args.max_seq_length, freeze_encoder=args.freeze_encoder, input_format=args.input_format
    )
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        if args.final:  # held-out part = test
            summary = run_train([args.labels], args.model_dir, **options, **split)
        else:  # the test rows are not even read; the validation articles stay the same (hash buckets)
            labels = write_labels_without(args.labels, test_ids, tmp)
            summary = run_train(
                [labels],
                args.model_dir,
                **options,
                valid_fraction=split["valid_fraction"],
                seed=split["seed"],
            )
    student = StudentModel.from_pretrained(args.model_dir)
    raw = predict_logits(student, AutoTokenizer.from_pretrained(args.model_dir), part.texts, batch_size=64)
    record = {
        "mode": summary["mode"],
        "backbone": summary["backbone"],
        "config": summary["config"],
        "metrics": summary["metrics"],
        "held_out_part": summary["held_out_part"],
        "probe_headline": (summary["fit"].get("probe") or {}).get("headline"),
        "temperatures": summary["temperatures"],
        "train_seconds": summary["train_seconds"],
        "run_seconds": time.time() - started,
        "recorded": False,
    }
    return record, raw_to_predictions(raw, student.config), student.config


def beyond_ci95(diffs: dict) -> bool:
    """Whether every metric's 95% bootstrap interval of (student - other) lies on the student's side."""
    return all(v["ci95_high"] < 0 if k in LOWER_IS_BETTER else v["ci95_low"] > 0 for k, v in diffs.items())


def plain_baseline(args, part, config) -> tuple[dict, dict] | None:
    """(record, predictions on `part`) of the plain fine-tune's last epoch, run or resumed now."""
    import subprocess

    from plain_finetune import last_epoch_outputs  # benchmarks/plain_finetune.py writes the .npz

    from distill.evaluate import evaluate_outputs, raw_to_predictions
    from distill.metrics import headline

    if args.final or args.no_plain:
        return None  # the plain benchmark scores the validation articles only
    out = Path(args.plain)
    cmd = [sys.executable, str(ROOT / "benchmarks" / "plain_finetune.py"), "--labels", args.labels]
    cmd += ["--input-format", args.input_format, "--out", str(out)]
    subprocess.run(cmd, check=True)
    result = json.loads(out.read_text())
    last, raw = last_epoch_outputs(out.with_suffix(".npz"), part.ids)
    ones = {k: 1.0 for k in config.temperatures}  # the plain recipe has no calibration
    record = {
        "name": "plain fine-tune (benchmarks/plain_finetune.py), last epoch",
        "options": result["options"],
        "precision": result["precision"],
        "cpu": result["cpu"],
        "epoch": last,
        "headline": headline(evaluate_outputs(raw, part, config, temperatures=ones)),
        "train_seconds": sum(e["train_seconds"] for e in result["epochs"]),
        "per_epoch": [{"epoch": e["epoch"], **e["validation"]} for e in result["epochs"]],
    }
    return record, raw_to_predictions(raw, config, temperatures=ones)


def recorded_student(out: Path, labels: str, split: dict, part_name: str) -> tuple[dict, dict]:
    """The student figures an earlier run wrote to `out` for the same labels, split and part."""
    if not out.exists():
        raise SystemExit(f"--baseline-only needs student figures in {out}; run without it first")
    old = json.loads(out.read_text())
    same = (
        Path(old["labels"]).name == Path(labels).name
        and {k: old["split"][k] for k in split} == split
        and old.get("evaluated_on", "test") == part_name
    )
    if not same:
        raise SystemExit(f"{out} holds figures for another labels file, split or part: rerun the student")
    return dict(old["student"], recorded=True), old


def main() -> None:
    from distill.config import TrainConfig
    from distill.inputs import INPUT_FORMATS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", default=str(LABELS))
    parser.add_argument("--split-seed", type=int, default=RELEASE_SPLIT["seed"])
    parser.add_argument("--final", action="store_true", help="score the test articles (once per release)")
    parser.add_argument("--baseline-only", action="store_true", help="refit the baseline only")
    parser.add_argument("--model-dir", default="/tmp/biomed-enrich-distill-student")
    parser.add_argument("--freeze-encoder", action="store_true", help="the probe only (no fine-tuning)")
    parser.add_argument("--max-seq-length", type=int, default=TrainConfig.max_seq_length)
    parser.add_argument(
        "--input-format",
        choices=INPUT_FORMATS,
        default=TrainConfig.input_format,
        help="what student and baseline read (distill.inputs)",
    )
    parser.add_argument(
        "--plain",
        default=str(ROOT / "benchmarks" / "results" / "plain_finetune.json"),
        help="the plain fine-tune's results (run, resumed or reused by benchmarks/plain_finetune.py)",
    )
    parser.add_argument("--no-plain", action="store_true", help="skip the plain fine-tune baseline")
    parser.add_argument("--out", help="results JSON (default: benchmarks/results/distill[_validation].json)")
    args = parser.parse_args()

    from cpu import cpu_info

    from distill.baseline import evaluate_baseline
    from distill.data import load_labels, split_by_article
    from distill.metrics import PAPER, bootstrap_headline_difference, headline
    from pipelines.core.schemas import DOCUMENT_TYPE_LABELS, DOMAIN_LABELS

    split = dict(RELEASE_SPLIT, seed=args.split_seed)
    data = load_labels([args.labels], input_format=args.input_format)
    train_idx, valid_idx, test_idx = split_by_article(data.articles, **split)
    train, valid, test = data.subset(train_idx), data.subset(valid_idx), data.subset(test_idx)
    part_name = "test" if args.final else "validation"
    part = test if args.final else valid
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / RESULTS[part_name]

    labels_kw = {"document_type_labels": list(DOCUMENT_TYPE_LABELS), "domain_labels": list(DOMAIN_LABELS)}
    t0 = time.time()
    baseline, baseline_pred = evaluate_baseline(train, valid, part, **labels_kw)
    baseline_seconds = time.time() - t0

    previous, plain = None, None
    if args.baseline_only:
        student, previous = recorded_student(out, args.labels, split, part_name)
        lead = None
    else:
        test_ids = {data.ids[i] for i in test_idx}
        student, student_pred, config = train_student(args, split, test_ids, part, labels_kw)
        lead = bootstrap_headline_difference(
            part.truth(), student_pred, baseline_pred, part.articles, **labels_kw
        )
        plain = plain_baseline(args, part, config)
    ours, theirs = headline(student["metrics"]), headline(baseline)
    student["headline"] = ours
    beats = {k: (ours[k] < theirs[k]) if k in LOWER_IS_BETTER else (ours[k] > theirs[k]) for k in ours}
    paper = {
        "document_type_f1": PAPER["document_type"]["f1"],
        "document_type_kappa": PAPER["document_type"]["kappa"],
        "domain_f1": PAPER["domain"]["f1"],
        "educational_score_pearson": PAPER["educational_score"]["pearson"],
        "educational_score_mae": PAPER["educational_score"]["mae"],
    }
    result = {
        "labels": args.labels,
        "evaluated_on": part_name,
        "split": {
            **split,
            "train": len(train),
            "validation": len(valid),
            "test": len(test),
            "articles": {
                n: len(set(s.articles)) for n, s in (("train", train), ("validation", valid), ("test", test))
            },
        },
        "student": student,
        "baseline": {
            "name": "tfidf-1-2gram + logistic regression (class weighting and C tuned on validation) / ridge",
            "headline": theirs,
            "metrics": baseline,
            "train_seconds": baseline_seconds,
        },
        "paper": paper,
        "student_over_baseline": {k: ours[k] / theirs[k] for k in ours},
        "student_beats_baseline": beats,
        "student_beats_baseline_on_every_metric": all(beats.values()),
        "gap_to_paper": {k: ours[k] - paper[k] for k in ours},
        "annotator_ceiling": {"document_type_f1": 0.94, "domain_f1": 0.94, "educational_score_pearson": 0.89},
        "cpu": cpu_info(),
    }
    if lead is not None:
        result["student_minus_baseline_bootstrap"] = {
            "resampled": f"{part_name} articles",
            "draws": 1000,
            **lead,
        }
        result["student_beats_baseline_beyond_ci95_on_every_metric"] = beyond_ci95(lead)
    if plain is not None:
        plain_record, plain_pred = plain
        over_plain = bootstrap_headline_difference(
            part.truth(), student_pred, plain_pred, part.articles, **labels_kw
        )
        result["plain_fine_tune"] = plain_record
        result["student_minus_plain_bootstrap"] = {"resampled": f"{part_name} articles", **over_plain}
        result["student_beats_plain_beyond_ci95_on_every_metric"] = beyond_ci95(over_plain)
    if previous is not None:
        result["history"] = previous.get("history", []) + [
            {
                "replaced_baseline": previous["baseline"]["name"],
                "replaced_baseline_headline": previous["baseline"]["headline"],
                "replaced_baseline_chosen": previous["baseline"]["metrics"].get("chosen_regularisation"),
                "student_minus_replaced_baseline_bootstrap": previous.get("student_minus_baseline_bootstrap"),
            }
        ]
    if part_name == "validation":
        result["note"] = "validation metrics: the part every choice was made on (optimistic for both sides)"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, sort_keys=True, default=float))
    how = "as recorded earlier" if args.baseline_only else "trained now"
    print(f"on the {part_name} articles ({len(part)} paragraphs); student {how}")
    print(f"{'metric':28s} {'student':>8s} {'tfidf':>8s} {'paper':>6s}")
    for k in ours:
        print(f"{k:28s} {ours[k]:8.3f} {theirs[k]:8.3f} {paper[k]:6.3f}")
    for name, diffs in (("tfidf", lead), ("plain", result.get("student_minus_plain_bootstrap"))):
        for k, v in (diffs or {}).items():
            if isinstance(v, dict):
                ci = f"[{v['ci95_low']:+.3f}, {v['ci95_high']:+.3f}]"
                print(f"{k:28s} student - {name} {v['difference']:+.3f}, 95% CI {ci}")
    print(f"student beats baseline on every metric: {all(beats.values())}; wrote {out}")


if __name__ == "__main__":
    main()
