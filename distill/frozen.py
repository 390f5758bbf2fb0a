"""Frozen-encoder training: embed every paragraph once, then train only the heads on the cached vectors.

Fine-tuning the whole encoder costs minutes per thousand paragraphs on a CPU; the heads alone train in
seconds once the pooled embeddings are cached. That makes the student cheap enough to retrain many
times (the active-learning loop) and to train inside the end-to-end demo. The embedding cache is keyed
by (backbone, max length, text) so a retrain only embeds paragraphs it has not seen.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from distill.model import StudentModel


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@torch.no_grad()
def embed_texts(
    model: StudentModel,
    tokenizer,
    texts: list[str],
    *,
    batch_size: int = 32,
    max_length: int | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """Pooled encoder representations (float32, [n, hidden]) of `texts`, in input order.

    Batches are formed from length-sorted texts so padding is minimal; the model is run in eval mode.
    """
    max_length = max_length or model.config.max_seq_length
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = torch.zeros(
        len(texts), model.config.encoder.get("hidden_size", model.document_type_head.in_features)
    )
    bar = tqdm(total=len(texts), desc="embed", unit="para", disable=not progress)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        enc = tokenizer(
            [texts[i] for i in idx], truncation=True, max_length=max_length, padding=True, return_tensors="pt"
        ).to(device)
        pooled = model(**enc).pooled
        out[idx] = pooled.float().cpu()
        bar.update(len(idx))
    bar.close()
    model.train(was_training)
    return out


class EmbeddingCache:
    """Pooled embeddings on disk (one .npz per backbone and max length), keyed by the text's sha256."""

    def __init__(self, directory: str | Path, backbone: str, max_length: int):
        name = hashlib.sha256(f"{backbone}|{max_length}".encode()).hexdigest()[:16]
        self.path = Path(directory) / f"embeddings-{name}.npz"
        self.vectors: dict[str, np.ndarray] = {}
        if self.path.exists():
            with np.load(self.path) as z:
                self.vectors = dict(zip(z["keys"].tolist(), z["vectors"], strict=False))

    def embed(self, model: StudentModel, tokenizer, texts: list[str], **kw) -> torch.Tensor:
        """Embeddings of `texts`, computing (and saving) only those not cached yet."""
        keys = [text_key(t) for t in texts]
        missing = sorted({k: t for k, t in zip(keys, texts, strict=False) if k not in self.vectors}.items())
        if missing:
            vecs = embed_texts(
                model, tokenizer, [t for _, t in missing], max_length=kw.pop("max_length", None), **kw
            )
            self.vectors.update({k: v for (k, _), v in zip(missing, vecs.numpy(), strict=False)})
            self.save()
        return torch.from_numpy(np.stack([self.vectors[k] for k in keys])) if keys else torch.zeros(0)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp.npz")  # ranks of one DDP job may race
        keys = list(self.vectors)
        np.savez(tmp, keys=np.array(keys), vectors=np.stack([self.vectors[k] for k in keys]))
        tmp.replace(self.path)


@dataclass
class HeadTargets:
    """Training targets for the three heads (hard indices, optional teacher distributions)."""

    document_type: torch.Tensor  # [n] long
    domain: torch.Tensor  # [n] long
    educational_score: torch.Tensor  # [n] float
    document_type_probs: torch.Tensor | None = None  # [n, k] float or None
    domain_probs: torch.Tensor | None = None

    def subset(self, idx: torch.Tensor) -> HeadTargets:
        pick = lambda t: None if t is None else t[idx]  # noqa: E731
        return HeadTargets(*(pick(getattr(self, f)) for f in self.__dataclass_fields__))
