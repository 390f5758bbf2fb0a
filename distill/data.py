"""Labelled paragraphs for the student: load, validate, split by article, batch.

Labels come as the LABELS dataset (`pipelines.core.schemas.LABELS`) or the shared
`teacher_labels_v2.parquet` (which carries text, pmcid and article_file). Rows without text are
joined to PARAGRAPHS by `id` (or by article and path). Every row that cannot be trained on (empty
text, missing or unknown labels, NaN or out-of-range scores, duplicates) is skipped and counted by
reason: never silently trained on, never silently lost.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from distill.inputs import DEFAULT_INPUT_FORMAT, student_input
from pipelines.core.schemas import DOCUMENT_TYPE_LABELS, DOMAIN_LABELS


@dataclass
class LabelledSet:
    """Column-wise labelled paragraphs; class labels as indices into the label orders."""

    ids: list[str]
    articles: list[str]
    texts: list[str]
    document_type: np.ndarray  # int64
    domain: np.ndarray  # int64
    educational_score: np.ndarray  # float32
    document_type_probs: np.ndarray | None = None  # [n, k] float32, rows without teacher probs one-hot
    domain_probs: np.ndarray | None = None
    # [n] bool, True where the targets are a student's outputs (distillation), not a teacher's labels
    distilled: np.ndarray | None = None
    teacher_models: list[str] = field(default_factory=list)
    prompt_versions: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    read: int = 0

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, idx) -> LabelledSet:
        idx = np.asarray(idx, dtype=np.int64)
        pick = lambda a: None if a is None else a[idx]  # noqa: E731
        return LabelledSet(
            ids=[self.ids[i] for i in idx],
            articles=[self.articles[i] for i in idx],
            texts=[self.texts[i] for i in idx],
            document_type=self.document_type[idx],
            domain=self.domain[idx],
            educational_score=self.educational_score[idx],
            document_type_probs=pick(self.document_type_probs),
            domain_probs=pick(self.domain_probs),
            distilled=pick(self.distilled),
            teacher_models=self.teacher_models,
            prompt_versions=self.prompt_versions,
        )

    def is_distilled(self) -> np.ndarray:
        """[n] bool: which rows' targets are a student's outputs (none when the flag is not set)."""
        return np.zeros(len(self), dtype=bool) if self.distilled is None else np.asarray(self.distilled, bool)

    def stats(self) -> dict:
        return {"read": self.read, "kept": len(self), "skipped": dict(self.skipped)}

    def truth(self) -> dict[str, np.ndarray]:
        """The teacher's labels as `distill.metrics.agreement` takes them."""
        return {
            "document_type": self.document_type,
            "domain": self.domain,
            "educational_score": self.educational_score,
        }


def _article_key(row: dict) -> str | None:
    for key in ("article_id", "pmcid", "article_file"):
        if row.get(key):
            return str(row[key])
    return None


def _probs(value, size: int) -> list[float] | None:
    if value is None or len(value) != size:
        return None
    p = [float(v) for v in value]
    if any(math.isnan(v) or v < 0 for v in p) or sum(p) <= 0:
        return None
    s = sum(p)
    return [v / s for v in p]


