"""What every stage command shares: its summary line, the empty-output rule and the common options."""

from __future__ import annotations

import typer

INPUTS_METAVAR = "INPUTS"


def quiet_option() -> bool:
    return typer.Option(False, "--quiet", "-q", help="No progress bars or progress lines on stderr.")


def allow_empty_option() -> bool:
    return typer.Option(
        False, "--allow-empty", help="Succeed even if nothing is written (else: an error with the reason)."
    )


def finish(stage: str, stats: dict, output: str, allow_empty: bool = False) -> None:
    """Print the stage's one summary line (stderr) and fail if it wrote nothing, unless allowed."""
    from pipelines.core.console import write
    from pipelines.core.summary import check_output, summarize

    summary = summarize(stage, stats, output)
    if summary is not None:
        write(summary.line())
    check_output(summary, allow_empty)
