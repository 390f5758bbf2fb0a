"""Ingest benchmark: our full extraction vs pubmed_parser 0.5.1 `parse_pubmed_paragraph`, same files.

    python benchmarks/ingest.py [--sample DIR] [--limit N] [--rounds 3] [--before OLD.json] [--no-python]

Ours = read file + `pipeline.parse_payload`, the function the Beam DoFn calls: parse (up to the main
`</body>`) + metadata + body paragraphs with the text rendering (`jats.TEXT_RENDERING`: scripts,
formulas, entities...) + min-token filter + language id + schema rows + per-article stats (everything
the DoFn does except writing). Baseline = pubmed_parser's paragraph extraction (file
read + full parse + `//body//p` text), which does strictly less: no metadata beyond ids, no formula
rendering, no language. When the compiled module (`pipelines.ingest.jats_c`) is built, a third side,
`ours_python`, runs ours without it (the same output from the Python code), so both ratios come from one
process. Times are process CPU time; single process: rates are per core. The machine is shared, so the
files are timed in chunks of 32, the sides back to back on each chunk (order rotating), and the headline
rate sums each chunk's best time over the rounds: a burst of load slows one chunk of one round, not a
whole round of one side. Best whole rounds are reported too. `--before`
embeds a results file of an earlier version (run the same way) for comparison. Writes
benchmarks/results/ingest.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import time
import warnings
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.core import schemas
from pipelines.ingest import jats, langid
from pipelines.ingest.pipeline import article_rows, parse_payload

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SAMPLE = Path(os.environ.get("BIOMED_ENRICH_SHARED", REPO.parent / "shared")) / "data" / "pmc-sample"
PMC_OA_ARTICLES = 4_500_000


def ours(path: str) -> list[dict]:
    with open(path, "rb") as f:
        data = f.read()
    try:
        return parse_payload(path, data, min_tokens=64)[1].rows
    except jats.JatsError:  # a dead letter: counted as processed, like the baseline's failures
        return []


def ours_python(path: str) -> list[dict]:
    """Ours without the compiled module (`jats.jats_c`): the pure-Python code it stands in for."""
    compiled, jats.jats_c = jats.jats_c, None
    try:
        return ours(path)
    finally:
        jats.jats_c = compiled


def baseline(path: str):
    import pubmed_parser

    with contextlib.redirect_stdout(io.StringIO()):  # it prints on files it cannot read
        try:
            return pubmed_parser.parse_pubmed_paragraph(path, all_paragraph=True)
        except Exception:  # noqa: BLE001 - count as processed, like a dead letter
            return None


CHUNK = 32  # files timed in a row per side: long enough to keep each side's caches warm (CLD2 tables...)


def paired(files: list[str], rounds: int, sides: dict) -> dict[str, list[list[float]]]:
    """Process CPU seconds of each side per chunk of files, the sides back to back on each chunk (order
    rotating), per round."""
    clock = time.process_time
    chunks = [files[i : i + CHUNK] for i in range(0, len(files), CHUNK)]
    order = list(sides.items())
    times: dict[str, list[list[float]]] = {side: [] for side in sides}
    for r in range(rounds):
        spent: dict[str, list[float]] = {side: [] for side in sides}
        for i, chunk in enumerate(chunks):
            k = (i + r) % len(order)
            for side, fn in order[k:] + order[:k]:
                t0 = clock()
                for path in chunk:
                    fn(path)
                spent[side].append(clock() - t0)
        for side in times:
            times[side].append(spent[side])
        print(f"round {r}: " + ", ".join(f"{side} {len(files) / sum(s):.1f}/s" for side, s in spent.items()))
    return times


def breakdown(files: list[str]) -> dict:
    """Where our time goes, per stage, on the same files (seconds summed over all files)."""
    t = {
        "read": 0.0,
        "parse": 0.0,
        "metadata": 0.0,
        "render": 0.0,
        "walk": 0.0,
        "langid": 0.0,
        "rows": 0.0,
        "write": 0.0,
    }
    langid_per_paragraph = 0.0
    all_rows: list[dict] = []
    for path in files:
        t0 = time.process_time()
        with open(path, "rb") as f:
            data = f.read()
        t1 = time.process_time()
        try:
            jats.check_safe(data)
            root = jats._parse(data)
            article_el = jats.find_article(root)
        except jats.JatsError:
            continue
        t2 = time.process_time()
        article = jats.article_metadata(article_el, Path(path).stem)
        body = jats._child(article_el, "body")
        tm = time.process_time()
        if body is not None:
            jats.prepare(body, article.dropped)  # the text rendering: formulas, scripts, blocks...
        tr = time.process_time()
        article.paragraphs = jats.walk_prepared(body) if body is not None else []  # walk, text, whitespace
        t3 = time.process_time()
        texts = [p.text for p in article.paragraphs if p.n_tokens >= 64]
        langid.detect_paragraphs(texts)
        t4 = time.process_time()
        rows = article_rows(article, path, min_tokens=64)  # includes a second langid call: subtract it
        t5 = time.process_time()
        for text in texts:
            langid.detect(text)
        t6 = time.process_time()
        langid_per_paragraph += t6 - t5
        t["read"] += t1 - t0
        t["parse"] += t2 - t1
        t["metadata"] += tm - t2
        t["render"] += tr - tm
        t["walk"] += t3 - tr
        t["langid"] += t4 - t3
        t["rows"] += max(0.0, (t5 - t4) - (t4 - t3))
        all_rows.extend(rows)
    t0 = time.process_time()
    table = pa.Table.from_pylist(all_rows, schema=schemas.PARAGRAPHS)
    pq.write_table(table, io.BytesIO())
    t["write"] = time.process_time() - t0
    total = sum(t.values())
    return {
        "seconds": {k: round(v, 3) for k, v in t.items()},
        "share": {k: round(v / total, 3) for k, v in t.items()},
        "ms_per_article": {k: round(1000 * v / len(files), 3) for k, v in t.items()},
        "langid_per_paragraph_seconds": round(langid_per_paragraph, 3),
        "paragraphs_kept": len(all_rows),
    }


def cpu() -> dict:
    """CPU model and the vector / matrix extensions that matter here (from lscpu)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    flags = set(fields.get("Flags", "").split())
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    return {
        "model": fields.get("Model name", "").strip(),
        "cores": os.cpu_count(),
        "flags": {flag: flag in flags for flag in wanted},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", default=str(DEFAULT_SAMPLE))
    parser.add_argument("--limit", type=int, default=0, help="only the first N files (0: all)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "ingest.json"))
    parser.add_argument("--before", help="results JSON of an earlier version, embedded for comparison")
    parser.add_argument(
        "--no-python", action="store_true", help="skip the third side: ours without the compiled module"
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    files = sorted(str(p) for p in Path(args.sample).glob("*.xml"))
    if args.limit:
        files = files[: args.limit]
    for path in files:  # warm the page cache for both
        Path(path).read_bytes()
    sides = {"ours": ours, "baseline": baseline}
    if jats.COMPILED and not args.no_python:
        sides["ours_python"] = ours_python
    for fn in sides.values():
        fn(files[0])  # imports, first-call setup
    load_before = os.getloadavg()
    times = paired(files, args.rounds, sides)
    best = {
        side: sum(min(per_file) for per_file in zip(*rounds_, strict=True)) for side, rounds_ in times.items()
    }
    per_s = {side: len(files) / best[side] for side in sides}
    ours_per_s, baseline_per_s = per_s["ours"], per_s["baseline"]
    round_ours = len(files) / min(sum(r) for r in times["ours"])
    round_base = len(files) / min(sum(r) for r in times["baseline"])
    parts = breakdown(files)
    write_per_article = parts["seconds"]["write"] / len(files)
    with_write_per_s = 1 / (1 / ours_per_s + write_per_article)
    result = {
        "text_rendering": jats.TEXT_RENDERING,
        "compiled": jats.COMPILED,
        "cpu": cpu(),
        "load_average_1min": [round(load_before[0], 1), round(os.getloadavg()[0], 1)],
        "files": len(files),
        "rounds": args.rounds,
        "ours_per_s": round(ours_per_s, 1),
        "baseline_per_s": round(baseline_per_s, 1),
        "ratio": round(ours_per_s / baseline_per_s, 3),
        **(
            {
                "ours_python_per_s": round(per_s["ours_python"], 1),
                "python_ratio": round(per_s["ours_python"] / baseline_per_s, 3),
                "compiled_over_python": round(ours_per_s / per_s["ours_python"], 3),
            }
            if "ours_python" in per_s
            else {}
        ),
        "best_round": {
            "ours_per_s": round(round_ours, 1),
            "baseline_per_s": round(round_base, 1),
            "ratio": round(round_ours / round_base, 3),
        },
        "ours_with_write_per_s": round(with_write_per_s, 1),
        "breakdown": parts,
        "core_hours_4_5M_articles": round(PMC_OA_ARTICLES / with_write_per_s / 3600, 2),
        "notes": "per core (one process); chunks of 32 files timed with the sides back to back, each "
        "chunk's best time over the rounds summed (best_round: the best whole round of each instead); "
        "shared machine (other jobs ran: see load_average_1min, before / after, on 2 cores); ours "
        "includes the text rendering, "
        "language id (CLD2, one call per article, per paragraph only for mixed bodies) and schema rows; "
        "core-hours include Parquet writing; the baseline extracts paragraph text only.",
    }
    if args.before:
        result["before"] = json.loads(Path(args.before).read_text())
    print(json.dumps(result, indent=2))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
