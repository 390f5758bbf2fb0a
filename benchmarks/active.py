"""Benchmark: how many teacher labels does uncertainty sampling save over random sampling?

Simulates `biomed-enrich loop` offline over the 5,400 real teacher labels: the replay teacher answers
from the recordings (the oracle), a fixed 20% of ARTICLES is held out (never in the pool, never
sent to the teacher) and is the evaluation set of every round. Both strategies run the very same
loop code (same seed sample, same frozen-encoder student, same batch size), for several seeds.

Agreement (one scalar) = mean of document_type macro-F1, domain macro-F1 and educational-score
Pearson r of the in-loop student (heads on frozen MiniLM embeddings) against the teacher on the
held-out articles. Target = the agreement random sampling reaches with its largest budget (mean
over seeds); for each strategy the labels needed to first reach it are read off the mean curve
(linear interpolation between rounds); ratio = random / uncertainty.

Run: python benchmarks/active.py  (MiniLM embeddings are computed once into benchmarks/_work/).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

# Run as a script, this folder is sys.path[0] and its `distill.py` would shadow the `distill` package.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from annotators.cache import AnswerCache  # noqa: E402
from annotators.ledger import Ledger  # noqa: E402
from annotators.sampling import uniform_draw  # noqa: E402
from annotators.teachers import make_teacher  # noqa: E402
from pipelines.app.loop import EmbeddingStore, LoopConfig, article_key, run_loop, teacher_labeller  # noqa: E402
from pipelines.core.io import write_json  # noqa: E402

ROOT = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("BIOMED_ENRICH_SHARED", ROOT.parent.parent / "shared"))
LABELS = SHARED / "data" / "labels" / "teacher_labels_v2.parquet"
WORK = ROOT / "_work"
RESULT = ROOT / "results" / "active.json"
COMPONENTS = (
    "document_type_f1",
    "domain_f1",
    "educational_score_pearson",
    "educational_score_mae",
    "agreement",
)


def split(rows: list[dict], fraction: float, seed: int = 20260) -> tuple[list[dict], list[dict]]:
    """(pool, held-out) by article: an article is held out when its hashed draw is below `fraction`."""
    held = {a for a in {r["article_id"] for r in rows} if uniform_draw(seed, a) < fraction}
    return [r for r in rows if r["article_id"] not in held], [r for r in rows if r["article_id"] in held]


def first_reach(labels: np.ndarray, curve: np.ndarray, target: float) -> float | None:
    """Labels at which `curve` first reaches `target`, interpolated linearly between points."""
    for i, value in enumerate(curve):
        if value >= target:
            if i == 0:
                return float(labels[0])
            x0, x1, y0, y1 = labels[i - 1], labels[i], curve[i - 1], curve[i]
            return float(x0 + (target - y0) / (y1 - y0) * (x1 - x0))
    return None


def simulate(rows, held_out, store, strategy: str, seed: int, args) -> dict:
    tag = args.tag if strategy == "uncertainty" else ""  # random does not depend on the variant
    out = WORK / "active" / f"{strategy}{tag}-seed{seed}"
    if not args.resume:
        shutil.rmtree(out, ignore_errors=True)
    teacher = make_teacher("replay", recordings=str(LABELS))
    ledger = Ledger(model=teacher.model)
    calls: list[str] = []
    labeller = teacher_labeller(teacher, AnswerCache(str(out / "teacher_cache.sqlite")), ledger)

    def counted(batch):
        calls.extend(r["id"] for r in batch)
        return labeller(batch)

    config = LoopConfig(
        strategy=strategy,
        budget=args.budget,
        rounds=10_000,
        seed_size=args.seed_size,
        batch_size=args.batch_size,
        seed=seed,
        mc_passes=args.mc_passes,
        weights=tuple(float(w) for w in args.weights.split(",")),
    )
    start = time.perf_counter()
    stats = run_loop(rows, str(out), counted, store, config, eval_labels=held_out)
    held_ids = {r["id"] for r in held_out}
    assert not held_ids & set(calls), "a held-out paragraph was sent to the teacher"
    assert len(calls) == len(set(calls)), "a paragraph was paid for twice"
    print(
        f"  {strategy:11s} seed {seed}: {stats['labels_spent']} labels, final agreement "
        f"{stats['curve'][-1]['agreement']:.4f}, {time.perf_counter() - start:.0f}s",
        flush=True,
    )
    fresh = stats["rounds_this_run"] == stats["rounds_finished"]
    return {"seconds": time.perf_counter() - start if fresh else None, "curve": stats["curve"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=int, default=3000)
    parser.add_argument("--seed-size", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--mc-passes", type=int, default=20)
    parser.add_argument("--holdout", type=float, default=0.2)
    parser.add_argument("--report-at", default="200,400,800,1600,3000")
    parser.add_argument(
        "--resume", action="store_true", help="keep finished runs in _work/ (the loop resumes)"
    )
    parser.add_argument("--weights", default="1,1,1", help="uncertainty weights: document_type,domain,score")
    parser.add_argument("--tag", default="", help="suffix of the run folders (variants)")
    parser.add_argument("--output", default=str(RESULT), help="result JSON")
    args = parser.parse_args()

    rows = pq.read_table(LABELS).to_pylist()
    for row in rows:
        row["article_id"] = article_key(row)
    pool, held_out = split(rows, args.holdout)
    print(f"{len(rows)} labelled paragraphs: pool {len(pool)}, held out {len(held_out)} ", end="")
    print(f"({len({r['article_id'] for r in held_out})} articles)")
    store = EmbeddingStore(str(WORK / "embeddings"), max_length=256)
    store.matrix(rows)  # embeds (once, cached) whatever the cache lacks

    runs: dict[str, list[dict]] = {"random": [], "uncertainty": []}
    for seed in range(args.seeds):
        for strategy in runs:
            runs[strategy].append(simulate(rows, held_out, store, strategy, seed, args))

    curves = {}
    for strategy, results in runs.items():
        labels = np.array([p["labels"] for p in results[0]["curve"]])
        curves[strategy] = {"labels": labels.tolist()}
        for comp in COMPONENTS:
            values = np.array([[p[comp] for p in r["curve"]] for r in results])
            curves[strategy][comp] = {
                "mean": values.mean(0).round(4).tolist(),
                "std": values.std(0).round(4).tolist(),
            }
        curves[strategy]["per_seed_agreement"] = [
            [round(p["agreement"], 4) for p in r["curve"]] for r in results
        ]
        seconds = [r["seconds"] for r in results if r["seconds"] is not None]
        curves[strategy]["seconds_per_run"] = round(float(np.mean(seconds)), 1) if seconds else None

    labels = np.array(curves["random"]["labels"])
    random_mean = np.array(curves["random"]["agreement"]["mean"])
    uncertainty_mean = np.array(curves["uncertainty"]["agreement"]["mean"])
    target = float(random_mean[-1])
    at_random = first_reach(labels, random_mean, target)
    at_uncertainty = first_reach(np.array(curves["uncertainty"]["labels"]), uncertainty_mean, target)
    ratio = round(at_random / at_uncertainty, 3) if at_uncertainty else None

    # The same question at every budget: labels uncertainty needs to match random's agreement there.
    savings = {}
    for b in (int(b) for b in args.report_at.split(",")):
        target_b = float(np.interp(b, labels, random_mean))
        need_r = first_reach(labels, random_mean, target_b)
        need_u = first_reach(np.array(curves["uncertainty"]["labels"]), uncertainty_mean, target_b)
        savings[str(b)] = {
            "target_agreement": round(target_b, 4),
            "labels_random": round(need_r, 1),
            "labels_uncertainty": round(need_u, 1) if need_u else None,
            "ratio": round(need_r / need_u, 3) if need_u else None,
        }
    budgets = [int(b) for b in args.report_at.split(",")]
    table = {
        str(b): {
            s: round(float(np.interp(b, curves[s]["labels"], curves[s]["agreement"]["mean"])), 4)
            for s in curves
        }
        for b in budgets
    }
    result = {
        "labels_random_at_target": round(at_random, 1),
        "labels_uncertainty_at_target": round(at_uncertainty, 1) if at_uncertainty else None,
        "ratio": ratio,
        "target_agreement": round(target, 4),
        "agreement_definition": "mean of document_type macro-F1, domain macro-F1 and educational_score "
        "Pearson r on held-out articles (student: heads on frozen MiniLM mean-pooled embeddings, "
        "max length 256)",
        "agreement_at_budget": table,
        "ratio_at_budget": savings,
        "setup": {
            "labelled_paragraphs": len(rows),
            "pool_paragraphs": len(pool),
            "held_out_paragraphs": len(held_out),
            "held_out_articles": len({r["article_id"] for r in held_out}),
            "seeds": args.seeds,
            "seed_size": args.seed_size,
            "batch_size": args.batch_size,
            "budget": args.budget,
            "mc_passes": args.mc_passes,
            "weights": args.weights,
            "uncertainty": "weighted mean percentile rank of type entropy, domain entropy and MC-dropout "
            "score std; "
            "max 1 paragraph per article per round",
        },
        "curves": curves,
    }
    write_json(result, args.output)
    print(f"target agreement {target:.4f} (random at {args.budget} labels)")
    for b, row in table.items():
        print(f"  {b:>5} labels: random {row['random']:.4f}  uncertainty {row['uncertainty']:.4f}")
    print(
        f"labels to target: random {at_random:.0f}, "
        f"uncertainty {at_uncertainty or float('nan'):.0f}, ratio {ratio}"
    )
    for b, row in savings.items():
        print(
            f"  random's agreement at {b:>5} labels: uncertainty needs {row['labels_uncertainty']}, "
            f"ratio {row['ratio']}"
        )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
