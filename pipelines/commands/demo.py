"""`biomed-enrich demo`: the whole job on the bundled CC BY demo articles, offline, on CPU."""

from __future__ import annotations

from pathlib import Path

import typer


def demo_config() -> Path:
    """demo/config.yaml of the source tree (a fresh clone, installed editable), else ./demo/config.yaml."""
    for base in (Path(__file__).resolve().parents[2], Path.cwd()):
        path = base / "demo" / "config.yaml"
        if path.exists():
            return path
    raise FileNotFoundError("demo/config.yaml not found: run from a clone of the repository")


def command(
    output: str = typer.Option("out/demo", "--output", "-o", help="Output root of the demo run."),
    force: list[str] = typer.Option(None, "--force", help="Redo this stage even if finished (repeatable)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines on stderr."),
) -> None:
    """Run every stage on the 30 CC BY demo articles shipped in demo/.

    Replay teacher, packaged MiniLM student: no network and no GPU needed,
    a few minutes on 2 CPU cores. Resumable like `run`: a second call skips
    finished stages. Open <output>/report.html afterwards.
    """
    from pipelines.commands.run import run_with_config

    try:
        config = demo_config()
    except FileNotFoundError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(code=2) from e
    run_with_config(str(config), output=output, force=force, quiet=quiet)
