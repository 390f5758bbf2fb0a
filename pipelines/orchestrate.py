"""`biomed-enrich run`: ingest -> sample+annotate -> train -> propagate -> subsets -> report, resumably.

Each stage writes its own directory under the output root and, once it succeeded, a
`_manifest.json` there (see `pipelines.manifest`). On a rerun a stage is skipped when its manifest
matches its config and its inputs (upstream manifests) and every recorded file is intact;
otherwise (new config, changed inputs, corrupted or missing output, earlier failure) its directory
is cleared and the stage runs again from its own start, with `retries` extra attempts. The report
is cheap and always regenerated. `<root>/_run.json` and `<root>/run.log` record what happened.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from pipelines.jats import TEXT_RENDERING

STAGES = ("ingest", "annotate", "train", "propagate", "subsets", "report")
# Where each data stage writes under the run's output root (the report reads them back from here).
STAGE_DIRS = {
    "ingest": "ingest",
    "annotate": "annotate",
    "train": "model",
    "propagate": "propagate",
    "subsets": "subsets",
}
_TOP_KEYS = {"output", "inputs", "beam_args", "retries", "verify_hashes", *STAGES}


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


def resolve_path(value: str, base: Path) -> str:
    """`package:<pkg>/<file>` -> a file shipped in an installed package; relative paths -> against `base`."""
    if value.startswith("package:"):
        package, _, name = value[len("package:") :].partition("/")
        return str(resources.files(package).joinpath(name))
    if "://" in value or Path(value).is_absolute():
        return value
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
    for key in ("extra_labels", "labels"):
        if key in stages["train"]:
            stages["train"][key] = [resolve_path(p, base) for p in stages["train"][key]]
    retries = raw.get("retries", 1)
    if not isinstance(retries, int) or retries < 0:
        raise ConfigError("'retries' must be an integer >= 0")
    output_path = out if output else resolve_path(out, base)
    return RunConfig(
        output=output_path,
        inputs=resolved_inputs,
        beam_args=[str(a) for a in raw.get("beam_args") or []],
        retries=retries,
        stages=stages,
        verify_hashes=bool(raw.get("verify_hashes", True)),
    )


@dataclass
class Stage:
    """One step: where it writes, what it depends on (for fingerprints), and how to run it."""

    name: str
    output: str
    depends_on: list[str]
    config: dict
    run: Callable[[], dict]
    expects: str | None = (
        None  # a dataset that must not come out empty (a clear error instead of a later one)
    )


def plan(cfg: RunConfig) -> list[Stage]:
    """The stages of a run, wired through the stage contracts (see COMMON stage contracts / docs)."""
    root = Path(cfg.output)
    d = {stage: str(root / sub) for stage, sub in STAGE_DIRS.items()}
    paragraphs = str(Path(d["ingest"]) / "paragraphs")
    labels = str(Path(d["annotate"]) / "labels")
    scored = str(Path(d["propagate"]) / "scored")
    s = cfg.stages
    train_cfg = dict(s["train"])
    extra = train_cfg.pop("extra_labels", [])
    extra_sample = train_cfg.pop("extra_labels_sample", None)

    def ingest():
        from pipelines.ingest import run_ingest

        return run_ingest(cfg.inputs, d["ingest"], beam_args=cfg.beam_args, **s["ingest"])

    def annotate():
        from annotators.annotate import run_annotate

        return run_annotate([paragraphs], d["annotate"], beam_args=cfg.beam_args, **s["annotate"])

    def train():
        from distill.train import run_train
        from pipelines.extra_labels import prepare_extra_labels

        sources = [labels]
        if extra:
            prepared = str(Path(d["train"]) / "training_data" / "extra_labels.parquet")
            prepare_extra_labels(
                extra, [paragraphs], prepared, sample=extra_sample, seed=train_cfg.get("seed", 0)
            )
            sources.append(prepared)
        return run_train(sources, d["train"], paragraphs=[paragraphs], **train_cfg)

    def propagate():
        from pipelines.propagate import run_propagate

        return run_propagate(
            [paragraphs], d["train"], d["propagate"], beam_args=cfg.beam_args, **s["propagate"]
        )

    def subsets():
        from pipelines.subsets import run_subsets

        sub = dict(s["subsets"])
        recipes = sub.pop("recipes", "paper")
        return run_subsets([scored], recipes, d["subsets"], beam_args=cfg.beam_args, **sub)

    def report():
        from pipelines.report import write_report

        return write_report(str(root), **s["report"])

    return [
        Stage(
            "ingest",
            d["ingest"],
            list(cfg.inputs),
            # The text rendering version is part of the ingest config: a new rendering re-runs ingest.
            {"inputs": cfg.inputs, **s["ingest"], "text_rendering": TEXT_RENDERING},
            ingest,
            "paragraphs",
        ),
        Stage("annotate", d["annotate"], [d["ingest"]], s["annotate"], annotate, "labels"),
        Stage("train", d["train"], [d["annotate"], d["ingest"], *extra], s["train"], train),
        Stage("propagate", d["propagate"], [d["ingest"], d["train"]], s["propagate"], propagate, "scored"),
        Stage("subsets", d["subsets"], [d["propagate"]], s["subsets"], subsets),
        Stage("report", str(root / "report.html"), [], s["report"], report),
    ]


class RunLog:
    """Progress lines on stderr and in `<root>/run.log`; per-stage status in `<root>/_run.json`."""

    def __init__(self, root: Path, quiet: bool = False):
        self.root, self.quiet = root, quiet
        root.mkdir(parents=True, exist_ok=True)
        self.state_path = root / "_run.json"
        self.state = json.loads(self.state_path.read_text()) if self.state_path.exists() else {"stages": {}}

    def say(self, message: str) -> None:
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {message}"
        with open(self.root / "run.log", "a") as f:
            f.write(line + "\n")
        if not self.quiet:
            print(line, file=sys.stderr, flush=True)

    def record(self, stage: str, **info) -> None:
        self.state["stages"].setdefault(stage, {}).update(info)
        self.state_path.write_text(json.dumps(self.state, indent=2, sort_keys=True))


def _clear(path: str) -> None:
    p = Path(path)
    if p.is_dir():
        shutil.rmtree(p)
    elif p.exists():
        p.unlink()


def run(
    cfg: RunConfig, *, only: list[str] | None = None, force: list[str] | None = None, quiet: bool = False
) -> dict:
    """Run (or resume) every stage in order; returns `_run.json`'s content. Raises StageFailed."""
    from pipelines.manifest import verify

    root = Path(cfg.output)
    log = RunLog(root, quiet=quiet)
    stages = plan(cfg)
    force = set(force or [])
    for i, stage in enumerate(stages, 1):
        tag = f"[{i}/{len(stages)}] {stage.name}"
        if only and stage.name not in only:
            continue
        if stage.name != "report" and stage.name not in force:
            check = verify(
                stage.output, config=stage.config, inputs=stage.depends_on, hashes=cfg.verify_hashes
            )
            if check.ok:
                log.say(f"{tag}: skipped (finished earlier, output intact)")
                log.record(stage.name, status="skipped", skipped_at=time.time())
                continue
            log.say(f"{tag}: running ({check.reason})")
        else:
            log.say(f"{tag}: running")
        _run_stage(stage, cfg.retries, log, tag, cfg.verify_hashes)
    log.say(f"done: outputs under {root}")
    return log.state


