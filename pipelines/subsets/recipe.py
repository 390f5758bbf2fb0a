"""Subset recipes: declarative YAML -> validated, immutable `Recipe` objects (every knob in docs/subsets.md).

A recipe says which paragraphs to keep (`filter`), which articles to repeat and how often
(`upsample` rules + `combine`), and how to render a document (`prefix`, `separator`). Parsing
validates everything up front so a typo fails before a long job starts, not in the middle of it.
"""

from __future__ import annotations

import json
import operator
import re
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from pipelines.core.schemas import SCORED

PRESETS_PACKAGE = "pipelines.subsets.recipes"
PAPER_PRESETS: tuple[str, ...] = (
    "BE-Base",
    "BE-Educational",
    "BE-Clinical",
    "BE-ClinicalCase",
    "BE-French",
    "BE-All",
)
OUTPUT_FORMATS = ("parquet", "jsonl")
COMBINE_MODES = ("max", "product", "sum")
JUDGE_MODES = ("all", "kept")

_OPS = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
    "in": lambda a, b: a in b,
    "not in": lambda a, b: a not in b,
}
_CONDITION = re.compile(r"^\s*([A-Za-z_]\w*)\s+(>=|<=|==|!=|>|<|not in|in)\s+(.+?)\s*$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_KNOWN_KEYS = {
    "name",
    "description",
    "filter",
    "upsample",
    "combine",
    "max_factor",
    "judge_articles_on",
    "prefix",
    "separator",
    "output_format",
    "tokenizer",
    "seed",
    "docs_per_shard",
}
_RULE_KEYS = {"name", "column", "values", "share_above", "count_at_least", "factor", "where"}
# Extra fields a prefix template may use besides the scored columns.
PREFIX_EXTRA_FIELDS = ("score_int",)


class RecipeError(ValueError):
    """A recipe that cannot be run, with the reason in words."""


@dataclass(frozen=True)
class Condition:
    """`column op value`, e.g. `educational_score >= 3`; a null value satisfies only `!=` / `not in`."""

    column: str
    op: str
    value: Any

    def __call__(self, row: dict) -> bool:
        got = row.get(self.column)
        if got is None:
            return self.op in ("!=", "not in")
        try:
            return bool(_OPS[self.op](got, self.value))
        except TypeError as e:
            raise RecipeError(f"cannot compare {self.column}={got!r} {self.op} {self.value!r}") from e

    def __str__(self) -> str:
        return f"{self.column} {self.op} {json.dumps(self.value)}"


@dataclass(frozen=True)
class UpsampleRule:
    """An article qualifies when its paragraphs whose `column` is in `values` (and meet `where`)
    make up MORE than `share_above` of its paragraphs, or number at least `count_at_least`."""

    name: str
    column: str
    values: tuple[Any, ...]
    factor: int
    share_above: float | None = None
    count_at_least: int | None = None
    where: tuple[Condition, ...] = ()

    def matches(self, row: dict) -> bool:
        return row.get(self.column) in self.values and all(c(row) for c in self.where)

    def qualifies(self, rows: list[dict]) -> bool:
        if not rows:
            return False
        hits = sum(1 for r in rows if self.matches(r))
        if self.share_above is not None:
            return hits / len(rows) > self.share_above
        return hits >= (self.count_at_least or 0)


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str = ""
    filter: tuple[Condition, ...] = ()
    upsample: tuple[UpsampleRule, ...] = ()
    combine: str = "max"
    max_factor: int | None = None
    judge_articles_on: str = "all"
    prefix: str | None = None
    separator: str = "\n\n"
    output_format: str = "parquet"
    tokenizer: str = "whitespace"
    seed: int = 0
    docs_per_shard: int = 50_000
    source: dict = field(default_factory=dict, compare=False, hash=False)

    def keep(self, row: dict) -> bool:
        """The paragraph filter: every condition must hold."""
        return all(c(row) for c in self.filter)

    @property
    def columns(self) -> set[str]:
        """Scored columns this recipe reads (besides the ones every document needs)."""
        cols = {c.column for c in self.filter}
        for rule in self.upsample:
            cols.add(rule.column)
            cols.update(c.column for c in rule.where)
        if self.prefix:
            cols.update(_template_fields(self.prefix) - set(PREFIX_EXTRA_FIELDS))
        return cols

    def to_yaml(self) -> str:
        """The recipe as it was given (normalised), for dataset cards and manifests."""
        return yaml.safe_dump(self.source or _plain(self), sort_keys=False, allow_unicode=True)


