"""What the student reads for a paragraph: the same context the teacher judged it with.

The teacher saw each paragraph with its section title and its body path (RUBRIC.md), so a student
that reads the text alone is asked to guess part of what the teacher knew. The format is saved in the
model's config (`StudentConfig.input_format`) so training, evaluation and propagation compose the
same string; models saved before the field existed read the text alone.
"""

from __future__ import annotations

from collections.abc import Mapping

INPUT_FORMATS = ("text", "title_text", "title_path_text")
DEFAULT_INPUT_FORMAT = "text"


def student_input(row: Mapping, input_format: str = DEFAULT_INPUT_FORMAT) -> str:
    """The string the student encodes for `row` (a paragraph or label row with `text`)."""
    text = str(row.get("text") or "")
    if input_format == "text":
        return text
    title = row.get("section_title") or ""
    if input_format == "title_text":
        return f"{title} | {text}"
    if input_format == "title_path_text":
        return f"{title} | {row.get('path') or ''} | {text}"
    raise ValueError(f"unknown input_format {input_format!r}; choose one of {', '.join(INPUT_FORMATS)}")
