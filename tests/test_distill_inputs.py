"""The student reads what the teacher saw: one input format for training, evaluation and propagation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from distill.inputs import INPUT_FORMATS, student_input


def test_formats_compose_title_and_path_around_the_text(teacher_labels: Path):
    row = next(r for r in pq.read_table(teacher_labels).slice(0, 50).to_pylist() if r["section_title"])
    assert student_input(row, "text") == row["text"]
    assert student_input(row, "title_text") == f"{row['section_title']} | {row['text']}"
    assert student_input(row, "title_path_text") == f"{row['section_title']} | {row['path']} | {row['text']}"
    assert student_input({"text": "x", "section_title": None, "path": None}, "title_path_text") == " |  | x"
    with pytest.raises(ValueError, match="unknown input_format"):
        student_input(row, "text_only")


@pytest.mark.parametrize("input_format", INPUT_FORMATS)
def test_load_labels_builds_the_student_text_in_the_format(teacher_labels: Path, input_format: str):
    from distill.data import load_labels

    data = load_labels([str(teacher_labels)], input_format=input_format)
    rows = {r["id"]: r for r in pq.read_table(teacher_labels).to_pylist()}
    assert len(data) > 5000
    for rid, text in list(zip(data.ids, data.texts, strict=True))[:200]:
        assert text == student_input(rows[rid], input_format)


def test_propagate_scores_the_format_the_model_was_trained_on(teacher_labels: Path, tmp_path: Path):
    """A model saved with `title_text` is given titles by propagate: its scores are the composed text's."""
    from distill.inference import load_model, reference_scores
    from distill.quick_student import build_quick_student
    from pipelines.propagate import run_propagate

    model_dir = build_quick_student(
        teacher_labels,
        tmp_path / "student",
        n=64,
        embed_max_length=48,
        max_seq_length=96,
        input_format="title_text",
    )
    table = pq.read_table(teacher_labels).slice(4000, 24).select(["id", "text", "section_title", "path"])
    (tmp_path / "in").mkdir()
    pq.write_table(table, tmp_path / "in" / "a.parquet")
    run_propagate(
        [str(tmp_path / "in")], str(model_dir), str(tmp_path / "out"), progress=False, precision="fp32"
    )
    scored = {
        r["id"]: r for r in pq.read_table(sorted((tmp_path / "out" / "scored").glob("*.parquet"))).to_pylist()
    }

    model, tokenizer = load_model(model_dir)
    assert model.config.input_format == "title_text"
    rows = table.to_pylist()
    composed = reference_scores(
        model, tokenizer, [student_input(r, "title_text") for r in rows], pad_to_max=False
    )
    bare = reference_scores(model, tokenizer, [r["text"] for r in rows], pad_to_max=False)
    got = np.array([scored[r["id"]]["educational_score"] for r in rows])
    assert np.allclose(got, [c["educational_score"] for c in composed], atol=1e-3)
    assert not np.allclose(got, [b["educational_score"] for b in bare], atol=1e-3)
