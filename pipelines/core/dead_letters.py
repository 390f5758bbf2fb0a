"""Dead letters: what a stage drops, with a reason, beside its output (`<out>/dead_letter/<stage>-*.jsonl`).

One record shape (`dead_letter`), one Beam writer, one in-process writer and one reader that counts
them by reason, used by every stage, so that `read = written + dead letters` can be checked the
same way everywhere.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from pipelines.core.io import dataset_dir
from pipelines.core.uris import ensure_configured, is_remote

DIR = "dead_letter"


def dead_letter(stage: str, source: str, reason: str, detail: str = "") -> dict:
    """One dead-letter record: what was dropped, by which stage, and why."""
    return {"stage": stage, "source": source, "reason": reason, "detail": detail[:2000]}


def _line(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False, sort_keys=True)


class WriteDeadLetters(beam.PTransform):
    """Write dead-letter dicts as JSON lines under `<root>/dead_letter/<stage>-*.jsonl`.

    Locally always at least one file, so an empty dead-letter set is visibly empty rather than missing.
    On an object store no file for none: Beam's S3 writer cannot create an empty object (a multipart
    upload with no part is rejected with MalformedXML), and a missing shard counts as zero letters.
    """

    def __init__(self, root: str, stage: str):
        super().__init__(label=f"Write {stage} dead letters")
        self.prefix = FileSystems.join(dataset_dir(root, DIR), stage)
        self.skip_if_empty = is_remote(root)

    def expand(self, records):
        return (
            records
            | "ToJson" >> beam.Map(_line)
            | beam.io.WriteToText(
                self.prefix,
                file_name_suffix=".jsonl",
                shard_name_template="-SSSSS-of-NNNNN",
                skip_if_empty=self.skip_if_empty,
            )
        )


def write_dead_letters(
    records: Iterable[dict], output: str, stage: str, shard: str = "00000-of-00001"
) -> str | None:
    """Write dead letters of a stage that is not a Beam pipeline as one shard; returns its path.

    None for no records on an object store (no empty objects there: see `WriteDeadLetters`).
    """
    records = list(records)
    if not records and is_remote(output):
        return None
    path = FileSystems.join(dataset_dir(output, DIR), f"{stage}-{shard}.jsonl")
    with FileSystems.create(path) as f:
        for record in records:
            f.write((_line(record) + "\n").encode())
    return path


def dead_letter_files(output: str, stage: str) -> list[str]:
    """The dead-letter shards a stage wrote under `output` (any filesystem), sorted."""
    ensure_configured()
    pattern = FileSystems.join(dataset_dir(output, DIR), f"{stage}-*.jsonl")
    return sorted(m.path for r in FileSystems.match([pattern]) for m in r.metadata_list)


def count_dead_letters(output: str, stage: str) -> Counter:
    """Dead letters of a stage by reason (`unknown` for a line without one or that is not JSON)."""
    counts: Counter = Counter()
    for path in dead_letter_files(output, stage):
        with FileSystems.open(path) as f:
            for line in f.read().decode("utf-8").splitlines():
                if not line.strip():
                    continue
                try:
                    counts[json.loads(line).get("reason") or "unknown"] += 1
                except ValueError:
                    counts["unknown"] += 1
    return counts


def clear_dead_letters(output: str, stage: str) -> None:
    """Delete a stage's previous dead letters, so a rerun's counts never mix runs."""
    stale = dead_letter_files(output, stage)
    if stale:
        FileSystems.delete(stale)
