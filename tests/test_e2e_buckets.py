"""`run --config` with every input and output in a bucket: on the S3 server, then on the GCS emulator.

The articles are uploaded to the bucket; the run reads them there and writes every stage's output,
manifest, dead letters, stats, the model, `_run.json`, `run.log` and the report under the bucket. The
scored rows must equal a local run's of the same config. A rerun skips every stage, a truncated object
is caught by the listing's sizes and redone, and a run killed mid-stage resumes to the same outputs.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from apache_beam.io.filesystems import FileSystems
from objectstores import S3_KEY_ID, S3_SECRET

from pipelines.app.orchestrate import STAGE_DIRS, ConfigError, load_config, run
from pipelines.core import uris
from pipelines.core.io import read_table

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "demo"
ARTICLES = ["PMC6092541.xml", "PMC8160441.xml", "PMC10300000.xml", "PMC7890423.xml"]
DATA_STAGES = ("ingest", "annotate", "train", "propagate", "subsets")


def make_config(tmp: Path, inputs: list[str], output: str, name: str = "config.yaml") -> Path:
    """The demo's config on a few articles; every run of this module shares one embedding cache."""
    config = yaml.safe_load((DEMO / "config.yaml").read_text())
    config["inputs"] = inputs
    config["output"] = output
    config["train"]["extra_labels_sample"] = 50
    config["train"]["head_epochs"] = 40
    config["train"]["cache_dir"] = str(_embeddings(tmp))
    path = tmp / name
    path.write_text(yaml.safe_dump(config))
    return path


def _embeddings(tmp: Path) -> Path:
    return tmp.parent / "embedding-cache"  # beside every test's tmp dir: shared by the module's runs


def scored_rows(root: str) -> list[dict]:
    """Scored rows by id; `source` names the input as given (a local folder, a bucket URI), so not it."""
    table = read_table([uris.join(root, "propagate", "scored")])
    return table.drop_columns(["source"]).sort_by("id").to_pylist()


def run_state(root: str) -> dict:
    return json.loads(uris.read_bytes(uris.join(root, "_run.json")))["stages"]


def upload_articles(bucket: str) -> str:
    for name in ARTICLES:
        uris.write_bytes(f"{bucket}/articles/{name}", (DEMO / "articles" / name).read_bytes())
    return f"{bucket}/articles"


@pytest.fixture(scope="module")
def local_run(tmp_path_factory) -> str:
    tmp = tmp_path_factory.mktemp("local")
    (tmp / "articles").mkdir()
    for name in ARTICLES:  # the same layout as in the buckets: one folder of articles
        (tmp / "articles" / name).write_bytes((DEMO / "articles" / name).read_bytes())
    cfg = load_config(make_config(tmp, [str(tmp / "articles")], str(tmp / "out")))
    run(cfg, quiet=True)
    return cfg.output


@pytest.fixture(scope="module")
def s3_run(object_stores, tmp_path_factory) -> tuple[str, Path]:
    tmp = tmp_path_factory.mktemp("s3")
    bucket = object_stores.new_bucket("s3")
    config = make_config(tmp, [upload_articles(bucket)], f"{bucket}/runs/demo")
    run(load_config(config), quiet=True)
    return f"{bucket}/runs/demo", config


