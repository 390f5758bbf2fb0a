"""A Dask worker process killed while propagate scores: the run finishes, no row lost or duplicated.

The test starts its own LocalCluster (2 worker processes under nannies), runs propagate on real
teacher-labelled paragraphs in a thread, waits until a RunInference task is executing on a worker,
SIGKILLs that worker's process, and lets the scheduler re-run the lost tasks on the surviving worker
(and on the nanny's replacement). The scored ids are then unique and exactly the input's, and the
scores equal a DirectRunner run's.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

distributed = pytest.importorskip("dask.distributed", reason="the Dask runner needs biomed-enrich[dask]")
psutil = pytest.importorskip("psutil")

N_ROWS = 80


def scored(path: Path) -> list[dict]:
    table = pq.read_table(sorted(str(p) for p in (path / "scored").glob("part-*.parquet")))
    return table.select(["id", "document_type", "domain", "educational_score"]).to_pylist()


def wait_for_scoring(client, runner: threading.Thread, timeout: float = 300) -> str:
    """The address of a worker that is executing a RunInference task right now."""
    deadline = time.time() + timeout
    while time.time() < deadline and runner.is_alive():
        for worker, keys in client.processing().items():
            if any("RunInference" in str(k) for k in keys):
                # processing = assigned; wait until the worker reports it executing
                executing = client.run(
                    lambda dask_worker: [str(k) for k in dask_worker.state.executing], workers=[worker]
                )
                if any("RunInference" in k for k in executing.get(worker, [])):
                    return worker
        time.sleep(0.2)
    raise AssertionError("no RunInference task started on the cluster")


def test_killing_a_worker_during_propagate_loses_and_duplicates_nothing(teacher_labels, tmp_path):
    from annotate_helpers import paragraph_rows, write_paragraphs

    from distill.quick_student import build_quick_student
    from pipelines.propagate import run_propagate

    paragraphs = write_paragraphs(paragraph_rows(teacher_labels, limit=N_ROWS), tmp_path / "in", shards=2)
    student = build_quick_student(teacher_labels, tmp_path / "student", n=64, max_seq_length=64)
    direct = run_propagate([str(paragraphs)], str(student), str(tmp_path / "direct"))

    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        args = ["--runner=dask", f"--dask_address={cluster.scheduler_address}", "--dask_npartitions=8"]
        outcome: dict = {}

        def run():
            try:
                outcome["stats"] = run_propagate(
                    [str(paragraphs)], str(student), str(tmp_path / "dask"), beam_args=args
                )
            except BaseException as e:  # noqa: BLE001 - reported by the assertion below
                outcome["error"] = e

        runner = threading.Thread(target=run)
        runner.start()
        victim = wait_for_scoring(client, runner)
        pid = client.run(os.getpid, workers=[victim])[victim]
        os.kill(pid, signal.SIGKILL)
        runner.join(timeout=600)
        assert not runner.is_alive(), "propagate did not finish after the worker was killed"
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        assert victim not in client.scheduler_info()["workers"]  # the scheduler lost that worker
    assert "error" not in outcome, repr(outcome.get("error"))
    stats = outcome["stats"]
    assert stats["complete"] and stats["read"] == stats["written"] == N_ROWS and stats["dead_lettered"] == 0

    rows, expected = scored(tmp_path / "dask"), scored(tmp_path / "direct")
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)) == N_ROWS  # nothing duplicated by the retried tasks
    inputs = paragraph_rows(teacher_labels, limit=N_ROWS)
    assert sorted(ids) == sorted(r["id"] for r in expected) == sorted(r["id"] for r in inputs)
    by_id = {r["id"]: r for r in expected}
    for r in rows:
        e = by_id[r["id"]]
        assert (r["document_type"], r["domain"]) == (e["document_type"], e["domain"])
        assert r["educational_score"] == pytest.approx(e["educational_score"], abs=1e-4)
    assert direct["written"] == N_ROWS
    leaked = {
        p.pid
        for p in psutil.Process().children(recursive=True)
        if not any("resource_tracker" in part for part in p.cmdline())
    } - before
    assert not leaked, "worker processes left behind"
