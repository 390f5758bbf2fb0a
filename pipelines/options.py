"""Beam pipeline options for every pipeline command: our own flags are typer options, the rest go to Beam."""

from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions


def pipeline_options(beam_args: list[str] | None = None, **overrides: object) -> PipelineOptions:
    """Standard Beam options from the leftover command-line flags (`--runner`, `--project`, ...).

    DirectRunner is the default; `save_main_session` is off because DoFns here import what they need.
    """
    args = list(beam_args or [])
    options = PipelineOptions(args, **overrides)
    if not any(a.startswith("--runner") for a in args) and "runner" not in overrides:
        options = PipelineOptions(args, runner="DirectRunner", **overrides)
    return options
