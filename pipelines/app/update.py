"""`biomed-enrich run --config X --update` / `--rescore`: bring a finished corpus up to date.

State lives in the output directory (Parquet + manifests, so it works on buckets):
`ingest/articles/` (the kept copy of each article and its rank), `ingest/paragraphs/`,
`propagate/scored/` (scores with their `model_id`). An update ingests only the new inputs (Beam,
like any ingest), decides per article what changes (`pipelines.core.changes.decide`: added,
updated to a newer copy, retracted, unchanged, superseded), scores only paragraphs whose text hash
is new (`plan_scores`; every other score is carried with its model version), then rebuilds subsets
and the report and records the change log in the stage manifests. Annotate and train are not
touched: nothing is sent to the teacher again and the student stays the run's own (or `model_dir`).
`--rescore` scores every paragraph again with the given (new) student.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystems import FileSystems

from pipelines.app.corpus_state import (
    Layout,
    canonical_order,
    delete,
    has_articles,
    listed_articles,
    load_corpus,
    read_dataset,
    replace_dataset,
    subset_digests,
)
from pipelines.core import changes
from pipelines.core.io import read_json, write_json
from pipelines.core.manifest import read_manifest, write_manifest
from pipelines.core.schemas import ARTICLES, PARAGRAPHS, SCORE_COLUMNS, SCORED
from pipelines.core.uris import as_path


@dataclass
class StageConfigs:
    """The run config's sections the corpus stages need (as `run --config` passes them)."""

    ingest: dict
    propagate: dict
    subsets: dict
    report: dict


def run_update(
    root: str,
    inputs: list[str],
    *,
    configs: StageConfigs | None = None,
    model_dir: str | None = None,
    rescore: bool = False,
    beam_args: list[str] | None = None,
    verify_hashes: bool = True,
    say: Callable[[str], None] = lambda _msg: None,
) -> dict:
    """Apply new `inputs` (and/or a new student with `rescore`) to the finished corpus under `root`.

    Returns the change log written into the manifests: per stage, what was added, updated,
    retracted, unchanged (and, for propagate, which rows were scored by which model version).
    """
    from pipelines.ingest.jats import TEXT_RENDERING

    configs = configs or StageConfigs({}, {}, {"recipes": "paper"}, {})
    layout = Layout(root)
    for stage, path in (("ingest", layout.ingest), ("propagate", layout.propagate)):
        if read_manifest(path) is None:
            raise ValueError(
                f"no finished {stage} stage under {root}: run `run --config` once before --update"
            )
    model = model_dir or layout.model
    started = time.time()
    delete(layout.work)

    steps: dict[str, float] = {}  # wall seconds per step, in the change log
    old_paragraphs, old, old_scored = load_corpus(layout)
    steps["read_state"] = time.time() - started
    delta_paragraphs, delta, delta_stats = ingest_new(layout, inputs, configs.ingest, beam_args, say)
    steps["ingest"] = time.time() - started - sum(steps.values())
    listed = listed_articles(list(inputs)) if inputs else {}
    decisions = [
        changes.decide(aid, old.get(aid), delta.get(aid), listed.get(aid, {}).get("retracted", False))
        for aid in sorted(set(old) | set(delta))
    ]
    new_paragraphs = apply_decisions(old_paragraphs, delta_paragraphs, decisions)
    new_articles = pa.Table.from_pylist(updated_records(decisions, listed, delta), schema=ARTICLES)
    plan = changes.plan_scores(
        new_paragraphs.to_pylist(), carried_scores(old_scored, rescore), rescore=rescore
    )
    steps["decide"] = time.time() - started - sum(steps.values())
    new_scored = score(layout, plan, model, configs.propagate, beam_args, say)
    steps["propagate"] = time.time() - started - sum(steps.values())
    if new_scored.num_rows != new_paragraphs.num_rows:
        raise RuntimeError(
            f"update lost rows: {new_paragraphs.num_rows} paragraphs but {new_scored.num_rows} scored rows"
        )
    paragraph_counts = changes.paragraph_changes(_hashes(old_paragraphs), _hashes(new_paragraphs))
    log = {
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "inputs": list(inputs),
        "rescore": rescore,
        "ingest": {
            "articles": changes.count_kinds(decisions),
            "paragraphs": paragraph_counts,
            "articles_read": delta_stats.get("articles_read", 0),
            "listed_retractions": sum(1 for v in listed.values() if v["retracted"]),
        },
        "propagate": {
            "scored": len(plan.to_score),
            "carried": len(plan.carried),
            "removed": paragraph_counts["removed"],
            "model_id": _model_id(model),
            "rows_by_model_before": _count(old_scored["model_id"]),
            "rows_by_model": _count(new_scored["model_id"]),
        },
    }
    delta_dir = FileSystems.join(layout.work, "ingest")

    # 6. replace the state, then rebuild subsets and the report
    replace_dataset(new_paragraphs, layout.ingest, "paragraphs")
    replace_dataset(new_articles, layout.ingest, "articles")
    replace_dataset(new_scored, FileSystems.join(layout.propagate), "scored")
    _copy_dead_letters(delta_dir, layout.ingest, log["at"])
    _update_stats(layout, log, new_paragraphs.num_rows, new_scored)

    steps["write_state"] = time.time() - started - sum(steps.values())
    before = subset_digests(layout.subsets)
    sub = dict(configs.subsets)
    recipes = sub.pop("recipes", "paper")
    from pipelines.subsets.pipeline import run_subsets

    say("update: rebuilding subsets")
    run_subsets(
        [FileSystems.join(layout.propagate, "scored")], recipes, layout.subsets, beam_args=beam_args, **sub
    )
    log["subsets"] = _subset_changes(before, subset_digests(layout.subsets))
    steps["subsets"] = time.time() - started - sum(steps.values())
    log["step_seconds"] = {k: round(v, 2) for k, v in steps.items()}
    log["seconds"] = round(time.time() - started, 3)

    previous = read_manifest(layout.ingest) or {}
    all_inputs = list(previous.get("all_inputs") or previous.get("inputs") or [])
    all_inputs += [i for i in inputs if i not in all_inputs]
    history = [*previous.get("updates", []), log]
    ingest_config = {"inputs": all_inputs, **configs.ingest, "text_rendering": TEXT_RENDERING}
    extra = {"changes": log, "updates": history, "all_inputs": all_inputs}
    write_manifest(layout.ingest, "ingest", ingest_config, [], extra, hash_files=verify_hashes, run_root=root)
    write_manifest(
        layout.propagate,
        "propagate",
        configs.propagate,
        [layout.ingest, model],
        {"changes": log["propagate"] | {"at": log["at"]}},
        hash_files=verify_hashes,
        run_root=root,
    )
    write_manifest(
        layout.subsets,
        "subsets",
        configs.subsets,
        [layout.propagate],
        {"changes": log["subsets"] | {"at": log["at"]}},
        hash_files=verify_hashes,
        run_root=root,
    )
    from pipelines.app.report import write_report

    write_report(root, **configs.report)
    delete(layout.work)
    return log


