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


def command(
    ctx: typer.Context,
    paragraphs: list[str] = typer.Argument(
        ..., metavar=INPUTS_METAVAR, help="Paragraphs datasets (dirs, globs or Parquet files)."
    ),
    output: str = typer.Option(
        ..., "--output", "-o", help="Output root: labels/, dead_letter/, annotate_stats.json."
    ),
    sample: int | None = typer.Option(None, "--sample", help="Label this many paragraphs (stratified)."),
    fraction: float | None = typer.Option(
        None, "--fraction", help="Label this fraction of paragraphs (the paper: ~0.0033)."
    ),
    seed: int = typer.Option(0, "--seed", help="Sampling seed (same seed, same sample)."),
    teacher: TeacherKind = typer.Option(
        TeacherKind.replay,
        "--teacher",
        help="replay: recorded labels, offline (default); openai: live API; batch: Batch API.",
    ),
    base_url: str | None = typer.Option(
        None, "--base-url", help="OpenAI-compatible endpoint, e.g. http://host:8000/v1 (vLLM)."
    ),
    model: str | None = typer.Option(None, "--model", help="Teacher model name (openai/batch)."),
    api_key_file: Path | None = typer.Option(
        None,
        "--api-key-file",
        help="File holding the API key (else $BIOMED_ENRICH_API_KEY or $OPENAI_API_KEY).",
    ),
    recordings: str | None = typer.Option(
        None, "--recordings", help="Recorded-labels Parquet for replay (default: packaged)."
    ),
    concurrency: int = typer.Option(16, "--concurrency", help="Requests in flight at once (openai)."),
    rpm: float | None = typer.Option(None, "--rpm", help="Client-side limit, requests per minute."),
    tpm: float | None = typer.Option(None, "--tpm", help="Client-side limit, tokens per minute."),
    timeout: float = typer.Option(60.0, "--timeout", help="Per-request timeout, seconds."),
    max_attempts: int = typer.Option(8, "--max-attempts", help="Attempts per paragraph on transient errors."),
    response_mode: ResponseMode = typer.Option(
        ResponseMode.json_schema,
        "--response-mode",
        help="Structured output; falls back automatically if unsupported.",
    ),
    logprobs: bool = typer.Option(
        True, "--logprobs/--no-logprobs", help="Ask for top logprobs (soft labels)."
    ),
    price_table: Path | None = typer.Option(
        None, "--price-table", help="JSON/YAML {model: {input, output}} USD per 1M tokens."
    ),
    cache: str | None = typer.Option(
        None, "--cache", help="Answer cache (SQLite) path; default OUTPUT/annotate_cache.sqlite."
    ),
    poll_interval: float = typer.Option(
        30.0, "--poll-interval", help="Seconds between Batch API status polls."
    ),
    beam: bool = typer.Option(
        False, "--beam", help="Run as a Beam pipeline (RunInference); extra --flags go to Beam."
    ),
    budget_tokens: int | None = typer.Option(
        None,
        "--budget-tokens",
        help="Spend at most this many tokens (in + out); without --sample/--fraction it sizes the sample.",
    ),
    budget_usd: float | None = typer.Option(
        None, "--budget-usd", help="Spend at most this many USD (at the price table); sizes the sample too."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the sample size and estimated tokens and cost; send nothing."
    ),
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

    kw: dict = {}
    if teacher is not TeacherKind.replay:
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
    led = stats["ledger"]
    typer.echo(
        f"ledger: {led['calls']} calls, {led['retries']} retries, {led['cache_hits']} cache hits, "
        f"{led['input_tokens']:,} in / {led['output_tokens']:,} out tokens, "
        f"latency p50 {led['latency_s']['p50']:.3f}s p99 {led['latency_s']['p99']:.3f}s, "
        f"cost ${led['cost_usd']:.4f}"
    )
