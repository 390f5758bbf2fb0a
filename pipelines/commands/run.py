"""`biomed-enrich run`: the whole job from one config, resumable stage by stage."""

from __future__ import annotations

import typer

from pipelines.orchestrate import STAGES


def command(
    config: str = typer.Option(
        ..., "--config", "-c", help="Run config YAML (see demo/config.yaml, docs/run.md)."
    ),
    output: str = typer.Option(None, "--output", "-o", help="Output root; overrides the config's 'output'."),
    force: list[str] = typer.Option(
        None, "--force", help=f"Redo this stage even if finished (repeatable): {', '.join(STAGES)}."
    ),
    only: list[str] = typer.Option(
        None, "--only", help="Run only these stages (repeatable); others untouched."
    ),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="No progress lines on stderr (run.log still written)."
    ),
) -> None:
    """ingest -> annotate -> train -> propagate -> subsets -> report, resumable.

    Finished stages are recorded in <output>/<stage>/_manifest.json and
    skipped on rerun. A stage whose config or inputs changed, or whose output
    is missing or corrupted, is redone from its own start. A failed stage is
    retried ('retries' in the config). Progress goes to stderr and run.log.
    """
    run_with_config(config, output=output, force=force, only=only, quiet=quiet)


def run_with_config(
    config: str, *, output: str | None = None, force=None, only=None, quiet: bool = False
) -> dict:
    from pipelines.orchestrate import ConfigError, StageFailed, load_config, run

    for name in [*(force or []), *(only or [])]:
        if name not in STAGES:
            typer.echo(f"error: unknown stage {name!r} (stages: {', '.join(STAGES)})", err=True)
            raise typer.Exit(code=2)
    try:
        cfg = load_config(config, output=output)
        state = run(cfg, only=only or None, force=force or None, quiet=quiet)
    except ConfigError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(code=2) from e
    except StageFailed as e:
        typer.echo(f"error: {e} (details: {output or cfg.output}/_run.json)", err=True)
        raise typer.Exit(code=1) from e
    typer.echo(f"report: {cfg.output}/report.html")
    return state
