"""Ingest stage: PMC-OA JATS articles -> `<out>/paragraphs/` Parquet on Apache Beam (docs/ingest.md).

    inputs -> expand (folders, globs, packages) -> Reshuffle -> read bytes (tar packages streamed,
    members reshuffled) -> parse + paragraph rows (pure: `article_rows`) -> group by article id, keep
    the latest copy (`choose_latest`) -> paragraphs/, dead_letter/, ingest_stats.json

Counts reconcile: articles read = parsed + dead-lettered (an input that cannot even be read, e.g. a
missing file or a corrupt package, is dead-lettered as read too); superseded copies of an article are
parsed articles whose rows are not written (`articles_superseded`, and a dead-letter line each with
reason `superseded` naming the copy kept). Beam Metrics counters mirror the counts.
"""

from __future__ import annotations

import argparse
import logging
import posixpath
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.metrics import Metrics

from pipelines.core import changes, schemas
from pipelines.core.dead_letters import WriteDeadLetters, dead_letter
from pipelines.core.io import WriteDataset, read_json, write_json
from pipelines.core.options import pipeline_options
from pipelines.core.stats import MergeCounts
from pipelines.ingest import jats, langid, sources
from pipelines.ingest.sources import SourceMeta

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
    """Paragraph rows (`schemas.PARAGRAPHS`) of one parsed article, >= `min_tokens` words each."""
    kept = [p for p in article.paragraphs if p.n_tokens >= min_tokens]
    languages = langid.detect_paragraphs([p.text for p in kept])
    license_url, group = resolve_license(article, meta)
    pmid = article.pmid or (meta.pmid if meta else None)
    retracted = article.retracted or bool(meta and meta.retracted)
    article_id = article.article_id
    # The article's values once; each row is a copy with its own paragraph's (same key order).
    base = {
        "id": None,
        "article_id": article_id,
        "pmid": pmid,
        "path": None,
        "text": None,
        "section_title": None,
        "language": None,
        "language_score": None,
        "license_url": license_url,
        "license_group": group,
        "article_type": article.article_type,
        "article_title": article.title,
        "journal": article.journal,
        "authors": article.authors,
        "article_url": article.article_url,
        "retracted": retracted,
        "paragraph_index": None,
        "source": source,
    }
    rows = []
    for index, (p, (language, score)) in enumerate(zip(kept, languages, strict=True)):
        row = base.copy()
        row["id"] = jats.paragraph_id(article_id, p.path)
        row["path"] = p.path
        row["text"] = p.text
        row["section_title"] = p.section_title
        row["language"] = language
        row["language_score"] = score
        row["paragraph_index"] = index
        rows.append(row)
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
    """Per-article contribution to ingest_stats.json (summed by `MergeCounts`)."""
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
        # An article without kept paragraphs has no language (it is counted above, not as `und`).
        "articles_by_language": {languages.most_common(1)[0][0]: 1} if rows else {},
        "paragraphs_by_license_group": {group: len(rows)} if rows else {},
        "paragraphs_by_language": dict(languages),
        "dropped": dict(article.dropped),
    }


def superseded_summary(candidate: Candidate) -> dict:
    """Stats of a copy of an article that a later copy replaced: parsed, nothing written."""
    return {
        "articles_read": 1,
        "articles_parsed": 1,
        "articles_superseded": 1,
        "paragraphs_superseded": len(candidate.rows),
    }


@dataclass
class Candidate:
    """One parsed copy of an article, with what decides which copy is the latest."""

    source: str
    rows: list[dict]
    stats: dict
    version: int | None = None  # PMC article version (`PMC123.2`)
    last_updated: str | None = None  # file list `LastUpdated` / cloud JSON
    file_updated: str | None = None  # file or package-member modification time
    retracted: bool = False  # the article or its file list / cloud JSON says so (even without rows)

    def rank(self) -> tuple:
        """Latest first when sorted descending: version, then listed update time, then file time; the
        source name last so the choice never depends on input order."""
        return changes.copy_rank(self.version, self.last_updated, self.file_updated, self.source)

    def record(self, article_id: str) -> dict:
        """This copy as a row of the `articles` dataset (what a later incremental update ranks)."""
        return changes.article_record(
            article_id,
            self.rows,
            version=self.version,
            last_updated=self.last_updated,
            file_updated=self.file_updated,
            source=self.source,
            retracted=self.retracted,
        )


def choose_latest(candidates: Iterable[Candidate]) -> tuple[Candidate, list[Candidate]]:
    """(the copy to keep, the superseded copies) of one article seen more than once."""
    ordered = sorted(candidates, key=Candidate.rank, reverse=True)
    return ordered[0], ordered[1:]


# The counts every ingest_stats.json has, even when nothing was read.
ZERO_STATS = {
    "articles_read": 0,
    "articles_parsed": 0,
    "articles_dead_lettered": 0,
    "articles_superseded": 0,
    "paragraphs_superseded": 0,
    "articles_recovered": 0,
    "articles_without_body": 0,
    "articles_without_kept_paragraphs": 0,
    "paragraphs_extracted": 0,
    "paragraphs_written": 0,
}


def parse_payload(
    source: str,
    data: bytes,
    *,
    min_tokens: int,
    meta: dict | None = None,
    filelist: dict | None = None,
    file_updated: str | None = None,
) -> tuple[str, Candidate]:
    """Bytes of one article -> (article id, candidate copy). Raises jats.JatsError for a dead letter."""
    article = jats.parse_article(data, fallback_id=source_stem(source))
    side = lookup_meta(filelist, article, source, meta)
    rows = article_rows(article, source, min_tokens=min_tokens, meta=side)
    candidate = Candidate(
        source,
        rows,
        summarize(article, rows),
        version=article.version,
        last_updated=side.last_updated if side else None,
        file_updated=file_updated,
        retracted=article.retracted or bool(side and side.retracted),
    )
    return article.article_id, candidate


