"""The annotate stage: sample paragraphs, have a teacher label them, write labels + dead letters + stats.

`label_paragraphs` is the pure-ish core (rows in, label rows and dead letters out, through the cache)
that the annotation loop and the active-learning rounds call directly on any list of paragraph rows;
`run_annotate` is the stage (dataset in, dataset out); `AnnotateParagraphs` is the same labelling as a
Beam transform over Beam's RunInference / RemoteModelHandler (Beam's retries and client-side
throttling), for runs that scale out. Every input row ends labelled or dead-lettered, never both,
never twice.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

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
from annotators.labels import STAGE, LabelResult, label_row, labels_table, paragraph_dead_letter
from annotators.ledger import Ledger, load_price_table
from annotators.prompts import MAX_ANSWER_TOKENS, PROMPT_VERSION, prompt_fingerprint
from annotators.sampling import STRATA_COLUMNS, sample_table
from annotators.teachers import Outcome, Teacher, make_teacher, resolve_api_key
from pipelines.core.dead_letters import clear_dead_letters, write_dead_letters
from pipelines.core.io import dataset_dir, open_dataset, write_json, write_table

log = logging.getLogger(__name__)
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
            result.dead_letters.append(paragraph_dead_letter(row, "duplicate_id"))
        elif not (row.get("text") or "").strip():
            seen.add(row.get("id"))
            result.dead_letters.append(paragraph_dead_letter(row, "empty_text"))
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
            result.dead_letters.append(
                paragraph_dead_letter(row, outcome.reason or "unknown", outcome.detail)
            )
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


def read_sample(
    paragraphs: list[str], sample: int | None, fraction: float | None, seed: int
) -> tuple[list[dict], int]:
    """The sampled paragraph rows and the pool size; texts are read for the sample only."""
    dataset = open_dataset(paragraphs)
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


def stage_teacher(teacher: str, output: str, progress: bool, teacher_kw: dict, **build_kw: Any) -> Teacher:
    """The stage's teacher: live ones show progress, the Batch API keeps its files under `output`."""
    if teacher != "replay":
        teacher_kw.setdefault("progress", progress)
    if teacher == "batch":
        teacher_kw.setdefault("workdir", os.path.join(output, "batch"))
    return build_teacher(teacher, **build_kw, **teacher_kw)


def plan_kwargs(teacher: str, model: str | None, prices: dict, teacher_kw: dict) -> dict:
    """What `budget.estimate` needs to price a sample for this teacher before anything is sent."""
    return dict(
        model=model or teacher,
        prices=prices,
        price_factor=0.5 if teacher == "batch" else 1.0,  # BatchTeacher.price_factor
        prompt_version=teacher_kw.get("prompt_version", PROMPT_VERSION),
        max_tokens=teacher_kw.get("max_tokens", MAX_ANSWER_TOKENS),
    )


def clear_outputs(output: str) -> None:
    """Remove a previous run's labels and dead letters (a rerun never mixes two samples)."""
    _clear(FileSystems.join(dataset_dir(output, "labels"), "*.parquet"))
    clear_dead_letters(output, STAGE)


def teacher_fields(teacher: Teacher) -> dict:
    """Which teacher and prompt labelled a run (stats fields)."""
    return {
        "teacher_model": teacher.model,
        "prompt_version": teacher.prompt_version,
        "prompt_fingerprint": prompt_fingerprint(PROMPT_VERSION),
    }


def outcome_fields(read: int, written: int, reasons: Counter) -> dict:
    """read = written + dead letters, by reason (stats fields)."""
    return {
        "read": read,
        "written": written,
        "dead_lettered": sum(reasons.values()),
        "dead_letter_reasons": dict(reasons),
    }


def size_sample(paragraphs, sample, fraction, seed, budget_tokens, budget_usd, plan_kw) -> int | None:
    """The sample size: as given, or (budget only) what the budget affords at a pilot sample's cost."""
    if sample is None and fraction is None and (budget_tokens or budget_usd):
        pilot_rows, _ = read_sample(paragraphs, PILOT_SAMPLE, None, seed)
        return affordable_sample(estimate(pilot_rows, **plan_kw), budget_tokens, budget_usd)
    return sample