def test_s3_run_writes_everything_to_the_bucket_and_scores_like_the_local_run(s3_run, local_run):
    root, _ = s3_run
    stages = run_state(root)
    assert {s: stages[s]["status"] for s in DATA_STAGES} == {s: "done" for s in DATA_STAGES}
    for stage in DATA_STAGES:
        manifest = json.loads(uris.read_bytes(uris.join(root, STAGE_DIRS[stage], "_manifest.json")))
        listed = uris.list_under(uris.join(root, STAGE_DIRS[stage]))
        prefix = uris.join(root, STAGE_DIRS[stage]) + "/"
        assert {k.removeprefix(prefix): v for k, v in listed.items() if not k.endswith("_manifest.json")} == {
            k: v["size"] for k, v in manifest["files"].items()
        }
    assert FileSystems.exists(uris.join(root, "model", "config.json"))
    assert uris.read_bytes(uris.join(root, "report.html")).startswith(b"<!DOCTYPE html>")
    assert "subsets: done" in uris.read_bytes(uris.join(root, "run.log")).decode()
    assert scored_rows(root) == scored_rows(local_run)
    subsets = json.loads(uris.read_bytes(uris.join(root, "subsets", "subsets_stats.json")))["subsets"]
    local = json.loads((Path(local_run) / "subsets" / "subsets_stats.json").read_text())["subsets"]
    assert {k: v["documents"] for k, v in subsets.items()} == {k: v["documents"] for k, v in local.items()}
    assert not list(Path.cwd().glob("s3:*"))  # no bucket path was ever taken for a local directory


def test_s3_rerun_skips_every_stage_and_a_truncated_object_is_redone(s3_run):
    root, config = s3_run
    scored = uris.join(root, "propagate", "scored")
    before = scored_rows(root)
    run(load_config(config), quiet=True)
    assert all(run_state(root)[s]["status"] == "skipped" for s in DATA_STAGES)

    victim = sorted(uris.list_under(scored))[0]
    uris.write_bytes(victim, uris.read_bytes(victim)[:200])  # a half-written object
    run(load_config(config), quiet=True)
    stages = run_state(root)
    assert stages["propagate"]["status"] == "done"
    assert all(stages[s]["status"] == "skipped" for s in ("ingest", "annotate", "train"))
    assert (
        f"propagate: running (size of scored/{victim.rsplit('/', 1)[1]} changed"
        in uris.read_bytes(uris.join(root, "run.log")).decode()
    )
    assert scored_rows(root) == before


