"""`biomed-enrich run`: ingest -> sample+annotate -> train -> propagate -> subsets -> report, resumably.

Each stage writes its own directory under the output root and, once it succeeded, a
`_manifest.json` there (see `pipelines.core.manifest`). On a rerun a stage is skipped when its manifest
matches its config and its inputs (upstream manifests) and every recorded file is intact;
otherwise (new config, changed inputs, corrupted or missing output, earlier failure) its directory
is cleared and the stage runs again from its own start, with `retries` extra attempts. The report
is cheap and always regenerated. `<root>/_run.json` and `<root>/run.log` record what happened.

The whole config is checked before the first stage (`pipelines.app.config_check`); a stage failure that a
retry cannot fix (a wrong value, a missing file, an empty result) is not retried; SIGINT/SIGTERM stop
the run at once (`pipelines.core.console.Interrupted`), leaving the finished stages' manifests for a resume.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from pipelines.app.run_layout import STAGE_DIRS, STAGES
from pipelines.core import uris
from pipelines.core.extras import require
from pipelines.core.summary import EmptyOutput
from pipelines.ingest.jats import TEXT_RENDERING

_TOP_KEYS = {"output", "inputs", "beam_args", "retries", "verify_hashes", "allow_empty", *STAGES}
# Section keys holding paths, resolved against the config file's directory like `inputs`.
_PATH_KEYS = {
    "annotate": ("recordings", "api_key_file", "price_table", "cache_path"),
    "train": ("cache_dir",),
}


class ConfigError(ValueError):
    """A run config that cannot be run, with the reason."""


class StageFailed(RuntimeError):
    """A stage failed on every attempt."""


@dataclass
class RunConfig:
    output: str
    inputs: list[str]
    beam_args: list[str] = field(default_factory=list)
    retries: int = 1
    stages: dict[str, dict] = field(default_factory=dict)
    # sha256 of every output file in manifests, checked on resume; off = sizes, footers, row counts only
    verify_hashes: bool = True
    # a stage that writes nothing (or finds nothing to read) is an error unless this is set
    allow_empty: bool = False


def resolve_path(value: str, base: Path) -> str:
    """`package:<pkg>/<file>` -> a file shipped in an installed package; relative paths -> against `base`."""
    if value.startswith("package:"):
        package, _, name = value[len("package:") :].partition("/")
        return str(resources.files(package).joinpath(name))
    if "://" in value or Path(value).is_absolute():
        return value.rstrip("/") if uris.is_remote(value) else value
    return str((base / value).resolve())


def load_config(path: str | Path, *, output: str | None = None) -> RunConfig:
    """Read and validate a run config YAML; paths in it are relative to the file's directory."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config {path} not found")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config {path} must be a YAML mapping")
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise ConfigError(f"unknown config keys {sorted(unknown)} (allowed: {sorted(_TOP_KEYS)})")
    base = path.resolve().parent
    out = output or raw.get("output")
    if not out:
        raise ConfigError("no output directory: set 'output' in the config or pass --output")
    inputs = raw.get("inputs") or []
    if isinstance(inputs, str):
        inputs = [inputs]
    if not inputs:
        raise ConfigError("config needs 'inputs': JATS files, directories or globs")
    resolved_inputs = [resolve_path(p, base) for p in inputs]
    for p in resolved_inputs:
        if "://" not in p and not any(c in p for c in "*?[") and not Path(p).exists():
            raise ConfigError(f"input {p} does not exist")
    stages = {}
    for name in STAGES:
        section = raw.get(name) or {}
        if not isinstance(section, dict):
            raise ConfigError(f"config section {name!r} must be a mapping")
        stages[name] = dict(section)
    _resolve_section_paths(stages, base)
    retries = raw.get("retries", 1)
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise ConfigError("'retries' must be an integer >= 0")
    beam_args = raw.get("beam_args") or []
    if not isinstance(beam_args, list):
        raise ConfigError("'beam_args' must be a list of Beam flags, e.g. [--runner=DirectRunner]")
    for key in ("verify_hashes", "allow_empty"):
        if not isinstance(raw.get(key, False), bool):
            raise ConfigError(f"'{key}' must be true or false")
    check_sections(stages)
    output_path = out if output else resolve_path(out, base)
    _check_buckets(resolved_inputs, output_path, [str(a) for a in beam_args])
    return RunConfig(
        output=output_path,
        inputs=resolved_inputs,
        beam_args=[str(a) for a in beam_args],
        retries=retries,
        stages=stages,
        verify_hashes=bool(raw.get("verify_hashes", True)),
        allow_empty=bool(raw.get("allow_empty", False)),
    )


