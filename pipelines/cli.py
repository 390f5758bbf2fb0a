"""`biomed-enrich` command line: one sub-command per stage, each defined in `pipelines/commands/`.

Command modules import heavy libraries (torch, beam) inside their functions so `--help` stays fast.
Unknown `--flags` of pipeline commands are passed to Beam as pipeline options.
"""

from __future__ import annotations

import typer

from pipelines.commands import annotate, demo, evaluate, ingest, loop, propagate, run, subsets, train

app = typer.Typer(
    name="biomed-enrich",
    help="Turn PMC Open Access JATS articles into an annotated, filterable pretraining corpus "
    "(ingest -> annotate -> train -> propagate -> subsets).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

BEAM_ARGS = {"allow_extra_args": True, "ignore_unknown_options": True}

app.command("ingest", context_settings=BEAM_ARGS)(ingest.command)
app.command("annotate", context_settings=BEAM_ARGS)(annotate.command)
app.command("loop")(loop.command)
app.command("train")(train.command)
app.command("evaluate")(evaluate.command)
app.command("propagate", context_settings=BEAM_ARGS)(propagate.command)
app.command("subsets", context_settings=BEAM_ARGS)(subsets.command)
app.command("run")(run.command)
app.command("demo")(demo.command)

if __name__ == "__main__":
    app()
