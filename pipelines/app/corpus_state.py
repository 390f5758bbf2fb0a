"""The state of a finished corpus in its output directory, and how an update reads and replaces it.

`ingest/articles/` (kept copy and rank per article), `ingest/paragraphs/`, `propagate/scored/` and the
subsets are plain Parquet under the run root (local, gs://, s3://: Beam FileSystems and pyarrow), so
an incremental update (`pipelines.app.update`) needs no database. Datasets are rewritten beside the old
ones and swapped in, in one canonical row order (article, body order, id).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
from apache_beam.io.filesystems import FileSystems

from pipelines.app.run_layout import STAGE_DIRS
from pipelines.core import changes
from pipelines.core.io import parquet_files, read_table
from pipelines.core.schemas import ARTICLES, PARAGRAPHS, SCORED, conform

WORK_DIR = "_update_work"
SHARD_ROWS = 500_000  # rows per rewritten shard


@dataclass(frozen=True)
class Layout:
    """Where a run keeps its corpus state (the same directories `run --config` writes)."""

    root: str

    def join(self, *parts: str) -> str:
        return FileSystems.join(self.root, *parts)

    @property
    def ingest(self) -> str:
        return self.join(STAGE_DIRS["ingest"])

    @property
    def propagate(self) -> str:
        return self.join(STAGE_DIRS["propagate"])

    @property
    def subsets(self) -> str:
        return self.join(STAGE_DIRS["subsets"])

    @property
    def model(self) -> str:
        return self.join(STAGE_DIRS["train"])

    @property
    def work(self) -> str:
        return self.join(WORK_DIR)


def exists_dataset(path: str) -> bool:
    try:
        parquet_files([path])
        return True
    except FileNotFoundError:
        return False


def read_dataset(path: str, schema: pa.Schema) -> pa.Table:
    """A dataset conformed to `schema`; an empty table when nothing was written (e.g. no articles)."""
    if not exists_dataset(path):
        return schema.empty_table()
    return conform(read_table([path]), schema)


def delete(path: str) -> None:
    if FileSystems.exists(path):
        FileSystems.delete([path])


def replace_dataset(table: pa.Table, root: str, name: str) -> list[str]:
    """Write `table` as `<root>/<name>/part-*.parquet` in place of what was there (written beside it
    first, then swapped in: shards of the old and the new dataset never mix). An update interrupted
    between datasets is finished by running the same update again: copies already applied rank equal
    and change nothing, scores missing for their text are computed."""
    import pyarrow.parquet as pq

    final, staging = FileSystems.join(root, name), FileSystems.join(root, f"{name}.next")
    delete(staging)
    n = max(1, -(-table.num_rows // SHARD_ROWS))
    staged = []
    for i in range(n):
        shard = f"part-{i:05d}-of-{n:05d}.parquet"
        path = FileSystems.join(staging, shard)
        with FileSystems.create(path) as f:
            pq.write_table(table.slice(i * SHARD_ROWS, SHARD_ROWS), f)
        staged.append((path, FileSystems.join(final, shard)))
    delete(final)
    if "://" not in final:
        FileSystems.mkdirs(final)
    FileSystems.rename([s for s, _ in staged], [d for _, d in staged])
    delete(staging)
    return [d for _, d in staged]


def canonical_order(table: pa.Table) -> pa.Table:
    """Canonical row order: article, then body order (a full run and an update compare row by row)."""
    return table.sort_by([("article_id", "ascending"), ("paragraph_index", "ascending"), ("id", "ascending")])


def articles_from_paragraphs(paragraphs: pa.Table) -> list[dict]:
    """Article records for an output written before `ingest/articles/` existed: no rank known, so any
    new copy of these articles replaces them."""
    by_article: dict[str, list[dict]] = {}
    for row in paragraphs.select(
        ["id", "article_id", "text", "paragraph_index", "retracted", "source"]
    ).to_pylist():
        by_article.setdefault(row["article_id"], []).append(row)
    return [
        changes.article_record(aid, rows, version=None, last_updated=None, file_updated=None, source="")
        for aid, rows in by_article.items()
    ]


def listed_articles(inputs: list[str]) -> dict[str, dict]:
    """PMCID -> {retracted, last_updated} from the new inputs' file lists (ingest reads the same lists)."""
    from pipelines.ingest import sources

    out: dict[str, dict] = {}
    for uri in sources.filelist_inputs(inputs):
        for key, meta in sources.parse_filelist(sources.read_bytes(uri), uri).items():
            if meta.pmcid == key:
                out[key] = {"retracted": bool(meta.retracted), "last_updated": meta.last_updated}
    return out


def has_articles(inputs: list[str]) -> bool:
    from pipelines.ingest import sources

    return any(True for uri in inputs for _ in sources.expand_input(uri))


def subset_digests(subsets_dir: str) -> dict[str, dict[str, str]]:
    """Recipe -> document key (id, repeat) -> text hash, for the subsets' Parquet documents."""
    out: dict[str, dict[str, str]] = {}
    if not FileSystems.exists(subsets_dir):
        return out
    pattern = FileSystems.join(subsets_dir, "*", "**.parquet")
    for result in FileSystems.match([pattern]):
        for meta in result.metadata_list:
            rel = meta.path[len(subsets_dir.rstrip("/")) + 1 :]
            recipe = rel.split("/")[0]
            if recipe.startswith(("_", ".")) or recipe == "dead_letter":
                continue
            table = read_table([meta.path], columns=["id", "repeat", "text"])
            docs = out.setdefault(recipe, {})
            for doc_id, repeat, text in zip(
                table["id"].to_pylist(), table["repeat"].to_pylist(), table["text"].to_pylist(), strict=True
            ):
                docs[f"{doc_id}#{repeat}"] = changes.text_hash(text)
    return out


def load_corpus(layout: Layout) -> tuple[pa.Table, dict[str, dict], pa.Table]:
    """(paragraphs, article records by id, scored rows) of the finished corpus."""
    paragraphs = read_dataset(FileSystems.join(layout.ingest, "paragraphs"), PARAGRAPHS)
    articles = FileSystems.join(layout.ingest, "articles")
    if exists_dataset(articles):
        records = read_dataset(articles, ARTICLES).to_pylist()
    else:
        records = articles_from_paragraphs(paragraphs)
    scored = read_dataset(FileSystems.join(layout.propagate, "scored"), SCORED)
    return paragraphs, {r["article_id"]: r for r in records}, scored
