"""Teacher answers -> LABELS rows, and paragraphs without one -> dead letters.

Shared by the in-process labelling (`annotators.annotate`) and its Beam form
(`annotators.beam_annotate`), so both write the same rows and the same dead letters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from annotators.taxonomy import Answer
from pipelines.core.dead_letters import dead_letter
from pipelines.core.schemas import LABELS, conform

STAGE = "annotate"
CARRIED = ("article_id", "text", "section_title", "path")


@dataclass
class LabelResult:
    labels: list[dict] = field(default_factory=list)
    dead_letters: list[dict] = field(default_factory=list)


def label_row(row: dict, answer: Answer, teacher_model: str, prompt_version: str) -> dict:
    """One LABELS row for paragraph `row` from a validated answer."""
    out = {
        "id": row["id"],
        "document_type": answer.document_type,
        "domain": answer.domain,
        "educational_score": answer.educational_score,
        "document_type_probs": answer.document_type_probs,
        "domain_probs": answer.domain_probs,
        "educational_score_probs": answer.educational_score_probs,
        "educational_score_expected": answer.educational_score_expected,
        "teacher_model": teacher_model,
        "prompt_version": prompt_version,
        "input_tokens": answer.input_tokens,
        "output_tokens": answer.output_tokens,
    }
    out.update({k: row.get(k) for k in CARRIED})
    return out


def paragraph_dead_letter(row: dict, reason: str, detail: str = "") -> dict:
    """The dead letter of a paragraph the teacher gave no usable label for (located by article and path)."""
    where = f"{row.get('article_id')} {row.get('path')}"
    return dead_letter(STAGE, str(row.get("id")), reason, f"{where}: {detail}" if detail else where)


def labels_table(labels: list[dict]) -> pa.Table:
    if not labels:
        return LABELS.empty_table()
    return conform(pa.Table.from_pylist(labels), LABELS)
