"""The embedded default: `run_annotate` with the replay teacher on real paragraphs, offline."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from annotate_helpers import paragraph_rows, read_dead_letters, write_paragraphs

from annotators.annotate import run_annotate
from annotators.teachers.replay import PACKAGED_RECORDINGS, ReplayTeacher
from pipelines.core.io import read_table
from pipelines.core.schemas import LABELS

OPEN = ("CC BY", "CC0", "Public")


def test_packaged_recordings_hold_only_openly_licensed_rows():
    licences = set(pq.read_table(PACKAGED_RECORDINGS, columns=["license"])["license"].to_pylist())
    assert licences and all(lic.startswith(OPEN) and "NC" not in lic and "ND" not in lic for lic in licences)


@pytest.fixture(scope="module")
def rows(teacher_labels, pmc_sample):
    return paragraph_rows(teacher_labels, pmc_sample / "MANIFEST.tsv")


def test_replay_run_labels_or_dead_letters_every_sampled_paragraph(rows, teacher_labels, tmp_path):
    paragraphs = write_paragraphs(rows, tmp_path / "in", shards=3)
    out = tmp_path / "out"
    stats = run_annotate([str(paragraphs)], str(out), sample=600, seed=1)
    labels = read_table([str(out / "labels")])
    dead = read_dead_letters(out)
    assert labels.schema.equals(LABELS, check_metadata=False)
    assert stats["read"] == 600 == labels.num_rows + len(dead) and stats["written"] == labels.num_rows
    ids = labels["id"].to_pylist() + [d["source"] for d in dead]
    assert len(ids) == len(set(ids)) == 600
    # labels are the recordings; the unmatched are exactly the rows whose licence kept them out of the package
    by_id = {r["id"]: r for r in rows}
    recorded = {r["text"]: r for r in pq.read_table(teacher_labels).to_pylist()}
    for label in labels.to_pylist():
        truth = recorded[by_id[label["id"]]["text"]]
        assert (label["document_type"], label["domain"], label["educational_score"]) == (
            truth["document_type"],
            truth["domain"],
            truth["educational_score"],
        )
        assert truth["license"].startswith(OPEN)
    assert {d["reason"] for d in dead} == {"no_recording"}
    assert all(
        not recorded[by_id[d["source"]]["text"]]["license"].startswith(("CC BY ", "CC0")) for d in dead
    )
    saved = json.loads((out / "annotate_stats.json").read_text())
    assert saved["dead_letter_reasons"] == {"no_recording": len(dead)} and saved["ledger"]["calls"] == 0
    # same seed, same sample; a rerun replaces the outputs instead of adding to them
    again = run_annotate([str(paragraphs)], str(out), sample=600, seed=1)
    assert read_table([str(out / "labels")])["id"].to_pylist() == labels["id"].to_pylist()
    assert again["written"] == stats["written"]


def test_replay_accepts_any_recordings_file_and_matches_on_article_and_path(rows, teacher_labels):
    full = ReplayTeacher(str(teacher_labels))
    assert all(o.ok for o in full.label(rows[:200], ledger=None))
    row = dict(rows[5], text=rows[5]["text"].replace(" ", "  ") + " ")  # other whitespace: same text hash
    assert full.lookup(row).ok
    formula = dict(rows[5], text=rows[5]["text"][:-40] + " [formula] ")  # rendered differently: (PMCID, path)
    assert full.lookup(formula).ok
    by_file = dict(formula, article_id="DOI-only")  # no PMCID match: falls back to the source file name
    assert full.lookup(by_file).ok
    wrong = dict(rows[5], text=rows[6]["text"][::-1] + " unrelated words entirely")
    assert full.lookup(wrong).reason == "recording_mismatch"
    assert full.lookup(dict(rows[5], text="new text", path="sec[99]/p[0]")).reason == "no_recording"
