"""Write a trained student as a self-contained model directory.

`save_pretrained` (config with label maps and temperatures, weights) + tokenizer + `agreement.json`
(how far the student agrees with its teacher on held-out articles) + a README.md model card.
"""

from __future__ import annotations

import json
from pathlib import Path

from distill.metrics import PAPER, headline


def agreement_record(summary: dict) -> dict:
    """The tracked agreement artifact: per-label F1, confusion matrices, kappa, score r/MAE, calibration."""
    after, before = summary["metrics"], summary["metrics_uncalibrated"]
    heads = {}
    for head in ("document_type", "domain"):
        m = after[head]
        heads[head] = {
            "accuracy": m["accuracy"],
            "macro_f1": m["f1"],
            "kappa": m["kappa"],
            "per_label_f1": m["per_label_f1"],
            "confusion_matrix": m["confusion_matrix"],
            "calibration": {
                "temperature": summary["temperatures"].get(head, 1.0),
                "ece_before": before[head].get("ece"),
                "ece_after": m.get("ece"),
                "nll_before": before[head].get("nll"),
                "nll_after": m.get("nll"),
            },
        }
    return {
        **heads,
        "educational_score": after["educational_score"],
        "headline": headline(after),
        "paper": PAPER,
        "sizes": {
            "train": summary["sizes"]["train"],
            "held_out": summary["sizes"]["held_out"],
            **summary["sizes"],
        },
        "articles": summary["articles"],
        "held_out_part": summary["held_out_part"],
        "skipped_rows": summary["data"]["skipped"],
        "teacher_models": summary["teacher_models"] or ["unrecorded (labels carry no teacher_model)"],
        "prompt_versions": summary["prompt_versions"] or ["unrecorded (labels carry no prompt_version)"],
        "labels": summary["labels"],
        "backbone": summary["backbone"],
        "mode": summary["mode"],
        "refit": summary.get("refit"),
    }


def _refit_note(summary: dict) -> str:
    refit = summary.get("refit")
    if not refit:
        return ""
    epochs = f"{refit['epochs']} fine-tuning" if refit["epochs"] else f"{refit['head_epochs']} head"
    return (
        f"\n**This model was then retrained on all {refit['paragraphs']} labelled paragraphs "
        f"({refit['articles']} articles)** with the same recipe for the {epochs} epochs selected, keeping "
        "the temperatures fitted below. The agreement figures are those of the split run, whose model did "
        "not see the held-out articles; they estimate this model's agreement (it saw more labels).\n"
    )


def _lexical_note(cfg: dict) -> str:
    if not cfg.get("bow_dim"):
        return ""
    bigrams = cfg.get("bow_bigram_buckets") or 0
    return (
        f"\nWide-and-deep: a lexical branch (a {cfg['bow_dim']}-d mean bag of learned wordpiece"
        + (f" and {bigrams} hashed wordpiece-pair" if bigrams else "")
        + f" embeddings, mode `{cfg.get('bow_mode', 'concat')}`) feeds the heads beside the pooled"
        " encoder vector; it sees the same token ids, so inference costs nothing extra."
    )


def _variant_note(summary: dict) -> str:
    """What a cheaper variant (`distill.shrink`) is, and its measured speed against its source."""
    v = summary.get("variant")
    if not v:
        return ""
    speed = v.get("speed") or {}
    int8 = (
        " with a static int8 OpenVINO encoder (CPU; the torch weights run on CUDA)"
        if v["int8_encoder"]
        else ""
    )
    distilled = (
        f", distilled on {v['unlabelled_rows']} unlabelled paragraphs "
        f"({v['unlabelled_articles']} training-part articles) labelled by the source, "
        "plus the teacher's training labels"
        + (" (class weights on these only)" if v.get("class_weights") == "teacher rows only" else "")
        if v.get("unlabelled_rows")
        else ""
    )
    measured = (
        f" Scoring speed: {speed['ratio']}x the source's paragraphs per CPU-second "
        f"({speed['per_cpu_s']['variant']} vs {speed['per_cpu_s']['source']}, "
        f"{speed['paragraphs']} validation paragraphs, each on its default path, {speed['machine']})."
        if speed
        else ""
    )
    return (
        f"\nA cheaper variant of `{v['source']}`: encoder layers {v['layers_kept']} of {v['source_layers']}, "
        f"{v['max_seq_length']} tokens{int8}{distilled}.{measured}\n"
    )


