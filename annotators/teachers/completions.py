"""Chat-completion bodies -> validated labels (+ soft labels from logprobs), for the live and batch backends.

Works on plain dicts (a live response's `model_dump()` or a Batch API output line's body) so both
backends validate answers identically.
"""

from __future__ import annotations

import math
import re

from annotators.taxonomy import AXES, Answer, InvalidAnswer, parse_answer

_FIELD = {axis: re.compile(rf'"{axis}"\s*:\s*"?') for axis in AXES}


def _squash(text: str) -> str:
    return text.replace(" ", "").replace("_", "").replace("-", "").replace("\t", "").replace("\n", "").lower()


_SQUASHED = {
    axis: [(label, _squash(label)) for label in labels]
    for axis, labels in AXES.items()
    if axis != "educational_score"
}


def _label_of(axis: str, candidate: str):
    """The one label on `axis` that `candidate` (a token's text) can start; None if none or ambiguous."""
    candidate = candidate.lstrip(' "\t\n')
    if not candidate:
        return None
    if axis == "educational_score":
        return int(candidate[0]) if candidate[0] in "12345" else None
    key = _squash(candidate)
    if not key:
        return None
    found = None
    for label, squashed in _SQUASHED[axis]:
        if squashed.startswith(key) or key.startswith(squashed):
            if found is not None:
                return None
            found = label
    return found


def soft_labels(content: str, tokens: list[dict]) -> dict[str, list[float]]:
    """Per-axis distributions from the top_logprobs of the token where each label value starts.

    Alternatives are mapped to labels by prefix ("Clin" -> "Clinical case"); the mass of each label is
    renormalised over the labels seen. An axis is left out when its token cannot be located or the
    chosen label is not among the alternatives (a distribution we cannot trust).
    """
    text = "".join(t.get("token", "") for t in tokens)
    if not tokens or text != content:
        return {}
    starts, pos = [], 0
    for t in tokens:
        starts.append(pos)
        pos += len(t.get("token", ""))
    out: dict[str, list[float]] = {}
    for axis, pattern in _FIELD.items():
        match = pattern.search(content)
        if not match:
            continue
        value_at = match.end()
        idx = max(i for i, s in enumerate(starts) if s <= value_at) if value_at < len(content) else None
        if idx is None:
            continue
        prefix = tokens[idx]["token"][: value_at - starts[idx]]
        chosen = _label_of(axis, content[value_at:])
        mass: dict = {}
        for alt in tokens[idx].get("top_logprobs") or [
            {"token": tokens[idx]["token"], "logprob": tokens[idx].get("logprob", 0.0)}
        ]:
            alt_text = alt.get("token", "")
            alt_text = alt_text[len(prefix) :] if alt_text.startswith(prefix) else alt_text
            label = _label_of(axis, alt_text)
            if label is not None and alt.get("logprob") is not None:
                mass[label] = mass.get(label, 0.0) + math.exp(alt["logprob"])
        total = sum(mass.values())
        if chosen not in mass or total <= 0:
            continue
        out[axis] = [mass.get(label, 0.0) / total for label in AXES[axis]]
    return out


def answer_from_completion(body: dict) -> Answer:
    """Validated Answer from a chat-completion body; else InvalidAnswer (refusal, truncated, ...)."""
    choices = body.get("choices") or []
    if not choices:
        raise InvalidAnswer("empty_answer", "no choices")
    choice = choices[0]
    message = choice.get("message") or {}
    if message.get("refusal"):
        raise InvalidAnswer("refusal", str(message["refusal"])[:200])
    finish = choice.get("finish_reason")
    if finish == "content_filter":
        raise InvalidAnswer("refusal", "content_filter")
    content = message.get("content")
    try:
        _, answer = parse_answer(content)
    except InvalidAnswer as e:
        if finish == "length":
            raise InvalidAnswer("truncated", (content or "")[:200]) from None
        raise e
    usage = body.get("usage") or {}
    probs = {}
    logprobs = (choice.get("logprobs") or {}).get("content")
    if logprobs:
        probs = soft_labels(content, logprobs)
    score_probs = probs.get("educational_score")
    return Answer(
        document_type=answer.document_type,
        domain=answer.domain,
        educational_score=answer.educational_score,
        document_type_probs=probs.get("document_type"),
        domain_probs=probs.get("domain"),
        educational_score_probs=score_probs,
        educational_score_expected=(
            sum(p * s for p, s in zip(score_probs, AXES["educational_score"], strict=True))
            if score_probs
            else None
        ),
        input_tokens=usage.get("prompt_tokens"),
        output_tokens=usage.get("completion_tokens"),
    )
