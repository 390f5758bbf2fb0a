"""Teacher backends: `openai` (live chat completions), `batch` (Batch API), `replay` (recorded labels)."""

from annotators.teachers.base import Outcome, Teacher, TeacherError, resolve_api_key
from pipelines.core.extras import require

__all__ = ["Outcome", "Teacher", "TeacherError", "resolve_api_key", "make_teacher"]


def make_teacher(kind: str, **kw) -> Teacher:
    """Build a teacher by backend name; keyword arguments go to that backend's constructor."""
    if kind == "replay":
        from annotators.teachers.replay import ReplayTeacher

        return ReplayTeacher(**kw)
    if kind in ("openai", "batch"):
        require("teacher", f"the {kind} teacher")
    if kind == "openai":
        from annotators.teachers.openai_chat import OpenAITeacher

        return OpenAITeacher(**kw)
    if kind == "batch":
        from annotators.teachers.batch import BatchTeacher

        return BatchTeacher(**kw)
    raise ValueError(f"unknown teacher {kind!r}; expected openai, batch or replay")
