"""Stage statistics as mergeable counts: per-element records summed into the stage's `<stage>_stats.json`.

Every stage counts the same way: each element contributes a small dict of counts (numbers, or
dicts of numbers keyed by a reason, a language, a licence group...), and `merge_counts` adds them up,
in one process or as a Beam combiner (`MergeCounts`), so workers can count independently.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping

import apache_beam as beam


def add_counts(total: dict, part: Mapping) -> dict:
    """Add `part` into `total` in place: numbers add, nested dicts merge key by key; returns `total`."""
    for key, value in part.items():
        if isinstance(value, Mapping):
            add_counts(total.setdefault(key, {}), value)
        else:
            total[key] = total.get(key, 0) + value
    return total


def merge_counts(parts: Iterable[Mapping], start: Mapping | None = None) -> dict:
    """The sum of count records, starting from a copy of `start` (the keys every summary has)."""
    total = copy.deepcopy(dict(start or {}))
    for part in parts:
        add_counts(total, part)
    return total


class MergeCounts(beam.CombineFn):
    """`merge_counts` as a Beam combiner; `start` is the zero record (its keys are always present)."""

    def __init__(self, start: Mapping | None = None):
        self.start = dict(start or {})

    def create_accumulator(self) -> dict:
        return copy.deepcopy(self.start)

    def add_input(self, acc: dict, part: Mapping) -> dict:
        return add_counts(acc, part)

    def merge_accumulators(self, accs: Iterable[dict]) -> dict:
        return merge_counts(accs, self.start)

    def extract_output(self, acc: dict) -> dict:
        return acc