def ingest_new(
    layout: Layout, inputs: list[str], ingest: dict, beam_args: list[str] | None, say: Callable[[str], None]
) -> tuple[pa.Table, dict[str, dict], dict]:
    """Run the ingest pipeline on the new inputs only: (paragraphs, article records by id, stats)."""
    delta_dir = FileSystems.join(layout.work, "ingest")
    stats: dict = {}
    if inputs and has_articles(inputs):
        from pipelines.ingest.pipeline import run_ingest

        say(f"update: ingesting {len(inputs)} new input(s)")
        stats = run_ingest(list(inputs), delta_dir, beam_args=beam_args, **ingest)
    paragraphs = read_dataset(FileSystems.join(delta_dir, "paragraphs"), PARAGRAPHS)
    records = read_dataset(FileSystems.join(delta_dir, "articles"), ARTICLES).to_pylist()
    return paragraphs, {r["article_id"]: r for r in records}, stats


def apply_decisions(old: pa.Table, new: pa.Table, decisions: list[changes.Decision]) -> pa.Table:
    """The corpus's paragraphs after the decisions: old rows of kept articles (retractions flagged),
    new rows of added and updated ones, in canonical order."""
    keep_old = pa.array(sorted(d.article_id for d in decisions if d.keep == "old"), pa.string())
    take_new = pa.array(sorted(d.article_id for d in decisions if d.keep == "new"), pa.string())
    flag = pa.array(sorted(d.article_id for d in decisions if d.retract), pa.string())
    kept = old.filter(pc.is_in(old["article_id"], value_set=keep_old))
    if len(flag):
        retracted = pc.or_(
            pc.is_in(kept["article_id"], value_set=flag), pc.fill_null(kept["retracted"], False)
        )
        kept = kept.set_column(kept.schema.get_field_index("retracted"), "retracted", retracted)
    return canonical_order(
        pa.concat_tables([kept, new.filter(pc.is_in(new["article_id"], value_set=take_new))])
    )