def validate_rows(
    rows: list[dict],
    *,
    document_type_labels: tuple[str, ...] = DOCUMENT_TYPE_LABELS,
    domain_labels: tuple[str, ...] = DOMAIN_LABELS,
    score_range: tuple[float, float] = (1.0, 5.0),
    input_format: str = DEFAULT_INPUT_FORMAT,
) -> LabelledSet:
    """Turn label rows (dicts with text and article already resolved) into a LabelledSet, counting skips.

    `texts` holds what the student reads (`distill.inputs.student_input` in `input_format`).
    """
    skipped: Counter = Counter()
    seen: set[str] = set()
    keep: dict[str, list] = {k: [] for k in ("ids", "articles", "texts", "dt", "dm", "score", "dtp", "dmp")}
    teachers, prompts = set(), set()
    dt_index = {n: i for i, n in enumerate(document_type_labels)}
    dm_index = {n: i for i, n in enumerate(domain_labels)}
    for row in rows:
        text = row.get("text")
        dt, dm, score = row.get("document_type"), row.get("domain"), row.get("educational_score")
        if row.get("id") is None:
            skipped["missing_id"] += 1
        elif row["id"] in seen:
            skipped["duplicate_id"] += 1
        elif text is None:
            skipped["missing_text"] += 1
        elif not str(text).strip():
            skipped["empty_text"] += 1
        elif dt is None or dm is None or score is None:
            skipped["missing_label"] += 1
        elif dt not in dt_index or dm not in dm_index:
            skipped["unknown_label"] += 1
        elif isinstance(score, float) and math.isnan(score):
            skipped["nan_score"] += 1
        elif not score_range[0] <= float(score) <= score_range[1]:
            skipped["score_out_of_range"] += 1
        else:
            seen.add(row["id"])
            keep["ids"].append(row["id"])
            keep["articles"].append(_article_key(row) or row["id"])
            keep["texts"].append(student_input({**row, "text": str(text)}, input_format))
            keep["dt"].append(dt_index[dt])
            keep["dm"].append(dm_index[dm])
            keep["score"].append(float(score))
            keep["dtp"].append(_probs(row.get("document_type_probs"), len(document_type_labels)))
            keep["dmp"].append(_probs(row.get("domain_probs"), len(domain_labels)))
            if row.get("teacher_model"):
                teachers.add(row["teacher_model"])
            if row.get("prompt_version"):
                prompts.add(row["prompt_version"])

    def soft(probs: list, hard: list, k: int) -> np.ndarray | None:
        if not any(p is not None for p in probs):
            return None
        rows = [p if p is not None else np.eye(k)[h] for p, h in zip(probs, hard, strict=True)]
        return np.array(rows, dtype=np.float32)

    return LabelledSet(
        ids=keep["ids"],
        articles=keep["articles"],
        texts=keep["texts"],
        document_type=np.array(keep["dt"], dtype=np.int64),
        domain=np.array(keep["dm"], dtype=np.int64),
        educational_score=np.array(keep["score"], dtype=np.float32),
        document_type_probs=soft(keep["dtp"], keep["dt"], len(document_type_labels)),
        domain_probs=soft(keep["dmp"], keep["dm"], len(domain_labels)),
        teacher_models=sorted(teachers),
        prompt_versions=sorted(prompts),
        skipped=dict(skipped),
        read=len(rows),
    )


def join_paragraphs(rows: list[dict], paragraphs: list[dict]) -> None:
    """Fill missing text (and article id) of label rows from paragraphs, by id, else by (article, path)."""
    by_id = {p["id"]: p for p in paragraphs}
    by_path = {(p.get("article_id"), p.get("path")): p for p in paragraphs}
    for row in rows:
        para = by_id.get(row.get("id")) or by_path.get((_article_key(row), row.get("path")))
        if para is None:
            continue
        if not row.get("text"):
            row["text"] = para.get("text")
        for key in ("article_id", "section_title", "path"):
            if not row.get(key):
                row[key] = para.get(key)


def load_labels(
    labels: list[str],
    paragraphs: list[str] | None = None,
    *,
    document_type_labels: tuple[str, ...] = DOCUMENT_TYPE_LABELS,
    domain_labels: tuple[str, ...] = DOMAIN_LABELS,
    input_format: str = DEFAULT_INPUT_FORMAT,
) -> LabelledSet:
    """Read label datasets (files, directories, globs), join text from paragraphs where needed, validate."""
    from pipelines.core.io import read_table

    rows = read_table(labels).to_pylist()
    if paragraphs:
        table = read_table(paragraphs, columns=["id", "article_id", "path", "section_title", "text"])
        join_paragraphs(rows, table.to_pylist())
    return validate_rows(
        rows,
        document_type_labels=document_type_labels,
        domain_labels=domain_labels,
        input_format=input_format,
    )


def _bucket(article: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}:{article}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


# The article split every benchmark and published figure uses (its test articles are never read).
RELEASE_SPLIT = {"valid_fraction": 0.1, "test_fraction": 0.2, "seed": 1}


