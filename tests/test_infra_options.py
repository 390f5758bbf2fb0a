"""Standard Beam pipeline options reach Beam from every pipeline command and from the Flex entry point."""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import (
    DebugOptions,
    FlinkRunnerOptions,
    GoogleCloudOptions,
    PortableOptions,
    StandardOptions,
    WorkerOptions,
)
from typer.testing import CliRunner

from pipelines.app.cli import app
from pipelines.core.options import pipeline_options
from pipelines.core.schemas import PARAGRAPHS, conform

ROOT = Path(__file__).resolve().parents[1]
PIPELINE_COMMANDS = ["ingest", "annotate", "propagate", "subsets"]


def test_pipeline_options_take_standard_dataflow_and_flink_flags():
    options = pipeline_options(
        [
            "--runner=DataflowRunner",
            "--project=demo-project",
            "--region=europe-west4",
            "--temp_location=gs://demo-bucket/tmp",
            "--sdk_container_image=europe-west4-docker.pkg.dev/demo-project/biomed/biomed-enrich:1",
            "--dataflow_service_options=worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver",
            "--experiments=use_runner_v2,no_use_multiple_sdk_containers",
            "--number_of_worker_harness_threads=4",
            "--flink_master=localhost:8081",
            "--environment_type=EXTERNAL",
            "--environment_config=localhost:50000",
        ]
    )
    assert options.view_as(StandardOptions).runner == "DataflowRunner"
    gcp = options.view_as(GoogleCloudOptions)
    assert (gcp.project, gcp.region, gcp.temp_location) == (
        "demo-project",
        "europe-west4",
        "gs://demo-bucket/tmp",
    )
    assert gcp.dataflow_service_options == ["worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver"]
    worker = options.view_as(WorkerOptions)
    assert worker.sdk_container_image.endswith("/biomed-enrich:1")
    debug = options.view_as(DebugOptions)
    assert debug.number_of_worker_harness_threads == 4
    assert debug.lookup_experiment("no_use_multiple_sdk_containers")
    assert options.view_as(FlinkRunnerOptions).flink_master == "localhost:8081"
    portable = options.view_as(PortableOptions)
    assert (portable.environment_type, portable.environment_config) == ("EXTERNAL", "localhost:50000")


def test_pipeline_options_default_to_the_direct_runner():
    assert pipeline_options([]).view_as(StandardOptions).runner == "DirectRunner"
    assert pipeline_options(["--runner=PortableRunner"]).view_as(StandardOptions).runner == "PortableRunner"


@pytest.mark.parametrize("command", PIPELINE_COMMANDS)
def test_pipeline_command_help_mentions_beam_options(command):
    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "Beam" in result.output and "--flags" in result.output


@pytest.fixture(scope="module")
def paragraphs_dataset(teacher_labels: Path, tmp_path_factory) -> Path:
    """A small real paragraphs dataset (teacher-labelled paragraphs in the PARAGRAPHS schema)."""
    labels = pq.read_table(teacher_labels).slice(0, 40)
    table = pa.table(
        {
            "id": labels["id"],
            "article_id": labels["pmcid"],
            "paragraph_index": pa.array(range(labels.num_rows), pa.int32()),
            "path": labels["path"],
            "section_title": labels["section_title"],
            "text": labels["text"],
            "language": labels["language"],
        }
    )
    out = tmp_path_factory.mktemp("paragraphs") / "paragraphs"
    out.mkdir()
    pq.write_table(conform(table, PARAGRAPHS), out / "part-00000-of-00001.parquet")
    return out


@pytest.mark.parametrize("command", PIPELINE_COMMANDS)
def test_pipeline_command_hands_unknown_flags_to_beam(command, pmc_sample, paragraphs_dataset, tmp_path):
    """A bogus `--runner` must reach Beam (and be refused there), not be taken for an input."""
    inputs = {
        "ingest": [str(pmc_sample / "PMC12061466.xml")],
        "annotate": [str(paragraphs_dataset), "--sample", "5", "--beam"],
        "propagate": [str(paragraphs_dataset), "--model", str(tmp_path / "model")],
        "subsets": [str(paragraphs_dataset), "--recipe", "be-base"],
    }[command]
    (tmp_path / "model").mkdir()
    args = [command, *inputs, "--output", str(tmp_path / "out"), "--runner=NoSuchRunner", "--project=p"]
    result = CliRunner().invoke(app, args)
    message = result.output + (str(result.exception) if result.exception else "")
    assert result.exit_code != 0, message
    assert "Unexpected pipeline runner: NoSuchRunner" in " ".join(message.split())


def test_flex_entry_point_splits_stage_parameters_from_beam_options(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "infra" / "dataflow"))
    import flex_main

    stage, kwargs, beam_args = flex_main.parse(
        [
            "--stage=ingest",
            "--inputs=gs://b/pmc/a.tar.gz, gs://b/pmc/b.tar.gz",
            "--output=gs://b/run",
            "--min_tokens=32",
            "--runner=DataflowRunner",
            "--project=p",
            "--dataflow_service_options=worker_accelerator=type:nvidia-tesla-t4;count:1;install-nvidia-driver",
        ]
    )
    assert stage == "ingest"
    assert kwargs == {
        "inputs": ["gs://b/pmc/a.tar.gz", "gs://b/pmc/b.tar.gz"],
        "output": "gs://b/run",
        "min_tokens": 32,
    }
    assert beam_args == [
        "--runner=DataflowRunner",
        "--project=p",
        "--dataflow_service_options=worker_accelerator=type:nvidia-tesla-t4;count:1;install-nvidia-driver",
    ]
    assert flex_main.stage_function(stage).__name__ == "run_ingest"
    with pytest.raises(SystemExit):
        flex_main.parse(["--stage=propagate", "--inputs=x", "--output=y"])  # model_dir is required
    with pytest.raises(SystemExit):
        flex_main.parse(["--stage=train", "--output=y"])  # not a Dataflow stage
    for name in flex_main.STAGES:
        assert callable(flex_main.stage_function(name))
    assert "flex_main" in sys.modules
