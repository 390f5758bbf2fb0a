"""Where articles come from: expand ingest inputs into article byte payloads plus side metadata.

Inputs are URIs Beam's FileSystems reads (local, gs://, s3://; https:// through smart_open):
- a folder (walked recursively) or a glob of `.xml` / `.nxml` files;
- a `.tar.gz` / `.tgz` bulk package, streamed member by member (never unpacked to disk); a sibling
  `<package>.filelist.csv` is joined automatically;
- a PMC file-list CSV (`Article File, Article Citation, AccessionID, LastUpdated (YYYY-MM-DD HH:MM:SS),
  PMID, License, Retracted`): not articles, a join table giving licence / PMID / retraction by PMCID;
- the PMC Cloud layout `PMC<id>.<ver>/PMC<id>.<ver>.xml` with `metadata/PMC<id>.<ver>.json` beside
  the article folders: the JSON is read with its article (licence code, retraction, PMID).
Pure functions (no Beam pipeline objects) so tests and other stages can use them directly.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import posixpath
import re
import tarfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from apache_beam.io.filesystems import FileSystems

ARTICLE_SUFFIXES = (".xml", ".nxml")
TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar")
CSV_SUFFIXES = (".csv",)
_CLOUD_NAME = re.compile(r"^(PMC\d+)(?:\.(\d+))?$")
_GLOB = re.compile(r"[*?\[]")


@dataclass
class SourceMeta:
    """Article facts known outside the XML (file list or cloud JSON): fallbacks, never overrides."""

    pmcid: str | None = None
    pmid: str | None = None
    license: str | None = None
    retracted: bool | None = None
    origin: str = ""
    # `LastUpdated` of the file list / the cloud JSON's update time: picks the latest copy of an article.
    last_updated: str | None = None

    def to_dict(self) -> dict:
        return {
            "pmcid": self.pmcid,
            "pmid": self.pmid,
            "license": self.license,
            "retracted": self.retracted,
            "origin": self.origin,
            "last_updated": self.last_updated,
        }


@dataclass
class Task:
    """One unit of reading work: an article file, or a whole tar package streamed by one worker."""

    uri: str
    kind: str  # "file" | "tar"
    metadata_uri: str | None = None  # cloud layout JSON
    filelists: list[str] = field(default_factory=list)
    # How rows and dead letters name the file: relative to the input as given (`display_source`).
    source: str = ""
    # Modification time (UTC, ISO 8601) when the file system knows it: a tiebreak between copies.
    updated: str | None = None

    @property
    def name(self) -> str:
        return self.source or self.uri


def _label(given: str) -> str:
    """An input as shown in rows: URIs and relative paths as given, an absolute local path by its last
    component (rows must not carry the machine's directories: an output can be moved)."""
    given = given.rstrip("/") or given
    if "://" in given or not os.path.isabs(given):
        return given
    return posixpath.basename(given) or given


def display_source(given: str, path: str) -> str:
    """`path` (a file found under the input `given`) as the input as given + the path below it.

    `/data/oa/` + `/data/oa/PMC000xxxxxx/PMC1.xml` -> `oa/PMC000xxxxxx/PMC1.xml`; `in/*.xml` +
    `in/PMC1.xml` -> `in/PMC1.xml`; a file given by name keeps that name (its basename when absolute).
    """
    if path == given:
        return _label(given)
    wildcard = _GLOB.search(given)
    base = posixpath.dirname(given[: wildcard.start()]) if wildcard else given.rstrip("/")
    if base and path.startswith(base + "/"):
        return f"{_label(base)}/{path[len(base) + 1 :]}"
    return _label(path)


def _iso(seconds: float | None) -> str | None:
    if not seconds:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _is(uri: str, suffixes: tuple[str, ...]) -> bool:
    return uri.lower().endswith(suffixes)


def _match(pattern: str) -> list[str]:
    return [path for path, _ in _match_times(pattern)]


def _match_times(pattern: str) -> list[tuple[str, str | None]]:
    """(path, modification time) of the files matching `pattern`, sorted by path."""
    try:
        results = FileSystems.match([pattern])
    except Exception:  # noqa: BLE001 - Beam raises BeamIOError for "no match"
        return []
    found = {m.path: getattr(m, "last_updated_in_seconds", None) for r in results for m in r.metadata_list}
    return [(path, _iso(seconds)) for path, seconds in sorted(found.items())]


def missing_inputs(uris: Iterable[str]) -> list[str]:
    """Folders and globs that match nothing, checked before a run: a typo there would otherwise ingest
    0 articles silently. (A named file or package that is missing is dead-lettered like any bad read.)"""

    def found(uri: str) -> bool:
        if _is(uri, ARTICLE_SUFFIXES + TAR_SUFFIXES + CSV_SUFFIXES) and not _GLOB.search(uri):
            return True
        if not _GLOB.search(uri) and _exists(uri):
            return True
        pattern = uri if _GLOB.search(uri) else f"{uri.rstrip('/')}/**"
        try:
            return any(r.metadata_list for r in FileSystems.match([pattern], limits=[1]))
        except Exception:  # noqa: BLE001 - Beam raises BeamIOError for "no match"
            return False

    return [uri for uri in uris if not found(uri)]


def _exists(uri: str) -> bool:
    try:
        return FileSystems.exists(uri)
    except Exception:  # noqa: BLE001
        return False


def cloud_metadata_uri(uri: str) -> str | None:
    """`<root>/PMC123.1/PMC123.1.xml` -> `<root>/metadata/PMC123.1.json` (PMC Cloud layout), else None."""
    folder, name = posixpath.split(uri.rstrip("/"))
    stem = name.rsplit(".", 1)[0]
    root, parent = posixpath.split(folder)
    if parent != stem or not _CLOUD_NAME.match(stem):
        return None
    return f"{root}/metadata/{stem}.json" if root else f"metadata/{stem}.json"


def filelist_for_package(uri: str) -> str | None:
    """`x.tar.gz` -> `x.filelist.csv` when it exists (the NCBI oa_bulk naming)."""
    for suffix in TAR_SUFFIXES:
        if uri.lower().endswith(suffix):
            candidate = uri[: -len(suffix)] + ".filelist.csv"
            return candidate if _exists(candidate) else None
    return None


def expand_input(uri: str) -> Iterator[Task]:
    """Expand one input (file, folder, glob, package) into reading tasks. File lists yield nothing here."""
    if _is(uri, CSV_SUFFIXES):
        return
    if _is(uri, TAR_SUFFIXES) and not _GLOB.search(uri):
        filelist = filelist_for_package(uri)
        yield Task(uri, "tar", filelists=[filelist] if filelist else [], source=display_source(uri, uri))
        return
    if _GLOB.search(uri):
        paths = _match_times(uri)
    elif _is(uri, ARTICLE_SUFFIXES):
        paths = _match_times(uri) or [(uri, None)]
    else:  # a folder: everything below it
        paths = _match_times(f"{uri.rstrip('/')}/**")
    if not paths:
        logging.warning("ingest input %s matched no files", uri)
    for path, updated in paths:
        source = display_source(uri, path)
        if _is(path, ARTICLE_SUFFIXES):
            meta = cloud_metadata_uri(path)
            metadata_uri = meta if meta and _exists(meta) else None
            yield Task(path, "file", metadata_uri=metadata_uri, source=source, updated=updated)
        elif _is(path, TAR_SUFFIXES):
            filelist = filelist_for_package(path)
            yield Task(path, "tar", filelists=[filelist] if filelist else [], source=source, updated=updated)


def filelist_inputs(inputs: Iterable[str]) -> list[str]:
    """The file-list CSVs among the inputs (explicit ones; package siblings are found per package)."""
    out: list[str] = []
    for uri in inputs:
        if _is(uri, CSV_SUFFIXES):
            out.extend(_match(uri) if _GLOB.search(uri) else [uri])
    return out


def open_uri(uri: str):
    """Binary reader for any URI: Beam FileSystems first (local, gs, s3...), smart_open for http(s)."""
    if uri.startswith(("http://", "https://")):
        import smart_open

        return smart_open.open(uri, "rb", compression="disable")
    return FileSystems.open(uri, compression_type="uncompressed")


def read_bytes(uri: str) -> bytes:
    with open_uri(uri) as f:
        return f.read()


def iter_tar(uri: str) -> Iterator[tuple[str, bytes, str | None]]:
    """Stream `(member name, bytes, member mtime)` of the article members of a tar(.gz) package, one at a
    time.

    `tarfile` in stream mode (`r|*`) reads the (gzip) stream sequentially: nothing touches local disk
    and only one member is in memory at a time.
    """
    with open_uri(uri) as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
        for member in tar:
            if not member.isfile() or not _is(member.name, ARTICLE_SUFFIXES):
                continue
            f = tar.extractfile(member)
            if f is not None:
                yield member.name, f.read(), _iso(member.mtime)


def _norm_pmcid(value: str | None) -> str | None:
    m = re.search(r"(\d+)", value or "")
    return f"PMC{m.group(1)}" if m else None


def parse_filelist(data: bytes | str, origin: str = "") -> dict[str, SourceMeta]:
    """PMC file-list CSV -> {PMCID: SourceMeta}, also keyed by the `Article File` basename."""
    text = data.decode("utf-8-sig", errors="replace") if isinstance(data, bytes) else data
    out: dict[str, SourceMeta] = {}
    for row in csv.DictReader(io.StringIO(text)):
        row = {(k or "").strip().split(" (")[0].lower(): (v or "").strip() for k, v in row.items()}
        pmcid = _norm_pmcid(row.get("accessionid"))
        retracted = row.get("retracted", "").lower()
        meta = SourceMeta(
            last_updated=row.get("lastupdated") or None,
            pmcid=pmcid,
            pmid=row.get("pmid") if (row.get("pmid") or "").isdigit() and row.get("pmid") != "0" else None,
            license=row.get("license") or None,
            retracted=True if retracted == "yes" else False if retracted == "no" else None,
            origin=origin,
        )
        if pmcid:
            out[pmcid] = meta
        name = posixpath.basename(row.get("article file", ""))
        if name:
            out[name] = meta
    return out


def parse_cloud_metadata(data: bytes, origin: str = "") -> SourceMeta:
    """PMC Cloud `metadata/PMC<id>.<ver>.json` -> SourceMeta (lenient about key names: the layout is new)."""
    obj = json.loads(data)

    def pick(*keys: str):
        for key in keys:
            if obj.get(key) not in (None, ""):
                return obj[key]
        return None

    retracted = pick("is_retracted", "retracted")
    if isinstance(retracted, str):
        retracted = retracted.strip().lower() in ("yes", "true", "1")
    pmid = pick("pmid", "PMID")
    updated = pick("last_updated", "lastupdated", "updated", "last_modified", "LastUpdated")
    return SourceMeta(
        last_updated=str(updated) if updated is not None else None,
        pmcid=_norm_pmcid(str(pick("pmcid", "accession_id", "accessionid", "AccessionID") or "")),
        pmid=str(pmid) if pmid not in (None, "", 0) else None,
        license=pick("license_code", "license", "licence", "License"),
        retracted=bool(retracted) if retracted is not None else None,
        origin=origin,
    )
