"""Benchmark: an incremental update vs a full run on the union, on real PMC sample articles.

A baseline corpus (ingest, propagate with a quick student, six paper subsets, report) is built from
ARTICLES articles of ../shared/data/pmc-sample; then one update brings 5% new articles, new versions
of 1% of the known ones (first body paragraph edited) and a file list retracting a few. The same
articles are then run from scratch (the full run on the union: the baseline of this comparison, in
the same process). Annotate and train are outside both: an update re-uses the run's student and
never calls the teacher, so their cost would only make the fraction smaller.

- `update_cost_fraction` = CPU seconds of the update / CPU seconds of the full run on the union
  (process CPU time: the DirectRunner and torch run in this process; child processes added);
- `rows_equal_full_run`: paragraphs, articles, scored rows and subset documents equal row by row
  (labels exactly, score floats within 1e-5: float32 batches differ in the 7th digit).

Run: python benchmarks/incremental.py [--articles 1308]   (writes benchmarks/results/incremental.json)
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "tests"))
sys.path.insert(0, str(ROOT.parent))

from incremental_data import compare_corpora, make_deliveries  # noqa: E402

from benchmarks.cpu import cpu_info  # noqa: E402
from pipelines.app.update import build_corpus, run_update  # noqa: E402
from pipelines.core.io import write_json  # noqa: E402

SHARED = ROOT.parent.parent / "shared" / "data"
WORK = ROOT / "_work" / "incremental"
RESULT = ROOT / "results" / "incremental.json"


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (user + system)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def measured(fn, *args, **kw) -> tuple[object, float, float]:
    cpu, wall = cpu_seconds(), time.time()
    result = fn(*args, **kw)
    return result, cpu_seconds() - cpu, time.time() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--articles", type=int, default=1308, help="baseline size (sample articles)")
    parser.add_argument("--new", type=float, default=0.05, help="new articles, share of the baseline")
    parser.add_argument("--versions", type=float, default=0.01, help="new versions, share of the baseline")
    parser.add_argument("--retractions", type=int, default=3)
    parser.add_argument(
        "--small-first", action="store_true", help="prefer 12-40 kB articles (quick runs on few cores)"
    )
    args = parser.parse_args()

    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    from distill.quick_student import build_quick_student

    student = build_quick_student(
        SHARED / "labels" / "teacher_labels_v1.parquet",
        WORK / "student",
        n=96,
        embed_max_length=48,
        max_seq_length=256,  # what `train` gives the real student (distill/config.py)
    )
    n_new = max(1, round(args.articles * args.new))
    n_versions = max(1, round(args.articles * args.versions))
    d = make_deliveries(
        SHARED / "pmc-sample",
        WORK / "in",
        baseline=args.articles,
        new_per_update=[n_new],
        versions_per_update=[n_versions],
        retractions=args.retractions,
        late_copy=False,
        small_first=args.small_first,
    )
    _, base_cpu, base_wall = measured(build_corpus, str(WORK / "inc"), d.baseline, str(student))
    log, update_cpu, update_wall = measured(
        run_update, str(WORK / "inc"), d.updates[0], model_dir=str(student)
    )
    _, full_cpu, full_wall = measured(build_corpus, str(WORK / "full"), d.union, str(student))
    comparison = compare_corpora(WORK / "inc", WORK / "full")
    # An update with nothing new: what every update pays whatever its size (subsets + report rebuilt,
    # state read and rewritten): the floor of the fraction on a small corpus.
    _, noop_cpu, _ = measured(run_update, str(WORK / "full"), [], model_dir=str(student))
    equal = all(c["differing"] == 0 and c["rows"] == c["rows_full"] for c in comparison.values())
    result = {
        "benchmark": "incremental",
        "articles_baseline": args.articles,
        "articles_new": n_new,
        "new_versions": n_versions,
        "retractions": len(d.retracted),
        "small_first": args.small_first,
        "update_cost_fraction": round(update_cpu / full_cpu, 4),
        "update_wall_fraction": round(update_wall / full_wall, 4),
        "rows_equal_full_run": equal,
        "comparison": comparison,
        "cpu_seconds": {
            "baseline": round(base_cpu, 2),
            "update": round(update_cpu, 2),
            "full_union": round(full_cpu, 2),
            "update_with_nothing_new": round(noop_cpu, 2),
        },
        "wall_seconds": {
            "baseline": round(base_wall, 2),
            "update": round(update_wall, 2),
            "full_union": round(full_wall, 2),
        },
        "change_log": {k: log[k] for k in ("ingest", "propagate", "subsets", "step_seconds")},
        "float_tolerance": 1e-5,
        "cpu": cpu_info(),
        "runner": "DirectRunner",
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    write_json(result, str(RESULT))
    print(
        f"update_cost_fraction {result['update_cost_fraction']} (update {update_cpu:.1f} CPU s / full run on "
        f"the union {full_cpu:.1f} CPU s; wall {update_wall:.1f} s / {full_wall:.1f} s); "
        f"rows_equal_full_run {equal}"
    )
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
