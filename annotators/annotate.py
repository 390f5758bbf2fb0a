"""The annotate stage: sample paragraphs, have a teacher label them, write labels + dead letters + stats.

`label_paragraphs` is the pure-ish core (rows in, label rows and dead letters out, through the cache)
that the annotation loop and the active-learning rounds call directly on any list of paragraph rows;
`run_annotate` is the stage (dataset in, dataset out); `AnnotateParagraphs` is the same labelling as a
Beam transform over Beam's RunInference / RemoteModelHandler (Beam's retries and client-side
throttling), for runs that scale out. Every input row ends labelled or dead-lettered, never both,
never twice.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystems import FileSystems

from annotators.budget import (
    PAID_TEACHERS,
    PILOT_SAMPLE,
    affordable_sample,
    estimate,
    require_limit,
)
from annotators.cache import AnswerCache, cache_key
from annotators.ledger import Ledger, load_price_table
from annotators.prompts import PROMPT_VERSION, prompt_fingerprint
from annotators.sampling import STRATA_COLUMNS, sample_table
from annotators.taxonomy import Answer
from annotators.teachers import Outcome, Teacher, make_teacher, resolve_api_key
from annotators.teachers.openai_chat import MAX_ANSWER_TOKENS
from pipelines.core import arrowfs
from pipelines.core.io import dataset_dir, dead_letter, parquet_files, write_json, write_table
from pipelines.core.schemas import LABELS, conform
from pipelines.core.uris import is_remote

log = logging.getLogger(__name__)
STAGE = "annotate"
CARRIED = ("article_id", "text", "section_title", "path")
PARAGRAPH_COLUMNS = [
    "id",
    "article_id",
    "path",
    "text",
    "section_title",
    "language",
    "article_type",
    "source",
]


@dataclass
class LabelResult:
    labels: list[dict] = field(default_factory=list)
    dead_letters: list[dict] = field(default_factory=list)


def label_row(row: dict, answer: Answer, teacher_model: str, prompt_version: str) -> dict:
    """One LABELS row for paragraph `row` from a validated answer."""
    out = {
        "id": row["id"],
        "document_type": answer.document_type,
        "domain": answer.domain,
        "educational_score": answer.educational_score,
        "document_type_probs": answer.document_type_probs,
        "domain_probs": answer.domain_probs,
        "educational_score_probs": answer.educational_score_probs,
        "educational_score_expected": answer.educational_score_expected,
        "teacher_model": teacher_model,
        "prompt_version": prompt_version,
        "input_tokens": answer.input_tokens,
        "output_tokens": answer.output_tokens,
    }
    out.update({k: row.get(k) for k in CARRIED})
    return out


def _dead(row: dict, reason: str, detail: str = "") -> dict:
    where = f"{row.get('article_id')} {row.get('path')}"
    return dead_letter(STAGE, str(row.get("id")), reason, f"{where}: {detail}" if detail else where)


def label_paragraphs(
    rows: Sequence[dict],
    teacher: Teacher,
    cache: AnswerCache | None = None,
    ledger: Ledger | None = None,
    on_label: Callable[[dict], None] | None = None,
) -> LabelResult:
    """Label paragraph rows (dicts with id, text, section_title, path, article_id) with `teacher`.

    Answers already in `cache` cost nothing; rows with the same text are asked once; every new
    answer is written to the cache the moment it arrives (a killed run loses only requests in
    flight). Duplicate ids and empty texts are dead-lettered, so each id appears once in the result.
    """
    ledger = ledger if ledger is not None else Ledger(model=teacher.model)
    result = LabelResult()
    seen: set[str] = set()
    todo: list[dict] = []
    for row in rows:
        if row.get("id") in seen:
            result.dead_letters.append(_dead(row, "duplicate_id"))
        elif not (row.get("text") or "").strip():
            seen.add(row.get("id"))
            result.dead_letters.append(_dead(row, "empty_text"))
        else:
            seen.add(row["id"])
            todo.append(row)
    use_cache = cache is not None and getattr(teacher, "cacheable", True)
    model, version = teacher.model, teacher.prompt_version
    keys = [cache_key(model, version, r["text"]) for r in todo]
    answers: dict[str, Outcome] = {}
    if use_cache:
        answers = {k: Outcome(a) for k, a in cache.get_many(keys).items()}
        ledger.record_cache_hits(sum(k in answers for k in keys))
    representatives = {k: r for k, r in zip(keys, todo, strict=True) if k not in answers}
    missing = list(representatives)

    def on_result(i: int, outcome: Outcome) -> None:
        if use_cache and outcome.ok:
            cache.put(missing[i], outcome.answer, model, version)

    outcomes = teacher.label([representatives[k] for k in missing], ledger, on_result)
    answers.update(zip(missing, outcomes, strict=True))
    for key, row in zip(keys, todo, strict=True):
        outcome = answers[key]
        if outcome.ok:
            labelled = label_row(row, outcome.answer, model, version)
            result.labels.append(labelled)
            if on_label:
                on_label(labelled)
        else:
            result.dead_letters.append(_dead(row, outcome.reason or "unknown", outcome.detail))
    return result


def label_rows(
    rows: Sequence[dict],
    teacher: str | Teacher = "replay",
    *,
    cache_path: str | None = None,
    price_table: str | None = None,
    **teacher_kw: Any,
) -> tuple[LabelResult, Ledger]:
    """Label exactly these paragraph rows (e.g. an active-learning pick), with a cache and a ledger.

    `teacher` is a Teacher or a backend name (then `teacher_kw` go to `build_teacher`).
    """
    the_teacher = build_teacher(teacher, **teacher_kw) if isinstance(teacher, str) else teacher
    ledger = Ledger(
        model=the_teacher.model,
        prices=load_price_table(price_table),
        price_factor=getattr(the_teacher, "price_factor", 1.0),
    )
    cache = AnswerCache(cache_path) if cache_path and the_teacher.cacheable else None
    try:
        return label_paragraphs(rows, the_teacher, cache, ledger), ledger
    finally:
        if cache:
            cache.close()


def build_teacher(
    teacher: str = "replay",
    *,
    base_url: str | None = None,
    model: str | None = None,
    api_key_file: str | None = None,
    recordings: str | None = None,
    workdir: str | None = None,
    **kw: Any,
) -> Teacher:
    """A teacher by backend name, with the API key resolved from the file or the environment."""
    if teacher == "replay":
        return make_teacher("replay", recordings=recordings)
    api_key = resolve_api_key(api_key_file)
    if teacher == "batch":
        kw["workdir"] = workdir or "batch"
    return make_teacher(teacher, model=model, base_url=base_url, api_key=api_key, **kw)


def default_cache_path(output: str) -> str:
    """`<output>/annotate_cache.sqlite` for local outputs; a per-user cache for remote ones (gs://, s3://)."""
    if "://" in output and not output.startswith("file://"):
        return os.path.join(os.path.expanduser("~"), ".cache", "biomed-enrich", "annotate_cache.sqlite")
    return os.path.join(output.removeprefix("file://"), "annotate_cache.sqlite")


def _clear(pattern: str) -> None:
    matched = [m.path for r in FileSystems.match([pattern]) for m in r.metadata_list]
    if matched:
        FileSystems.delete(matched)


def write_dead_letters(records: list[dict], output: str, shard: str = "00000-of-00001") -> str | None:
    """The dead letters as one JSONL file (none for none on an object store: see `WriteDeadLetters`)."""
    path = FileSystems.join(dataset_dir(output, "dead_letter"), f"{STAGE}-{shard}.jsonl")
    if not records and is_remote(output):
        return None
    with FileSystems.create(path) as f:
        for r in records:
            f.write((json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n").encode())
    return path


def labels_table(labels: list[dict]) -> pa.Table:
    if not labels:
        return LABELS.empty_table()
    return conform(pa.Table.from_pylist(labels), LABELS)


def read_sample(
    paragraphs: list[str], sample: int | None, fraction: float | None, seed: int
) -> tuple[list[dict], int]:
    """The sampled paragraph rows and the pool size; texts are read for the sample only."""
    dataset = arrowfs.dataset(parquet_files(paragraphs))
    names = set(dataset.schema.names)
    if not {"id", "text"} <= names:
        raise ValueError(
            f"{paragraphs} is not a paragraphs dataset (missing {sorted({'id', 'text'} - names)})"
        )
    pool = dataset.to_table(columns=[c for c in STRATA_COLUMNS if c in names])
    ids = sample_table(pool, sample, fraction, seed)["id"]
    columns = [c for c in PARAGRAPH_COLUMNS if c in names]
    if len(ids) == pool.num_rows:
        return dataset.to_table(columns=columns).to_pylist(), pool.num_rows
    return dataset.to_table(columns=columns, filter=pc.field("id").isin(ids)).to_pylist(), pool.num_rows


def run_annotate(
    paragraphs: list[str],
    output: str,
    *,
    teacher: str = "replay",
    sample: int | None = None,
    fraction: float | None = None,
    seed: int = 0,
    base_url: str | None = None,
    model: str | None = None,
    beam_args: list[str] | None = None,
    recordings: str | None = None,
    api_key_file: str | None = None,
    price_table: str | None = None,
    cache_path: str | None = None,
    use_beam: bool = False,
    progress: bool = True,
    budget_tokens: int | None = None,
    budget_usd: float | None = None,
    dry_run: bool = False,
    **teacher_kw: Any,
) -> dict:
    """Sample `paragraphs` datasets, label the sample, write `<output>/labels/`, dead letters and stats.

    `teacher_kw` goes to the backend (concurrency, rpm, tpm, timeout, response_mode, logprobs, ...).
    With `use_beam` (or Beam flags in `beam_args`) the labelling runs as a Beam pipeline.
    A paid teacher (openai, batch) needs `sample`, `fraction` or a budget (see `annotators.budget`);
    `dry_run` returns the estimated spend of the sample and sends nothing, writes nothing.
    Raises `NothingLabelled` (after writing the dead letters and stats) when the teacher labels none
    of a non-empty sample.
    """
    began = time.time()
    require_limit(teacher, sample, fraction, budget_tokens, budget_usd)
    if teacher in PAID_TEACHERS and not model:
        raise ValueError(f"the {teacher} teacher needs --model")
    prices = load_price_table(price_table)
    plan_kw = dict(
        model=model or teacher,
        prices=prices,
        price_factor=0.5 if teacher == "batch" else 1.0,  # BatchTeacher.price_factor
        prompt_version=teacher_kw.get("prompt_version", PROMPT_VERSION),
        max_tokens=teacher_kw.get("max_tokens", MAX_ANSWER_TOKENS),
    )
    if sample is None and fraction is None and (budget_tokens or budget_usd):
        pilot_rows, _ = read_sample(paragraphs, PILOT_SAMPLE, None, seed)
        sample = affordable_sample(estimate(pilot_rows, **plan_kw), budget_tokens, budget_usd)
    rows, n_paragraphs = read_sample(paragraphs, sample, fraction, seed)
    plan = estimate(rows, **plan_kw)
    if dry_run:
        return {"stage": STAGE, "dry_run": True, "teacher": teacher, "pool": n_paragraphs, "estimate": plan}
    if teacher != "replay":
        teacher_kw.setdefault("progress", progress)
    if teacher == "batch":
        teacher_kw.setdefault("workdir", os.path.join(output, "batch"))
    the_teacher = build_teacher(
        teacher,
        base_url=base_url,
        model=model,
        api_key_file=api_key_file,
        recordings=recordings,
        **teacher_kw,
    )
    ledger = Ledger(
        model=the_teacher.model,
        prices=prices,
        price_factor=getattr(the_teacher, "price_factor", 1.0),
        budget_tokens=budget_tokens,
        budget_usd=budget_usd,
    )
    cache = AnswerCache(cache_path or default_cache_path(output)) if the_teacher.cacheable else None
    _clear(FileSystems.join(dataset_dir(output, "labels"), "*.parquet"))
    _clear(FileSystems.join(dataset_dir(output, "dead_letter"), f"{STAGE}-*.jsonl"))
    try:
        if use_beam or any(a.startswith("--runner") for a in beam_args or []):
            from annotators.beam_annotate import run_beam_annotate

            counts = run_beam_annotate(
                rows,
                output,
                the_teacher,
                cache_path=cache.path if cache else None,
                beam_args=beam_args,
                ledger=ledger,
            )
            n_labelled, reasons = counts["labelled"], Counter(counts["dead_letter_reasons"])
        else:
            result = label_paragraphs(rows, the_teacher, cache, ledger)
            write_table(labels_table(result.labels), output, "labels")
            write_dead_letters(result.dead_letters, output)
            n_labelled, reasons = len(result.labels), Counter(d["reason"] for d in result.dead_letters)
    finally:
        if cache:
            cache.close()
    stats = {
        "stage": STAGE,
        "teacher": teacher,
        "teacher_model": the_teacher.model,
        "prompt_version": the_teacher.prompt_version,
        "prompt_fingerprint": prompt_fingerprint(PROMPT_VERSION),
        "seed": seed,
        "sample": sample,
        "fraction": fraction,
        "paragraphs": n_paragraphs,
        "read": len(rows),
        "written": n_labelled,
        "dead_lettered": sum(reasons.values()),
        "dead_letter_reasons": dict(reasons),
        "estimate": plan,
        "ledger": ledger.summary(),
        "seconds": round(time.time() - began, 3),
    }
    write_json(stats, FileSystems.join(output, f"{STAGE}_stats.json"))
    log.info("%s", ledger.format())
    if rows and not n_labelled:
        raise NothingLabelled(nothing_labelled_message(teacher, len(rows), reasons, output))
    return stats


class NothingLabelled(RuntimeError):
    """The teacher labelled none of a non-empty sample: training on it would silently use no labels."""


def nothing_labelled_message(teacher: str, n: int, reasons: Counter, output: str) -> str:
    """Why nothing was labelled and what to do instead."""
    why = ", ".join(f"{k}: {v}" for k, v in reasons.most_common())
    message = f"the {teacher} teacher labelled 0 of {n} sampled paragraphs ({why})"
    if teacher == "replay":
        message += (
            "; the replay teacher only knows the paragraphs it has recordings for (by default the packaged "
            "PMC sample): label new paragraphs with a live teacher, --teacher openai --base-url URL "
            "--model M (any OpenAI-compatible server, e.g. vLLM), or pass --recordings FILE with labels "
            "for them"
        )
    elif reasons.get("budget_exhausted"):
        message += "; the budget does not cover one paragraph: raise --budget-tokens/--budget-usd"
    return message + f" (dead letters: {output}/dead_letter)"
