"""The embedded default teacher: answers from recorded annotations, with no network and no GPU.

A paragraph is matched to a recording by the sha256 of its whitespace-normalised text, else by
(PMCID, path), else by (source file name, path). Key matches are checked against the recorded
text (word overlap) because extractions render formulas and whitespace differently; a paragraph
with no recording, or one whose text disagrees with it, gets no label (dead-lettered with a reason).
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow.parquet as pq

from annotators.cache import text_sha256
from annotators.ledger import Ledger
from annotators.prompts import PROMPT_VERSION
from annotators.taxonomy import Answer, InvalidAnswer, validate_answer
from annotators.teachers.base import OnResult, Outcome

PACKAGED_RECORDINGS = Path(__file__).resolve().parents[1] / "data" / "recorded_labels.parquet"
_WORD = re.compile(r"\w+")


def word_overlap(a: str, b: str) -> float:
    """Jaccard overlap of the word sets of two texts (1 = same words)."""
    wa, wb = set(_WORD.findall(a.lower())), set(_WORD.findall(b.lower()))
    return len(wa & wb) / len(wa | wb) if wa | wb else 1.0


def _file_name(source: str | None) -> str | None:
    if not source:
        return None
    return re.split(r"[/\\]", source.split("#")[0].split("!")[-1])[-1] or None


class ReplayTeacher:
    """Answers from a recorded-labels Parquet (default: the packaged CC BY / CC0 recordings)."""

    cacheable = False

    def __init__(
        self, recordings: str | None = None, *, min_overlap: float = 0.5, prompt_version: str = PROMPT_VERSION
    ):
        self.path = str(recordings or PACKAGED_RECORDINGS)
        self.model = f"replay:{Path(self.path).stem}"
        self.prompt_version = prompt_version
        self.min_overlap = min_overlap
        table = pq.read_table(self.path)
        missing = {"document_type", "domain", "educational_score"} - set(table.column_names)
        if missing:
            raise ValueError(f"{self.path} is not a recorded-labels file (missing {sorted(missing)})")
        self._records = table.to_pylist()
        self.by_text, self.by_pmcid, self.by_file = {}, {}, {}
        for i, r in enumerate(self._records):
            if r.get("text"):
                self.by_text.setdefault(text_sha256(r["text"]), i)
            if r.get("path"):
                if r.get("pmcid"):
                    self.by_pmcid.setdefault((r["pmcid"], r["path"]), i)
                if r.get("article_file"):
                    self.by_file.setdefault((r["article_file"], r["path"]), i)

    def __len__(self) -> int:
        return len(self._records)

    def lookup(self, row: dict) -> Outcome:
        """The recorded answer for one paragraph row (text, article_id, path, source)."""
        index, how = self.by_text.get(text_sha256(row.get("text") or "")), "text"
        if index is None:
            index, how = self.by_pmcid.get((row.get("article_id"), row.get("path"))), "pmcid_path"
        if index is None:
            index, how = self.by_file.get((_file_name(row.get("source")), row.get("path"))), "file_path"
        if index is None:
            return Outcome(
                reason="no_recording",
                detail=f"no recorded label for {row.get('article_id')} {row.get('path')}",
            )
        record = self._records[index]
        if how != "text" and record.get("text") and row.get("text"):
            overlap = word_overlap(record["text"], row["text"])
            if overlap < self.min_overlap:
                return Outcome(
                    reason="recording_mismatch",
                    detail=f"matched on {how} but the texts differ (word overlap {overlap:.2f})",
                )
        try:
            return Outcome(validate_answer(record))
        except InvalidAnswer as e:
            return Outcome(reason=e.reason, detail=f"recorded answer invalid: {e.detail}")

    def label(self, rows: list[dict], ledger: Ledger, on_result: OnResult | None = None) -> list[Outcome]:
        outcomes = []
        for i, row in enumerate(rows):
            outcome = self.lookup(row)
            outcomes.append(outcome)
            if on_result:
                on_result(i, outcome)
        return outcomes

    def answer_for_text(self, text: str) -> Answer | None:
        """The recorded answer for an exact (normalised) text, or None (used by fake servers in tests)."""
        index = self.by_text.get(text_sha256(text))
        return validate_answer(self._records[index]) if index is not None else None
