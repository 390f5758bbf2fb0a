"""Real PMC articles laid out as a baseline and later deliveries: new articles, new versions of known
ones (one paragraph edited), an older copy arriving late, and a file list marking one retracted.

Used by tests/test_incremental.py and benchmarks/incremental.py.
"""

from __future__ import annotations

import math
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

FILELIST_HEADER = (
    "Article File,Article Citation,AccessionID,LastUpdated (YYYY-MM-DD HH:MM:SS),PMID,License,Retracted\n"
)
_BODY_P = re.compile(rb"<body[^>]*>.*?<p(?:\s[^>]*)?>", re.S)


def usable_articles(sample: Path, n: int, skip: int = 0, small_first: bool = True) -> list[Path]:
    """`n` sample articles named `PMC<digits>.xml` whose body has a `<p>` (editable into a new version),
    small ones first (12-40 kB: a few paragraphs each, so scoring them stays quick on 2 cores) unless
    `small_first` is off (then in name order: the sample's own mix of sizes)."""
    out = []
    paths = sorted(sample.glob("PMC*.xml"))
    if small_first:
        paths.sort(key=lambda p: not 12_000 <= p.stat().st_size <= 40_000)
    for path in paths:
        if not re.fullmatch(r"PMC\d+\.xml", path.name):
            continue
        data = path.read_bytes()
        if _BODY_P.search(data) and b'pub-id-type="pmcid-ver"' not in data:
            out.append(path)
    return out[skip : skip + n]


def new_version(data: bytes, note: str) -> bytes:
    """The article with the first body paragraph changed (a sentence added at its start)."""
    m = _BODY_P.search(data)
    assert m, "article without a body paragraph"
    return data[: m.end()] + note.encode() + b" " + data[m.end() :]


def filelist(rows: list[tuple[str, str]], updated: str = "2026-11-30 12:00:00") -> str:
    """A PMC file-list CSV marking `(pmcid, yes|no)` rows' Retracted column."""
    lines = [FILELIST_HEADER]
    for pmcid, retracted in rows:
        lines.append(f'{pmcid[:6]}xxxxxx/{pmcid}.xml,"J Test. 2026",{pmcid},"{updated}",,,{retracted}\n')
    return "".join(lines)


@dataclass
class Deliveries:
    """Input folders / file lists: `baseline` first, then each update's inputs."""

    baseline: list[str]
    updates: list[list[str]] = field(default_factory=list)
    new_versions: list[str] = field(default_factory=list)
    retracted: list[str] = field(default_factory=list)
    late_copies: list[str] = field(default_factory=list)

    @property
    def union(self) -> list[str]:
        return [*self.baseline, *(i for u in self.updates for i in u)]


def make_deliveries(
    sample: Path,
    root: Path,
    *,
    baseline: int,
    new_per_update: list[int],
    versions_per_update: list[int],
    retractions: int = 1,
    late_copy: bool = True,
    small_first: bool = True,
) -> Deliveries:
    """Copy real articles into `root/base`, `root/u1`, ...: each update brings new articles, new
    versions (`PMC<id>.<v>.xml`, one paragraph edited) of articles already delivered, and the first
    update a file list retracting `retractions` baseline articles; the last update also re-delivers
    an older version of an article updated before it (it must lose: `late_copy`)."""
    articles = usable_articles(sample, baseline + sum(new_per_update), small_first=small_first)
    base = root / "base"
    base.mkdir(parents=True)
    for path in articles[:baseline]:
        shutil.copyfile(path, base / path.name)
    out = Deliveries([str(base)])
    delivered = [p.stem for p in articles[:baseline]]
    original = {p.stem: p for p in articles}
    start = baseline
    # Articles get new versions in order, never the ones retracted (kept apart to keep the test readable).
    retracted = delivered[-retractions:] if retractions else []
    versionable = [a for a in delivered if a not in retracted]
    for k, (n_new, n_versions) in enumerate(zip(new_per_update, versions_per_update, strict=True), 1):
        folder = root / f"u{k}"
        folder.mkdir()
        inputs = [str(folder)]
        for path in articles[start : start + n_new]:
            shutil.copyfile(path, folder / path.name)
        delivered += [p.stem for p in articles[start : start + n_new]]
        start += n_new
        for pmcid in versionable[:n_versions]:
            data = new_version(original[pmcid].read_bytes(), f"Revised in update {k} of this test corpus.")
            (folder / f"{pmcid}.{k + 1}.xml").write_bytes(data)
            out.new_versions.append(pmcid)
        versionable = versionable[n_versions:]
        if k == 1 and retracted:
            csv = root / "u1-retractions.filelist.csv"
            csv.write_text(filelist([(p, "yes") for p in retracted]))
            inputs.append(str(csv))
            out.retracted += retracted
        if late_copy and k == len(new_per_update) and out.new_versions:
            pmcid = out.new_versions[0]  # versioned `.2` in an earlier update: `.1` arrives late
            shutil.copyfile(original[pmcid], folder / f"{pmcid}.1.xml")
            out.late_copies.append(pmcid)
        out.updates.append(inputs)
    return out


# float32 inference batches paragraphs by length: the same text scored in another batch can differ in
# the 7th significant digit (padding changes the summation order), never more.
FLOAT_TOLERANCE = 1e-5
SCORE_FLOATS = ("educational_score", "document_type_scores", "domain_scores")


def canonical(root: Path, dataset: str, schema) -> list[dict]:
    """A dataset under a run root as rows in canonical order (article, body order, id)."""
    from pipelines.app.corpus_state import read_dataset

    table = read_dataset(str(root / dataset), schema)
    keys = [("article_id", "ascending")]
    if "paragraph_index" in schema.names:
        keys += [("paragraph_index", "ascending"), ("id", "ascending")]
    return table.sort_by(keys).to_pylist()


def same_row(a: dict, b: dict) -> bool:
    """Equal rows; score floats within FLOAT_TOLERANCE (labels and everything else exactly)."""
    if a.keys() != b.keys():
        return False
    for key in a:
        if key in SCORE_FLOATS and a[key] is not None and b[key] is not None:
            x, y = (a[key], b[key]) if isinstance(a[key], list) else ([a[key]], [b[key]])
            if len(x) != len(y):
                return False
            if not all(math.isclose(p, q, abs_tol=FLOAT_TOLERANCE) for p, q in zip(x, y, strict=True)):
                return False
        elif a[key] != b[key]:
            return False
    return True


def compare_corpora(a: Path, b: Path) -> dict:
    """Row-by-row comparison of two run roots: rows per dataset and how many differ (or are missing)."""
    from pipelines.app.corpus_state import subset_digests
    from pipelines.core.schemas import ARTICLES, PARAGRAPHS, SCORED

    out = {}
    for dataset, schema in (
        ("ingest/paragraphs", PARAGRAPHS),
        ("ingest/articles", ARTICLES),
        ("propagate/scored", SCORED),
    ):
        x, y = canonical(a, dataset, schema), canonical(b, dataset, schema)
        differing = sum(1 for p, q in zip(x, y, strict=False) if not same_row(p, q)) + abs(len(x) - len(y))
        out[dataset] = {"rows": len(x), "rows_full": len(y), "differing": differing}
    da, db = subset_digests(str(a / "subsets")), subset_digests(str(b / "subsets"))
    docs = sum(len(v) for v in da.values())
    differing = sum(len(set(da.get(r, {}).items()) ^ set(db.get(r, {}).items())) for r in set(da) | set(db))
    out["subsets"] = {"rows": docs, "rows_full": sum(len(v) for v in db.values()), "differing": differing}
    return out
