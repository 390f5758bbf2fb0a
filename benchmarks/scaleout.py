"""Scale-out: ingest and propagate throughput on DirectRunner vs a Dask LocalCluster of 1 and 2 processes.

    python benchmarks/scaleout.py [--articles 40] [--out benchmarks/results/scaleout.json]

One process runs everything: DirectRunner first (the baseline), then the same stages with
`--runner=dask` against a local cluster of 1 worker process and then of 2 (one thread each), started
before timing (its start-up is reported apart). Propagate scores ingest's paragraphs with a quick
student (MiniLM backbone, heads fitted in seconds; truncation at 128 tokens), the same model for
every engine. The machine's cores bound the speed-up: on 2 cores, 2 worker processes can at best
double one process's speed, and other jobs sharing the cores (load averages are recorded) lower it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, this folder is sys.path[0] and its `distill.py` would shadow the `distill` package.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BIOMED_ENRICH_SHARED", REPO.parent / "shared"))
FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def machine() -> dict:
    """Cores, CPU model and the vector flags that decide CPU inference speed."""
    model, flags = platform.processor(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("", platform.machine()):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "cpu_flags": {f: f in flags for f in FLAGS},
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def timed(stage, n_articles: int, n_paragraphs: int | None = None) -> dict:
    started = time.perf_counter()
    stats = stage()
    seconds = time.perf_counter() - started
    paragraphs = n_paragraphs if n_paragraphs is not None else stats["paragraphs_written"]
    return {
        "seconds": round(seconds, 2),
        "articles_per_s": round(n_articles / seconds, 3),
        "paragraphs_per_s": round(paragraphs / seconds, 2),
        "paragraphs": paragraphs,
    }


def run_engine(name: str, beam_args: list[str] | None, inputs: list[str], student: str, root: Path) -> dict:
    from pipelines.ingest.pipeline import run_ingest
    from pipelines.propagate import run_propagate

    out = root / name
    ingest = timed(lambda: run_ingest(inputs, str(out), beam_args=beam_args), len(inputs))
    paragraphs = ingest["paragraphs"]
    scored = [str(out / "paragraphs")]
    propagate = timed(
        lambda: run_propagate(scored, student, str(out), beam_args=beam_args, progress=False),
        len(inputs),
        paragraphs,
    )
    result = {"ingest": ingest, "propagate": propagate}
    print(name, json.dumps(result), flush=True)
    return result


def on_cluster(workers: int, inputs: list[str], student: str, root: Path) -> dict:
    from dask.distributed import Client, LocalCluster

    started = time.perf_counter()
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
    with cluster, Client(cluster) as client:
        client.wait_for_workers(workers)
        startup = time.perf_counter() - started
        threads = sorted(client.run(_torch_threads).values())
        args = ["--runner=dask", f"--dask_address={cluster.scheduler_address}"]
        result = run_engine(f"dask_{workers}", args, inputs, student, root)
    return {**result, "cluster_startup_seconds": round(startup, 2), "torch_threads_per_worker": threads}


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def ratio(a: dict, b: dict) -> dict:
    return {stage: round(b[stage]["seconds"] / a[stage]["seconds"], 2) for stage in ("ingest", "propagate")}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--articles", type=int, default=40, help="real PMC articles from ../shared (sorted)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "scaleout.json"))
    args = parser.parse_args(argv)

    from distill.quick_student import build_quick_student

    info = machine()
    inputs = [str(p) for p in sorted((SHARED / "data" / "pmc-sample").glob("PMC*.xml"))[: args.articles]]
    labels = SHARED / "data" / "labels" / "teacher_labels_v2.parquet"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        student = str(build_quick_student(labels, root / "student", n=96, max_seq_length=128))
        direct = run_engine("direct", None, inputs, student, root)
        dask_1 = on_cluster(1, inputs, student, root)
        dask_2 = on_cluster(2, inputs, student, root)
    result = {
        "benchmark": "scaleout",
        "command": " ".join(["python benchmarks/scaleout.py", *(sys.argv[1:] if argv is None else argv)]),
        "articles": len(inputs),
        "machine": {**info, "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "direct": {**direct, "torch_threads": _torch_threads()},
        "dask_1_worker": dask_1,
        "dask_2_workers": dask_2,
        # speed-up = DirectRunner seconds / Dask seconds, per stage (> 1: Dask faster)
        "dask_1_worker_vs_direct": ratio(dask_1, direct),
        "dask_2_workers_vs_direct": ratio(dask_2, direct),
        "dask_2_vs_1_workers": ratio(dask_2, dask_1),
        "note": (
            f"{info['cores']} cores bound the speed-up: 2 worker processes can at most double one "
            "process's speed. Other jobs (other helpers' tests and benchmarks) shared the cores during "
            "this run (see load averages), so absolute figures are low and ratios noisy. DirectRunner "
            "runs one bundle at a time in-process; each Dask worker runs one task at a time (1 thread) "
            "with torch on 1 thread (Dask sets OMP_NUM_THREADS=1 in workers), DirectRunner's torch uses all "
            "cores; cluster start-up is excluded from stage times, but each worker's first import of Beam, "
            "torch and this package falls in the first stage it runs (ingest)."
        ),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("dask_1_worker_vs_direct", "dask_2_workers_vs_direct")}))
    return result


if __name__ == "__main__":
    main()
