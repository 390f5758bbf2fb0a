"""`biomed-enrich ingest`: PMC-OA JATS articles -> paragraph Parquet (a Beam pipeline)."""

from __future__ import annotations

import json

import typer

from pipelines.app.commands.common import INPUTS_METAVAR, allow_empty_option, finish, quiet_option


def command(
    ctx: typer.Context,
    inputs: list[str] = typer.Argument(
        ...,
        metavar=INPUTS_METAVAR,
        help="Folders, globs or .xml/.nxml files; .tar.gz bulk packages (streamed); PMC file-list .csv "
        "files (joined for licence / PMID / retraction); PMC Cloud folders (PMC<id>.<ver>/ + metadata/). "
        "Local paths or any URI Beam / smart_open reads (gs://, s3://, https://).",
    ),
    output: str = typer.Option(
        ..., "--output", "-o", help="Output root: paragraphs/, dead_letter/, ingest_stats.json."
    ),
    min_tokens: int = typer.Option(
        64, "--min-tokens", min=0, help="Keep paragraphs of at least this many whitespace-separated words."
    ),
    allow_empty: bool = allow_empty_option(),
    quiet: bool = quiet_option(),
) -> None:
    """Extract body paragraphs of JATS articles into OUTPUT/paragraphs/*.parquet.

    Extra --flags are Beam pipeline options, e.g. --runner=DataflowRunner --project=... or
    --direct_num_workers=2 --direct_running_mode=multi_processing. Unreadable or hostile articles go to
    OUTPUT/dead_letter/ingest-*.jsonl with their reason.
    """
    from pipelines.ingest.pipeline import run_ingest

    stats = run_ingest(list(inputs), output, min_tokens=min_tokens, beam_args=list(ctx.args))
    finish("ingest", stats, output, allow_empty)
    summary = {
        k: stats.get(k)
        for k in ("articles_read", "articles_parsed", "articles_dead_lettered", "paragraphs_written")
    }
    typer.echo(json.dumps(summary))
