"""Check every stage section of a run config before the first stage runs.

Each section's keys go to a stage function, so the function's own signature (and `TrainConfig`, the
teacher backend's constructor) says which keys exist and what type each takes. A typo found here costs
a second; found when the stage runs it costs the stages before it and a Python TypeError.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import types
import typing
from pathlib import Path
from typing import Any, Union

# Arguments the orchestrator passes itself: not settable in a section.
_WIRED = {"inputs", "output", "beam_args", "paragraphs", "labels", "model_dir", "scored", "recipe", "root"}
_SKIP = {"options", "progress"}


class SectionError(ValueError):
    """A stage section that cannot run, with the reason."""


_SAFE_NAMES = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "dict": dict}
_SAFE_NAMES.update({"tuple": tuple, "None": None, "Any": Any})


def _parameters(module: str, qualname: str) -> dict[str, Any]:
    """Keyword parameters (-> type hint) of `module.qualname`, read from its source, not imported: the
    check must not cost the seconds of importing torch, transformers or Beam on a resumed run."""
    source = Path(importlib.util.find_spec(module).origin).read_text(encoding="utf-8")
    body: list[ast.stmt] = ast.parse(source).body
    node = None
    for name in qualname.split("."):
        node = next(n for n in body if getattr(n, "name", None) == name)
        body = getattr(node, "body", [])
    args = node.args
    return {
        a.arg: _hint(a.annotation)
        for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]
        if a.arg not in _WIRED | _SKIP | {"self"}
    }


def _hint(node: ast.expr | None) -> Any:
    """A source annotation as a type, for the basic types a config holds (else Any)."""
    if node is None:
        return Any
    try:
        return eval(compile(ast.Expression(node), "<hint>", "eval"), {"__builtins__": {}}, _SAFE_NAMES)
    except Exception:  # noqa: BLE001 - a type no config value can have: do not check it
        return Any


def _type_ok(value: object, hint: Any) -> bool:
    if hint is Any or value is None and _allows_none(hint):
        return True
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (list, tuple) or hint in (list, tuple):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return isinstance(value, (list, tuple)) and all(_type_ok(v, args[0]) for v in value if args)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def _allows_none(hint: Any) -> bool:
    return hint is type(None) or type(None) in typing.get_args(hint)


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def check_keys(section: str, values: dict, allowed: dict[str, Any]) -> None:
    """Unknown keys (with a close match suggested) and values of the wrong type."""
    for key, value in values.items():
        if key not in allowed:
            close = difflib.get_close_matches(key, list(allowed), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SectionError(
                f"config section {section!r}: unknown key {key!r}{hint}; "
                f"allowed: {', '.join(sorted(allowed))}"
            )
        if not _type_ok(value, allowed[key]):
            raise SectionError(
                f"config section {section!r}: {key} must be {_type_name(allowed[key])}, "
                f"got {type(value).__name__} {value!r}"
            )


def _must_exist(section: str, key: str, path: str | None) -> None:
    if path and "://" not in str(path) and not Path(path).exists():
        raise SectionError(f"config section {section!r}: {key} {path} does not exist")


def check_ingest(values: dict) -> None:
    check_keys("ingest", values, _parameters("pipelines.ingest.pipeline", "run_ingest"))


def check_annotate(values: dict) -> None:
    allowed = _parameters("annotators.annotate", "run_annotate")
    teacher = values.get("teacher", "replay")
    openai = ("annotators.teachers.openai_chat", "OpenAITeacher.__init__")
    backends = {
        "replay": [],
        "openai": [openai],
        "batch": [("annotators.teachers.batch", "BatchTeacher.__init__"), openai],
    }
    if teacher not in backends:
        raise SectionError(f"config section 'annotate': unknown teacher {teacher!r} (openai, batch, replay)")
    for backend in backends[teacher]:
        for name, hint in _parameters(*backend).items():
            if name not in ("self", "model", "base_url", "api_key", "workdir"):
                allowed.setdefault(name, hint)
    check_keys("annotate", values, allowed)
    if teacher != "replay" and not values.get("model"):
        raise SectionError(f"config section 'annotate': teacher {teacher} needs 'model' (and 'base_url')")
    if teacher == "replay" and (values.get("base_url") or values.get("model")):
        raise SectionError("config section 'annotate': base_url/model are for teacher openai or batch")
    if values.get("sample") is not None and values.get("fraction") is not None:
        raise SectionError("config section 'annotate': give 'sample' or 'fraction', not both")
    fraction = values.get("fraction")
    if fraction is not None and not 0 < fraction <= 1:
        raise SectionError(f"config section 'annotate': fraction must be in (0, 1], got {fraction}")
    for key in ("recordings", "api_key_file", "price_table"):
        _must_exist("annotate", key, values.get(key))


def check_train(values: dict) -> None:
    from dataclasses import fields

    from distill.config import TrainConfig  # importable without torch

    hints = typing.get_type_hints(TrainConfig)
    allowed = {f.name: hints.get(f.name, Any) for f in fields(TrainConfig) if f.name not in _SKIP | {"extra"}}
    allowed.update(_parameters("distill.train", "run_train"))
    allowed.update({"extra_labels": list[str], "extra_labels_sample": int | None})
    check_keys("train", values, allowed)
    for path in values.get("extra_labels") or []:
        _must_exist("train", "extra_labels", path)


def check_propagate(values: dict) -> None:
    check_keys("propagate", values, _parameters("pipelines.propagate", "run_propagate"))


def check_subsets(values: dict) -> None:
    from pipelines.subsets.recipe import RecipeError, load_recipes

    allowed = _parameters("pipelines.subsets.pipeline", "run_subsets")
    allowed["recipes"] = str | list[str]
    check_keys("subsets", values, allowed)
    overrides = {k: values[k] for k in ("tokenizer", "seed", "output_format") if values.get(k) is not None}
    try:
        load_recipes(values.get("recipes", "paper"), **overrides)
    except (RecipeError, FileNotFoundError, OSError) as e:
        raise SectionError(f"config section 'subsets': {e}") from None


def check_report(values: dict) -> None:
    check_keys("report", values, _parameters("pipelines.app.report", "write_report"))


CHECKS = {
    "ingest": check_ingest,
    "annotate": check_annotate,
    "train": check_train,
    "propagate": check_propagate,
    "subsets": check_subsets,
    "report": check_report,
}
