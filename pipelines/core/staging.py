"""Models and torch-only outputs on object stores: staged through a local directory.

`local_model(uri)` gives a local directory for a model at `s3://...`, `gs://...` (a directory with its
`_manifest.json`, or a `.tar.gz` / `.tgz` / `.tar`), downloaded once per worker process into
`$BIOMED_ENRICH_CACHE/models/<key>` where `key` is the model manifest's outputs hash (a tarball: its
URI, size and modification time). A Dataflow worker stages it on first use instead of needing it baked
into the image; later processes on the same machine find it complete in the cache.

`local_output(uri)` lets a stage that writes only local files (training) write to a scratch directory
that is uploaded to `uri` when it succeeds; the orchestrator's manifest is written after the upload.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from apache_beam.io.filesystems import FileSystems

from pipelines.core import uris

TARBALL_SUFFIXES = (".tar.gz", ".tgz", ".tar")
_COMPLETE = ".staged"  # written last in a cache entry: a half-copied entry is never used
_staged: dict[str, str] = {}
_lock = threading.Lock()


def cache_root() -> Path:
    base = os.environ.get("BIOMED_ENRICH_CACHE", str(Path.home() / ".cache" / "biomed-enrich"))
    return Path(base) / "models"


def is_tarball(uri: str) -> bool:
    return str(uri).lower().endswith(TARBALL_SUFFIXES)


def model_key(uri: str) -> str:
    """What identifies this model's content without downloading it."""
    uris.ensure_configured()
    if is_tarball(uri):
        meta = FileSystems.match([uri])[0].metadata_list
        if not meta:
            raise FileNotFoundError(f"model tarball {uri} not found")
        stamp = f"{uri}|{meta[0].size_in_bytes}|{getattr(meta[0], 'last_updated_in_seconds', '')}"
        return "tar-" + hashlib.sha256(stamp.encode()).hexdigest()[:16]
    manifest = uris.join(uri, uris.MANIFEST)
    if FileSystems.exists(manifest):
        outputs_hash = json.loads(uris.read_bytes(manifest)).get("outputs_hash")
        if outputs_hash:
            return outputs_hash
    files = uris.list_under(uri)
    if not files:
        raise FileNotFoundError(f"no model at {uri} (nothing under that prefix)")
    prefix = uri.rstrip("/") + "/"
    listing = {p.removeprefix(prefix): size for p, size in files.items()}
    return "dir-" + hashlib.sha256(json.dumps(listing, sort_keys=True).encode()).hexdigest()[:16]


def _model_root(directory: Path) -> Path:
    """The directory holding config.json (a tarball may wrap the model in one top-level folder)."""
    if (directory / "config.json").exists():
        return directory
    found = sorted(p.parent for p in directory.rglob("config.json"))
    return found[0] if found else directory


def _fetch(uri: str, target: Path) -> None:
    if not is_tarball(uri):
        uris.download_tree(uri, str(target))
        return
    with tempfile.TemporaryFile() as tmp:
        with FileSystems.open(uri, compression_type="uncompressed") as src:
            shutil.copyfileobj(src, tmp, 1 << 20)
        tmp.seek(0)
        with tarfile.open(fileobj=tmp, mode="r:*") as tar:
            tar.extractall(target, filter="data")


def local_model(uri: str) -> str:
    """A local directory with the model at `uri` (a local directory is returned as it is)."""
    if not uris.is_remote(uri) and not is_tarball(uri):
        return uri
    with _lock:
        if uri in _staged:
            return _staged[uri]
        entry = cache_root() / model_key(uri)
        if not (entry / _COMPLETE).exists():
            entry.parent.mkdir(parents=True, exist_ok=True)
            scratch = Path(tempfile.mkdtemp(prefix=f".{entry.name}-", dir=entry.parent))
            try:
                _fetch(uri, scratch)
                (scratch / _COMPLETE).write_text(uri)
                shutil.rmtree(entry, ignore_errors=True)  # an incomplete entry from a killed process
                try:
                    scratch.rename(entry)
                except OSError:  # another process on this machine finished first: use theirs
                    if not (entry / _COMPLETE).exists():
                        raise
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        _staged[uri] = str(_model_root(entry))
        return _staged[uri]


def model_name(uri: str) -> str:
    """The model's directory (or tarball) name, for `model_id`: the URI's, not the cache key's."""
    name = str(uri).rstrip("/").rsplit("/", 1)[-1]
    for suffix in TARBALL_SUFFIXES:
        name = name.removesuffix(suffix)
    return name


@contextmanager
def local_output(uri: str) -> Iterator[str]:
    """A local directory to write `uri`'s files into; uploaded to `uri` when the block succeeds."""
    if not uris.is_remote(uri):
        yield uri
        return
    with tempfile.TemporaryDirectory(prefix="biomed-enrich-stage-") as tmp:
        yield tmp
        uris.upload_tree(tmp, uri)
