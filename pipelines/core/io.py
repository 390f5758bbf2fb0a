"""Dataset IO shared by every stage: Parquet shards under `<root>/<dataset>/` (dead letters: `dead_letters`).

Paths are anything Beam's FileSystems / pyarrow / smart-open read: local, gs://, s3://.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import apache_beam as beam
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipelines.core import arrowfs


def dataset_dir(root: str, name: str) -> str:
    return FileSystems.join(root, name)


class WriteDataset(beam.PTransform):
    """Write dict rows as Parquet shards `<root>/<name>/part-*.parquet` with one of `core.schemas`."""

    def __init__(self, root: str, name: str, schema: pa.Schema, num_shards: int = 0):
        super().__init__(label=f"Write {name}")
        self.prefix = FileSystems.join(dataset_dir(root, name), "part")
        self.schema = schema
        self.num_shards = num_shards

    def expand(self, rows):
        return rows | beam.io.WriteToParquet(
            self.prefix,
            self.schema,
            file_name_suffix=".parquet",
            num_shards=self.num_shards,
            shard_name_template="-SSSSS-of-NNNNN",
        )


def parquet_files(paths: Iterable[str]) -> list[str]:
    """Expand dataset roots, directories and globs into the Parquet files they hold: the paths in the
    order given, each one's files sorted (rows come in the same order whether a path is local or a
    bucket URI, which would otherwise sort apart)."""
    paths = list(paths)
    files: list[str] = []
    for path in paths:
        if path.endswith(".parquet") and "*" not in path:
            files.append(path)
            continue
        is_glob = any(c in path for c in "*?[")
        pattern = path if is_glob else FileSystems.join(path.rstrip("/"), "**.parquet")
        files.extend(sorted(m.path for r in FileSystems.match([pattern]) for m in r.metadata_list))
    files = [f for f in dict.fromkeys(files) if f.endswith(".parquet")]
    if not files:
        raise FileNotFoundError(f"no Parquet files under {list(paths)}")
    return files


def open_dataset(paths: Iterable[str]) -> pads.Dataset:
    """The in-process reader: Parquet files, directories or globs as one pyarrow dataset (remote URIs
    included), for column projection and filters pushed down to the files."""
    return arrowfs.dataset(parquet_files(paths))


def read_table(paths: Iterable[str], columns: list[str] | None = None) -> pa.Table:
    """Read Parquet files, directories or globs as one table."""
    return open_dataset(paths).to_table(columns=columns)


def dataset_schema(files: Iterable[str]) -> pa.Schema:
    """The unified schema of Parquet files, from their footers (no data read)."""
    schemas = []
    for path in files:
        with FileSystems.open(path) as f:
            schemas.append(pq.read_schema(f))
    return pa.unify_schemas(schemas, promote_options="permissive")


def count_rows(files: Iterable[str]) -> int:
    """Rows in Parquet files, from their footers (no data read)."""
    total = 0
    for path in files:
        with FileSystems.open(path) as f:
            total += pq.read_metadata(f).num_rows
    return total


class ReadDataset(beam.PTransform):
    """The Beam reader: rows (dicts) of Parquet files, spread over workers file by file."""

    def __init__(self, files: list[str], columns: list[str] | None = None, label: str = "Read"):
        super().__init__(label=label)
        self.files, self.columns = list(files), columns

    def expand(self, pbegin):
        return (
            pbegin
            | "Files" >> beam.Create(self.files)
            | "Rows" >> beam.io.ReadAllFromParquet(columns=self.columns)
        )


def write_table(table: pa.Table, root: str, name: str, shard: str = "part-00000-of-00001") -> str:
    """Write one in-process table as a shard of dataset `name` (for stages that are not Beam pipelines)."""
    path = FileSystems.join(dataset_dir(root, name), f"{shard}.parquet")
    with FileSystems.create(path) as f:
        pq.write_table(table, f)
    return path


def write_json(obj: object, path: str) -> None:
    with FileSystems.create(path) as f:
        f.write(json.dumps(obj, indent=2, sort_keys=True, default=str).encode())


def read_json(path: str) -> object:
    with FileSystems.open(path) as f:
        return json.loads(f.read())
