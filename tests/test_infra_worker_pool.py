"""The Flink worker environment for real: Beam's Python SDK worker pool as a separate process.

infra/flink/docker-compose.yml runs the harness image with `--worker_pool` beside the taskmanager, and
launch.sh submits with `--environment_type=EXTERNAL --environment_config=localhost:50000`. Here the
same worker pool (`python -m apache_beam.runners.worker.worker_pool_main`) runs as its own process on
a free port, and the portable runner's embedded job service hands it the work: ingest -> propagate ->
subsets on real articles, with outputs equal to DirectRunner's. The pool (and the SDK workers it
started) are stopped at the end.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTICLES = ["PMC12061466.xml", "PMC13261293.xml", "PMC1481595.xml"]  # research article, case study, 2006 BMC


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rows(path: Path) -> list[dict]:
    table = pq.read_table(sorted(str(p) for p in path.glob("part-*.parquet")))
    return sorted(table.to_pylist(), key=lambda r: r["id"])


@pytest.fixture(scope="module")
def worker_pool(tmp_path_factory):
    """`worker_pool_main` on a free port, in its own process group so its SDK workers stop with it."""
    port = free_port()
    log = tmp_path_factory.mktemp("worker-pool") / "pool.log"  # a file: a full pipe would block the pool
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    pool = subprocess.Popen(
        [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main", f"--service_port={port}"],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    deadline = time.time() + 300  # importing Beam on a loaded machine can take minutes
    try:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert pool.poll() is None, log.read_text()[-2000:]
                assert time.time() < deadline, "worker pool did not listen within 300 s"
                time.sleep(0.2)
        yield f"localhost:{port}", pool
    finally:
        if pool.poll() is None:
            os.killpg(pool.pid, signal.SIGTERM)  # the pool's group: the pool and the SDK workers it forked
        pool.wait(timeout=30)


def test_stages_on_the_external_worker_pool_equal_direct(worker_pool, pmc_sample, teacher_labels, tmp_path):
    from distill.quick_student import build_quick_student
    from pipelines.ingest.pipeline import run_ingest
    from pipelines.propagate import run_propagate
    from pipelines.subsets.pipeline import read_documents, run_subsets

    address, pool = worker_pool
    external = [
        "--runner=PortableRunner",
        "--job_endpoint=embed",
        "--environment_type=EXTERNAL",
        f"--environment_config={address}",
    ]
    student = build_quick_student(teacher_labels, tmp_path / "student", n=64, max_seq_length=128)
    inputs = [str(pmc_sample / a) for a in ARTICLES]
    for name, args in (("direct", None), ("pool", external)):
        run = tmp_path / name
        run_ingest(inputs, str(run), beam_args=args)
        stats = run_propagate([str(run / "paragraphs")], str(student), str(run), beam_args=args)
        run_subsets([str(run / "scored")], "be-base", str(run / "subsets"), beam_args=args)
        assert stats["complete"]
    assert pool.poll() is None  # the pool served every stage and is still up

    direct, pooled = tmp_path / "direct", tmp_path / "pool"
    assert rows(pooled / "paragraphs") == rows(direct / "paragraphs") and rows(direct / "paragraphs")
    for a, b in zip(rows(pooled / "scored"), rows(direct / "scored"), strict=True):
        assert (a["id"], a["document_type"], a["domain"]) == (b["id"], b["document_type"], b["domain"])
        assert a["educational_score"] == pytest.approx(b["educational_score"], abs=1e-4)
    by_pool = read_documents(str(pooled / "subsets"), "BE-Base")
    assert by_pool == read_documents(str(direct / "subsets"), "BE-Base") and len(by_pool) == len(ARTICLES)