def test_propagate_stages_the_bucket_model_once_into_the_cache(s3_run, tmp_path, monkeypatch):
    from pipelines.core import staging
    from pipelines.propagate import run_propagate

    root, _ = s3_run
    monkeypatch.setenv("BIOMED_ENRICH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(staging, "_staged", {})  # a fresh worker process
    model = uris.join(root, "model")
    out = uris.join(root, "rescored")
    stats = run_propagate([uris.join(root, "ingest", "paragraphs")], model, out, progress=False)
    manifest = json.loads(uris.read_bytes(uris.join(model, "_manifest.json")))
    cached = list((tmp_path / "cache" / "models").iterdir())
    assert [p.name for p in cached] == [manifest["outputs_hash"]]
    assert stats["model_id"].startswith("model@") and stats["written"] == stats["read"]
    rescored = read_table([uris.join(out, "scored")]).drop_columns(["source"]).sort_by("id").to_pylist()
    assert rescored == scored_rows(root)  # the same weights: model_id (name@sha of weights) included


def test_gcs_run_scores_like_the_local_run(object_stores, local_run, tmp_path):
    bucket = object_stores.new_bucket("gs")
    root = f"{bucket}/run"
    run(load_config(make_config(tmp_path, [upload_articles(bucket)], root)), quiet=True)
    stages = run_state(root)
    assert {s: stages[s]["status"] for s in DATA_STAGES} == {s: "done" for s in DATA_STAGES}
    assert scored_rows(root) == scored_rows(local_run)
    assert FileSystems.exists(uris.join(root, "report.html"))
    run(load_config(tmp_path / "config.yaml"), quiet=True)
    assert all(run_state(root)[s]["status"] == "skipped" for s in DATA_STAGES)


@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_a_missing_bucket_is_one_line_and_exit_code_2(object_stores, tmp_path, scheme):
    from typer.testing import CliRunner

    from pipelines.app.cli import app

    config = make_config(
        tmp_path, [str(DEMO / "articles" / ARTICLES[0])], f"{scheme}://h19-no-such-bucket/out"
    )
    with pytest.raises(ConfigError, match=f"bucket {scheme}://h19-no-such-bucket does not exist"):
        load_config(config)
    result = CliRunner().invoke(app, ["run", "--config", str(config)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: bucket"), result.stderr


def test_denied_access_names_the_permission_and_leaks_no_credential(object_stores, tmp_path):
    """moto with IAM enforcement on: a user that may read but not write the output bucket."""
    import boto3
    import requests

    bucket = object_stores.new_bucket("s3")
    iam = boto3.client("iam", endpoint_url=object_stores.s3_endpoint)  # moto serves IAM on the same port
    iam.create_user(UserName="reader")
    policy = {
        "Version": "2012-10-17",
        # moto checks HEAD bucket as "s3:HeadBucket" (AWS: s3:ListBucket), so that is allowed too
        "Statement": [
            {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:HeadBucket", "s3:GetObject"], "Resource": "*"}
        ],
    }
    iam.put_user_policy(UserName="reader", PolicyName="read", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="reader")["AccessKey"]
    config = make_config(tmp_path, [str(DEMO / "articles" / ARTICLES[0])], f"{bucket}/out")
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
    }
    reset = f"{object_stores.s3_endpoint}/moto-api/reset-auth"
    requests.post(reset, data=b"0", timeout=10)  # from now on the server checks every request
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pipelines.app.cli", "run", "-c", str(config)],
            capture_output=True,
            text=True,
            cwd=REPO,
            env={**env, "PYTHONPATH": str(REPO)},
            timeout=600,
        )
    finally:
        requests.post(reset, data=b"inf", timeout=10)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith(f"error: access denied to {bucket}"), proc.stderr
    assert "s3:PutObject" in lines[-1]
    for secret in (key["SecretAccessKey"], S3_SECRET):
        assert secret not in proc.stderr + proc.stdout
    assert not uris.list_under(f"{bucket}/out")  # nothing written, no manifest claims anything


def test_a_run_killed_mid_stage_on_s3_resumes_with_nothing_lost_or_duplicated(
    object_stores, s3_run, tmp_path
):
    """A real `run` process on the bucket gets SIGKILL while propagate writes; the rerun finishes."""
    source_root, config = s3_run
    root = uris.join(object_stores.new_bucket("s3"), "killed")
    for stage in ("ingest", "annotate", "train"):  # finished stages, as a killed run would leave them
        src = uris.join(source_root, STAGE_DIRS[stage])
        for path in uris.list_under(src):
            uris.write_bytes(root + path[len(source_root) :], uris.read_bytes(path))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.app.cli", "run", "-c", str(config), "-o", root],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    err, deadline = b"", time.time() + 900
    while proc.poll() is None and time.time() < deadline:
        if select.select([proc.stderr], [], [], 0.5)[0]:
            err += os.read(proc.stderr.fileno(), 4096)
        if b"propagate:" in err.partition(b"propagate: running")[2]:  # its progress bar: scoring
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=120)
    assert proc.returncode == -signal.SIGKILL, err.decode()
    assert not FileSystems.exists(uris.join(root, "propagate", "_manifest.json"))

    run(load_config(config, output=root), quiet=True)
    stages = run_state(root)
    assert [stages[s]["status"] for s in DATA_STAGES] == ["skipped"] * 3 + ["done"] * 2
    rows = scored_rows(root)
    assert len({r["id"] for r in rows}) == len(rows)  # nothing duplicated
    assert rows == scored_rows(source_root)  # nothing lost
    logs = uris.read_bytes(uris.join(root, "run.log")).decode() + err.decode()
    assert S3_SECRET not in logs and S3_KEY_ID not in logs
    for path in uris.list_under(root):
        if path.endswith((".json", ".log", ".jsonl", ".html")):
            assert S3_SECRET.encode() not in uris.read_bytes(path), path
