"""Dataset IO shared by every stage: Parquet shards under `<root>/<dataset>/`, dead letters beside them.

Paths are anything Beam's FileSystems / pyarrow / smart-open read: local, gs://, s3://.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipelines.core import arrowfs
from pipelines.core.uris import is_remote


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


def dead_letter(stage: str, source: str, reason: str, detail: str = "") -> dict:
    """One dead-letter record: what was dropped, by which stage, and why."""
    return {"stage": stage, "source": source, "reason": reason, "detail": detail[:2000]}


class WriteDeadLetters(beam.PTransform):
    """Write dead-letter dicts as JSON lines under `<root>/dead_letter/<stage>-*.jsonl`.

    Locally always at least one file, so an empty dead-letter set is visibly empty rather than missing.
    On an object store no file for none: Beam's S3 writer cannot create an empty object (a multipart
    upload with no part is rejected with MalformedXML), and a missing shard counts as zero letters.
    """

    def __init__(self, root: str, stage: str):
        super().__init__(label=f"Write {stage} dead letters")
        self.prefix = FileSystems.join(dataset_dir(root, "dead_letter"), stage)
        self.skip_if_empty = is_remote(root)

    def expand(self, records):
        return (
            records
            | "ToJson" >> beam.Map(lambda r: json.dumps(r, ensure_ascii=False, sort_keys=True))
            | beam.io.WriteToText(
                self.prefix,
                file_name_suffix=".jsonl",
                shard_name_template="-SSSSS-of-NNNNN",
                skip_if_empty=self.skip_if_empty,
            )
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


def read_table(paths: Iterable[str], columns: list[str] | None = None) -> pa.Table:
    """Read Parquet files, directories or globs as one table (pyarrow datasets; remote URIs included)."""
    return arrowfs.dataset(parquet_files(paths)).to_table(columns=columns)


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
