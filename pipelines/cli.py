"""`biomed-enrich` command line: one sub-command per stage, each defined in `pipelines/commands/`.

Command modules import heavy libraries (torch, beam) inside their functions so `--help` stays fast.
Unknown `--flags` of pipeline commands are passed to Beam as pipeline options.
"""

from __future__ import annotations

import functools

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


def beam_flags_to_ctx(command):
    """Click gives unknown `--flags` after a variadic argument (the inputs) to that argument: hand them
    to Beam through `ctx.args` instead. Beam flags must be written `--name=value` on these commands."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        ctx = kwargs.get("ctx")
        for name, value in kwargs.items():
            if ctx is not None and isinstance(value, list | tuple):
                flags = [v for v in value if isinstance(v, str) and v.startswith("--")]
                if flags:
                    kwargs[name] = [v for v in value if not (isinstance(v, str) and v.startswith("--"))]
                    ctx.args = [*ctx.args, *flags]
        return command(*args, **kwargs)

    return wrapper


app.command("ingest", context_settings=BEAM_ARGS)(beam_flags_to_ctx(ingest.command))
app.command("annotate", context_settings=BEAM_ARGS)(beam_flags_to_ctx(annotate.command))
app.command("loop")(loop.command)
app.command("train")(train.command)
app.command("evaluate")(evaluate.command)
app.command("propagate", context_settings=BEAM_ARGS)(beam_flags_to_ctx(propagate.command))
app.command("subsets", context_settings=BEAM_ARGS)(beam_flags_to_ctx(subsets.command))
app.command("run")(run.command)
app.command("demo")(demo.command)

if __name__ == "__main__":
    app()
