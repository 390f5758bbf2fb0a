"""Ingest stage: PMC-OA JATS articles -> `<out>/paragraphs/` Parquet on Apache Beam (docs/ingest.md).

    inputs -> expand (folders, globs, packages) -> Reshuffle -> read bytes (tar packages streamed,
    members reshuffled) -> parse + paragraph rows (pure: `article_rows`) -> paragraphs/, dead_letter/,
    ingest_stats.json

Counts reconcile: articles read = parsed + dead-lettered (an input that cannot even be read, e.g. a
missing file or a corrupt package, is dead-lettered as read too). Beam Metrics counters mirror them.
"""

from __future__ import annotations

import logging
import posixpath
from collections import Counter
from collections.abc import Iterable, Iterator

import apache_beam as beam
from apache_beam.metrics import Metrics

from pipelines import jats, langid, schemas, sources
from pipelines.io import WriteDataset, WriteDeadLetters, dead_letter, read_json, write_json
from pipelines.options import pipeline_options
from pipelines.sources import SourceMeta

STAGE = "ingest"
DEFAULT_MIN_TOKENS = 64
_CC_CODE_URL = {
    "cc0": "https://creativecommons.org/publicdomain/zero/1.0/",
}


def license_from_code(code: str | None) -> str:
    """File-list / cloud licence code (`CC BY`, `CC BY-NC-ND`, `CC0`, `NO-CC CODE`...) -> licence group."""
    c = " ".join((code or "").upper().replace("_", " ").replace("-", " ").split())
    tokens = c.split()
    if "NC" in tokens or "NONCOMMERCIAL" in c.replace(" ", ""):
        return "noncommercial"
    if tokens[:2] in (["CC", "BY"], ["CC", "0"]) or c.startswith("CC0") or "PUBLIC DOMAIN" in c:
        return "commercial"
    return "other"


def resolve_license(article: jats.Article, meta: SourceMeta | None) -> tuple[str | None, str]:
    """The article's own licence elements win; the file list / cloud JSON fill in when they say nothing CC."""
    if article.license_group != "other" or meta is None or not meta.license:
        return article.license_url, article.license_group
    group = license_from_code(meta.license)
    if group == "other":
        return article.license_url, article.license_group
    return article.license_url or _CC_CODE_URL.get(meta.license.strip().lower()), group


def article_rows(
    article: jats.Article,
    source: str,
    *,
    min_tokens: int = DEFAULT_MIN_TOKENS,
    meta: SourceMeta | None = None,
) -> list[dict]:
    """Paragraph rows (pipelines.schemas.PARAGRAPHS) of one parsed article, >= `min_tokens` words each."""
    kept = [p for p in article.paragraphs if p.n_tokens >= min_tokens]
    languages = langid.detect_paragraphs([p.text for p in kept])
    license_url, group = resolve_license(article, meta)
    pmid = article.pmid or (meta.pmid if meta else None)
    retracted = article.retracted or bool(meta and meta.retracted)
    authors = article.authors
    rows = []
    for index, (p, (language, score)) in enumerate(zip(kept, languages, strict=True)):
        rows.append(
            {
                "id": jats.paragraph_id(article.article_id, p.path),
                "article_id": article.article_id,
                "pmid": pmid,
                "path": p.path,
                "text": p.text,
                "section_title": p.section_title,
                "language": language,
                "language_score": score,
                "license_url": license_url,
                "license_group": group,
                "article_type": article.article_type,
                "article_title": article.title,
                "journal": article.journal,
                "authors": authors,
                "article_url": article.article_url,
                "retracted": retracted,
                "paragraph_index": index,
                "source": source,
            }
        )
    return rows


def source_stem(source: str) -> str:
    """File stem of a source (`.../PMC123.xml` or `pkg.tar.gz!dir/PMC123.nxml` -> `PMC123`): fallback id."""
    name = posixpath.basename(source.rsplit("!", 1)[-1])
    return name.rsplit(".", 1)[0] if "." in name else name


def lookup_meta(
    filelist: dict | None, article: jats.Article, source: str, meta: dict | None
) -> SourceMeta | None:
    """Side metadata for an article: cloud JSON read with it, else the file list by PMCID or file name."""
    if meta:
        return SourceMeta(**meta)
    if not filelist:
        return None
    for key in (article.pmcid, posixpath.basename(source.rsplit("!", 1)[-1])):
        if key and key in filelist:
            return SourceMeta(**filelist[key])
    return None


