"""`biomed-enrich report`: re-render report.html from a run's output directory (no stage reruns)."""

from __future__ import annotations

from pathlib import Path

import typer


def command(
    run_dir: str = typer.Argument(..., metavar="RUN_DIR", help="Output root of a `run` or `demo`."),
    output: str = typer.Option(
        None, "--output", "-o", help="Where to write the page (default RUN_DIR/report.html)."
    ),
) -> None:
    """Write the run report (stages, label distributions, agreement, subsets) from what RUN_DIR holds.

    Works on partial runs: parts not produced yet show as "not available".
    """
    from pipelines.app.report import write_report

    if not Path(run_dir).is_dir():
        raise FileNotFoundError(f"run directory {run_dir} does not exist")
    result = write_report(run_dir, output)
    typer.echo(f"report: {result['report']}")
