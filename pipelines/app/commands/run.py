"""`biomed-enrich run`: the whole job from one config, resumable stage by stage."""

from __future__ import annotations

import typer

from pipelines.app.commands.common import allow_empty_option, quiet_option
from pipelines.app.orchestrate import STAGES


def force_option() -> list[str]:
    return typer.Option(
        None, "--force", help=f"Redo this stage even if finished (repeatable): {', '.join(STAGES)}."
    )


def only_option() -> list[str]:
    return typer.Option(None, "--only", help="Run only this stage (repeatable); the others stay as they are.")


def command(
    config: str = typer.Option(
        ..., "--config", "-c", help="Run config YAML (see demo/config.yaml, docs/run.md)."
    ),
    output: str = typer.Option(None, "--output", "-o", help="Output root; overrides the config's 'output'."),
    force: list[str] = force_option(),
    only: list[str] = only_option(),
    allow_empty: bool = allow_empty_option(),
    quiet: bool = quiet_option(),
) -> None:
    """ingest -> annotate -> train -> propagate -> subsets -> report, resumable.

    The whole config is checked before the first stage. Finished stages are recorded in
    <output>/<stage>/_manifest.json and skipped on rerun. A stage whose config or inputs changed, or
    whose output is missing or corrupted, is redone from its own start. A stage failure that a retry
    may fix is retried ('retries' in the config). Ctrl-C stops at once; rerun to resume.
    """
    run_with_config(config, output=output, force=force, only=only, quiet=quiet, allow_empty=allow_empty)


def run_with_config(
    config: str,
    *,
    output: str | None = None,
    force=None,
    only=None,
    quiet: bool = False,
    allow_empty: bool = False,
) -> dict:
    from pipelines.app.orchestrate import StageFailed, load_config, run

    for name in [*(force or []), *(only or [])]:
        if name not in STAGES:
            raise typer.BadParameter(f"unknown stage {name!r} (stages: {', '.join(STAGES)})")
    cfg = load_config(config, output=output)
    cfg.allow_empty = cfg.allow_empty or allow_empty
    try:
        state = run(cfg, only=only or None, force=force or None, quiet=quiet)
    except StageFailed as e:
        raise StageFailed(f"{e} (details: {cfg.output}/_run.json)") from None
    typer.echo(f"report: {cfg.output}/report.html")
    return state
