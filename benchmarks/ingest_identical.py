"""Check that an ingest change leaves every output byte alone: digest of each article's parse, compared.

    python benchmarks/ingest_identical.py --save /tmp/before.json       # on the old code
    python benchmarks/ingest_identical.py --compare /tmp/before.json    # on the new code

Per article of the sample (default: ../shared/data/pmc-sample, 1,308 articles): every extracted
paragraph (path, text, section title, token count, also those under the minimum length), the metadata,
the dropped-by-reason counts and the Parquet rows of `article_rows` (language included), or the dead
letter reason. `--compare` prints the first differing articles with the first differing paragraph and
exits 1 on any difference. Speed work must keep this at 0 differences (TEXT_RENDERING unchanged).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
from pathlib import Path

from pipelines.ingest import jats
from pipelines.ingest.pipeline import article_rows

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SAMPLE = Path(os.environ.get("BIOMED_ENRICH_SHARED", REPO.parent / "shared")) / "data" / "pmc-sample"


def snapshot(path: Path) -> dict:
    """Everything ingest derives from one file, as JSON-able values."""
    data = path.read_bytes()
    try:
        article = jats.parse_article(data, fallback_id=path.stem)
    except jats.JatsError as e:
        return {"dead_letter": e.reason}
    rows = article_rows(article, str(path.name), min_tokens=64)
    meta = {k: v for k, v in dataclasses.asdict(article).items() if k not in ("paragraphs", "dropped")}
    return {
        "metadata": meta,
        "dropped": dict(sorted(article.dropped.items())),
        "paragraphs": [[p.path, p.text, p.section_title, p.n_tokens] for p in article.paragraphs],
        "rows": rows,
    }


def digest(value: dict) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", default=str(DEFAULT_SAMPLE))
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--save", help="write the snapshots (JSON) of every article here")
    mode.add_argument("--compare", help="compare with snapshots saved earlier; exit 1 on any difference")
    args = parser.parse_args()
    files = sorted(Path(args.sample).glob("*.xml"))
    snaps = {p.name: snapshot(p) for p in files}
    if args.save:
        Path(args.save).write_text(json.dumps(snaps, ensure_ascii=False, sort_keys=True))
        paragraphs = sum(len(s.get("paragraphs", [])) for s in snaps.values())
        print(f"{len(snaps)} articles, {paragraphs} paragraphs, digest {digest(snaps)}")
        return 0
    before = json.loads(Path(args.compare).read_text())
    differ = [name for name in sorted(set(before) | set(snaps)) if before.get(name) != snaps.get(name)]
    for name in differ[:10]:
        old, new = before.get(name) or {}, snaps.get(name) or {}
        for key in ("dead_letter", "metadata", "dropped", "paragraphs", "rows"):
            if old.get(key) != new.get(key):
                a, b = old.get(key), new.get(key)
                if isinstance(a, list) and isinstance(b, list):
                    pairs = enumerate(zip(a, b, strict=False))
                    i = next((i for i, (x, y) in pairs if x != y), min(len(a), len(b)))
                    a, b = a[i : i + 1], b[i : i + 1]
                print(f"{name} {key}:\n  before {str(a)[:600]}\n  after  {str(b)[:600]}")
    print(f"{len(snaps)} articles compared, {len(differ)} differ, digest {digest(snaps)}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
