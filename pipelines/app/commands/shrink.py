"""`biomed-enrich shrink`: a cheaper variant of a trained student (fewer layers, fewer tokens, int8)."""

from __future__ import annotations

import json

import typer

from pipelines.app.commands.common import INPUTS_METAVAR
from pipelines.core.extras import require


def command(
    inputs: list[str] = typer.Argument(
        ...,
        metavar=INPUTS_METAVAR,
        help="Unlabelled PARAGRAPHS datasets (ingest output): the source student labels those of "
        "training-part articles for the variant to learn from, and they calibrate int8.",
    ),
    model: str = typer.Option(..., "--model", "-m", help="The source student (a `train` output directory)."),
    labels: list[str] = typer.Option(
        ..., "--labels", "-l", help="The teacher labels the source was trained on (same article split)."
    ),
    output: str = typer.Option(..., "--output", "-o", help="Model directory to write."),
    layers: int = typer.Option(
        None, "--layers", min=1, help="Encoder layers to keep, evenly spaced (default: all)."
    ),
    max_seq_length: int = typer.Option(
        None, "--max-seq-length", min=16, help="Tokens read per paragraph (default: the source's)."
    ),
    int8: bool = typer.Option(
        False, "--int8", help="Add a static int8 OpenVINO encoder, used on CPU (needs the int8 extra)."
    ),
    epochs: int = typer.Option(None, "--epochs", min=1, help="Distillation epochs (default: the source's)."),
    valid_fraction: float = typer.Option(None, "--valid-fraction", help="Default: the source's split."),
    test_fraction: float = typer.Option(None, "--test-fraction", help="Default: the source's split."),
    seed: int = typer.Option(None, "--seed", help="Split seed (default: the source's)."),
) -> None:
    """Make a cheaper variant of a trained student and write it with its card (speed and agreement).

    Fewer layers or tokens: the kept layers start from the source's weights and learn from the
    teacher's training labels plus the source's answers on unlabelled paragraphs. `--int8` alone keeps
    the weights and adds a calibrated int8 encoder. `propagate --model OUTPUT` scores with it.
    """
    require("train", "biomed-enrich shrink")
    if int8:
        require("int8", "biomed-enrich shrink --int8")
    from distill.shrink import run_shrink

    overrides = {
        k: v
        for k, v in dict(
            epochs=epochs, valid_fraction=valid_fraction, test_fraction=test_fraction, seed=seed
        ).items()
        if v is not None
    }
    summary = run_shrink(
        model,
        output,
        labels=list(labels),
        paragraphs=list(inputs),
        layers=layers,
        max_seq_length=max_seq_length,
        int8=int8,
        **overrides,
    )
    from distill.metrics import headline

    typer.echo(json.dumps({"variant": summary["variant"], **headline(summary["metrics"])}, indent=1))