def _plain(recipe: Recipe) -> dict:
    d = asdict(recipe)
    d.pop("source", None)
    d["filter"] = [str(c) for c in recipe.filter]
    for rule, raw in zip(recipe.upsample, d["upsample"], strict=True):
        raw["where"] = [str(c) for c in rule.where]
        raw["values"] = list(rule.values)
    return d


def parse_condition(text: str) -> Condition:
    """`"educational_score >= 3"` -> Condition; the value is read as YAML (numbers, strings, lists)."""
    if not isinstance(text, str):
        raise RecipeError(f"a filter must be a string like 'educational_score >= 3', got {text!r}")
    m = _CONDITION.match(text)
    if not m:
        raise RecipeError(f"cannot parse filter {text!r}: expected 'COLUMN OP VALUE' with OP in {list(_OPS)}")
    column, op, raw = m.groups()
    if column not in SCORED.names:
        raise RecipeError(
            f"filter {text!r}: unknown column {column!r} (scored columns: {', '.join(SCORED.names)})"
        )
    value = yaml.safe_load(raw)
    if op in ("in", "not in") and not isinstance(value, list):
        raise RecipeError(f"filter {text!r}: '{op}' needs a list value such as [fr, es]")
    return Condition(column, op, tuple(value) if isinstance(value, list) else value)


def _template_fields(template: str) -> set[str]:
    import string

    return {name.split(".")[0].split("[")[0] for _, name, _, _ in string.Formatter().parse(template) if name}


def parse_rule(raw: dict, index: int) -> UpsampleRule:
    if not isinstance(raw, dict):
        raise RecipeError(f"upsample[{index}] must be a mapping, got {raw!r}")
    unknown = set(raw) - _RULE_KEYS
    if unknown:
        raise RecipeError(
            f"upsample[{index}]: unknown keys {sorted(unknown)} (allowed: {sorted(_RULE_KEYS)})"
        )
    name = str(raw.get("name", f"rule{index}"))
    column = raw.get("column")
    if column not in SCORED.names:
        raise RecipeError(f"upsample rule {name!r}: unknown column {column!r}")
    values = raw.get("values")
    if not isinstance(values, list) or not values:
        raise RecipeError(f"upsample rule {name!r}: 'values' must be a non-empty list")
    factor = raw.get("factor")
    if not isinstance(factor, int) or isinstance(factor, bool) or factor < 1:
        raise RecipeError(f"upsample rule {name!r}: 'factor' must be an integer >= 1, got {factor!r}")
    share, count = raw.get("share_above"), raw.get("count_at_least")
    if (share is None) == (count is None):
        raise RecipeError(f"upsample rule {name!r}: give exactly one of 'share_above' or 'count_at_least'")
    if share is not None and not (isinstance(share, (int, float)) and 0 <= share < 1):
        raise RecipeError(f"upsample rule {name!r}: 'share_above' must be in [0, 1), got {share!r}")
    if count is not None and not (isinstance(count, int) and count >= 1):
        raise RecipeError(f"upsample rule {name!r}: 'count_at_least' must be an integer >= 1, got {count!r}")
    where = tuple(parse_condition(c) for c in raw.get("where") or [])
    return UpsampleRule(
        name=name,
        column=column,
        values=tuple(values),
        factor=factor,
        share_above=None if share is None else float(share),
        count_at_least=count,
        where=where,
    )


def parse_recipe(raw: dict, **overrides: Any) -> Recipe:
    """Validate a recipe mapping (from YAML) and build the Recipe; `overrides` replace top-level keys."""
    if not isinstance(raw, dict):
        raise RecipeError(f"a recipe must be a YAML mapping, got {type(raw).__name__}")
    raw = {**raw, **{k: v for k, v in overrides.items() if v is not None}}
    unknown = set(raw) - _KNOWN_KEYS
    if unknown:
        raise RecipeError(f"unknown recipe keys {sorted(unknown)} (allowed: {sorted(_KNOWN_KEYS)})")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise RecipeError(f"recipe 'name' must be a simple name usable as a directory, got {name!r}")
    filters = raw.get("filter") or []
    if not isinstance(filters, list):
        raise RecipeError("'filter' must be a list of conditions")
    rules = raw.get("upsample") or []
    if not isinstance(rules, list):
        raise RecipeError("'upsample' must be a list of rules")
    parsed_rules = tuple(parse_rule(r, i) for i, r in enumerate(rules))
    if len({r.name for r in parsed_rules}) != len(parsed_rules):
        raise RecipeError("upsample rule names must be unique")
    recipe = Recipe(
        name=name,
        description=str(raw.get("description") or ""),
        filter=tuple(parse_condition(c) for c in filters),
        upsample=parsed_rules,
        combine=raw.get("combine", "max"),
        max_factor=raw.get("max_factor"),
        judge_articles_on=raw.get("judge_articles_on", "all"),
        prefix=raw.get("prefix"),
        separator=raw.get("separator", "\n\n"),
        output_format=raw.get("output_format", "parquet"),
        tokenizer=str(raw.get("tokenizer", "whitespace")),
        seed=raw.get("seed", 0),
        docs_per_shard=raw.get("docs_per_shard", 50_000),
        source=raw,
    )
    _validate(recipe)
    return recipe


