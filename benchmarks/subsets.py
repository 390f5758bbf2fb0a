"""Benchmark: building the six paper subsets, our Beam pipeline vs a one-recipe-at-a-time script.

Input: the 5,400 real teacher-labelled paragraphs shaped as a scored dataset (tests/subsets_scored.py),
replicated COPIES times under new article ids so there is something to chew on. Both sides build the
same six presets (BE-Base ... BE-All) with the same pure per-article function and write Parquet per
licence group:

- ours: `run_subsets(scored, "paper", ...)`, one Beam pipeline (DirectRunner here): the scored data
  is read and grouped by article ONCE, then fanned out to six recipe branches;
- baseline: what a straightforward script does (and what the paper's unpublished upsampling scripts
  most likely did): per recipe, read the whole table with pyarrow, group in a dict, build documents,
  write one file per licence group; i.e. six reads and six groupings, in one process.

Both outputs are checked to hold the same documents. Ratio = baseline seconds / ours seconds (> 1 means
ours is faster). On one machine the DirectRunner's per-element overhead dominates; the point of the
Beam version is that the same code scales out on Dataflow/Flink, so a ratio below 1 here is expected.

Run: python benchmarks/subsets.py [--copies 4]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "tests"))

from subsets_scored import scored_rows, write_scored  # noqa: E402

from pipelines.core.io import read_table, write_json  # noqa: E402
from pipelines.core.schemas import SUBSET_DOCUMENTS  # noqa: E402
from pipelines.subsets.documents import article_documents  # noqa: E402
from pipelines.subsets.pipeline import BASE_COLUMNS, read_documents, run_subsets  # noqa: E402
from pipelines.subsets.recipe import load_recipes  # noqa: E402
from pipelines.subsets.tokens import token_counter  # noqa: E402

LABELS = ROOT.parent.parent / "shared" / "data" / "labels" / "teacher_labels_v2.parquet"
WORK = ROOT / "_work" / "subsets"
RESULT = ROOT / "results" / "subsets.json"


def baseline(scored: Path, output: Path) -> int:
    """Per recipe: read everything, group by article in a dict, build, write per licence group."""
    documents = 0
    count = token_counter("whitespace")
    for recipe in load_recipes("paper"):
        columns = sorted(set(BASE_COLUMNS) | recipe.columns | {"educational_score"})
        rows = read_table([str(scored)], columns=columns).to_pylist()
        articles: dict[str, list[dict]] = {}
        for r in rows:
            articles.setdefault(r["article_id"], []).append(r)
        by_group: dict[str, list[dict]] = {}
        for article_id in sorted(articles):
            docs, _ = article_documents(article_id, articles[article_id], recipe, count)
            for d in docs:
                by_group.setdefault(d["license_group"], []).append(d)
        for group, docs in by_group.items():
            path = output / recipe.name / group / "part-00000-of-00001.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.Table.from_pylist(docs, schema=SUBSET_DOCUMENTS), path)
            documents += len(docs)
    return documents


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--copies", type=int, default=4, help="replicate the 5,400 labelled paragraphs this often"
    )
    args = parser.parse_args()
    shutil.rmtree(WORK, ignore_errors=True)
    base = scored_rows(LABELS)
    rows = [
        {**r, "id": f"{r['id']}-{c}", "article_id": f"{r['article_id']}-{c}"}
        for c in range(args.copies)
        for r in base
    ]
    scored = write_scored(rows, WORK / "in", shards=4)
    n = len(rows)

    t = time.perf_counter()
    stats = run_subsets([str(scored)], "paper", str(WORK / "ours"))
    ours_s = time.perf_counter() - t
    t = time.perf_counter()
    base_docs = baseline(scored, WORK / "baseline")
    base_s = time.perf_counter() - t

    ours_docs = sum(s["documents"] for s in stats["subsets"].values())
    assert ours_docs == base_docs, (ours_docs, base_docs)
    for name in stats["subsets"]:
        ours_ids = sorted(d["id"] for d in read_documents(str(WORK / "ours"), name))
        base_ids = sorted(d["id"] for d in read_documents(str(WORK / "baseline"), name))
        assert ours_ids == base_ids, name

    result = {
        "paragraphs": n,
        "articles": len({r["article_id"] for r in rows}),
        "recipes": list(stats["subsets"]),
        "documents_written": ours_docs,
        "ours_seconds": round(ours_s, 2),
        "baseline_seconds": round(base_s, 2),
        "ours_paragraphs_per_second": round(6 * n / ours_s, 1),
        "baseline_paragraphs_per_second": round(6 * n / base_s, 1),
        "ratio_baseline_over_ours": round(base_s / ours_s, 3),
        "runner": "DirectRunner (in process)",
        "note": "paragraph-recipe pairs per second; same documents on both sides (checked)",
    }
    write_json(result, str(RESULT))
    for k, v in result.items():
        print(f"{k}: {v}")
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
