"""`biomed-enrich evaluate`: agreement of a trained student with teacher labels."""

from __future__ import annotations

import json

import typer


def command(
    model_dir: str = typer.Argument(..., help="A model directory written by `biomed-enrich train`."),
    labels: list[str] = typer.Option(
        ..., "--labels", "-l", help="Teacher labels to compare against (repeatable)."
    ),
    paragraphs: list[str] = typer.Option(
        None, "--paragraphs", "-p", help="PARAGRAPHS, for label rows without text."
    ),
    output: str = typer.Option(
        None, "--output", "-o", help="Metrics JSON (default MODEL_DIR/evaluation.json)."
    ),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
) -> None:
    """Print and write accuracy, macro-F1, kappa, confusion matrices, score r/MAE and calibration error.

    Use labels of articles the student did not train on, or the figures are optimistic.
    """
    from distill.evaluate import run_evaluate
    from distill.metrics import headline

    result = run_evaluate(
        model_dir,
        list(labels),
        paragraphs=list(paragraphs) if paragraphs else None,
        output=output,
        batch_size=batch_size,
    )
    typer.echo(json.dumps({"data": result["data"], **headline(result["metrics"])}, indent=1))
