"""Token counting for subset statistics: whitespace words by default, or any local HF tokenizer."""

from __future__ import annotations

from collections.abc import Callable

WHITESPACE = "whitespace"


def token_counter(spec: str = WHITESPACE) -> Callable[[str], int]:
    """`whitespace`, or an HF tokenizer name/path (the packaged MiniLM's name resolves offline).

    Counts exclude special tokens, so they add up across documents; no length limit applies.
    """
    if spec == WHITESPACE:
        return lambda text: len(text.split())
    from transformers import AutoTokenizer

    from distill.model import resolve_backbone

    try:
        tokenizer = AutoTokenizer.from_pretrained(resolve_backbone(spec))
    except OSError as e:
        raise ValueError(
            f"tokenizer {spec!r} cannot be loaded locally (no hub access at run time): {e}"
        ) from e
    tokenizer.model_max_length = 1 << 62  # count, never truncate; also silences the length warning

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    return count
