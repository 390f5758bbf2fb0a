"""Flex Template entry point: `--stage=NAME` + that stage's parameters; every other flag goes to Beam.

The Flex Template launcher runs this file (FLEX_TEMPLATE_PYTHON_PY_FILE) with the template parameters as
`--name=value` flags plus the standard Dataflow options (`--runner`, `--project`, `--region`,
`--temp_location`, `--sdk_container_image`, ...). It calls the stage functions of the package installed
in the image, with the same contracts the CLI uses, so nothing runner-specific lives in pipeline code.
List parameters (`inputs`) are comma-separated; globs (`gs://bucket/pmc/*.tar.gz`) are fine.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Stage:
    """How a template stage maps onto its `run_*` function: module, function, and parameter names."""

    module: str
    function: str
    list_params: tuple[str, ...]
    params: dict[str, Callable[[str], object]] = field(default_factory=dict)
    required: tuple[str, ...] = ()


STAGES: dict[str, Stage] = {
    "ingest": Stage(
        "pipelines.ingest.pipeline",
        "run_ingest",
        ("inputs",),
        {"output": str, "min_tokens": int},
        ("inputs", "output"),
    ),
    "annotate": Stage(
        "annotators.annotate",
        "run_annotate",
        ("paragraphs",),
        {
            "output": str,
            "teacher": str,
            "sample": int,
            "fraction": float,
            "seed": int,
            "base_url": str,
            "model": str,
        },
        ("paragraphs", "output"),
    ),
    "propagate": Stage(
        "pipelines.propagate",
        "run_propagate",
        ("inputs",),
        {
            "model_dir": str,
            "output": str,
            "batch_tokens": int,
            "precision": str,
            "device": str,
            "large_model": lambda v: {"true": True, "false": False}[v.lower()],
        },
        ("inputs", "model_dir", "output"),
    ),
    "subsets": Stage(
        "pipelines.subsets.pipeline",
        "run_subsets",
        ("scored",),
        {"recipe": str, "output": str},
        ("scored", "recipe", "output"),
    ),
}


def parse(argv: list[str]) -> tuple[str, dict, list[str]]:
    """Split the launcher's flags into (stage, keyword arguments of its run function, Beam flags)."""
    head = argparse.ArgumentParser(add_help=False)
    head.add_argument("--stage", required=True, choices=sorted(STAGES))
    known, rest = head.parse_known_args(argv)
    stage = STAGES[known.stage]
    parser = argparse.ArgumentParser(prog=f"flex_main --stage={known.stage}", allow_abbrev=False)
    for name in stage.list_params:
        parser.add_argument(f"--{name}", required=name in stage.required)
    for name, kind in stage.params.items():
        parser.add_argument(f"--{name}", type=kind, required=name in stage.required)
    args, beam_args = parser.parse_known_args(rest)
    kwargs = {k: v for k, v in vars(args).items() if v is not None}
    for name in stage.list_params:
        if name in kwargs:
            kwargs[name] = [p.strip() for p in kwargs[name].split(",") if p.strip()]
    return known.stage, kwargs, beam_args


def stage_function(stage: str) -> Callable[..., dict]:
    spec = STAGES[stage]
    return getattr(importlib.import_module(spec.module), spec.function)


def main(argv: list[str] | None = None) -> dict:
    stage, kwargs, beam_args = parse(sys.argv[1:] if argv is None else argv)
    logging.getLogger().setLevel(logging.INFO)
    stats = stage_function(stage)(**kwargs, beam_args=beam_args)
    logging.info("%s finished: %s", stage, json.dumps(stats, default=str)[:2000])
    return stats


if __name__ == "__main__":
    main()
