"""`biomed-enrich demo`: the whole job on the bundled CC BY demo articles, offline, on CPU."""

from __future__ import annotations

from pathlib import Path

import typer

from pipelines.app.commands.common import allow_empty_option, quiet_option
from pipelines.app.commands.run import force_option, only_option


def demo_config() -> Path:
    """demo/config.yaml of the source tree (a fresh clone, installed editable), else ./demo/config.yaml."""
    for base in (Path(__file__).resolve().parents[3], Path.cwd()):
        path = base / "demo" / "config.yaml"
        if path.exists():
            return path
    raise FileNotFoundError("demo/config.yaml not found: run from a clone of the repository")


def command(
    output: str = typer.Option("out/demo", "--output", "-o", help="Output root of the demo run."),
    force: list[str] = force_option(),
    only: list[str] = only_option(),
    allow_empty: bool = allow_empty_option(),
    quiet: bool = quiet_option(),
) -> None:
    """Run every stage on the 30 CC BY demo articles shipped in demo/.

    Replay teacher, packaged MiniLM student: no network and no GPU needed,
    a few minutes on 2 CPU cores. Resumable like `run`: a second call skips
    finished stages. Open <output>/report.html afterwards.
    """
    from pipelines.app.commands.run import run_with_config

    run_with_config(
        str(demo_config()), output=output, force=force, only=only, quiet=quiet, allow_empty=allow_empty
    )