def label_and_write(
    rows: list[dict], output: str, teacher: Teacher, cache, ledger: Ledger, beam_args: list[str] | None
) -> tuple[int, Counter]:
    """Label `rows` (in process, or as a Beam pipeline when `beam_args` is a list), write the labels
    and dead letters; (labels written, dead letters by reason)."""
    if beam_args is not None:
        from annotators.beam_annotate import run_beam_annotate

        counts = run_beam_annotate(
            rows,
            output,
            teacher,
            cache_path=cache.path if cache else None,
            beam_args=beam_args,
            ledger=ledger,
        )
        return counts["labelled"], Counter(counts["dead_letter_reasons"])
    result = label_paragraphs(rows, teacher, cache, ledger)
    write_table(labels_table(result.labels), output, "labels")
    write_dead_letters(result.dead_letters, output, STAGE)
    return len(result.labels), Counter(d["reason"] for d in result.dead_letters)


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
    plan_kw = plan_kwargs(teacher, model, prices, teacher_kw)
    sample = size_sample(paragraphs, sample, fraction, seed, budget_tokens, budget_usd, plan_kw)
    rows, n_paragraphs = read_sample(paragraphs, sample, fraction, seed)
    plan = estimate(rows, **plan_kw)
    if dry_run:
        return {"stage": STAGE, "dry_run": True, "teacher": teacher, "pool": n_paragraphs, "estimate": plan}
    build_kw = {"base_url": base_url, "model": model, "api_key_file": api_key_file, "recordings": recordings}
    the_teacher = stage_teacher(teacher, output, progress, teacher_kw, **build_kw)
    factor = getattr(the_teacher, "price_factor", 1.0)
    budget = {"budget_tokens": budget_tokens, "budget_usd": budget_usd}
    ledger = Ledger(model=the_teacher.model, prices=prices, price_factor=factor, **budget)
    cache = AnswerCache(cache_path or default_cache_path(output)) if the_teacher.cacheable else None
    clear_outputs(output)
    try:
        beam = use_beam or any(a.startswith("--runner") for a in beam_args or [])
        n_labelled, reasons = label_and_write(
            rows, output, the_teacher, cache, ledger, list(beam_args or []) if beam else None
        )
    finally:
        if cache:
            cache.close()
    sampled = {"seed": seed, "sample": sample, "fraction": fraction, "paragraphs": n_paragraphs}
    stats = {
        "stage": STAGE,
        "teacher": teacher,
        **teacher_fields(the_teacher),
        **sampled,
        **outcome_fields(len(rows), n_labelled, reasons),
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


def main(argv: list[str] | None = None) -> dict:
    """`python -m annotators.annotate PARAGRAPHS... --output DIR [Beam flags]`: the stage on its own.

    Beam flags (e.g. `--runner=DataflowRunner`) run the labelling as a Beam pipeline.
    """
    parser = argparse.ArgumentParser(prog="python -m annotators.annotate", description=__doc__.split("\n")[0])
    parser.add_argument(
        "paragraphs", nargs="+", help="Paragraph datasets: directories, Parquet files, globs."
    )
    parser.add_argument("--output", "-o", required=True, help="Output root: labels/, dead_letter/, stats.")
    parser.add_argument("--teacher", default="replay", choices=("replay", "openai", "batch"))
    parser.add_argument("--sample", type=int, help="Paragraphs to sample (stratified).")
    parser.add_argument("--fraction", type=float, help="Fraction of paragraphs to sample.")
    parser.add_argument("--seed", type=int, default=0, help="Sampling seed.")
    parser.add_argument("--model", help="Teacher model (openai, batch).")
    parser.add_argument("--base-url", help="OpenAI-compatible server URL.")
    parser.add_argument("--api-key-file", help="File holding the API key (else OPENAI_API_KEY).")
    parser.add_argument("--recordings", help="Recorded labels for the replay teacher.")
    known, beam_args = parser.parse_known_args(argv)
    return run_annotate(**vars(known), beam_args=beam_args)


if __name__ == "__main__":
    main()
