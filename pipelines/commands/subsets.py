"""`biomed-enrich subsets` (placeholder until its stage lands)."""

from __future__ import annotations

import typer


def command(ctx: typer.Context) -> None:
    """Not implemented yet."""
    raise typer.Exit(code=2)
