"""Rebuild `annotators/data/recorded_labels.parquet`, the replay teacher's recordings, from the shared labels.

Only rows whose article licence allows redistribution inside the package are kept (CC BY any version,
CC0, public domain); see annotators/data/README.md for the list and the attribution.

    python scripts/build_recorded_labels.py [--labels ../shared/data/labels/teacher_labels_v2.parquet]
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
LABELS = ROOT.parent / "shared" / "data" / "labels" / "teacher_labels_v2.parquet"
OUT = ROOT / "annotators" / "data" / "recorded_labels.parquet"
REDISTRIBUTABLE = (
    "CC BY 4.0",
    "CC BY 3.0",
    "CC BY 2.5",
    "CC BY 2.0",
    "CC BY (from text)",
    "CC0 1.0",
    "Public domain (US Gov)",
    "Public Domain Mark",
)
COLUMNS = [
    "id", "article_file", "pmcid", "path", "section_title", "text", "text_sha256",
    "license", "language", "document_type", "domain", "educational_score",
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", default=str(LABELS))
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    table = pq.read_table(args.labels, columns=COLUMNS)
    kept = table.filter(pc.is_in(table["license"], pa.array(REDISTRIBUTABLE)))
    kept = kept.set_column(
        COLUMNS.index("educational_score"), "educational_score", kept["educational_score"].cast(pa.int8())
    )
    pq.write_table(kept, args.out, compression="zstd")
    print(f"{kept.num_rows} of {table.num_rows} rows kept -> {args.out}")
    for licence, n in Counter(kept["license"].to_pylist()).most_common():
        print(f"  {licence}: {n}")


if __name__ == "__main__":
    main()
