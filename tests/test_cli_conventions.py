"""Every command follows one convention (walked through the real click commands and their --help), and a
user's mistake is one line on stderr with exit code 2, not a traceback."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from pipelines.app.cli import app

COMMANDS = typer.main.get_command(app).commands
# Commands whose positional arguments are input datasets; `report` takes one run directory.
NO_INPUTS = {"run", "demo", "report"}


def test_every_command_is_listed_and_documented():
    assert set(COMMANDS) == {
        "ingest",
        "annotate",
        "loop",
        "train",
        "shrink",
        "evaluate",
        "propagate",
        "subsets",
        "run",
        "demo",
        "report",
    }
    for name, command in COMMANDS.items():
        assert command.help and len(command.help) > 30, name


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_command_follows_the_convention(name):
    command = COMMANDS[name]
    options = [p for p in command.params if p.param_type_name == "option" and not p.hidden]
    arguments = [p for p in command.params if p.param_type_name == "argument"]
    for option in options:
        assert option.help and option.help.strip(), f"{name} {option.opts} has no help"
    output = [o for o in options if "--output" in o.opts]
    assert output and "-o" in output[0].opts, f"{name} lacks -o/--output"
    if name in NO_INPUTS:
        assert [(a.metavar or a.name.upper()) for a in arguments] in ([], ["RUN_DIR"]), name
    else:
        assert [(a.metavar or a.name.upper()) for a in arguments] == ["INPUTS"], name
        assert arguments[0].nargs == -1, f"{name} takes several inputs"
    result = CliRunner().invoke(app, [name, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output
    if name not in NO_INPUTS:
        usage = " ".join(result.output.split()).split("Usage:")[1][:80]
        assert "INPUTS}..." in usage or "INPUTS]..." in usage, usage


def test_train_takes_labels_as_inputs_and_keeps_the_old_flag_hidden():
    params = {p.name: p for p in COMMANDS["train"].params}
    assert params["labels"].hidden and params["inputs"].param_type_name == "argument"
    assert "--labels" not in CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200"}).output


def test_demo_and_run_share_only_force_quiet_and_allow_empty():
    for name in ("run", "demo"):
        opts = {o for p in COMMANDS[name].params for o in getattr(p, "opts", [])}
        assert {"--only", "--force", "--quiet", "-q", "--allow-empty"} <= opts, name


@pytest.mark.parametrize(
    "args",
    [
        ["propagate", "{tmp}/no-such-paragraphs", "--model", "{tmp}/no-such-model", "-o", "{tmp}/o"],
        ["subsets", "{tmp}/no-such-scored", "-r", "BE-Base", "-o", "{tmp}/o"],
        ["ingest", "{tmp}/no-such-folder", "-o", "{tmp}/o"],
        ["train", "-o", "{tmp}/o"],
        ["evaluate", "{tmp}/labels"],
        ["report", "{tmp}/no-such-run"],
        ["run", "-c", "{tmp}/no-such-config.yaml"],
        ["demo", "--only", "ingestt", "-o", "{tmp}/o"],
    ],
    ids=lambda a: a[0],
)
def test_a_user_error_is_one_line_and_exit_code_2(args, tmp_path):
    result = CliRunner().invoke(app, [a.format(tmp=tmp_path) for a in args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if args[0] in ("train", "evaluate", "demo"):  # click's usage error: usage line, hint, boxed message
        assert "Traceback" not in result.stderr and len(lines) <= 8, result.stderr
    else:
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert not (tmp_path / "o").exists()
