"""`biomed-enrich evaluate`: agreement of a trained student with teacher labels."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from pipelines.app.commands.common import INPUTS_METAVAR


def command(
    inputs: list[str] = typer.Argument(
        None,
        metavar=INPUTS_METAVAR,
        help="Teacher labels to compare against: LABELS datasets, Parquet files or globs.",
    ),
    model: str = typer.Option(
        None, "--model", "-m", help="A model directory written by `biomed-enrich train`."
    ),
    labels: list[str] = typer.Option(
        None, "--labels", "-l", hidden=True, help="Deprecated: give the labels as INPUTS."
    ),
    paragraphs: list[str] = typer.Option(
        None, "--paragraphs", "-p", help="PARAGRAPHS, for label rows without text."
    ),
    output: str = typer.Option(None, "--output", "-o", help="Metrics JSON (default MODEL/evaluation.json)."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Paragraphs per forward pass."),
) -> None:
    """Print and write accuracy, macro-F1, kappa, confusion matrices, score r/MAE and calibration error.

    Use labels of articles the student did not train on, or the figures are optimistic.
    """
    from distill.evaluate import run_evaluate
    from distill.metrics import headline

    sources = list(inputs or [])
    if model is None and labels and len(sources) == 1 and (Path(sources[0]) / "config.json").exists():
        model, sources = sources[0], []  # the old form: evaluate MODEL_DIR --labels LABELS
    sources += list(labels or [])
    if model is None:
        raise typer.BadParameter("which model? give --model MODEL_DIR", param_hint="--model")
    if not sources:
        raise typer.BadParameter("give the teacher labels as INPUTS...", param_hint="INPUTS...")
    result = run_evaluate(
        model,
        sources,
        paragraphs=list(paragraphs) if paragraphs else None,
        output=output,
        batch_size=batch_size,
    )
    typer.echo(json.dumps({"data": result["data"], **headline(result["metrics"])}, indent=1))
