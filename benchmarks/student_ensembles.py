"""Is the student's plateau variance or capacity? Students, and the averages of their answers, on the
validation articles of the release split, each against a reference student (paired article bootstrap).

    python benchmarks/student_ensembles.py --reference DEFAULT [NAME=DIR ...] \
        [--plain benchmarks/results/plain_finetune.npz]

If averaging the calibrated probabilities (and scores) of independently trained students does not beat
the best of them, neither will distilling that average back into one student (self-training, an
ensemble distilled): the headroom is in the encoder and the labels, not in the fine-tune's variance.
`--plain` adds the plain fine-tune's last epoch (benchmarks/plain_finetune.py's saved logits, no
temperatures). Writes benchmarks/results/student_ensembles.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from cpu import cpu_info  # noqa: E402
from plain_finetune import last_epoch_outputs  # noqa: E402

from distill.data import RELEASE_SPLIT  # noqa: E402

LABELS = ROOT.parent / "shared" / "data" / "labels" / "teacher_labels_v2.parquet"


def student_answers(model_dir: str, texts: list[str]) -> dict[str, np.ndarray]:
    """Calibrated class probabilities and clamped scores of a trained student (fp32)."""
    from transformers import AutoTokenizer

    from distill.evaluate import raw_to_predictions
    from distill.model import StudentModel
    from distill.predict import predict_logits

    model = StudentModel.from_pretrained(model_dir).eval()
    raw = predict_logits(model, AutoTokenizer.from_pretrained(model_dir), texts, batch_size=64)
    return raw_to_predictions(raw, model.config)


def plain_answers(npz: str, ids: list[str], config) -> dict[str, np.ndarray]:
    """The plain fine-tune's last epoch on these ids (its logits as saved, no temperatures)."""
    from distill.evaluate import raw_to_predictions

    _, raw = last_epoch_outputs(npz, ids)
    return raw_to_predictions(raw, config, temperatures={k: 1.0 for k in config.temperatures})


def average(answers: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Labels from the mean probabilities and the mean (clamped) score of several students."""
    mean = {k: np.mean([a[k] for a in answers], axis=0) for k in ("document_type_probs", "domain_probs")}
    return {
        "document_type": mean["document_type_probs"].argmax(1),
        "domain": mean["domain_probs"].argmax(1),
        "educational_score": np.mean([a["educational_score"] for a in answers], axis=0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", required=True, help="the student the others are compared with")
    parser.add_argument("students", nargs="*", metavar="NAME=DIR")
    parser.add_argument("--plain", help="plain_finetune.npz of benchmarks/plain_finetune.py")
    parser.add_argument("--labels", default=str(LABELS))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "student_ensembles.json"))
    args = parser.parse_args()

    from distill.data import load_labels, split_by_article
    from distill.metrics import agreement, bootstrap_headline_difference, headline
    from distill.model import StudentConfig
    from pipelines.core.schemas import DOCUMENT_TYPE_LABELS, DOMAIN_LABELS

    kw = {"document_type_labels": list(DOCUMENT_TYPE_LABELS), "domain_labels": list(DOMAIN_LABELS)}
    config = StudentConfig.from_pretrained(args.reference)
    data = load_labels([args.labels], input_format=config.input_format)
    _, valid_idx, _ = split_by_article(data.articles, **RELEASE_SPLIT)
    valid = data.subset(valid_idx)
    truth = valid.truth()
    answers = {"reference": student_answers(args.reference, valid.texts)}
    for spec in args.students:
        name, _, path = spec.partition("=")
        answers[name] = student_answers(path, valid.texts)
    if args.plain:
        answers["plain"] = plain_answers(args.plain, list(valid.ids), config)
    reference = average([answers["reference"]])
    rows = []
    for size in range(1, len(answers) + 1):
        for names in itertools.combinations(answers, size):
            pred = average([answers[n] for n in names])
            row = {"members": list(names), "headline": headline(agreement(truth, pred, **kw))}
            if names != ("reference",):
                row["minus_reference"] = bootstrap_headline_difference(
                    truth, pred, reference, valid.articles, **kw
                )
            rows.append(row)
            shown = " ".join(f"{k}={v:.3f}" for k, v in row["headline"].items())
            print(f"{'+'.join(names):40s} {shown}")
    result = {
        "part": f"validation articles of the release split {RELEASE_SPLIT} ({len(valid)} paragraphs)",
        "reference": args.reference,
        "students": dict(s.partition("=")[::2] for s in args.students),
        "plain": args.plain,
        "rows": rows,
        "cpu": cpu_info(),
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