def _validate(recipe: Recipe) -> None:
    if recipe.combine not in COMBINE_MODES:
        raise RecipeError(f"'combine' must be one of {COMBINE_MODES}, got {recipe.combine!r}")
    if recipe.judge_articles_on not in JUDGE_MODES:
        raise RecipeError(
            f"'judge_articles_on' must be one of {JUDGE_MODES}, got {recipe.judge_articles_on!r}"
        )
    if recipe.output_format not in OUTPUT_FORMATS:
        raise RecipeError(f"'output_format' must be one of {OUTPUT_FORMATS}, got {recipe.output_format!r}")
    if recipe.max_factor is not None and not (isinstance(recipe.max_factor, int) and recipe.max_factor >= 1):
        raise RecipeError(f"'max_factor' must be an integer >= 1, got {recipe.max_factor!r}")
    if not isinstance(recipe.seed, int):
        raise RecipeError(f"'seed' must be an integer, got {recipe.seed!r}")
    if not (isinstance(recipe.docs_per_shard, int) and recipe.docs_per_shard >= 1):
        raise RecipeError(f"'docs_per_shard' must be an integer >= 1, got {recipe.docs_per_shard!r}")
    if not isinstance(recipe.separator, str):
        raise RecipeError("'separator' must be a string")
    if recipe.prefix is not None:
        if not isinstance(recipe.prefix, str):
            raise RecipeError("'prefix' must be a template string or null")
        allowed = set(SCORED.names) | set(PREFIX_EXTRA_FIELDS)
        bad = _template_fields(recipe.prefix) - allowed
        if bad:
            raise RecipeError(
                f"prefix template uses unknown fields {sorted(bad)} (allowed: {sorted(allowed)})"
            )
        try:
            recipe.prefix.format(
                **{f: 3 if f.endswith("score") or f == "score_int" else "x" for f in allowed}
            )
        except (ValueError, IndexError, KeyError) as e:
            raise RecipeError(f"prefix template {recipe.prefix!r} is not a valid format string: {e}") from e


def preset_names() -> dict[str, str]:
    """Preset recipe name -> its YAML file name, from the packaged `pipelines/subsets/recipes/*.yaml`."""
    names = {}
    for entry in resources.files(PRESETS_PACKAGE).iterdir():
        if entry.name.endswith(".yaml"):
            names[yaml.safe_load(entry.read_text())["name"]] = entry.name
    return names


def load_recipe(spec: str, **overrides: Any) -> Recipe:
    """A preset name (`BE-All`, case-insensitive) or a path to a recipe YAML file."""
    presets = preset_names()
    by_lower = {n.lower(): f for n, f in presets.items()}
    if spec.lower() in by_lower:
        text = resources.files(PRESETS_PACKAGE).joinpath(by_lower[spec.lower()]).read_text()
    else:
        path = Path(spec)
        if not path.exists():
            raise RecipeError(
                f"recipe {spec!r} is neither a preset ({', '.join(sorted(presets))}) nor a file"
            )
        text = path.read_text()
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise RecipeError(f"recipe {spec!r} is not valid YAML: {e}") from e
    return parse_recipe(raw, **overrides)


def load_recipes(specs: str | list[str], **overrides: Any) -> list[Recipe]:
    """Several recipes: names/paths, comma-separated or as a list; `paper` means the six paper presets."""
    items = [specs] if isinstance(specs, str) else list(specs)
    flat = [s.strip() for item in items for s in item.split(",") if s.strip()]
    expanded = [p for s in flat for p in (PAPER_PRESETS if s.lower() == "paper" else (s,))]
    recipes = [load_recipe(s, **overrides) for s in expanded]
    names = [r.name for r in recipes]
    if len(set(names)) != len(names):
        raise RecipeError(f"recipe names must be unique within one run, got {names}")
    if not recipes:
        raise RecipeError("no recipe given")
    return recipes
