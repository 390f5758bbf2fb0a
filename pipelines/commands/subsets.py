"""`biomed-enrich subsets`: build training subsets (one document per article) from scored paragraphs."""

from __future__ import annotations

import json

import typer


def command(
    ctx: typer.Context,
    scored: list[str] = typer.Argument(..., help="Scored datasets: directories, Parquet files or globs."),
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
) -> None:
    """Scored paragraphs -> filtered, upsampled, prefixed documents per article.

    Writes <output>/<subset>/<license_group>/part-*.parquet (or .jsonl), a
    dataset card README.md and recipe.yaml per subset, and
    <output>/subsets_stats.json. Unknown --flags go to Beam (e.g.
    --runner=DataflowRunner). Recipes and every knob: docs/subsets.md.
    """
    from pipelines.recipe import RecipeError
    from pipelines.subsets import run_subsets

    beam_args = list(ctx.args) + [s for s in scored if s.startswith("--")]
    inputs = [s for s in scored if not s.startswith("--")]
    try:
        stats = run_subsets(
            inputs,
            recipe,
            output,
            tokenizer=tokenizer,
            seed=seed,
            output_format=output_format,
            beam_args=beam_args,
        )
    except (RecipeError, FileNotFoundError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(code=2) from e
    summary = {
        name: {k: s[k] for k in ("articles", "documents", "paragraphs", "tokens")}
        for name, s in stats["subsets"].items()
    }
    typer.echo(json.dumps(summary, indent=2))