def model_card(summary: dict, agreement: dict) -> str:
    h = agreement["headline"]
    cfg = summary["config"]
    rows = [
        ("document type macro-F1", h["document_type_f1"], PAPER["document_type"]["f1"]),
        ("document type Cohen's kappa", h["document_type_kappa"], PAPER["document_type"]["kappa"]),
        ("domain macro-F1", h["domain_f1"], PAPER["domain"]["f1"]),
        (
            "educational score Pearson r",
            h["educational_score_pearson"],
            PAPER["educational_score"]["pearson"],
        ),
        ("educational score MAE", h["educational_score_mae"], PAPER["educational_score"]["mae"]),
    ]
    table = "\n".join(f"| {name} | {ours:.3f} | {paper:.3f} |" for name, ours, paper in rows)
    cal = "\n".join(
        f"| {head} | {agreement[head]['calibration']['temperature']:.3f} | "
        f"{agreement[head]['calibration']['ece_before']:.3f} | "
        f"{agreement[head]['calibration']['ece_after']:.3f} |"
        for head in ("document_type", "domain")
    )
    return f"""---
library_name: transformers
tags: [biomedical, text-classification, data-curation, distillation]
---
# biomed-enrich student

A multi-task paragraph classifier distilled from LLM teacher labels by `biomed-enrich train`:
one shared encoder (`{summary["backbone"]}`, mean pooling), three heads: document type
({", ".join(summary["label_orders"]["document_type"])}),
domain ({", ".join(summary["label_orders"]["domain"])})
and educational score (regression, 1-5). Mode: {summary["mode"]}.{_lexical_note(cfg)}

## Intended use
Annotating biomedical paragraphs (PMC Open Access) so a pretraining corpus can be filtered and
upsampled, as in Biomed-Enriched (arXiv 2506.20331). These are neural heuristics for data curation:
no medical expert verified them, and they are not for clinical decisions. Paragraphs are truncated
to {cfg["max_seq_length"]} tokens.

## Data
Teacher labels: {", ".join(summary["labels"])} ({summary["data"]["read"]} rows read,
{summary["data"]["kept"]} usable, skipped: {summary["data"]["skipped"] or "none"}).
Teacher: {", ".join(agreement["teacher_models"])}; prompt: {", ".join(agreement["prompt_versions"])}.
Split by article (seed {cfg["seed"]}): train {summary["sizes"]["train"]} paragraphs
({summary["articles"]["train"]} articles), validation {summary["sizes"]["validation"]}
(early stopping, temperature scaling), test {summary["sizes"]["test"]}.
{_refit_note(summary)}{_variant_note(summary)}
## Agreement with the teacher (held-out {summary["held_out_part"]} articles, n={summary["sizes"]["held_out"]})
| metric | this student | paper (XLM-R-base, 358K labels) |
| --- | --- | --- |
{table}

Per-label F1 and confusion matrices: `agreement.json`.

## Calibration (temperature scaling fitted on the validation articles)
| head | temperature | ECE before | ECE after |
| --- | --- | --- | --- |
{cal}

## Use
```python
from transformers import AutoTokenizer
from distill.model import StudentModel
from distill.predict import predict
model = StudentModel.from_pretrained("MODEL_DIR"); tokenizer = AutoTokenizer.from_pretrained("MODEL_DIR")
predict(model, tokenizer, ["A 54-year-old man presented with ..."])
```

## Training
```json
{json.dumps(cfg, indent=1, sort_keys=True)}
```
Training time: {summary["train_seconds"]:.0f} s.
"""


def export_student(model, tokenizer, output: str, summary: dict) -> dict:
    """Save model, tokenizer, agreement.json, training.json and the model card into `output`."""
    from pipelines.core.io import write_json

    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    summary.setdefault(
        "label_orders",
        {
            "document_type": list(model.config.document_type_labels),
            "domain": list(model.config.domain_labels),
        },
    )
    record = agreement_record(summary)
    write_json(record, str(out / "agreement.json"))
    write_json(summary, str(out / "training.json"))
    (out / "README.md").write_text(model_card(summary, record))
    return record
