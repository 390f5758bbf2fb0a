"""Paths that may be buckets: one small API over Beam's FileSystems for local, s3:// and gs:// alike.

Every stage reads and writes through Beam's FileSystems, so one set of settings (Beam's `--s3_*`
flags, or each SDK's own chain: AWS_* env / profile / instance role, Google ADC / workload identity,
and the endpoint overrides AWS_ENDPOINT_URL_S3 / STORAGE_EMULATOR_HOST) reaches every read and write.
Object stores have no directories and no atomic rename: a "directory" is a prefix, and a stage is done
only when its `_manifest.json` (written last) says so (see `pipelines.core.manifest`).
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
from pathlib import Path

from apache_beam.io.filesystems import FileSystems

from pipelines.core import s3_clients

REMOTE = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
MANIFEST = "_manifest.json"


def is_remote(path: str) -> bool:
    """True for `scheme://...` other than `file://` (an object store or another remote file system)."""
    return bool(REMOTE.match(str(path))) and not str(path).startswith("file://")


def join(root: str, *parts: str) -> str:
    """`root/part/...` for local paths and URIs alike (never os.path.join on a URI)."""
    if not is_remote(root):
        return str(Path(root).joinpath(*parts))
    return "/".join([str(root).rstrip("/"), *(p.strip("/") for p in parts)])


def configure(beam_args: list[str] | None = None) -> None:
    """Give Beam's FileSystems the pipeline options outside a pipeline too (manifests, report, staging).

    Beam's S3 file system refuses to work without options; the `--s3_endpoint_url`, `--s3_region_name`
    ... flags among `beam_args` then apply to every read and write of the process, not only inside a
    pipeline. Without them each SDK's standard chain decides (credentials, region, endpoint).
    """
    from apache_beam.options.pipeline_options import PipelineOptions

    s3_clients.install()
    FileSystems.set_options(PipelineOptions(list(beam_args or [])))


def ensure_configured() -> None:
    if FileSystems._pipeline_options is None:  # noqa: SLF001 - Beam keeps it there, no getter
        configure([])


def list_under(root: str) -> dict[str, int]:
    """Path -> size of every file under the directory / prefix `root` (empty when there is none)."""
    if not is_remote(root):
        base = Path(root)
        if base.is_file():
            return {str(base): base.stat().st_size}
        return {str(p): p.stat().st_size for p in sorted(base.rglob("*")) if p.is_file()}
    ensure_configured()
    pattern = str(root).rstrip("/") + "/**"
    return {m.path: m.size_in_bytes for r in FileSystems.match([pattern]) for m in r.metadata_list}


def exists(path: str) -> bool:
    """A file, or a directory / prefix holding at least one file."""
    if not is_remote(path):
        return Path(path).exists()
    ensure_configured()
    return FileSystems.exists(path) or bool(list_under(path))


def delete_tree(path: str) -> None:
    """Remove a file or everything under a directory / prefix; its manifest first.

    Deleting on an object store is one request per object and can be interrupted: removing the
    manifest first means a half-deleted output is never taken for a finished one.
    """
    if not is_remote(path):
        p = Path(path)
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
        return
    files = list_under(path)
    if FileSystems.exists(path):
        files[str(path)] = 0
    manifest = join(path, MANIFEST)
    if manifest in files:
        FileSystems.delete([manifest])
        files.pop(manifest)
    if files:
        FileSystems.delete(sorted(files))


def read_bytes(path: str) -> bytes:
    ensure_configured()
    if is_remote(path) and not FileSystems.exists(path):
        raise FileNotFoundError(f"no such object: {path}")
    with FileSystems.open(path, compression_type="uncompressed") as f:
        return f.read()


def write_bytes(path: str, data: bytes) -> None:
    """Write a whole file (on an object store one PUT: readers see all of it or nothing)."""
    if not is_remote(path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    ensure_configured()
    with FileSystems.create(path, compression_type="uncompressed") as f:
        f.write(data)


def upload_tree(local_dir: str, uri: str) -> list[str]:
    """Copy every file under `local_dir` to the same relative paths under `uri`."""
    written = []
    for path in sorted(Path(local_dir).rglob("*")):
        if path.is_file():
            target = join(uri, path.relative_to(local_dir).as_posix())
            with open(path, "rb") as src:
                ensure_configured()
                with FileSystems.create(target, compression_type="uncompressed") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            written.append(target)
    return written


def download_tree(uri: str, local_dir: str) -> list[str]:
    """Copy every file under the prefix `uri` to the same relative paths under `local_dir`."""
    prefix = str(uri).rstrip("/") + "/"
    written = []
    for path in sorted(list_under(uri)):
        rel = path[len(prefix) :] if path.startswith(prefix) else posixpath.basename(path)
        target = Path(local_dir) / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        with FileSystems.open(path, compression_type="uncompressed") as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        written.append(str(target))
    return written


class RemotePath:
    """The few `pathlib.Path` operations the run log and the report use, on a bucket URI.

    `as_path(root)` gives a `Path` for local roots and this for URIs, so code written with `/`,
    `read_text`, `write_text` and `glob` works on both without a second code path.
    """

    def __init__(self, uri: str):
        self.uri = str(uri).rstrip("/")

    def __truediv__(self, other: str) -> RemotePath:
        return RemotePath(join(self.uri, str(other)))

    def __str__(self) -> str:
        return self.uri

    def __repr__(self) -> str:
        return f"RemotePath({self.uri!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemotePath) and other.uri == self.uri

    def __hash__(self) -> int:
        return hash(self.uri)

    def __lt__(self, other: RemotePath) -> bool:
        return self.uri < other.uri

    @property
    def name(self) -> str:
        return posixpath.basename(self.uri)

    @property
    def parent(self) -> RemotePath:
        return RemotePath(posixpath.dirname(self.uri))

    def exists(self) -> bool:
        return exists(self.uri)

    def is_file(self) -> bool:
        ensure_configured()
        return FileSystems.exists(self.uri)

    def is_dir(self) -> bool:
        return not self.is_file() and bool(list_under(self.uri))

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Nothing to do: an object store has prefixes, not directories."""

    def read_bytes(self) -> bytes:
        return read_bytes(self.uri)

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes) -> None:
        write_bytes(self.uri, data)

    def write_text(self, text: str, encoding: str = "utf-8") -> None:
        self.write_bytes(text.encode(encoding))

    def glob(self, pattern: str) -> list[RemotePath]:
        """Beam's glob: `*` stays within one level, `**` crosses levels."""
        ensure_configured()
        try:
            results = FileSystems.match([join(self.uri, pattern)])
        except Exception:  # noqa: BLE001 - Beam raises BeamIOError for "no match"
            return []
        return sorted(RemotePath(m.path) for r in results for m in r.metadata_list)


def as_path(path: str | os.PathLike) -> Path | RemotePath:
    """`Path` for a local path, `RemotePath` for an object-store URI."""
    if isinstance(path, RemotePath):
        return path
    return RemotePath(str(path)) if is_remote(str(path)) else Path(path)


def append_line(path: Path | RemotePath, line: str) -> None:
    """Append a line to a log file; on an object store (no append) the small file is rewritten."""
    if isinstance(path, RemotePath):
        old = path.read_text() if path.is_file() else ""
        path.write_text(old + line + "\n")
        return
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