def _run_stage(stage: Stage, retries: int, log: RunLog, tag: str, hashes: bool = True) -> None:
    from pipelines.manifest import dataset_rows, read_manifest, write_manifest

    for attempt in range(1, retries + 2):
        _clear(stage.output)  # retry from the stage's own start: no half-written shard survives
        started = time.time()
        log.record(stage.name, status="running", started_at=started, attempt=attempt)
        try:
            result = stage.run()
            if stage.expects and not dataset_rows(stage.output).get(stage.expects):
                raise RuntimeError(
                    f"{stage.name} wrote no {stage.expects} (see {stage.output}/dead_letter and its stats)"
                )
            if stage.name != "report":
                write_manifest(stage.output, stage.name, stage.config, stage.depends_on, hash_files=hashes)
        except Exception as e:  # noqa: BLE001 - recorded, retried, then re-raised as StageFailed
            detail = "".join(traceback.format_exception_only(type(e), e)).strip()
            log.say(f"{tag}: attempt {attempt} failed: {detail}")
            log.record(stage.name, status="failed", error=detail, traceback=traceback.format_exc()[-4000:])
            if attempt > retries:
                raise StageFailed(f"stage {stage.name} failed after {attempt} attempt(s): {detail}") from e
            continue
        seconds = time.time() - started
        manifest = read_manifest(stage.output) or {}
        log.say(
            f"{tag}: done in {seconds:.1f}s" + (f" rows={manifest['rows']}" if manifest.get("rows") else "")
        )
        log.record(
            stage.name,
            status="done",
            finished_at=time.time(),
            seconds=round(seconds, 3),
            error=None,
            traceback=None,
            result_keys=sorted(result) if isinstance(result, dict) else None,
        )
        return
