"""Full-corpus Dataflow cost estimate from our measured throughput (benchmarks/results/*.json).

    python infra/dataflow/cost_estimate.py            # print the markdown table
    python infra/dataflow/cost_estimate.py --readme   # also refresh the table in infra/dataflow/README.md

Measured: per-core ingest rate (benchmarks/ingest.py), per-CPU-second propagate rate and the tokenizer
rate (benchmarks/propagate.py). GPU rates are that benchmark's FLOPs model (no GPU here), scaled by
each GPU's dense peak. Prices are assumed list prices (us-central1, on-demand, USD): check them on the
Dataflow pricing page before you budget. Dataflow overhead (GCS I/O, harness, autoscaling tails) is a
stated factor, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
README = Path(__file__).with_name("README.md")
ARTICLES = 4_500_000  # PMC Open Access, 2025
PARAGRAPHS = 133_000_000  # after filtering, as in the paper
OVERHEAD = 2.0  # Dataflow vs one local process: GCS reads/writes, harness, stragglers (assumption)
PRICES = {  # assumed Dataflow batch list prices, us-central1, USD
    "vcpu_hour": 0.056,
    "gb_hour": 0.003557,
    "shuffle_gb": 0.011,
}
WORKERS = {  # machine type: vCPUs, GB, GPU name, GPU $/h (assumed), dense peak TFLOPS at the precision used
    "n2-standard-4": {"vcpus": 4, "gb": 16},
    "n1-standard-8 + T4": {"vcpus": 8, "gb": 30, "gpu": "T4", "gpu_hour": 0.35, "tflops": 8.1},
    "g2-standard-8 + L4": {"vcpus": 8, "gb": 32, "gpu": "L4", "gpu_hour": 0.56, "tflops": 121.0},
    "a2-highgpu-1g + A100": {"vcpus": 12, "gb": 85, "gpu": "A100", "gpu_hour": 2.93, "tflops": 312.0},
}
A100_PEAK = 312.0


def vm_hour(worker: dict) -> float:
    return (
        worker["vcpus"] * PRICES["vcpu_hour"] + worker["gb"] * PRICES["gb_hour"] + worker.get("gpu_hour", 0.0)
    )


def load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def ingest_rows(ingest: dict | None) -> list[dict]:
    if ingest is None:
        return [
            {"stage": "ingest", "note": "benchmarks/results/ingest.json missing: run benchmarks/ingest.py"}
        ]
    per_core_s = ingest.get("ours_with_write_per_s") or ingest["ours_per_s"]
    core_hours = ARTICLES / per_core_s / 3600 * OVERHEAD
    worker = WORKERS["n2-standard-4"]
    vm_hours = core_hours / worker["vcpus"]
    return [
        {
            "stage": "ingest",
            "workers": "n2-standard-4",
            "measured": f"{per_core_s:.0f} articles/s per core",
            "hours": f"{core_hours:.1f} core-h",
            "usd": vm_hours * vm_hour(worker),
        }
    ]


def propagate_rows(propagate: dict | None) -> list[dict]:
    if propagate is None:
        return [{"stage": "propagate", "note": "benchmarks/results/propagate.json missing: run it"}]
    rows = []
    per_cpu_s = propagate["ours_per_cpu_s"]
    core_hours = PARAGRAPHS / per_cpu_s / 3600 * OVERHEAD
    cpu = WORKERS["n2-standard-4"]
    rows.append(
        {
            "stage": "propagate (CPU only)",
            "workers": "n2-standard-4",
            "measured": f"{per_cpu_s:.1f} paragraphs/s per core",
            "hours": f"{core_hours:,.0f} core-h",
            "usd": core_hours / cpu["vcpus"] * vm_hour(cpu),
        }
    )
    estimate = propagate.get("gpu_estimate", {})
    a100_estimate = estimate.get("A100", {})
    a100 = a100_estimate.get("bf16", a100_estimate).get("paragraphs_per_s")
    tokenize = propagate.get("tokens", {}).get("tokenize_per_cpu_s")
    if not a100:
        return rows
    for name, worker in WORKERS.items():
        if "gpu" not in worker:
            continue
        gpu_per_s = a100 * worker["tflops"] / A100_PEAK
        fed = (worker["vcpus"] - 1) * tokenize if tokenize else gpu_per_s  # one core for the harness
        per_s = min(gpu_per_s, fed)
        bound = ", CPU-bound" if fed < gpu_per_s else ""
        gpu_hours = PARAGRAPHS / per_s / 3600 * OVERHEAD
        rows.append(
            {
                "stage": f"propagate ({worker['gpu']})",
                "workers": name,
                "measured": f"~{per_s:,.0f} paragraphs/s per GPU (model{bound})",
                "hours": f"{gpu_hours:,.1f} GPU-h",
                "usd": gpu_hours * vm_hour(worker),
            }
        )
    return rows


def subsets_rows(propagate: dict | None, subsets: dict | None) -> list[dict]:
    recipes = len((subsets or {}).get("recipes") or []) or 6
    tokens = (propagate or {}).get("tokens", {}).get("mean") or 150  # wordpieces per paragraph
    text_gb = PARAGRAPHS * tokens * 4 / 1e9
    shuffle_gb = text_gb * (1 + recipes)  # grouped by article once, then each recipe's documents by shard
    row = {
        "stage": f"subsets ({recipes} recipes)",
        "workers": "n2-standard-4",
        "measured": f"shuffle ~{shuffle_gb:,.0f} GB (mean {tokens:.0f} tokens x 4 B)",
        "hours": "-",
        "usd": shuffle_gb * PRICES["shuffle_gb"],
    }
    rate = (subsets or {}).get("ours_paragraphs_per_second")  # paragraph-recipe pairs/s, one process
    if rate:
        core_hours = PARAGRAPHS * recipes / rate / 3600 * OVERHEAD
        row["measured"] = f"{rate:,.0f} paragraph-recipes/s per core; " + row["measured"]
        row["hours"] = f"{core_hours:,.0f} core-h"
        row["usd"] += core_hours / 4 * vm_hour(WORKERS["n2-standard-4"])
    return [row]


def table() -> str:
    propagate = load("propagate")
    rows = ingest_rows(load("ingest")) + propagate_rows(propagate) + subsets_rows(propagate, load("subsets"))
    lines = [
        f"Corpus: {ARTICLES:,} articles, {PARAGRAPHS:,} paragraphs; Dataflow overhead factor {OVERHEAD}x; "
        f"prices (assumed): vCPU ${PRICES['vcpu_hour']}/h, memory ${PRICES['gb_hour']}/GB-h, "
        f"shuffle ${PRICES['shuffle_gb']}/GB, GPUs T4/L4/A100 "
        + "/".join(f"${w['gpu_hour']}" for w in WORKERS.values() if "gpu" in w)
        + "/h.",
        "",
        "| stage | workers | throughput | compute | est. USD |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        if "note" in r:
            lines.append(f"| {r['stage']} | - | {r['note']} | - | - |")
        else:
            lines.append(
                f"| {r['stage']} | {r['workers']} | {r['measured']} | {r['hours']} | ${r['usd']:,.2f} |"
            )
    return "\n".join(lines) + "\n"


def refresh_readme(text: str) -> None:
    readme = README.read_text()
    begin, end = "<!-- cost-table:begin -->", "<!-- cost-table:end -->"
    new = re.sub(f"{begin}.*?{end}", f"{begin}\n{text}{end}", readme, flags=re.S)
    README.write_text(new)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", action="store_true", help="refresh the table in infra/dataflow/README.md")
    text = table()
    print(text)
    if parser.parse_args().readme:
        refresh_readme(text)


if __name__ == "__main__":
    main()
