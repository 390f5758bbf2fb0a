"""What a stage did, in one line: read / written / dead letters by reason / where they are.

The same line ends a stage of `run` and a single-stage command. `check_output` turns a stage that
read something but wrote nothing (or found nothing to read) into an error with the reason, because
an empty dataset that "succeeds" only fails later, further from its cause.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipelines.core.dead_letters import count_dead_letters
from pipelines.core.uris import as_path

# stage -> (stats key read, unit, stats key written, unit)
_COUNTS = {
    "ingest": ("articles_read", "articles", "paragraphs_written", "paragraphs"),
    "annotate": ("read", "paragraphs", "written", "labels"),
    "propagate": ("read", "paragraphs", "written", "scored"),
    "subsets": ("paragraphs_read", "paragraphs", None, "documents"),
}


class EmptyOutput(RuntimeError):
    """A stage wrote nothing (from non-empty input, or found no input at all)."""


@dataclass
class StageSummary:
    stage: str
    read: int | None
    read_unit: str
    written: int | None
    written_unit: str
    dead: dict[str, int] = field(default_factory=dict)
    dead_dir: str | None = None
    verb: str = "wrote"

    def dead_part(self) -> str:
        n_dead = sum(self.dead.values())
        if not n_dead:
            return "nothing dropped" if self.stage == "train" else "no dead letters"
        reasons = ", ".join(f"{r} {n:,}" for r, n in sorted(self.dead.items(), key=lambda kv: -kv[1]))
        return f"dead-lettered {n_dead:,} ({reasons})" + (f" in {self.dead_dir}" if self.dead_dir else "")

    def line(self) -> str:
        parts = []
        if self.read is not None:
            parts.append(f"read {self.read:,} {self.read_unit}")
        if self.written is not None:
            parts.append(f"{self.verb} {self.written:,} {self.written_unit}")
        return f"{self.stage}: " + ", ".join([*parts, self.dead_part()])


def dead_letter_reasons(output: str, stage: str) -> dict[str, int]:
    """Dead letters by reason, counted from `<output>/dead_letter/<stage>-*.jsonl` (local or bucket)."""
    return dict(count_dead_letters(output, stage))


def summarize(stage: str, stats: dict | None, output: str) -> StageSummary | None:
    """The summary of a finished stage from its returned stats and its dead-letter files."""
    if not isinstance(stats, dict) or stage not in (*_COUNTS, "train"):
        return None
    dead = stats.get("dead_letter_reasons") if stage == "annotate" else None
    dead = dict(dead) if isinstance(dead, dict) else dead_letter_reasons(output, stage)
    dead_dir = str(as_path(output) / "dead_letter")
    if stage == "train":
        data, sizes = stats.get("data") or {}, stats.get("sizes") or {}
        parts = ("train", "validation", "test")
        split = ", ".join(f"{k} {sizes.get(k, 0):,}" for k in parts)
        trained = sum(sizes.get(k, 0) for k in parts)
        skipped = {f"skipped {k}": n for k, n in (data.get("skipped") or {}).items() if n}
        unit = f"labelled paragraphs ({split})"
        return StageSummary(stage, data.get("read"), "labels", trained, unit, skipped, verb="trained on")
    read_key, read_unit, written_key, written_unit = _COUNTS[stage]
    if stage == "subsets":
        written = sum(s.get("documents", 0) for s in (stats.get("subsets") or {}).values())
        written_unit = f"documents in {len(stats.get('subsets') or {})} subsets"
    else:
        written = stats.get(written_key)
    return StageSummary(stage, stats.get(read_key), read_unit, written, written_unit, dead, dead_dir)


def check_output(summary: StageSummary | None, allow_empty: bool = False) -> None:
    """Raise EmptyOutput when the stage found nothing to read or wrote nothing, unless allowed."""
    if summary is None or allow_empty or summary.written is None or summary.written > 0:
        return
    if not summary.read:
        raise EmptyOutput(
            f"{summary.stage} found nothing to read (0 {summary.read_unit}); check the inputs "
            "(or allow an empty result with --allow-empty / allow_empty: true)"
        )
    raise EmptyOutput(
        f"{summary.stage} wrote no {summary.written_unit.split()[0]} from {summary.read:,} "
        f"{summary.read_unit} read: {summary.dead_part()} (or allow an empty result with --allow-empty)"
    )