def summarize(article: jats.Article | None, rows: list[dict], reason: str | None = None) -> dict:
    """Per-article contribution to ingest_stats.json (merged by `merge_stats`)."""
    if article is None:
        return {
            "articles_read": 1,
            "articles_dead_lettered": 1,
            "dead_letter_reasons": {reason or "unknown": 1},
        }
    languages = Counter(r["language"] for r in rows)
    group = rows[0]["license_group"] if rows else article.license_group
    return {
        "articles_read": 1,
        "articles_parsed": 1,
        "articles_recovered": int(article.recovered),
        "articles_without_body": int(not article.has_body),
        "articles_without_kept_paragraphs": int(not rows),
        "paragraphs_extracted": len(article.paragraphs),
        "paragraphs_written": len(rows),
        "articles_by_license_group": {group: 1},
        "articles_by_language": {languages.most_common(1)[0][0] if rows else "und": 1},
        "paragraphs_by_license_group": {group: len(rows)} if rows else {},
        "paragraphs_by_language": dict(languages),
    }


def merge_stats(parts: Iterable[dict]) -> dict:
    total: dict = {
        "articles_read": 0,
        "articles_parsed": 0,
        "articles_dead_lettered": 0,
        "articles_recovered": 0,
        "articles_without_body": 0,
        "articles_without_kept_paragraphs": 0,
        "paragraphs_extracted": 0,
        "paragraphs_written": 0,
    }
    for part in parts:
        for key, value in part.items():
            if isinstance(value, dict):
                bucket = total.setdefault(key, {})
                for k, v in value.items():
                    bucket[k] = bucket.get(k, 0) + v
            else:
                total[key] = total.get(key, 0) + value
    return total


def parse_payload(
    source: str, data: bytes, *, min_tokens: int, meta: dict | None = None, filelist: dict | None = None
) -> tuple[list[dict], dict]:
    """Bytes of one article -> (rows, stats part). Raises jats.JatsError for a dead letter."""
    article = jats.parse_article(data, fallback_id=source_stem(source))
    rows = article_rows(
        article, source, min_tokens=min_tokens, meta=lookup_meta(filelist, article, source, meta)
    )
    return rows, summarize(article, rows)


# --- Beam ---------------------------------------------------------------------------------------

READ = Metrics.counter(STAGE, "articles_read")
PARSED = Metrics.counter(STAGE, "articles_parsed")
DEAD = Metrics.counter(STAGE, "articles_dead_lettered")
PARAGRAPHS = Metrics.counter(STAGE, "paragraphs_written")


def _dead(source: str, reason: str, detail: str = "") -> list:
    READ.inc()
    DEAD.inc()
    return [
        beam.pvalue.TaggedOutput("dead", dead_letter(STAGE, source, reason, detail)),
        beam.pvalue.TaggedOutput("stats", summarize(None, [], reason)),
    ]


class ReadTask(beam.DoFn):
    """A reading task -> (source, bytes, cloud metadata) payloads; packages streamed member by member."""

    def process(self, task: sources.Task) -> Iterator:
        if task.kind == "tar":
            try:
                for member, data in sources.iter_tar(task.uri):
                    yield (f"{task.uri}!{member}", data, None)
            except Exception as e:  # noqa: BLE001 - a corrupt package must not stop the run
                yield from _dead(task.uri, "unreadable_package", f"{type(e).__name__}: {e}")
            return
        try:
            data = sources.read_bytes(task.uri)
        except Exception as e:  # noqa: BLE001
            yield from _dead(task.uri, "unreadable_file", f"{type(e).__name__}: {e}")
            return
        meta = None
        if task.metadata_uri:
            try:
                meta = sources.parse_cloud_metadata(sources.read_bytes(task.metadata_uri), task.metadata_uri)
            except Exception:  # noqa: BLE001 - metadata is a fallback: the article still counts
                logging.warning("unreadable cloud metadata %s", task.metadata_uri)
        yield (task.uri, data, meta.to_dict() if meta else None)


