"""A student whose heads are fitted in seconds on frozen embeddings: for tests and benchmarks only.

Propagation must be tested and measured before a trained student exists. A fresh `from_backbone`
student predicts near-uniformly, which would make agreement checks meaningless; fitting only the
three heads on mean-pooled embeddings of a few hundred real teacher-labelled paragraphs gives
confident, varied predictions without any encoder training. Not a substitute for `distill.train`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from distill.frozen import embed_texts
from distill.model import DEFAULT_BACKBONE, StudentModel, resolve_backbone


def fit_heads(
    model: StudentModel,
    tokenizer,
    texts: Sequence[str],
    document_types: Sequence[str],
    domains: Sequence[str],
    scores: Sequence[float],
    *,
    steps: int = 300,
    lr: float = 0.05,
    embed_max_length: int = 128,
    seed: int = 0,
) -> StudentModel:
    """Fit the three heads (encoder frozen) on real labelled paragraphs; returns the model in eval mode."""
    torch.manual_seed(seed)
    model.eval()
    x = embed_texts(model, tokenizer, list(texts), max_length=embed_max_length, progress=False)
    doc_index = {label: i for i, label in enumerate(model.config.document_type_labels)}
    dom_index = {label: i for i, label in enumerate(model.config.domain_labels)}
    y_doc = torch.tensor([doc_index[d] for d in document_types])
    y_dom = torch.tensor([dom_index[d] for d in domains])
    y_score = torch.tensor([float(s) for s in scores])
    heads = [model.document_type_head, model.domain_head, model.score_head]
    params = [p for h in heads for p in h.parameters()]
    opt = torch.optim.Adam(params, lr=lr)
    ce, mse = nn.CrossEntropyLoss(), nn.MSELoss()
    for _ in range(steps):
        opt.zero_grad()
        loss = (
            ce(model.document_type_head(x), y_doc)
            + ce(model.domain_head(x), y_dom)
            + mse(model.score_head(x).squeeze(-1), y_score)
        )
        loss.backward()
        opt.step()
    return model.eval()


def build_quick_student(
    labels_parquet: str | Path,
    output: str | Path,
    *,
    n: int = 256,
    seed: int = 0,
    embed_max_length: int = 128,
    **config_kwargs,
) -> Path:
    """Save a head-fitted student (+ tokenizer) to `output`, from the first `n` labelled paragraphs.

    `config_kwargs` go to `StudentConfig` (e.g. a short `max_seq_length` for fast tests).
    """
    import pyarrow.parquet as pq
    from transformers import AutoTokenizer

    table = pq.read_table(labels_parquet, columns=["text", "document_type", "domain", "educational_score"])
    table = table.slice(0, n)
    tokenizer = AutoTokenizer.from_pretrained(resolve_backbone(DEFAULT_BACKBONE))
    model = StudentModel.from_backbone(DEFAULT_BACKBONE, **config_kwargs)
    fit_heads(
        model,
        tokenizer,
        table["text"].to_pylist(),
        table["document_type"].to_pylist(),
        table["domain"].to_pylist(),
        table["educational_score"].to_pylist(),
        seed=seed,
        embed_max_length=embed_max_length,
    )
    output = Path(output)
    model.save_pretrained(output)
    tokenizer.save_pretrained(output)
    return output
