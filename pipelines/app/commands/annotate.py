"""`biomed-enrich annotate`: a teacher LLM labels a stratified sample of paragraphs."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from pipelines.app.commands.common import INPUTS_METAVAR, allow_empty_option, finish, quiet_option


class TeacherKind(str, Enum):
    openai = "openai"
    batch = "batch"
    replay = "replay"


class ResponseMode(str, Enum):
    json_schema = "json_schema"
    json_object = "json_object"
    plain = "plain"


PARAGRAPHS_ARGUMENT = typer.Argument(
    ..., metavar=INPUTS_METAVAR, help="Paragraphs datasets (dirs, globs or Parquet files)."
)
OUTPUT_OPTION = typer.Option(
    ..., "--output", "-o", help="Output root: labels/, dead_letter/, annotate_stats.json."
)
FRACTION_OPTION = typer.Option(
    None, "--fraction", help="Label this fraction of paragraphs (the paper: ~0.0033)."
)
TEACHER_OPTION = typer.Option(
    TeacherKind.replay,
    "--teacher",
    help="replay: recorded labels, offline (default); openai: live API; batch: Batch API.",
)
BASE_URL_OPTION = typer.Option(
    None, "--base-url", help="OpenAI-compatible endpoint, e.g. http://host:8000/v1 (vLLM)."
)
API_KEY_FILE_OPTION = typer.Option(
    None,
    "--api-key-file",
    help="File holding the API key (else $BIOMED_ENRICH_API_KEY or $OPENAI_API_KEY).",
)
RECORDINGS_OPTION = typer.Option(
    None, "--recordings", help="Recorded-labels Parquet for replay (default: packaged)."
)
RESPONSE_MODE_OPTION = typer.Option(
    ResponseMode.json_schema,
    "--response-mode",
    help="Structured output; falls back automatically if unsupported.",
)
LOGPROBS_OPTION = typer.Option(True, "--logprobs/--no-logprobs", help="Ask for top logprobs (soft labels).")
PRICE_TABLE_OPTION = typer.Option(
    None, "--price-table", help="JSON/YAML {model: {input, output}} USD per 1M tokens."
)
CACHE_OPTION = typer.Option(
    None, "--cache", help="Answer cache (SQLite) path; default OUTPUT/annotate_cache.sqlite."
)
POLL_INTERVAL_OPTION = typer.Option(30.0, "--poll-interval", help="Seconds between Batch API status polls.")
BEAM_OPTION = typer.Option(
    False, "--beam", help="Run as a Beam pipeline (RunInference); extra --flags go to Beam."
)
BUDGET_TOKENS_OPTION = typer.Option(
    None,
    "--budget-tokens",
    help="Spend at most this many tokens (in + out); without --sample/--fraction it sizes the sample.",
)
BUDGET_USD_OPTION = typer.Option(
    None, "--budget-usd", help="Spend at most this many USD (at the price table); sizes the sample too."
)
DRY_RUN_OPTION = typer.Option(
    False, "--dry-run", help="Print the sample size and estimated tokens and cost; send nothing."
)


def command(
    ctx: typer.Context,
    paragraphs: list[str] = PARAGRAPHS_ARGUMENT,
    output: str = OUTPUT_OPTION,
    sample: int | None = typer.Option(None, "--sample", help="Label this many paragraphs (stratified)."),
    fraction: float | None = FRACTION_OPTION,
    seed: int = typer.Option(0, "--seed", help="Sampling seed (same seed, same sample)."),
    teacher: TeacherKind = TEACHER_OPTION,
    base_url: str | None = BASE_URL_OPTION,
    model: str | None = typer.Option(None, "--model", help="Teacher model name (openai/batch)."),
    api_key_file: Path | None = API_KEY_FILE_OPTION,
    recordings: str | None = RECORDINGS_OPTION,
    concurrency: int = typer.Option(16, "--concurrency", help="Requests in flight at once (openai)."),
    rpm: float | None = typer.Option(None, "--rpm", help="Client-side limit, requests per minute."),
    tpm: float | None = typer.Option(None, "--tpm", help="Client-side limit, tokens per minute."),
    timeout: float = typer.Option(60.0, "--timeout", help="Per-request timeout, seconds."),
    max_attempts: int = typer.Option(8, "--max-attempts", help="Attempts per paragraph on transient errors."),
    response_mode: ResponseMode = RESPONSE_MODE_OPTION,
    logprobs: bool = LOGPROBS_OPTION,
    price_table: Path | None = PRICE_TABLE_OPTION,
    cache: str | None = CACHE_OPTION,
    poll_interval: float = POLL_INTERVAL_OPTION,
    beam: bool = BEAM_OPTION,
    budget_tokens: int | None = BUDGET_TOKENS_OPTION,
    budget_usd: float | None = BUDGET_USD_OPTION,
    dry_run: bool = DRY_RUN_OPTION,
    allow_empty: bool = allow_empty_option(),
    quiet: bool = quiet_option(),
) -> None:
    """Select a deterministic stratified sample of PARAGRAPHS and have a teacher label it.

    Every sampled paragraph ends in OUTPUT/labels/ or OUTPUT/dead_letter/annotate-*.jsonl with a reason.
    Answers are cached durably: a rerun (or a killed and restarted run) pays nothing twice.
    A paid teacher (openai, batch) needs --sample, --fraction or a budget; try --dry-run first.
    The command fails if the teacher labels none of the sample.
    """
    from annotators.annotate import NothingLabelled, run_annotate
    from annotators.budget import format_estimate
    from annotators.teachers import TeacherError

    kw = teacher_options(
        teacher, concurrency, rpm, tpm, timeout, max_attempts, response_mode, logprobs, poll_interval
    )
    try:
        stats = run_annotate(
            paragraphs,
            output,
            teacher=teacher.value,
            sample=sample,
            fraction=fraction,
            seed=seed,
            base_url=base_url,
            model=model,
            beam_args=list(ctx.args),
            recordings=recordings,
            api_key_file=str(api_key_file) if api_key_file else None,
            price_table=str(price_table) if price_table else None,
            cache_path=cache,
            use_beam=beam,
            budget_tokens=budget_tokens,
            budget_usd=budget_usd,
            dry_run=dry_run,
            **kw,
        )
    except (TeacherError, NothingLabelled) as e:  # a failed run, not a usage error (those exit 2)
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(code=1) from None
    if dry_run:
        typer.echo(format_estimate(stats["estimate"], stats["pool"]))
        return
    finish("annotate", stats, output, allow_empty)
    typer.echo(ledger_line(stats["ledger"]))


def teacher_options(
    teacher: TeacherKind,
    concurrency: int,
    rpm: float | None,
    tpm: float | None,
    timeout: float,
    max_attempts: int,
    response_mode: ResponseMode,
    logprobs: bool,
    poll_interval: float,
) -> dict:
    """The backend keyword arguments of a live teacher (the replay teacher takes none)."""
    if teacher is TeacherKind.replay:
        return {}
    kw = dict(
        concurrency=concurrency,
        rpm=rpm,
        tpm=tpm,
        timeout=timeout,
        max_attempts=max_attempts,
        response_mode=response_mode.value,
        logprobs=logprobs,
    )
    if teacher is TeacherKind.batch:
        kw["poll_interval_s"] = poll_interval
    return kw


def ledger_line(led: dict) -> str:
    """The spend ledger in one line: calls, retries, cache hits, tokens, latency, cost."""
    return (
        f"ledger: {led['calls']} calls, {led['retries']} retries, {led['cache_hits']} cache hits, "
        f"{led['input_tokens']:,} in / {led['output_tokens']:,} out tokens, "
        f"latency p50 {led['latency_s']['p50']:.3f}s p99 {led['latency_s']['p99']:.3f}s, "
        f"cost ${led['cost_usd']:.4f}"
    )