def _check_buckets(inputs: list[str], output: str, beam_args: list[str]) -> None:
    """Missing buckets and denied permissions are config errors, found before the first stage."""
    from pipelines.core.access import StorageError, check_run_paths

    if not any(uris.is_remote(p) for p in [*inputs, output]):
        return
    uris.configure(beam_args)  # Beam's --s3_* flags reach these checks too
    try:
        check_run_paths(inputs, output)
    except StorageError as e:
        raise ConfigError(str(e)) from None


def _resolve_section_paths(stages: dict[str, dict], base: Path) -> None:
    """Paths inside sections are relative to the config file too (recipe files, recordings, ...)."""
    train = stages["train"]
    if isinstance(train.get("extra_labels"), str):
        train["extra_labels"] = [train["extra_labels"]]
    if isinstance(train.get("extra_labels"), list):
        train["extra_labels"] = [resolve_path(str(p), base) for p in train["extra_labels"]]
    for section, keys in _PATH_KEYS.items():
        for key in keys:
            if isinstance(stages[section].get(key), str):
                stages[section][key] = resolve_path(stages[section][key], base)
    recipes = stages["subsets"].get("recipes")
    if isinstance(recipes, list | str):
        items = [recipes] if isinstance(recipes, str) else recipes
        resolved = [
            resolve_path(r, base) if isinstance(r, str) and r.endswith((".yaml", ".yml")) else r
            for r in items
        ]
        stages["subsets"]["recipes"] = resolved if isinstance(recipes, list) else resolved[0]


def check_sections(stages: dict[str, dict]) -> None:
    """Every stage section against its stage function (keys, types, recipes, paths, teacher)."""
    from pipelines.app.config_check import CHECKS, SectionError

    for name, check in CHECKS.items():
        try:
            check(stages[name])
        except SectionError as e:
            raise ConfigError(str(e)) from None


@dataclass
class Stage:
    """One step: where it writes, what it depends on (for fingerprints), and how to run it."""

    name: str
    output: str
    depends_on: list[str]
    config: dict
    run: Callable[[], dict]


def plan(cfg: RunConfig) -> list[Stage]:
    """The stages of a run, wired through the stage contracts (see COMMON stage contracts / docs)."""
    root = cfg.output
    d = {stage: uris.join(root, sub) for stage, sub in STAGE_DIRS.items()}
    paragraphs = uris.join(d["ingest"], "paragraphs")
    labels = uris.join(d["annotate"], "labels")
    scored = uris.join(d["propagate"], "scored")
    s = cfg.stages
    train_cfg = dict(s["train"])
    extra = train_cfg.pop("extra_labels", [])
    extra_sample = train_cfg.pop("extra_labels_sample", None)

    def ingest():
        from pipelines.ingest.pipeline import run_ingest

        return run_ingest(cfg.inputs, d["ingest"], beam_args=cfg.beam_args, **s["ingest"])

    def annotate():
        from annotators.annotate import run_annotate

        return run_annotate([paragraphs], d["annotate"], beam_args=cfg.beam_args, **s["annotate"])

    def train():
        require("train", "the train stage")
        from distill.train import run_train
        from pipelines.app.extra_labels import prepare_extra_labels
        from pipelines.core.staging import local_output

        sources = [labels]
        with local_output(d["train"]) as model_dir:  # torch writes local files: uploaded when done
            if extra:
                prepared = str(Path(model_dir) / "training_data" / "extra_labels.parquet")
                prepare_extra_labels(
                    extra, [paragraphs], prepared, sample=extra_sample, seed=train_cfg.get("seed", 0)
                )
                sources.append(prepared)
            return run_train(sources, model_dir, paragraphs=[paragraphs], **train_cfg)

    def propagate():
        require("train", "the propagate stage")
        from pipelines.propagate import run_propagate

        return run_propagate(
            [paragraphs], d["train"], d["propagate"], beam_args=cfg.beam_args, **s["propagate"]
        )

    def subsets():
        from pipelines.subsets.pipeline import run_subsets

        sub = dict(s["subsets"])
        recipes = sub.pop("recipes", "paper")
        return run_subsets([scored], recipes, d["subsets"], beam_args=cfg.beam_args, **sub)

    def report():
        require("report", "the report")
        from pipelines.app.report import write_report

        return write_report(root, **s["report"])

    return [
        Stage(
            "ingest",
            d["ingest"],
            list(cfg.inputs),
            # The text rendering version is part of the ingest config: a new rendering re-runs ingest.
            {"inputs": cfg.inputs, **s["ingest"], "text_rendering": TEXT_RENDERING},
            ingest,
        ),
        Stage("annotate", d["annotate"], [d["ingest"]], s["annotate"], annotate),
        Stage("train", d["train"], [d["annotate"], d["ingest"], *extra], s["train"], train),
        Stage("propagate", d["propagate"], [d["ingest"], d["train"]], s["propagate"], propagate),
        Stage("subsets", d["subsets"], [d["propagate"]], s["subsets"], subsets),
        Stage("report", uris.join(root, "report.html"), [], s["report"], report),
    ]


