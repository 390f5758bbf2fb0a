"""The object-store servers and our URI layer: Beam FileSystems, smart-open and pyarrow on s3:// and gs://."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
import smart_open
from apache_beam.io.filesystems import FileSystems

from pipelines.core import uris
from pipelines.core.io import read_table, write_table


@pytest.fixture(params=["s3", "gs"])
def bucket(request, object_stores) -> str:
    uris.configure([])
    return object_stores.new_bucket(request.param)


def test_beam_filesystems_and_smart_open_write_read_and_list_on_the_server(bucket):
    with FileSystems.create(f"{bucket}/a/one.txt") as f:
        f.write(b"x" * 300_000)
    with smart_open.open(f"{bucket}/a/b/two.txt", "w") as f:
        f.write("two")
    assert uris.list_under(f"{bucket}/a") == {f"{bucket}/a/one.txt": 300_000, f"{bucket}/a/b/two.txt": 3}
    with smart_open.open(f"{bucket}/a/one.txt", "rb") as f:
        assert f.read() == b"x" * 300_000
    assert uris.read_bytes(f"{bucket}/a/b/two.txt") == b"two"
    assert uris.exists(f"{bucket}/a") and uris.exists(f"{bucket}/a/one.txt")
    assert not uris.exists(f"{bucket}/nothing-here")
    assert [p.name for p in uris.as_path(bucket).glob("a/*.txt")] == ["one.txt"]


def test_parquet_round_trip_and_delete_tree(bucket):
    table = pa.table({"id": ["p1", "p2", "p3"], "n": [1, 2, 3]})
    write_table(table, f"{bucket}/run", "data")
    write_table(table.slice(0, 1), f"{bucket}/run", "data", shard="part-00001-of-00002")
    uris.write_bytes(f"{bucket}/run/data/_manifest.json", b"{}")
    assert read_table([f"{bucket}/run/data"]).num_rows == 4
    assert read_table([f"{bucket}/run/data"], columns=["id"]).column_names == ["id"]
    uris.delete_tree(f"{bucket}/run")
    assert uris.list_under(f"{bucket}/run") == {}


def test_upload_and_download_a_tree(bucket, tmp_path):
    (tmp_path / "src" / "sub").mkdir(parents=True)
    (tmp_path / "src" / "config.json").write_text("{}")
    (tmp_path / "src" / "sub" / "w.bin").write_bytes(bytes(range(256)) * 100)
    uris.upload_tree(str(tmp_path / "src"), f"{bucket}/model")
    uris.download_tree(f"{bucket}/model", str(tmp_path / "dst"))
    assert (tmp_path / "dst" / "config.json").read_text() == "{}"
    assert (tmp_path / "dst" / "sub" / "w.bin").read_bytes() == bytes(range(256)) * 100


def test_a_model_tarball_on_a_bucket_is_staged_once_per_process(object_stores, tmp_path, monkeypatch):
    import tarfile

    from pipelines.core import staging

    uris.configure([])
    bucket = object_stores.new_bucket("s3")
    (tmp_path / "student").mkdir()
    (tmp_path / "student" / "config.json").write_text('{"backbone": "x"}')
    (tmp_path / "student" / "model.safetensors").write_bytes(b"w" * 1000)
    with tarfile.open(tmp_path / "student.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "student", arcname="student")
    uris.write_bytes(f"{bucket}/models/student.tar.gz", (tmp_path / "student.tar.gz").read_bytes())
    monkeypatch.setenv("BIOMED_ENRICH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(staging, "_staged", {})  # a fresh worker process

    local = staging.local_model(f"{bucket}/models/student.tar.gz")
    assert Path(local).is_relative_to(tmp_path / "cache" / "models")
    assert (Path(local) / "model.safetensors").read_bytes() == b"w" * 1000  # the folder in the tarball
    uris.delete_tree(f"{bucket}/models")  # a second call in this process must not fetch again
    assert staging.local_model(f"{bucket}/models/student.tar.gz") == local
    assert staging.model_name(f"{bucket}/models/student.tar.gz") == "student"
