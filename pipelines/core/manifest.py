"""`_manifest.json` beside each stage output: what was written, from what, with which config and code.

A manifest lists every output file with its size and sha256, the row count of every dataset, the
schema version, a hash of the stage config, the code version and fingerprints of the inputs. The
orchestrator reuses a stage only when its manifest matches the current config and inputs and
`verify` finds every file intact (present, same size and hash, Parquet footers readable, row counts
equal): a truncated or missing file is caught, never silently reused.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipelines.core import uris
from pipelines.core.schemas import SCHEMA_VERSION

MANIFEST = "_manifest.json"
_CHUNK = 1 << 20


def config_hash(config: object) -> str:
    """Stable hash of a JSON-able config (key order does not matter)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def code_version() -> str:
    """Package version plus a hash of the installed sources, so code edits show up in manifests."""
    try:
        version = metadata.version("biomed-enrich")
    except metadata.PackageNotFoundError:
        version = "0+unknown"
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parents[2]
    for package in ("pipelines", "annotators", "distill"):
        for path in sorted((root / package).rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
    return f"{version}+{digest.hexdigest()[:12]}"


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with FileSystems.open(path) as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def list_files(root: str) -> dict[str, int]:
    """Relative path -> size of every file under `root` (the manifest itself excluded)."""
    prefix = root.rstrip("/") + "/"
    out = {}
    for result in FileSystems.match([prefix + "**"]):
        for m in result.metadata_list:
            rel = m.path[len(prefix) :] if m.path.startswith(prefix) else m.path
            if rel != MANIFEST and not rel.endswith("/"):
                out[rel] = m.size_in_bytes
    return dict(sorted(out.items()))


def relative_inputs(paths: list[str], run_root: str | None) -> dict[str, str]:
    """Input path as recorded -> path as given: relative to the run root when inside it (so a run's
    output directory can be moved, copied or synced and still resume), else unchanged."""
    if not run_root:
        return {p: p for p in paths}
    if "://" in run_root:  # a bucket prefix: the same, by string (an object store has no symlinks)
        prefix = run_root.rstrip("/") + "/"
        return {(p[len(prefix) :] if p.startswith(prefix) else p): p for p in paths}
    root = Path(run_root).resolve()
    out = {}
    for p in paths:
        if "://" in p:
            out[p] = p
            continue
        try:
            out[Path(p).resolve().relative_to(root).as_posix()] = p
        except ValueError:
            out[p] = p
    return out


def input_fingerprint(paths: list[str], run_root: str | None = None) -> str:
    """Fingerprint of inputs: an upstream manifest's outputs hash when there is one, else names+sizes."""
    digest = hashlib.sha256()
    for name, path in sorted(relative_inputs(paths, run_root).items()):
        manifest = FileSystems.join(path.rstrip("/"), MANIFEST)
        if FileSystems.exists(manifest):
            with FileSystems.open(manifest) as f:
                digest.update(json.loads(f.read()).get("outputs_hash", "").encode())
            continue
        if FileSystems.exists(path) and not _is_dir(path):
            files = {name: FileSystems.match([path])[0].metadata_list[0].size_in_bytes}
        else:
            files = list_files(path)
        digest.update(json.dumps(files, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def _is_dir(path: str) -> bool:
    return Path(path).is_dir() if "://" not in path else path.endswith("/")


def dataset_rows(root: str) -> dict[str, int]:
    """Rows per Parquet dataset (first-level directory), read from the footers only."""
    rows: dict[str, int] = {}
    for rel in list_files(root):
        if rel.endswith(".parquet"):
            name = rel.split("/")[0] if "/" in rel else "."
            with FileSystems.open(FileSystems.join(root, rel)) as f:
                rows[name] = rows.get(name, 0) + pq.ParquetFile(f).metadata.num_rows
    return rows


def write_manifest(
    root: str,
    stage: str,
    config: object,
    inputs: list[str],
    extra: dict | None = None,
    hash_files: bool = True,
    run_root: str | None = None,
) -> dict:
    """Record `root` as the finished output of `stage` (call only after the stage succeeded).

    Inputs under `run_root` are recorded relative to it: the output tree stays valid when moved."""
    files = {
        rel: {"size": size, "sha256": file_sha256(FileSystems.join(root, rel)) if hash_files else None}
        for rel, size in list_files(root).items()
    }
    manifest = {
        "stage": stage,
        "schema_version": SCHEMA_VERSION,
        "config_hash": config_hash(config),
        "code_version": code_version(),
        "inputs": sorted(relative_inputs(inputs, run_root)),
        "input_fingerprint": input_fingerprint(inputs, run_root),
        "files": files,
        "rows": dataset_rows(root),
        "outputs_hash": config_hash(files),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **(extra or {}),
    }
    with FileSystems.create(FileSystems.join(root, MANIFEST)) as f:
        f.write(json.dumps(manifest, indent=2, sort_keys=True).encode())
    return manifest


def read_manifest(root: str) -> dict | None:
    path = FileSystems.join(root, MANIFEST)
    if not FileSystems.exists(path):
        return None
    try:
        with FileSystems.open(path) as f:
            return json.loads(f.read())
    except (ValueError, OSError):
        return None


@dataclass
class Check:
    ok: bool
    reason: str = ""


def verify(
    root: str,
    *,
    config: object | None = None,
    inputs: list[str] | None = None,
    hashes: bool = True,
    run_root: str | None = None,
) -> Check:
    """Is `root` a finished, intact output for this config and these inputs? Says why not.

    `hashes=False` skips re-hashing file contents (sizes, Parquet footers and row counts are still
    checked): for very large outputs where reading everything back on each resume is too slow.
    """
    manifest = read_manifest(root)
    if manifest is None:
        if not uris.exists(root):  # a bucket "directory" is a prefix: exists if it holds objects
            return Check(False, "not run yet")
        return Check(False, "unfinished earlier (no manifest): starting it again")
    if manifest.get("schema_version") != SCHEMA_VERSION:
        return Check(False, f"schema version {manifest.get('schema_version')} != {SCHEMA_VERSION}")
    if config is not None and manifest.get("config_hash") != config_hash(config):
        return Check(False, "config changed")
    if inputs is not None:
        if manifest.get("inputs") != sorted(relative_inputs(inputs, run_root)):
            return Check(False, "input list changed")
        if manifest.get("input_fingerprint") != input_fingerprint(inputs, run_root):
            return Check(False, "inputs changed")
    present = list_files(root)
    for rel, info in manifest["files"].items():
        if rel not in present:
            return Check(False, f"missing file {rel}")
        if present[rel] != info["size"]:
            return Check(False, f"size of {rel} changed ({info['size']} -> {present[rel]} bytes)")
        if hashes and info.get("sha256") and file_sha256(FileSystems.join(root, rel)) != info["sha256"]:
            return Check(False, f"content of {rel} changed (sha256 mismatch)")
    try:
        rows = dataset_rows(root)
    except Exception as e:  # noqa: BLE001 - any unreadable Parquet file means a corrupted output
        return Check(False, f"unreadable Parquet: {type(e).__name__}: {e}")
    if rows != manifest.get("rows"):
        return Check(False, f"row counts {rows} != recorded {manifest.get('rows')}")
    return Check(True, "intact")