class RunLog:
    """Progress lines on stderr and in `<root>/run.log`; per-stage status in `<root>/_run.json`."""

    def __init__(self, root: Path | uris.RemotePath, quiet: bool = False):
        self.root, self.quiet = root, quiet
        root.mkdir(parents=True, exist_ok=True)
        self.state_path = root / "_run.json"
        self.state = json.loads(self.state_path.read_text()) if self.state_path.exists() else {"stages": {}}
        self.log_path = root / "run.log"

    def say(self, message: str, echo: bool = True) -> None:
        from pipelines.core.console import write

        line = f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {message}"
        uris.append_line(self.log_path, line)
        if echo and not self.quiet:
            write(line)

    def record(self, stage: str, **info) -> None:
        self.state["stages"].setdefault(stage, {}).update(info)
        self.state_path.write_text(json.dumps(self.state, indent=2, sort_keys=True))


def _clear(path: str) -> None:
    uris.delete_tree(path)  # the manifest first: a half-cleared output never passes for a finished one


# Failures a retry cannot fix: wrong values, missing files, empty results. Others (I/O hiccups, a worker
# lost, a server error) are retried.
PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    TypeError,
    ValueError,
    KeyError,
    ImportError,
    FileNotFoundError,
    NotADirectoryError,
    PermissionError,
    EmptyOutput,
)


def run(
    cfg: RunConfig, *, only: list[str] | None = None, force: list[str] | None = None, quiet: bool = False
) -> dict:
    """Run (or resume) every stage in order; returns `_run.json`'s content.

    Raises StageFailed, or `console.Interrupted` on SIGINT/SIGTERM (the stage being run keeps no
    manifest, so a rerun redoes it and skips the ones before).
    """
    from pipelines.core.console import catch_interrupts, reset_interrupt

    reset_interrupt()
    uris.configure(cfg.beam_args)  # manifests, logs and the report use the run's storage settings too
    with catch_interrupts():
        return _run(cfg, only, set(force or []), quiet)


def _run(cfg: RunConfig, only: list[str] | None, force: set[str], quiet: bool) -> dict:
    from pipelines.core.manifest import verify

    root = uris.as_path(cfg.output)
    log = RunLog(root, quiet=quiet)
    stages = plan(cfg)
    for i, stage in enumerate(stages, 1):
        tag = f"[{i}/{len(stages)}] {stage.name}"
        if only and stage.name not in only:
            continue
        if stage.name != "report" and stage.name not in force:
            check = verify(
                stage.output,
                config=stage.config,
                inputs=stage.depends_on,
                hashes=cfg.verify_hashes,
                run_root=str(root),
            )
            if check.ok:
                log.say(f"{tag}: skipped (finished earlier, output intact)")
                log.record(stage.name, status="skipped", skipped_at=time.time())
                continue
            _refuse_rebuild_of_updated(stage, check.reason)
            log.say(f"{tag}: running ({check.reason})")
        else:
            log.say(f"{tag}: running")
        if stage.name != "report":
            _clear(str(root / "report.html"))  # it would describe outputs about to be replaced
        try:
            _run_stage(stage, cfg, log, tag)
        except StageFailed:
            _mark_report(root, log)
            raise
    log.say(f"done: outputs under {root}")
    return log.state


