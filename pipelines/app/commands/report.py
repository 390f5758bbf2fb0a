"""`biomed-enrich report`: re-render report.html from a run's output directory (no stage reruns)."""

from __future__ import annotations

import typer

from pipelines.core.extras import require


def command(
    run_dir: str = typer.Argument(
        ..., metavar="RUN_DIR", help="Output root of a `run` or `demo` (a directory, s3:// or gs:// prefix)."
    ),
    output: str = typer.Option(
        None, "--output", "-o", help="Where to write the page (default RUN_DIR/report.html)."
    ),
) -> None:
    """Write the run report (stages, label distributions, agreement, subsets) from what RUN_DIR holds.

    Works on partial runs: parts not produced yet show as "not available".
    """
    require("report", "biomed-enrich report")
    from pipelines.app.report import write_report
    from pipelines.core.uris import as_path

    if not as_path(run_dir).is_dir():  # a local directory or a bucket prefix holding objects
        raise FileNotFoundError(f"run directory {run_dir} does not exist")
    result = write_report(run_dir, output)
    typer.echo(f"report: {result['report']}")