def updated_records(decisions: list[changes.Decision], listed: dict[str, dict], delta: dict) -> list[dict]:
    """Article records after the update; a file list's update time applies to the listed articles it
    does not deliver (one run on all inputs would join it to them)."""
    records = []
    for d in decisions:
        if d.record is None:
            continue
        record = dict(d.record)
        when = listed.get(d.article_id, {}).get("last_updated")
        if when and d.article_id not in delta:
            record["last_updated"] = when
        records.append(record)
    return sorted(records, key=lambda r: r["article_id"])


def carried_scores(scored: pa.Table, rescore: bool) -> dict[str, dict]:
    """Text hash -> score columns (with `model_id`) of the scored corpus; none when re-scoring."""
    out: dict[str, dict] = {}
    if rescore:
        return out
    for row in scored.select(["text", *SCORE_COLUMNS.names]).to_pylist():
        out.setdefault(changes.text_hash(row.pop("text")), row)
    return out


def score(
    layout: Layout,
    plan: changes.ScorePlan,
    model: str,
    propagate: dict,
    beam_args: list[str] | None,
    say: Callable[[str], None],
) -> pa.Table:
    """Carried rows plus the rows to score, scored by the propagate pipeline, in canonical order."""
    scored = SCORED.empty_table()
    if plan.to_score:
        from pipelines.core.io import write_table
        from pipelines.propagate import run_propagate

        say(f"update: scoring {len(plan.to_score)} paragraph(s) with {model}, carrying {len(plan.carried)}")
        to_score = FileSystems.join(layout.work, "to_score")
        write_table(pa.Table.from_pylist(plan.to_score, schema=PARAGRAPHS), to_score, "paragraphs")
        out = FileSystems.join(layout.work, "propagate")
        run_propagate(
            [FileSystems.join(to_score, "paragraphs")], model, out, beam_args=beam_args, **propagate
        )
        scored = read_dataset(FileSystems.join(out, "scored"), SCORED).select(SCORED.names).cast(SCORED)
    carried = pa.Table.from_pylist(plan.carried, schema=SCORED) if plan.carried else SCORED.empty_table()
    return canonical_order(pa.concat_tables([carried, scored]))


def run_rescore(root: str, model_dir: str | None = None, **kw) -> dict:
    """Score every paragraph again with the student at `model_dir` (default: the run's `model/`)."""
    return run_update(root, [], model_dir=model_dir, rescore=True, **kw)


# -------------------------------------------------------------------------------------- helpers


def _count(column: pa.ChunkedArray) -> dict[str, int]:
    counts = pc.value_counts(column).to_pylist()
    return {str(c["values"]): c["counts"] for c in sorted(counts, key=lambda c: str(c["values"]))}


def _hashes(paragraphs: pa.Table) -> dict[str, str]:
    return {
        pid: changes.text_hash(text)
        for pid, text in zip(paragraphs["id"].to_pylist(), paragraphs["text"].to_pylist(), strict=True)
    }


def _model_id(model: str) -> str | None:
    from distill.inference import model_id

    try:
        return model_id(model)
    except OSError:
        return None


def _subset_changes(before: dict[str, dict[str, str]], after: dict[str, dict[str, str]]) -> dict:
    out = {}
    for recipe in sorted(set(before) | set(after)):
        counts = changes.paragraph_changes(before.get(recipe, {}), after.get(recipe, {}))
        out[recipe] = {**counts, "documents": len(after.get(recipe, {}))}
    return out


def _copy_dead_letters(delta_dir: str, ingest_dir: str, at: str) -> None:
    """Keep the update's ingest dead letters beside the corpus's (named by the update's time)."""
    pattern = FileSystems.join(delta_dir, "dead_letter", "*.jsonl")
    stamp = at.replace(":", "").replace("-", "")
    for result in FileSystems.match([pattern]):
        for meta in result.metadata_list:
            name = meta.path.rsplit("/", 1)[-1]
            FileSystems.copy(
                [meta.path], [FileSystems.join(ingest_dir, "dead_letter", f"update-{stamp}-{name}")]
            )