class ParseArticle(beam.DoFn):
    """(source, bytes, metadata) -> paragraph rows; dead letters and per-article stats as tagged outputs."""

    def __init__(self, min_tokens: int):
        self.min_tokens = min_tokens

    def process(self, payload, filelist) -> Iterator:
        source, data, meta = payload
        try:
            rows, stats = parse_payload(
                source, data, min_tokens=self.min_tokens, meta=meta, filelist=filelist
            )
        except jats.JatsError as e:
            yield from _dead(source, e.reason, e.detail)
            return
        except Exception as e:  # noqa: BLE001 - never crash the pipeline on one article
            yield from _dead(source, "parse_error", f"{type(e).__name__}: {e}")
            return
        READ.inc()
        PARSED.inc()
        PARAGRAPHS.inc(len(rows))
        yield beam.pvalue.TaggedOutput("stats", stats)
        yield from rows


def load_filelist(uri: str) -> Iterator[tuple[str, dict]]:
    for key, meta in sources.parse_filelist(sources.read_bytes(uri), uri).items():
        yield key, meta.to_dict()


def build_pipeline(pipeline, inputs: list[str], output: str, *, min_tokens: int = DEFAULT_MIN_TOKENS):
    """Add the ingest transforms to `pipeline` (returns the stats PCollection)."""
    tasks = (
        pipeline
        | "Inputs" >> beam.Create(list(inputs))
        | "Expand" >> beam.FlatMap(sources.expand_input)
        | "SpreadTasks" >> beam.Reshuffle()
    )
    explicit_lists = pipeline | "FileLists" >> beam.Create(sources.filelist_inputs(inputs))
    package_lists = tasks | "PackageFileLists" >> beam.FlatMap(lambda t: t.filelists)
    filelist = (
        (explicit_lists, package_lists)
        | "AllFileLists" >> beam.Flatten()
        | "DistinctLists" >> beam.Distinct()
        | "LoadFileLists" >> beam.FlatMap(load_filelist)
        | "OnePerKey" >> beam.CombinePerKey(lambda values: next(iter(values), None))
    )
    files, packages = tasks | "ByKind" >> beam.Partition(lambda t, n: 1 if t.kind == "tar" else 0, 2)
    read_files = files | "ReadFiles" >> beam.ParDo(ReadTask()).with_outputs("dead", "stats", main="payloads")
    read_packages = packages | "ReadPackages" >> beam.ParDo(ReadTask()).with_outputs(
        "dead", "stats", main="payloads"
    )
    payloads = (
        read_files.payloads,
        read_packages.payloads | "SpreadMembers" >> beam.Reshuffle(),
    ) | "AllPayloads" >> beam.Flatten()
    parsed = payloads | "Parse" >> beam.ParDo(
        ParseArticle(min_tokens), beam.pvalue.AsDict(filelist)
    ).with_outputs("dead", "stats", main="rows")
    parsed.rows | WriteDataset(output, "paragraphs", schemas.PARAGRAPHS)
    (
        (read_files.dead, read_packages.dead, parsed.dead)
        | "AllDead" >> beam.Flatten()
        | WriteDeadLetters(output, STAGE)
    )
    stats_path = f"{output.rstrip('/')}/{STAGE}_stats.json"

    def finish(stats: dict) -> dict:
        stats = {"stage": STAGE, "inputs": list(inputs), "min_tokens": min_tokens, **stats}
        write_json(stats, stats_path)
        return stats

    return (
        (read_files.stats, read_packages.stats, parsed.stats)
        | "AllStats" >> beam.Flatten()
        | "MergeStats" >> beam.CombineGlobally(merge_stats)
        | "WriteStats" >> beam.Map(finish)
    )


def run_ingest(
    inputs: list[str],
    output: str,
    *,
    min_tokens: int = DEFAULT_MIN_TOKENS,
    beam_args: list[str] | None = None,
) -> dict:
    """Run the ingest pipeline and return its stats (also written to `<output>/ingest_stats.json`).

    `inputs`: folders, globs, `.xml`/`.nxml` files, `.tar.gz` packages, PMC file-list CSVs (any URI).
    `beam_args`: standard Beam pipeline options (`--runner`, `--direct_num_workers`, ...).
    """
    if not inputs:
        raise ValueError(
            "ingest needs at least one input (folder, glob, .xml/.nxml, .tar.gz or file-list .csv)"
        )
    missing = sources.missing_inputs(inputs)
    if missing:
        raise FileNotFoundError(f"ingest inputs match no file: {', '.join(missing)}")
    with beam.Pipeline(options=pipeline_options(beam_args)) as pipeline:
        build_pipeline(pipeline, list(inputs), output, min_tokens=min_tokens)
    return read_json(f"{output.rstrip('/')}/{STAGE}_stats.json")
