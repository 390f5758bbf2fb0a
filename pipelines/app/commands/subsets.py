"""`biomed-enrich subsets`: build training subsets (one document per article) from scored paragraphs."""

from __future__ import annotations

import json

import typer

from pipelines.app.commands.common import INPUTS_METAVAR, allow_empty_option, finish, quiet_option


def command(
    ctx: typer.Context,
    inputs: list[str] = typer.Argument(
        ..., metavar=INPUTS_METAVAR, help="Scored datasets: directories, Parquet files or globs."
    ),
    recipe: list[str] = typer.Option(
        ...,
        "--recipe",
        "-r",
        help="Recipe YAML file or preset name (BE-Base, BE-Educational, BE-Clinical, BE-ClinicalCase, "
        "BE-French, BE-All); repeat it or give a comma-separated list; 'paper' = all six presets.",
    ),
    output: str = typer.Option(..., "--output", "-o", help="Output root: one directory per subset."),
    tokenizer: str = typer.Option(
        None, help="Override the recipes' tokenizer for token counts: 'whitespace' or a local HF tokenizer."
    ),
    seed: int = typer.Option(None, help="Override the recipes' shuffle seed."),
    output_format: str = typer.Option(
        None, "--format", help="Override the recipes' output format: parquet|jsonl."
    ),
    allow_empty: bool = allow_empty_option(),
    quiet: bool = quiet_option(),
) -> None:
    """Scored paragraphs -> filtered, upsampled, prefixed documents per article.

    Writes <output>/<subset>/<license_group>/part-*.parquet (or .jsonl), a
    dataset card README.md and recipe.yaml per subset, and
    <output>/subsets_stats.json. Unknown --flags go to Beam (e.g.
    --runner=DataflowRunner). Recipes and every knob: docs/subsets.md.
    """
    from pipelines.subsets.pipeline import run_subsets

    stats = run_subsets(
        inputs,
        recipe,
        output,
        tokenizer=tokenizer,
        seed=seed,
        output_format=output_format,
        beam_args=list(ctx.args),
    )
    finish("subsets", stats, output, allow_empty)
    summary = {
        name: {k: s[k] for k in ("articles", "documents", "paragraphs", "tokens")}
        for name, s in stats["subsets"].items()
    }
    typer.echo(json.dumps(summary, indent=2))