# --- Beam ---------------------------------------------------------------------------------------

READ = Metrics.counter(STAGE, "articles_read")
PARSED = Metrics.counter(STAGE, "articles_parsed")
DEAD = Metrics.counter(STAGE, "articles_dead_lettered")
PARAGRAPHS = Metrics.counter(STAGE, "paragraphs_written")
SUPERSEDED = Metrics.counter(STAGE, "articles_superseded")


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
                for member, data, mtime in sources.iter_tar(task.uri):
                    yield (f"{task.name}!{member}", data, None, mtime)
            except Exception as e:  # noqa: BLE001 - a corrupt package must not stop the run
                yield from _dead(task.name, "unreadable_package", f"{type(e).__name__}: {e}")
            return
        try:
            data = sources.read_bytes(task.uri)
        except Exception as e:  # noqa: BLE001
            yield from _dead(task.name, "unreadable_file", f"{type(e).__name__}: {e}")
            return
        meta = None
        if task.metadata_uri:
            try:
                meta = sources.parse_cloud_metadata(sources.read_bytes(task.metadata_uri), task.metadata_uri)
            except Exception:  # noqa: BLE001 - metadata is a fallback: the article still counts
                logging.warning("unreadable cloud metadata %s", task.metadata_uri)
        yield (task.name, data, meta.to_dict() if meta else None, task.updated)


class ParseArticle(beam.DoFn):
    """(source, bytes, metadata, file time) -> (article id, Candidate); dead letters and their stats as
    tagged outputs."""

    def __init__(self, min_tokens: int):
        self.min_tokens = min_tokens

    def process(self, payload, filelist) -> Iterator:
        source, data, meta, updated = payload
        try:
            yield parse_payload(
                source, data, min_tokens=self.min_tokens, meta=meta, filelist=filelist, file_updated=updated
            )
        except jats.JatsError as e:
            yield from _dead(source, e.reason, e.detail)
            return
        except Exception as e:  # noqa: BLE001 - never crash the pipeline on one article
            yield from _dead(source, "parse_error", f"{type(e).__name__}: {e}")
            return
        READ.inc()
        PARSED.inc()


class KeepLatest(beam.DoFn):
    """All copies of one article -> the latest copy's rows; the others counted and dead-lettered as
    `superseded` (one row per paragraph id across the whole input)."""

    def process(self, element) -> Iterator:
        article_id, candidates = element
        kept, superseded = choose_latest(candidates)
        for old in superseded:
            SUPERSEDED.inc()
            detail = f"{article_id}: kept {kept.source} (version {kept.version or '-'})"
            yield beam.pvalue.TaggedOutput("superseded", dead_letter(STAGE, old.source, "superseded", detail))
            yield beam.pvalue.TaggedOutput("stats", superseded_summary(old))
        PARAGRAPHS.inc(len(kept.rows))
        yield beam.pvalue.TaggedOutput("stats", kept.stats)
        yield beam.pvalue.TaggedOutput("articles", kept.record(article_id))
        yield from kept.rows


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
    ).with_outputs("dead", "stats", main="candidates")
    kept = (
        parsed.candidates
        | "ByArticle" >> beam.GroupByKey()
        | "KeepLatest"
        >> beam.ParDo(KeepLatest()).with_outputs("superseded", "stats", "articles", main="rows")
    )
    kept.rows | WriteDataset(output, "paragraphs", schemas.PARAGRAPHS)
    kept.articles | "WriteArticles" >> WriteDataset(output, "articles", schemas.ARTICLES)
    (
        (read_files.dead, read_packages.dead, parsed.dead, kept.superseded)
        | "AllDead" >> beam.Flatten()
        | WriteDeadLetters(output, STAGE)
    )
    stats_path = f"{output.rstrip('/')}/{STAGE}_stats.json"

    def finish(stats: dict) -> dict:
        stats = {
            "stage": STAGE,
            "inputs": list(inputs),
            "min_tokens": min_tokens,
            "text_rendering": jats.TEXT_RENDERING,
            **stats,
        }
        write_json(stats, stats_path)
        return stats

    return (
        (read_files.stats, read_packages.stats, parsed.stats, kept.stats)
        | "AllStats" >> beam.Flatten()
        | "MergeStats" >> beam.CombineGlobally(MergeCounts(ZERO_STATS))
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
    if not jats.COMPILED:
        logging.warning(
            "pipelines.ingest.jats_c is not built (`pip install -e .` with a C compiler builds it): ingest "
            "runs its Python code, same output, about 1.5x the CPU time per article"
        )
    with beam.Pipeline(options=pipeline_options(beam_args)) as pipeline:
        build_pipeline(pipeline, list(inputs), output, min_tokens=min_tokens)
    return read_json(f"{output.rstrip('/')}/{STAGE}_stats.json")


def main(argv: list[str] | None = None) -> dict:
    """`python -m pipelines.ingest.pipeline INPUTS... --output DIR [Beam flags]`: the stage on its own."""
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.ingest.pipeline", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "inputs", nargs="+", help="Folders, globs, .xml/.nxml files, .tar.gz packages, file lists."
    )
    parser.add_argument(
        "--output", "-o", required=True, help="Output root: paragraphs/, dead_letter/, stats."
    )
    parser.add_argument("--min-tokens", type=int, default=DEFAULT_MIN_TOKENS, help="Shortest paragraph kept.")
    known, beam_args = parser.parse_known_args(argv)
    return run_ingest(**vars(known), beam_args=beam_args)


if __name__ == "__main__":
    main()
