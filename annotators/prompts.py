"""Versioned prompt templates: one paragraph (with its section title and body path) -> chat messages.

A prompt version names the exact rubric text and template; the cache key includes it, so changing a
template means a new version and a fresh set of answers, never a silent mix. The rubric of v1 is the
project's `RUBRIC.md`, copied into the package (`annotators/prompts/rubric_v1.md`).
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from annotators.taxonomy import DOCUMENT_TYPE_LABELS, DOMAIN_LABELS, EDUCATIONAL_SCORES

PROMPT_VERSION = "v1"
MAX_ANSWER_TOKENS = 64  # the JSON answer is ~25 tokens; the cap bounds what a request can cost
PROMPT_DIR = Path(__file__).with_name("prompts")

# Fields in this order, so the label tokens come early and at predictable places (logprobs).
ANSWER_FIELDS = ("document_type", "domain", "educational_score")

SYSTEM_TEMPLATE = """You annotate paragraphs of biomedical articles for a pretraining-data filter.
Follow this rubric exactly.

{rubric}

Answer with one JSON object and nothing else, with exactly these keys in this order:
{{"document_type": one of {document_types}, "domain": one of {domains}, \
"educational_score": an integer {scores}}}"""

USER_TEMPLATE = """Section title: {section_title}
Path: {path}
Paragraph:
<<<
{text}
>>>"""

RESPONSE_SCHEMA = {
    "name": "paragraph_labels",
    "strict": True,
    "schema": {
        "type": "object",
        "properties": {
            "document_type": {"type": "string", "enum": list(DOCUMENT_TYPE_LABELS)},
            "domain": {"type": "string", "enum": list(DOMAIN_LABELS)},
            "educational_score": {"type": "integer", "enum": list(EDUCATIONAL_SCORES)},
        },
        "required": list(ANSWER_FIELDS),
        "additionalProperties": False,
    },
}

# Structured-output modes, strongest first: a server that rejects one is retried with the next.
RESPONSE_MODES = ("json_schema", "json_object", "plain")


@cache
def rubric(version: str = PROMPT_VERSION) -> str:
    path = PROMPT_DIR / f"rubric_{version}.md"
    if not path.exists():
        raise ValueError(f"unknown prompt version {version!r} (no {path.name} in {PROMPT_DIR})")
    return path.read_text(encoding="utf-8").strip()


@cache
def system_prompt(version: str = PROMPT_VERSION) -> str:
    return SYSTEM_TEMPLATE.format(
        rubric=rubric(version),
        document_types=" | ".join(f'"{x}"' for x in DOCUMENT_TYPE_LABELS),
        domains=" | ".join(f'"{x}"' for x in DOMAIN_LABELS),
        scores=f"{EDUCATIONAL_SCORES[0]}-{EDUCATIONAL_SCORES[-1]}",
    )


def user_prompt(row: dict) -> str:
    return USER_TEMPLATE.format(
        section_title=(row.get("section_title") or "(none)").strip(),
        path=row.get("path") or "(unknown)",
        text=row["text"].strip(),
    )


def build_messages(row: dict, version: str = PROMPT_VERSION) -> list[dict]:
    """Chat messages asking the teacher to label the paragraph `row` (text, section_title, path)."""
    return [
        {"role": "system", "content": system_prompt(version)},
        {"role": "user", "content": user_prompt(row)},
    ]


def paragraph_from_prompt(user_content: str) -> str:
    """The paragraph text inside a user prompt (servers and tests that answer from recordings use it)."""
    start = user_content.index("<<<\n") + 4
    return user_content[start : user_content.rindex("\n>>>")]


def response_format(mode: str) -> dict | None:
    """The `response_format` request field for a structured-output mode (None for plain text)."""
    if mode == "json_schema":
        return {"type": "json_schema", "json_schema": RESPONSE_SCHEMA}
    if mode == "json_object":
        return {"type": "json_object"}
    if mode == "plain":
        return None
    raise ValueError(f"unknown response mode {mode!r}; expected one of {RESPONSE_MODES}")


def prompt_fingerprint(version: str = PROMPT_VERSION) -> str:
    """Short hash of the full system prompt of `version`, recorded in stats to detect edited templates."""
    return hashlib.sha256(system_prompt(version).encode()).hexdigest()[:12]


def estimate_tokens(messages: list[dict]) -> int:
    """Rough prompt size in tokens (about 4 characters per token) for client-side token-rate limiting."""
    return sum(len(m["content"]) for m in messages) // 4 + 8 * len(messages)
