"""Propagate: score every paragraph with the distilled student, on Beam RunInference.

Reads any Parquet with `id` and `text` (other columns pass through; PARAGRAPHS columns are conformed
to the SCORED schema) and writes `<output>/scored/part-*.parquet` with the released label columns,
`<output>/dead_letter/propagate-*.jsonl` and `<output>/propagate_stats.json`.
Every input row is either written or dead-lettered with a reason: `read = written + dead_lettered`.
The same transform runs on DirectRunner (progress bar), Dataflow GPU workers and Flink (counters).
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import PredictionResult, RunInference

from distill.beam_handler import METRICS_NAMESPACE, StudentModelHandler
from distill.inference import InferenceOptions, model_id, with_options
from pipelines.core.dead_letters import WriteDeadLetters, clear_dead_letters, count_dead_letters, dead_letter
from pipelines.core.io import (
    ReadDataset,
    WriteDataset,
    count_rows,
    dataset_dir,
    dataset_schema,
    parquet_files,
    write_json,
)
from pipelines.core.options import pipeline_options
from pipelines.core.schemas import PARAGRAPHS, SCORE_COLUMNS, SCORED
from pipelines.core.staging import local_model, model_name

STAGE = "propagate"
_LOAD_METRIC = "load_model_latency_milli_secs"  # RunInference's distribution, one entry per model load


# ----------------------------------------------------------------------------------- pure parts


def input_schema(files: list[str]) -> pa.Schema:
    """The unified schema of the input files; they must have `id` and `text`."""
    schema = dataset_schema(files)
    missing = [c for c in ("id", "text") if c not in schema.names]
    if missing:
        raise ValueError(f"propagate needs columns {missing} in its input Parquet (found {schema.names})")
    return schema


def scored_schema(schema: pa.Schema) -> pa.Schema:
    """Output schema: SCORED fields the input has (PARAGRAPHS ones) + score columns, then the rest as-is.

    Input that already carries score columns (a re-scoring) has them replaced.
    """
    known = {f.name for f in PARAGRAPHS}
    fields = [SCORED.field(name) for name in SCORED.names if name in schema.names and name in known]
    fields += list(SCORE_COLUMNS)
    fields += [f for f in schema if f.name not in SCORED.names]
    return pa.schema(fields, metadata=SCORED.metadata)


def check_row(row: dict) -> Iterator[Any]:
    """Rows without a usable id or text go to the dead letters; everything else is scored."""
    rid, text = row.get("id"), row.get("text")
    if not isinstance(rid, str) or not rid:
        yield beam.pvalue.TaggedOutput(
            "dead", dead_letter(STAGE, repr(rid)[:200], "missing_id", repr(row)[:500])
        )
    elif text is not None and not isinstance(text, str):
        yield beam.pvalue.TaggedOutput(
            "dead", dead_letter(STAGE, rid, "text_not_string", type(text).__name__)
        )
    elif text is None:
        yield beam.pvalue.TaggedOutput("dead", dead_letter(STAGE, rid, "missing_text"))
    else:
        yield row


def output_row(result: PredictionResult, names: list[str], model: str) -> dict:
    """The input row's columns (missing ones null) with the prediction's label columns and model id."""
    row = {name: result.example.get(name) for name in names}
    row.update(result.inference)
    row["model_id"] = model
    return row


def failed_batch_letters(failure: tuple) -> Iterator[dict]:
    """One dead letter per row of a batch whose inference raised."""
    batch, (exc_type, exc_repr, _trace) = failure
    for row in batch:
        yield dead_letter(STAGE, str(row.get("id")), f"inference_failed:{exc_type.__name__}", exc_repr)


# -------------------------------------------------------------------------------------- pipeline


def build_pipeline(
    pipeline: beam.Pipeline,
    files: list[str],
    handler: StudentModelHandler,
    output: str,
    schema: pa.Schema,
    model: str,
) -> None:
    checked = (
        pipeline | ReadDataset(files) | "Check" >> beam.FlatMap(check_row).with_outputs("dead", main="ok")
    )
    scored, failed = checked.ok | "Score" >> RunInference(handler).with_exception_handling()
    _ = (
        scored
        | "ToRow" >> beam.Map(output_row, list(schema.names), model)
        | WriteDataset(output, "scored", schema)
    )
    failures = [failed.failed_inferences | "FailedBatches" >> beam.FlatMap(failed_batch_letters)]
    for i, bad in enumerate(list(failed.failed_preprocessing) + list(failed.failed_postprocessing)):
        failures.append(
            bad | f"FailedRow{i}" >> beam.Map(lambda f: dead_letter(STAGE, "?", "row_failed", f[1][1]))
        )
    _ = (checked.dead, *failures) | "AllDead" >> beam.Flatten() | WriteDeadLetters(output, STAGE)


def _clear_previous(output: str) -> None:
    """A rerun replaces the previous outputs of this stage (so counts and shards never mix runs)."""
    pattern = FileSystems.join(dataset_dir(output, "scored"), "part-*")
    stale = [m.path for r in FileSystems.match([pattern]) for m in r.metadata_list]
    if stale:
        FileSystems.delete(stale)
    clear_dead_letters(output, STAGE)


def run_propagate(
    inputs: list[str],
    model_dir: str,
    output: str,
    *,
    beam_args: list[str] | None = None,
    options: InferenceOptions | None = None,
    batch_tokens: int | None = None,
    precision: str | None = None,
    quantize: bool | None = None,
    compile: bool | None = None,
    device: str | None = None,
    large_model: bool | None = None,
    progress: bool | None = None,
    **kw: Any,
) -> dict:
    """Score every row of `inputs` with the student at `model_dir`; returns (and writes) the stats.

    `large_model` shares one model per machine across worker processes (default: on when CUDA is
    used). `progress` shows a tqdm bar (default: on with the DirectRunner).
    """
    started = time.time()
    options = with_options(
        options or InferenceOptions(),
        batch_tokens=batch_tokens,
        precision=precision,
        quantize=quantize,
        compile=compile,
        device=device,
    )
    files = parquet_files(inputs)
    schema = scored_schema(input_schema(files))
    total = count_rows(files)
    model = model_id(local_model(model_dir))
    if local_model(model_dir) != model_dir:  # staged from a bucket: named after the URI, not the cache
        model = f"{model_name(model_dir)}@{model.split('@', 1)[1]}"
    beam_options = pipeline_options(beam_args)
    runner = str(beam_options.get_all_options().get("runner") or "DirectRunner")
    local = runner in ("DirectRunner", "direct", "InteractiveRunner")
    if large_model is None:
        large_model = options.device.startswith("cuda")
    handler = StudentModelHandler(
        model_dir,
        options,
        large_model=large_model,
        progress_total=total if (local if progress is None else progress) else None,
        **kw,
    )
    _clear_previous(output)
    with beam.Pipeline(options=beam_options) as pipeline:
        build_pipeline(pipeline, files, handler, output, schema, model)
    result = pipeline.result if hasattr(pipeline, "result") else None
    written = count_rows(parquet_files([dataset_dir(output, "scored")])) if total else 0
    dead = sum(count_dead_letters(output, STAGE).values())
    seconds = time.time() - started
    counters = _counters(result)
    precision = {"requested": options.precision, "used": counters.pop("precision", [])}
    logging.getLogger(__name__).warning(
        "propagate precision: %s (requested %s)", "; ".join(precision["used"]) or "none", options.precision
    )
    stats = {
        "stage": STAGE,
        "inputs": files,
        "model_dir": model_dir,
        "model_id": model,
        "read": total,
        "written": written,
        "dead_lettered": dead,
        "complete": written + dead == total,
        "seconds": round(seconds, 2),
        "paragraphs_per_s": round(written / seconds, 2) if seconds else None,
        "options": {**options.__dict__, "large_model": large_model},
        "precision": precision,
        "runner": runner,
        "counters": counters,
    }
    write_json(stats, FileSystems.join(output, f"{STAGE}_stats.json"))
    if not stats["complete"]:
        raise RuntimeError(f"propagate lost rows: read {total}, written {written}, dead-lettered {dead}")
    return stats


def _counters(result) -> dict:
    """Our Beam counters and string sets (sorted lists), where the runner reports them."""
    if result is None:
        return {}
    try:
        metrics = result.metrics().query(beam.metrics.MetricsFilter().with_namespace(METRICS_NAMESPACE))
    except Exception:  # some runners do not support metric queries
        return {}
    found = {c.key.metric.name: c.committed for c in metrics["counters"]}
    for s in metrics.get("string_sets", []):
        found[s.key.metric.name] = sorted(set(found.get(s.key.metric.name, [])) | set(s.committed or ()))
    loads = [d.committed.count for d in metrics["distributions"] if d.key.metric.name == _LOAD_METRIC]
    if loads and all(n is not None for n in loads):  # how often RunInference loaded the student
        found["model_loads"] = sum(loads)
    return found


def main(argv: list[str] | None = None) -> dict:
    """`python -m pipelines.propagate INPUTS... --model DIR --output DIR [Beam flags]`: the stage alone."""
    parser = argparse.ArgumentParser(prog="python -m pipelines.propagate", description=__doc__.split("\n")[0])
    parser.add_argument("inputs", nargs="+", help="Paragraphs: Parquet files, directories or globs.")
    parser.add_argument(
        "--model", "-m", dest="model_dir", metavar="MODEL", required=True, help="Student model directory."
    )
    parser.add_argument("--output", "-o", required=True, help="Output root: scored/, dead_letter/, stats.")
    parser.add_argument("--batch-tokens", type=int, help="Padded tokens per forward pass.")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), help="Inference precision.")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N.")
    known, beam_args = parser.parse_known_args(argv)
    return run_propagate(**vars(known), beam_args=beam_args)


if __name__ == "__main__":
    main()