def split_by_article(
    articles: list[str], *, valid_fraction: float = 0.1, test_fraction: float = 0.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of (train, validation, test) rows; every article falls wholly in one part.

    An article's part depends only on its key and the seed (a hash), so it stays put when labels are
    added: a held-out article is held out in every round of an annotation loop.
    """
    parts = ([], [], [])
    for i, article in enumerate(articles):
        u = _bucket(article, seed)
        parts[1 if u < valid_fraction else 2 if u < valid_fraction + test_fraction else 0].append(i)
    return tuple(np.array(p, dtype=np.int64) for p in parts)


class TextDataset(Dataset):
    """Tokenised paragraphs (truncated, not padded) with their targets."""

    def __init__(self, data: LabelledSet, tokenizer, max_length: int, *, soft_targets: bool = True):
        self.encodings = tokenizer(data.texts, truncation=True, max_length=max_length)["input_ids"]
        self.data = data
        self.soft = soft_targets

    def __len__(self) -> int:
        return len(self.encodings)

    def lengths(self) -> list[int]:
        return [len(e) for e in self.encodings]

    def __getitem__(self, i: int) -> dict:
        d = self.data
        item = {
            "input_ids": self.encodings[i],
            "document_type": int(d.document_type[i]),
            "domain": int(d.domain[i]),
            "educational_score": float(d.educational_score[i]),
        }
        if self.soft and d.document_type_probs is not None:
            item["document_type_probs"] = d.document_type_probs[i]
        if self.soft and d.domain_probs is not None:
            item["domain_probs"] = d.domain_probs[i]
        if d.distilled is not None:
            item["distilled"] = bool(d.distilled[i])
        return item


def collate(batch: list[dict], pad_token_id: int = 0) -> dict[str, torch.Tensor]:
    """Dynamic padding: pad to the longest sequence of this batch only."""
    width = max(len(b["input_ids"]) for b in batch)
    ids = torch.full((len(batch), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, b in enumerate(batch):
        ids[row, : len(b["input_ids"])] = torch.tensor(b["input_ids"])
        mask[row, : len(b["input_ids"])] = 1
    out = {
        "input_ids": ids,
        "attention_mask": mask,
        "document_type": torch.tensor([b["document_type"] for b in batch]),
        "domain": torch.tensor([b["domain"] for b in batch]),
        "educational_score": torch.tensor([b["educational_score"] for b in batch], dtype=torch.float32),
    }
    for key in ("document_type_probs", "domain_probs"):
        if key in batch[0]:
            out[key] = torch.tensor(np.stack([b[key] for b in batch]))
    if "distilled" in batch[0]:
        out["distilled"] = torch.tensor([b["distilled"] for b in batch])
    return out


class LengthGroupedSampler(Sampler[list[int]]):
    """Batches of similar length (less padding), in a shuffled order that changes with the epoch.

    Shuffles indices, sorts them by length within windows of `batch_size * 50`, cuts batches and
    shuffles the batches. With `num_replicas > 1` (DDP) each rank takes every n-th batch.
    """

    def __init__(
        self,
        lengths: list[int],
        batch_size: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        num_replicas: int = 1,
    ):
        self.lengths, self.batch_size, self.seed, self.shuffle = lengths, batch_size, seed, shuffle
        self.rank, self.num_replicas, self.epoch = rank, num_replicas, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        idx = list(range(len(self.lengths)))
        rng = random.Random(self.seed + self.epoch)
        if not self.shuffle:
            idx.sort(key=lambda i: self.lengths[i])
            return [idx[s : s + self.batch_size] for s in range(0, len(idx), self.batch_size)]
        rng.shuffle(idx)
        window = self.batch_size * 50
        idx = [
            i
            for s in range(0, len(idx), window)
            for i in sorted(idx[s : s + window], key=lambda i: self.lengths[i])
        ]
        batches = [idx[s : s + self.batch_size] for s in range(0, len(idx), self.batch_size)]
        rng.shuffle(batches)
        if self.num_replicas > 1:
            usable = len(batches) - len(batches) % self.num_replicas
            batches = batches[self.rank : usable : self.num_replicas]
        return batches

    def __iter__(self):
        return iter(self._batches())

    def __len__(self) -> int:
        return len(self._batches())


def write_labels_without(labels: str, ids: set[str], workdir: str) -> str:
    """A copy of the labels file without the rows of `ids` (e.g. the test part), for validation-only runs."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(labels)
    keep = pc.invert(pc.is_in(table["id"], value_set=pa.array(sorted(ids))))
    path = str(Path(workdir) / "labels_without_test.parquet")
    pq.write_table(table.filter(keep), path)
    return path
