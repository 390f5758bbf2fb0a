"""Scale-out proof on one machine: the portable path Flink uses, and Dataflow job descriptions offline.

1. ingest -> propagate -> subsets on three real PMC articles through Beam's PortableRunner with an
   embedded job service and LOOPBACK workers (what infra/flink/ runs against a Flink job server), and
   propagate's scores there equal the DirectRunner's.
2. Each stage's Dataflow job, built from the options `infra/dataflow/launch.sh` submits with, from
   the same inputs, with every socket refused: worker image, GPU service option, experiments,
   machine types and the stage's transforms are checked in the job description.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.core.schemas import DOCUMENT_TYPE_LABELS, DOMAIN_LABELS, PARAGRAPHS

ROOT = Path(__file__).resolve().parents[1]
ARTICLES = ["PMC12061466.xml", "PMC13261293.xml", "PMC1481595.xml"]  # research article, case study, 2006 BMC
PORTABLE = ["--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=LOOPBACK"]
IMAGE = "us-central1-docker.pkg.dev/demo-project/biomed/biomed-enrich:test"
NO_NETWORK = """
import socket

def _refuse(*args, **kwargs):
    raise OSError("network disabled in this test")

socket.socket.connect = _refuse
socket.socket.connect_ex = _refuse
socket.getaddrinfo = _refuse
socket.create_connection = _refuse
"""


def _refuse(*args, **kwargs):
    raise OSError("network disabled in this test")


def table(path: Path):
    return pq.read_table(sorted(str(p) for p in path.glob("part-*.parquet"))).to_pylist()


@pytest.fixture(scope="module")
def portable(pmc_sample: Path, teacher_labels: Path, tmp_path_factory) -> dict:
    from distill.quick_student import build_quick_student
    from pipelines.ingest.pipeline import run_ingest
    from pipelines.propagate import run_propagate
    from pipelines.subsets.pipeline import run_subsets

    root = tmp_path_factory.mktemp("portable")
    student = build_quick_student(teacher_labels, root / "student", n=64, max_seq_length=128)
    inputs = [str(pmc_sample / a) for a in ARTICLES]
    run = root / "run"
    return {
        "root": root,
        "student": student,
        "inputs": inputs,
        "ingest": run_ingest(inputs, str(run), beam_args=PORTABLE),
        "propagate": run_propagate(
            [str(run / "paragraphs")], str(student), str(run), beam_args=PORTABLE, precision="fp32"
        ),
        "subsets": run_subsets([str(run / "scored")], "be-base", str(root / "subsets"), beam_args=PORTABLE),
    }


def manifest_pmcids(pmc_sample: Path) -> set[str]:
    with open(pmc_sample / "MANIFEST.tsv", newline="") as f:
        return {row["pmcid"] for row in csv.DictReader(f, delimiter="\t") if row["file"] in ARTICLES}


def test_full_pipeline_runs_on_the_portable_runner(portable, pmc_sample):
    run = portable["root"] / "run"
    ingest, propagate, subsets = portable["ingest"], portable["propagate"], portable["subsets"]

    paragraphs = table(run / "paragraphs")
    assert ingest["articles_read"] == 3 and ingest["articles_dead_lettered"] == 0
    assert len(paragraphs) == ingest["paragraphs_written"] > 0
    assert {p["article_id"] for p in paragraphs} == manifest_pmcids(pmc_sample)
    assert set(PARAGRAPHS.names) <= set(pq.read_schema(next((run / "paragraphs").glob("part-*"))).names)

    scored = table(run / "scored")
    assert propagate["runner"] == "PortableRunner" and propagate["complete"]
    assert propagate["read"] == propagate["written"] == len(paragraphs)
    assert sorted(s["id"] for s in scored) == sorted(p["id"] for p in paragraphs)
    assert {s["domain"] for s in scored} <= set(DOMAIN_LABELS)
    assert {s["document_type"] for s in scored} <= set(DOCUMENT_TYPE_LABELS)
    assert all(1.0 <= s["educational_score"] <= 5.0 for s in scored)
    assert propagate["counters"].get("paragraphs_scored") == len(paragraphs)  # Beam metrics came back

    base = subsets["subsets"]["BE-Base"]
    assert base["articles_read"] == 3 and base["paragraphs_read"] == len(paragraphs)
    from pipelines.subsets.pipeline import read_documents

    documents = read_documents(str(portable["root"] / "subsets"), "BE-Base")
    assert {d["article_id"] for d in documents} == manifest_pmcids(pmc_sample)
    texts = {p["article_id"]: [] for p in paragraphs}
    for p in sorted(paragraphs, key=lambda p: p["paragraph_index"]):
        texts[p["article_id"]].append(p["text"])
    for d in documents:  # every paragraph of the article, in body order
        positions = [d["text"].find(t) for t in texts[d["article_id"]]]
        assert -1 not in positions and positions == sorted(positions)


def test_portable_scores_equal_direct_runner_scores(portable, tmp_path):
    from pipelines.propagate import run_propagate

    run = portable["root"] / "run"
    direct = run_propagate(
        [str(run / "paragraphs")], str(portable["student"]), str(tmp_path), precision="fp32"
    )
    assert direct["runner"] == "DirectRunner"
    by_id = {r["id"]: r for r in table(tmp_path / "scored")}
    for row in table(run / "scored"):
        other = by_id[row["id"]]
        assert (row["document_type"], row["domain"]) == (other["document_type"], other["domain"])
        assert row["educational_score"] == pytest.approx(other["educational_score"], abs=1e-4)


def launch_env(tmp_path: Path, **extra: str) -> dict:
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "PROJECT": "demo-project",
        "REGION": "us-central1",
        "BUCKET": "demo-bucket",
        "IMAGE": IMAGE,
        **extra,
    }
    env.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
    return env


def launch(stage: str, params: list[str], env: dict) -> subprocess.CompletedProcess:
    script = ROOT / "infra" / "dataflow" / "launch.sh"
    result = subprocess.run(["bash", str(script), stage, *params], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def describe_in_process(stage: str, params: list[str], tmp_path: Path, monkeypatch, gpu: str = "t4") -> dict:
    """The flags launch.sh submits with (MODE=print), described by describe_job with sockets refused."""
    flags = launch(stage, params, launch_env(tmp_path, MODE="print", GPU=gpu)).stdout.splitlines()
    assert "--runner=DataflowRunner" in flags
    job_file = tmp_path / f"job-{stage}.json"
    monkeypatch.syspath_prepend(str(ROOT / "infra" / "dataflow"))
    # Only monkeypatch (undone after the test): executing NO_NETWORK here would patch the socket module
    # for the rest of the session and break every later test that opens a connection.
    for name in ("connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, name, _refuse)
    for name in ("getaddrinfo", "create_connection"):
        monkeypatch.setattr(socket, name, _refuse)
    import describe_job

    assert describe_job.main([*flags, f"--dataflow_job_file={job_file}"]) == 0
    return json.loads(job_file.read_text())


def check_common(job: dict, stage: str) -> dict:
    assert job["name"].startswith(f"biomed-{stage}-") and job["type"] == "JOB_TYPE_BATCH"
    env = job["environment"]
    for pool in env["workerPools"]:
        assert pool["workerHarnessContainerImage"] == IMAGE
        assert {i["containerImage"] for i in pool["sdkHarnessContainerImages"]} == {IMAGE}
    assert {e["urn"] for e in job["pipelineEnvironments"].values()} == {"beam:env:docker:v1"}
    assert {e["image"] for e in job["pipelineEnvironments"].values()} == {IMAGE}
    assert "use_runner_v2" in env["experiments"]
    options = env["sdkPipelineOptions"]["options"]
    assert options["project"] == "demo-project" and options["region"] == "us-central1"
    assert options["temp_location"].startswith("gs://demo-bucket/tmp/")
    assert options["sdk_location"] == "container"
    return options


def test_dataflow_job_description_ingest(pmc_sample, tmp_path, monkeypatch):
    params = [f"inputs={pmc_sample / ARTICLES[0]}", f"output={tmp_path / 'out'}"]
    job = describe_in_process("ingest", params, tmp_path, monkeypatch)
    options = check_common(job, "ingest")
    assert options["machine_type"] == "n2-standard-4"
    assert "serviceOptions" not in job["environment"]  # no GPU for ingest
    assert {"Write paragraphs", "Write ingest dead letters"} <= set(job["pipelineTransforms"])
    assert not (tmp_path / "out" / "paragraphs").exists()  # described, not run


def test_dataflow_job_description_propagate_on_gpu_via_launch_script(portable, tmp_path):
    """The whole MODE=describe path of launch.sh, in its own process with sockets refused there too."""
    run = portable["root"] / "run"
    params = [
        f"inputs={run / 'paragraphs'}",
        f"model_dir={portable['student']}",
        f"output={tmp_path / 'out'}",
    ]
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(NO_NETWORK)
    job_file = tmp_path / "job-propagate.json"
    env = launch_env(tmp_path, MODE="describe", GPU="l4", JOB_FILE=str(job_file))
    env["PYTHONPATH"] = os.pathsep.join([str(guard), str(ROOT)])
    assert "not submitted" in launch("propagate", params, env).stdout
    job = json.loads(job_file.read_text())
    options = check_common(job, "propagate")
    env = job["environment"]
    assert env["serviceOptions"] == ["worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver"]
    assert options["machine_type"] == "g2-standard-8"
    assert "no_use_multiple_sdk_containers" in env["experiments"]
    assert options["number_of_worker_harness_threads"] == 4
    assert {"Write scored", "Write propagate dead letters"} <= set(job["pipelineTransforms"])
    assert any(t.endswith("BeamML_RunInference") for t in job["pipelineTransforms"])


def test_dataflow_job_description_subsets(portable, tmp_path, monkeypatch):
    run = portable["root"] / "run"
    params = [f"scored={run / 'scored'}", "recipe=be-base", f"output={tmp_path / 'out'}"]
    job = describe_in_process("subsets", params, tmp_path, monkeypatch)
    options = check_common(job, "subsets")
    assert options["machine_type"] == "n2-standard-4"
    assert {"Subset BE-Base", "Write subsets dead letters", "Group articles"} <= set(
        job["pipelineTransforms"]
    )