def _update_stats(layout: Layout, log: dict, paragraphs: int, scored: pa.Table) -> None:
    """`*_stats.json` describe the corpus after the update (the report reads them), plus the last update."""
    for stage_dir, name, fields in (
        (layout.ingest, "ingest", {"paragraphs_written": paragraphs}),
        (
            layout.propagate,
            "propagate",
            {"read": scored.num_rows, "written": scored.num_rows, "dead_lettered": 0},
        ),
    ):
        path = FileSystems.join(stage_dir, f"{name}_stats.json")
        stats = read_json(path) if FileSystems.exists(path) else {"stage": name}
        stats.update(fields)
        stats["last_update"] = {"at": log["at"], name: log[name]}
        if name == "propagate":
            stats["rows_by_model"] = log["propagate"]["rows_by_model"]
        write_json(stats, path)


def build_corpus(
    root: str,
    inputs: list[str],
    model_dir: str,
    *,
    configs: StageConfigs | None = None,
    beam_args: list[str] | None = None,
    verify_hashes: bool = True,
) -> None:
    """The corpus stages of `run --config` (ingest, propagate, subsets, report) with a given student
    and their manifests: a baseline for `--update` without annotate/train, and the full run an
    update is compared with."""
    from pipelines.ingest.jats import TEXT_RENDERING
    from pipelines.ingest.pipeline import run_ingest
    from pipelines.propagate import run_propagate
    from pipelines.subsets.pipeline import run_subsets

    configs = configs or StageConfigs({}, {}, {"recipes": "paper"}, {})
    layout = Layout(root)
    run_ingest(list(inputs), layout.ingest, beam_args=beam_args, **configs.ingest)
    ingest_config = {"inputs": list(inputs), **configs.ingest, "text_rendering": TEXT_RENDERING}
    write_manifest(
        layout.ingest, "ingest", ingest_config, list(inputs), hash_files=verify_hashes, run_root=root
    )
    paragraphs = FileSystems.join(layout.ingest, "paragraphs")
    run_propagate([paragraphs], model_dir, layout.propagate, beam_args=beam_args, **configs.propagate)
    write_manifest(
        layout.propagate,
        "propagate",
        configs.propagate,
        [layout.ingest, model_dir],
        hash_files=verify_hashes,
        run_root=root,
    )
    sub = dict(configs.subsets)
    recipes = sub.pop("recipes", "paper")
    run_subsets(
        [FileSystems.join(layout.propagate, "scored")], recipes, layout.subsets, beam_args=beam_args, **sub
    )
    write_manifest(
        layout.subsets,
        "subsets",
        configs.subsets,
        [layout.propagate],
        hash_files=verify_hashes,
        run_root=root,
    )
    from pipelines.app.report import write_report

    write_report(root, **configs.report)


def update_with_config(
    config: str,
    *,
    output: str | None = None,
    inputs: list[str] | None = None,
    model: str | None = None,
    update: bool = True,
    rescore: bool = False,
    quiet: bool = False,
) -> dict:
    """`run --config X --update [--input NEW]... [--model DIR] [--rescore]`: `run_update` with the
    config's stage sections, its progress lines in `<root>/run.log` and the outcome in `_run.json`."""
    from pipelines.app.orchestrate import ConfigError, RunLog, load_config, resolve_path

    cfg = load_config(config, output=output)
    # --update takes --input or else the config's inputs; --rescore alone applies none
    new_inputs = [resolve_path(i, Path.cwd()) for i in inputs] if inputs else (cfg.inputs if update else [])
    root = as_path(cfg.output)
    if read_manifest(str(root / "ingest")) is None:
        raise ConfigError(f"{root} holds no finished run: run `run --config {config}` first, then --update")
    log = RunLog(root, quiet=quiet)
    what = "rescore" if rescore and not new_inputs else "update"
    log.say(f"{what}: {len(new_inputs)} new input(s) on {root}")
    log.record(what, status="running", started_at=time.time())
    changes_log = run_update(
        str(root),
        new_inputs,
        configs=StageConfigs(
            cfg.stages["ingest"], cfg.stages["propagate"], cfg.stages["subsets"], cfg.stages["report"]
        ),
        model_dir=resolve_path(model, Path.cwd()) if model else None,
        rescore=rescore,
        beam_args=cfg.beam_args,
        verify_hashes=cfg.verify_hashes,
        say=log.say,
    )
    arts, prop = changes_log["ingest"]["articles"], changes_log["propagate"]
    log.say(
        f"{what}: done in {changes_log['seconds']:.1f}s: articles "
        + ", ".join(f"{k} {v}" for k, v in arts.items())
        + f"; paragraphs scored {prop['scored']}, carried {prop['carried']}, removed {prop['removed']}"
    )
    log.record(what, status="done", finished_at=time.time(), changes=changes_log)
    return changes_log
