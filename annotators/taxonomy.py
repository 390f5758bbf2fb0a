"""The teacher's label space, and the validation that turns a raw teacher answer into labels or a reason.

Label names and orders are those of `pipelines.core.schemas` (the released dataset's score vectors); they
are re-exported here so annotation code has one import. Normalisation is lenient on spelling
(case, spaces, underscores, a few synonyms) and strict on meaning: anything outside the taxonomy
is an `InvalidAnswer` with a machine-readable reason, never a silent guess.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field

from pipelines.core.schemas import DOCUMENT_TYPE_LABELS, DOMAIN_LABELS, EDUCATIONAL_SCORES

__all__ = [
    "DOCUMENT_TYPE_LABELS",
    "DOMAIN_LABELS",
    "EDUCATIONAL_SCORES",
    "AXES",
    "Answer",
    "InvalidAnswer",
    "normalise_label",
    "normalise_score",
    "json_objects",
    "parse_answer",
    "validate_answer",
]

AXES: dict[str, tuple] = {
    "document_type": DOCUMENT_TYPE_LABELS,
    "domain": DOMAIN_LABELS,
    "educational_score": EDUCATIONAL_SCORES,
}

_SYNONYMS = {
    "document_type": {
        "clinicalcase": "Clinical case",
        "casereport": "Clinical case",
        "case": "Clinical case",
        "research": "Study",
        "originalresearch": "Study",
        "literaturereview": "Review",
    },
    "domain": {"biomed": "biomedical", "biology": "biomedical", "medical": "clinical"},
}


class InvalidAnswer(ValueError):
    """A teacher answer that cannot become labels; `reason` is a short dead-letter reason."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Answer:
    """Validated labels for one paragraph, with the teacher's distributions where it gave logprobs."""

    document_type: str
    domain: str
    educational_score: int
    document_type_probs: list[float] | None = None
    domain_probs: list[float] | None = None
    educational_score_probs: list[float] | None = None
    educational_score_expected: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    extra: dict = field(default_factory=dict, compare=False)

    def to_json(self) -> str:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "extra"}
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Answer:
        return cls(**json.loads(text))


def _squash(value: str) -> str:
    return re.sub(r"[\s_\-]+", "", value).lower()


def normalise_label(axis: str, value: object) -> str:
    """Canonical label name of `value` on `axis` (document_type or domain), else InvalidAnswer."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidAnswer("out_of_taxonomy", f"{axis}={value!r}")
    key = _squash(value)
    for label in AXES[axis]:
        if _squash(label) == key:
            return label
    if key in _SYNONYMS.get(axis, {}):
        return _SYNONYMS[axis][key]
    raise InvalidAnswer("out_of_taxonomy", f"{axis}={value!r}")


def normalise_score(value: object) -> int:
    """Integer educational score 1-5 from an int, an integral float, or a numeric string."""
    if isinstance(value, bool):
        raise InvalidAnswer("out_of_taxonomy", f"educational_score={value!r}")
    if isinstance(value, str):
        value = value.strip()
        if not re.fullmatch(r"\d+(\.0+)?", value):
            raise InvalidAnswer("out_of_taxonomy", f"educational_score={value!r}")
        value = float(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or value not in EDUCATIONAL_SCORES:
        raise InvalidAnswer("out_of_taxonomy", f"educational_score={value!r}")
    return value


def validate_answer(obj: object) -> Answer:
    """Labels from a decoded teacher answer (a dict with the three fields), normalised."""
    if not isinstance(obj, dict):
        raise InvalidAnswer("invalid_json", f"expected an object, got {type(obj).__name__}")
    missing = [k for k in AXES if k not in obj]
    if missing:
        raise InvalidAnswer("missing_field", ", ".join(missing))
    return Answer(
        document_type=normalise_label("document_type", obj["document_type"]),
        domain=normalise_label("domain", obj["domain"]),
        educational_score=normalise_score(obj["educational_score"]),
    )


_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.S)


def json_objects(text: str) -> list[dict]:
    """Every JSON object embedded in `text` (nested ones too, after their parent), decoding from each `{`.

    Prose around an answer may hold other braces ("scale {1-5}", "{see above}"); a greedy regex would
    take them into one invalid span, a real decoder skips what does not parse and keeps what does.
    """
    decoder, found, start = json.JSONDecoder(), [], text.find("{")
    while start != -1:
        with contextlib.suppress(json.JSONDecodeError):
            found.append(decoder.raw_decode(text, start)[0])
        start = text.find("{", start + 1)
    return found


def parse_answer(content: str | None) -> tuple[dict, Answer]:
    """Decode a teacher's message content (JSON, possibly fenced or wrapped in prose) and validate it.

    In prose, the first embedded object that validates is the answer; if none does, the first object's
    validation error (e.g. out_of_taxonomy) is raised, or invalid_json if there is no object at all.
    """
    if content is None or not content.strip():
        raise InvalidAnswer("empty_answer")
    text = _FENCE.sub("", content.strip())
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        candidates = json_objects(text)
        if not candidates:
            raise InvalidAnswer("invalid_json", content[:200]) from None
        first_error = None
        for candidate in candidates:
            try:
                return candidate, validate_answer(candidate)
            except InvalidAnswer as e:
                first_error = first_error or e
        raise first_error from None
    return obj, validate_answer(obj)