def _refuse_rebuild_of_updated(stage: Stage, reason: str) -> None:
    """An incrementally updated corpus (`run --update`) is not rebuilt from the config's inputs by a
    plain run by accident: its inputs are several deliveries (`--force ingest` rebuilds on purpose)."""
    from pipelines.core.manifest import read_manifest

    if stage.name == "ingest" and (read_manifest(stage.output) or {}).get("updates"):
        raise ConfigError(
            f"{Path(stage.output).parent} was updated incrementally and its ingest would be redone "
            f"({reason}): use `run --config ... --update` for new inputs, or --force ingest to rebuild "
            "from the config's inputs"
        )


def _mark_report(root: Path, log: RunLog) -> None:
    """After a failure, a report of what is there, flagged as unfinished (never a stale one)."""
    from pipelines.app.report import write_report

    try:
        write_report(str(root))
    except Exception as e:  # noqa: BLE001 - the stage error is the news, not the report's
        log.say(f"report: not written ({type(e).__name__}: {e})")


def _run_stage(stage: Stage, cfg: RunConfig, log: RunLog, tag: str) -> None:
    from pipelines.core.console import Interrupted, close_bars, raise_if_interrupted
    from pipelines.core.manifest import write_manifest
    from pipelines.core.summary import check_output, summarize

    for attempt in range(1, cfg.retries + 2):
        _clear(stage.output)  # retry from the stage's own start: no half-written shard survives
        started = time.time()
        log.record(stage.name, status="running", started_at=started, attempt=attempt)
        try:
            result = stage.run()
            raise_if_interrupted(where=stage.name)  # a library may have swallowed it
            summary = summarize(stage.name, result, stage.output)
            try:
                check_output(summary, cfg.allow_empty)
            except EmptyOutput:
                log.say(f"{tag}: {summary.line().split(': ', 1)[1]}")  # what it read and where it went
                raise
            if stage.name != "report":
                write_manifest(
                    stage.output,
                    stage.name,
                    stage.config,
                    stage.depends_on,
                    hash_files=cfg.verify_hashes,
                    run_root=cfg.output,
                )
        except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - recorded, maybe retried, re-raised
            close_bars()
            try:
                raise_if_interrupted(e, where=stage.name)
            except Interrupted as stop:
                log.record(stage.name, status="interrupted", error=str(stop), traceback=None)
                # the command prints the one line a user sees; run.log keeps where it happened
                log.say(f"{tag}: {stop}; finished stages kept, rerun to resume", echo=False)
                raise
            detail = str(e) if isinstance(e, EmptyOutput) else f"{type(e).__name__}: {e}"
            log.record(stage.name, status="failed", error=detail, traceback=traceback.format_exc()[-4000:])
            permanent = isinstance(e, PERMANENT_ERRORS)
            if permanent or attempt > cfg.retries:
                log.say(f"{tag}: failed: {detail}", echo=False)  # the command prints the error line
                raise StageFailed(f"stage {stage.name} failed: {detail}") from e
            log.say(f"{tag}: attempt {attempt} failed, retrying: {detail}")
            continue
        close_bars()
        seconds = time.time() - started
        what = f": {summary.line().split(': ', 1)[1]}" if summary else ""
        log.say(f"{tag}: done in {seconds:.1f}s{what}")
        log.record(
            stage.name,
            status="done",
            finished_at=time.time(),
            seconds=round(seconds, 3),
            error=None,
            traceback=None,
            summary=summary.line() if summary else None,
            result_keys=sorted(result) if isinstance(result, dict) else None,
        )
        return
