"""`biomed-enrich` command line: one sub-command per stage, each defined in `pipelines/app/commands/`.

Command modules import heavy libraries (torch, beam) inside their functions so `--help` stays fast.
Unknown `--flags` of pipeline commands are passed to Beam as pipeline options.

Conventions every command follows (tests/test_cli_conventions.py walks them): input datasets are the
positional `INPUTS...`, whatever a command writes goes under `-o/--output`, every option has help, a
user error (missing path, bad value, bad config) is one line on stderr and exit code 2, a failed run
exit code 1, SIGINT 130 and SIGTERM 143, and each stage command ends with its one-line summary.
"""

from __future__ import annotations

import functools
import os
import sys
import traceback

import typer
import typer.core

from pipelines.app.commands import (
    annotate,
    demo,
    evaluate,
    ingest,
    loop,
    propagate,
    report,
    run,
    shrink,
    subsets,
    train,
)

app = typer.Typer(
    name="biomed-enrich",
    help="Turn PMC Open Access JATS articles into an annotated, filterable pretraining corpus "
    "(ingest -> annotate -> train -> propagate -> subsets).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

BEAM_ARGS = {"allow_extra_args": True, "ignore_unknown_options": True}
DEBUG_ENV = "BIOMED_ENRICH_DEBUG"


def _no_flag_type(display_type_rich):
    """On/off flags take no value: show no `<bool>` type column for them in --help."""

    @functools.wraps(display_type_rich)
    def wrapper(self, ctx):
        return None if self.is_flag else display_type_rich(self, ctx)

    return wrapper


typer.core.TyperOption.display_type_rich = _no_flag_type(typer.core.TyperOption.display_type_rich)


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors that are the user's to fix (exit 2): a path, a value, a config, a recipe."""
    from pipelines.app.orchestrate import ConfigError

    return (ConfigError, FileNotFoundError, NotADirectoryError, ValueError)


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(code=code)


def one_line_errors(command):
    """Run a command under the console layer: interrupts, user errors and failures as one line each."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from pipelines.app.orchestrate import StageFailed
        from pipelines.core.console import Interrupted, catch_interrupts, raise_if_interrupted, session
        from pipelines.core.summary import EmptyOutput
        from pipelines.core.uris import ensure_configured

        ensure_configured()  # bucket paths work in every command; Beam flags refine it per pipeline
        try:
            with session(quiet=bool(kwargs.get("quiet"))), catch_interrupts():
                try:
                    return command(*args, **kwargs)
                except (typer.Exit, typer.Abort, typer.BadParameter, Interrupted):
                    raise
                except (Exception, KeyboardInterrupt) as e:
                    raise_if_interrupted(e)
                    raise
        except Interrupted as e:  # after ^C the cursor sits on the bar's line: start a fresh one
            raise _fail(f"\n{e}: stopped; rerun the same command to resume", e.exit_code) from None
        except (typer.Exit, typer.Abort, typer.BadParameter):
            raise
        except (StageFailed, EmptyOutput) as e:
            raise _fail(f"error: {e}", 1) from None
        except user_errors() as e:
            raise _fail(f"error: {e}", 2) from None
        except Exception as e:  # noqa: BLE001 - a bug or an outage: one line, the traceback on request
            if os.environ.get(DEBUG_ENV):
                traceback.print_exc()
            hint = "" if os.environ.get(DEBUG_ENV) else f" (set {DEBUG_ENV}=1 for the traceback)"
            raise _fail(f"error: {type(e).__name__}: {e}{hint}", 1) from None

    return wrapper


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


def _add(name: str, command, beam: bool = False) -> None:
    if beam:
        app.command(name, context_settings=BEAM_ARGS)(one_line_errors(beam_flags_to_ctx(command)))
    else:
        app.command(name)(one_line_errors(command))


_add("ingest", ingest.command, beam=True)
_add("annotate", annotate.command, beam=True)
_add("loop", loop.command)
_add("train", train.command)
_add("shrink", shrink.command)
_add("evaluate", evaluate.command)
_add("propagate", propagate.command, beam=True)
_add("subsets", subsets.command, beam=True)
_add("run", run.command)
_add("demo", demo.command)
_add("report", report.command)


def main() -> None:
    """The console script: after an interrupt, exit at once even if a library left threads running."""
    from pipelines.core.console import interrupted

    try:
        app()
    except SystemExit as e:
        if interrupted() is not None:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(e.code if isinstance(e.code, int) else 128 + interrupted())
        raise


if __name__ == "__main__":
    main()
