"""Training subsets: scored paragraphs -> one document per article, filtered, upsampled, prefixed.

Pure functions (`article_documents`, `article_factor`, ...) do the work on one article's rows; a
Beam pipeline groups paragraphs by article, applies every recipe, and writes each subset as
`<output>/<subset>/<license_group>/part-*.parquet|jsonl` so licence groups stay separable (as the
released commercial / noncommercial splits). Output order is a seeded hash shuffle, so a rerun
with the same seed writes the same files, and the repeats of an article are spread out.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable

from pipelines.core.schemas import LICENSE_GROUPS, SUBSET_DOCUMENTS
from pipelines.subsets.recipe import Recipe, load_recipes

STAGE = "subsets"
# Columns every recipe needs from the scored dataset; recipes add the ones their rules use.
BASE_COLUMNS = ("id", "article_id", "paragraph_index", "text", "license_group", "language")
WORK_DIR = "_subsets_work"


# ---------------------------------------------------------------- pure transforms (one article)


def _canonical(row: dict) -> str:
    """A total order on rows that depends on their content only (never on the order they arrived in)."""
    return json.dumps(row, sort_keys=True, default=str, ensure_ascii=False)


def clean_paragraphs(rows: Iterable[dict]) -> tuple[list[dict], list[tuple[dict, str]]]:
    """Body order (`paragraph_index`, then `id`), each paragraph id once, plus the rows left out and why.

    A row without `paragraph_index` cannot be placed in the article (`missing_paragraph_index`); of
    several rows with one id the one first in content order is kept (`duplicate_paragraph_id` for the
    rest), so the result never depends on input order.
    """
    rejected: list[tuple[dict, str]] = []
    by_id: dict[object, list[dict]] = {}
    for row in rows:
        if row.get("paragraph_index") is None:
            rejected.append((row, "missing_paragraph_index"))
        else:
            by_id.setdefault(row["id"], []).append(row)
    unique = []
    for same in by_id.values():
        same.sort(key=_canonical)
        unique.append(same[0])
        rejected.extend((row, "duplicate_paragraph_id") for row in same[1:])
    rejected.sort(key=lambda x: (x[1], _canonical(x[0])))
    return sorted(unique, key=lambda r: (r["paragraph_index"], str(r["id"]))), rejected


def order_paragraphs(rows: Iterable[dict]) -> list[dict]:
    """Body order, each paragraph id once (see `clean_paragraphs`)."""
    return clean_paragraphs(rows)[0]


def rejected_letters(article_id: str, rows: Iterable[dict]) -> list[dict]:
    """Dead letters for the paragraphs of one article that `clean_paragraphs` leaves out."""
    from pipelines.core.io import dead_letter

    return [
        dead_letter(STAGE, str(row.get("id")), reason, f"article {article_id}")
        for row, reason in clean_paragraphs(rows)[1]
    ]


def article_factor(rows: list[dict], recipe: Recipe) -> tuple[int, list[str]]:
    """How many times the article is repeated, and the names of the rules it qualified for."""
    matched = [rule for rule in recipe.upsample if rule.qualifies(rows)]
    if not matched:
        return 1, []
    factors = [rule.factor for rule in matched]
    if recipe.combine == "max":
        factor = max(factors)
    elif recipe.combine == "product":
        factor = math.prod(factors)
    else:  # sum: each qualifying rule adds its extra copies
        factor = 1 + sum(f - 1 for f in factors)
    if recipe.max_factor is not None:
        factor = min(factor, recipe.max_factor)
    return factor, [rule.name for rule in matched]


def score_int(score: float | None) -> int | None:
    """The educational score rounded half-up and clamped to 1..5 (the paper bins the regression this way)."""
    if score is None:
        return None
    return int(min(5, max(1, math.floor(float(score) + 0.5))))


def render_paragraph(row: dict, recipe: Recipe) -> str:
    if not recipe.prefix:
        return row["text"]
    fields = {k: ("" if v is None else v) for k, v in row.items()}
    fields["score_int"] = score_int(row.get("educational_score")) or ""
    return recipe.prefix.format(**fields) + row["text"]


def license_group_of(rows: list[dict]) -> str:
    """The article's licence group (all its paragraphs share it); unknown ones go to `other`."""
    groups = Counter(r.get("license_group") for r in rows if r.get("license_group") in LICENSE_GROUPS)
    return groups.most_common(1)[0][0] if groups else "other"


def main_language(rows: list[dict]) -> str | None:
    langs = Counter(r.get("language") for r in rows if r.get("language"))
    return min(langs, key=lambda lang: (-langs[lang], lang)) if langs else None


def article_documents(
    article_id: str,
    rows: Iterable[dict],
    recipe: Recipe,
    count_tokens: Callable[[str], int],
) -> tuple[list[dict], dict]:
    """One article's documents under `recipe` (0..factor copies) and a stats record for it.

    The filter drops paragraphs inside the article; an article left empty yields no document.
    Upsampling rules judge the whole article (`judge_articles_on: all`) or only what the filter kept.
    """
    ordered, rejected = clean_paragraphs(rows)
    kept = [r for r in ordered if recipe.keep(r)]
    factor, rules = article_factor(ordered if recipe.judge_articles_on == "all" else kept, recipe)
    group = license_group_of(ordered)
    stats = {
        "license_group": group,
        "paragraphs_read": len(ordered),
        "paragraphs_kept": len(kept),
        "paragraphs_rejected": dict(Counter(reason for _, reason in rejected)),
        "factor": factor if kept else 0,
        "rules": rules if kept else [],
        "n_tokens": 0,
        "language": main_language(kept),
    }
    if not kept:
        return [], stats
    text = recipe.separator.join(render_paragraph(r, recipe) for r in kept)
    n_tokens = count_tokens(text)
    stats["n_tokens"] = n_tokens
    base = {
        "article_id": article_id,
        "text": text,
        "n_paragraphs": len(kept),
        "n_tokens": n_tokens,
        "license_group": group,
        "language": stats["language"],
        "recipe": recipe.name,
    }
    return [{"id": f"{article_id}_r{k}", **base, "repeat": k} for k in range(factor)], stats


def shuffle_key(seed: int, doc_id: str) -> int:
    """A stable 64-bit position for a document under `seed` (same seed, same order, any runner)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{doc_id}".encode()).digest()[:8], "big")


def num_shards(documents: int, docs_per_shard: int) -> int:
    return max(1, math.ceil(documents / docs_per_shard))


# ---------------------------------------------------------------- stats (mergeable, for Beam combiners)


def empty_summary() -> dict:
    return {
        "articles_read": 0,
        "paragraphs_read": 0,
        "paragraphs_kept": 0,
        "articles_dropped": 0,
        "groups": {},
        "rules": {},
        "factors": {},
        "languages": {},
        "paragraphs_rejected": {},
    }


def add_article(summary: dict, stats: dict) -> dict:
    summary["articles_read"] += 1
    summary["paragraphs_read"] += stats["paragraphs_read"]
    summary["paragraphs_kept"] += stats["paragraphs_kept"]
    for reason, n in stats.get("paragraphs_rejected", {}).items():
        summary["paragraphs_rejected"][reason] = summary["paragraphs_rejected"].get(reason, 0) + n
    if not stats["factor"]:
        summary["articles_dropped"] += 1
        return summary
    factor = stats["factor"]
    g = summary["groups"].setdefault(
        stats["license_group"],
        {
            "articles": 0,
            "documents": 0,
            "paragraphs": 0,
            "tokens": 0,
            "unique_paragraphs": 0,
            "unique_tokens": 0,
        },
    )
    g["articles"] += 1
    g["documents"] += factor
    g["paragraphs"] += factor * stats["paragraphs_kept"]
    g["tokens"] += factor * stats["n_tokens"]
    g["unique_paragraphs"] += stats["paragraphs_kept"]
    g["unique_tokens"] += stats["n_tokens"]
    for rule in stats["rules"]:
        summary["rules"][rule] = summary["rules"].get(rule, 0) + 1
    summary["factors"][str(factor)] = summary["factors"].get(str(factor), 0) + 1
    if stats.get("language"):
        summary["languages"][stats["language"]] = summary["languages"].get(stats["language"], 0) + 1
    return summary


def merge_summaries(summaries: Iterable[dict]) -> dict:
    out = empty_summary()
    for s in summaries:
        for k in ("articles_read", "paragraphs_read", "paragraphs_kept", "articles_dropped"):
            out[k] += s[k]
        for group, g in s["groups"].items():
            tgt = out["groups"].setdefault(group, dict.fromkeys(g, 0))
            for k, v in g.items():
                tgt[k] += v
        for key in ("rules", "factors", "languages", "paragraphs_rejected"):
            for k, v in s.get(key, {}).items():
                out[key][k] = out[key].get(k, 0) + v
    return out


def totals(summary: dict) -> dict:
    """Whole-subset figures: documents, paragraphs and tokens (with repeats) and unique ones."""
    keys = ("articles", "documents", "paragraphs", "tokens", "unique_paragraphs", "unique_tokens")
    return {k: sum(g[k] for g in summary["groups"].values()) for k in keys}


# ---------------------------------------------------------------- Beam pipeline


def _beam_transforms():
    """Beam classes, defined lazily so importing this module (and `--help`) stays light."""
    import apache_beam as beam

    class BuildDocuments(beam.DoFn):
        def __init__(self, recipe: Recipe):
            self.recipe = recipe

        def setup(self):
            from pipelines.subsets.tokens import token_counter

            self.count_tokens = token_counter(self.recipe.tokenizer)

        def process(self, element):
            from pipelines.core.io import dead_letter

            article_id, rows = element
            try:
                docs, stats = article_documents(article_id, rows, self.recipe, self.count_tokens)
            except Exception as e:  # noqa: BLE001 - one bad article must not sink the job
                yield beam.pvalue.TaggedOutput(
                    "dead", dead_letter(STAGE, article_id, f"{self.recipe.name}: {type(e).__name__}", str(e))
                )
                return
            yield beam.pvalue.TaggedOutput("stats", stats)
            yield from docs

    class Summarise(beam.CombineFn):
        def create_accumulator(self):
            return empty_summary()

        def add_input(self, acc, stats):
            return add_article(acc, stats)

        def merge_accumulators(self, accs):
            return merge_summaries(accs)

        def extract_output(self, acc):
            return acc

    class WriteShard(beam.DoFn):
        """Write one shard file, documents in seeded-shuffle order."""

        def __init__(self, output: str, recipe: Recipe):
            self.output, self.recipe = output, recipe

        def process(self, element):
            import pyarrow as pa
            import pyarrow.parquet as pq
            from apache_beam.io.filesystems import FileSystems

            (group, shard, total), keyed = element
            docs = [d for _, _, d in sorted(keyed, key=lambda x: (x[0], x[1]))]
            ext = "parquet" if self.recipe.output_format == "parquet" else "jsonl"
            path = FileSystems.join(
                self.output, self.recipe.name, group, f"part-{shard:05d}-of-{total:05d}.{ext}"
            )
            with FileSystems.create(path) as f:
                if ext == "parquet":
                    pq.write_table(pa.Table.from_pylist(docs, schema=SUBSET_DOCUMENTS), f)
                else:
                    f.write("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs).encode())
            yield path

    def assign_shard(doc: dict, counts: dict, recipe: Recipe):
        key = shuffle_key(recipe.seed, doc["id"])
        total = num_shards(counts[doc["license_group"]], recipe.docs_per_shard)
        return (doc["license_group"], key % total, total), (key, doc["id"], doc)

    return beam, BuildDocuments, Summarise, WriteShard, assign_shard


def build_pipeline(
    pipeline, files: list[str], recipes: list[Recipe], output: str, columns: list[str]
) -> None:
    """Read scored shards once, group by article, and fan out one branch per recipe."""
    from apache_beam.io.filesystems import FileSystems

    from pipelines.core.io import WriteDeadLetters

    beam, BuildDocuments, Summarise, WriteShard, assign_shard = _beam_transforms()
    articles = (
        pipeline
        | "Files" >> beam.Create(files)
        | "Read scored" >> beam.io.ReadAllFromParquet(columns=columns)
        | "By article" >> beam.Map(lambda r: (r["article_id"], r))
        | "Group articles" >> beam.GroupByKey()
    )
    dead = []
    for recipe in recipes:
        n = recipe.name
        built = articles | f"Build {n}" >> beam.ParDo(BuildDocuments(recipe)).with_outputs(
            "dead", "stats", main="docs"
        )
        counts = (
            built.docs
            | f"Group of {n}" >> beam.Map(lambda d: d["license_group"])
            | f"Count {n}" >> beam.combiners.Count.PerElement()
        )
        (
            built.docs
            | f"Shard {n}" >> beam.Map(assign_shard, counts=beam.pvalue.AsDict(counts), recipe=recipe)
            | f"Group shards {n}" >> beam.GroupByKey()
            | f"Write {n}" >> beam.ParDo(WriteShard(output, recipe))
        )
        (
            built.stats
            | f"Summarise {n}" >> beam.CombineGlobally(Summarise())
            | f"Stats json {n}" >> beam.Map(json.dumps)
            | f"Write stats {n}"
            >> beam.io.WriteToText(
                FileSystems.join(output, WORK_DIR, n), file_name_suffix=".json", shard_name_template=""
            )
        )
        dead.append(built.dead)
    # Paragraphs no recipe can place (duplicate ids, no paragraph_index): dead-lettered once, not per recipe.
    dead.append(articles | "Rejected paragraphs" >> beam.FlatMapTuple(rejected_letters))
    _ = dead | "All dead" >> beam.Flatten() | WriteDeadLetters(output, STAGE)


def _delete(path: str) -> None:
    from apache_beam.io.filesystems import FileSystems

    if FileSystems.exists(path):
        FileSystems.delete([path])


def run_subsets(
    scored: list[str],
    recipe: str | list[str],
    output: str,
    *,
    tokenizer: str | None = None,
    seed: int | None = None,
    output_format: str | None = None,
    beam_args: list[str] | None = None,
    **kw,
) -> dict:
    """Build every recipe's subset from the scored datasets; returns (and writes) `subsets_stats.json`.

    `recipe` is a preset name, a YAML path, a comma-separated list of them, a list, or `paper` (all
    six paper presets). `tokenizer`, `seed` and `output_format` override every recipe's own.
    """
    import apache_beam as beam
    from apache_beam.io.filesystems import FileSystems

    from pipelines.core.io import parquet_files, read_json, write_json
    from pipelines.core.options import pipeline_options
    from pipelines.subsets.dataset_card import render_card

    started = time.time()
    recipes = load_recipes(recipe, tokenizer=tokenizer, seed=seed, output_format=output_format)
    files = parquet_files(scored)
    columns = sorted(set(BASE_COLUMNS).union(*(r.columns for r in recipes)) | {"educational_score"})
    for r in recipes:
        _delete(FileSystems.join(output, r.name))
    _delete(FileSystems.join(output, WORK_DIR))
    _delete(FileSystems.join(output, "dead_letter"))

    with beam.Pipeline(options=pipeline_options(beam_args)) as p:
        build_pipeline(p, files, recipes, output, columns)

    wall = time.time() - started
    stats: dict = {"stage": STAGE, "inputs": files, "wall_seconds": round(wall, 3), "subsets": {}}
    for r in recipes:
        summary = read_json(FileSystems.join(output, WORK_DIR, f"{r.name}.json"))
        entry = {**totals(summary), **summary, "recipe": r.name, "tokenizer": r.tokenizer, "seed": r.seed}
        entry["files"] = _subset_files(output, r)
        stats["subsets"][r.name] = entry
        with FileSystems.create(FileSystems.join(output, r.name, "README.md")) as f:
            f.write(render_card(r, entry).encode())
        with FileSystems.create(FileSystems.join(output, r.name, "recipe.yaml")) as f:
            f.write(r.to_yaml().encode())
    first = next(iter(stats["subsets"].values()))
    stats["articles_read"] = first["articles_read"]
    stats["paragraphs_read"] = first["paragraphs_read"]
    stats["paragraphs_rejected"] = first["paragraphs_rejected"]
    stats["paragraphs_per_second"] = round(first["paragraphs_read"] / wall, 2) if wall else None
    stats["dead_letters"] = _count_dead(output)
    _delete(FileSystems.join(output, WORK_DIR))
    write_json(stats, FileSystems.join(output, f"{STAGE}_stats.json"))
    return stats


def _subset_files(output: str, recipe: Recipe) -> list[str]:
    from apache_beam.io.filesystems import FileSystems

    ext = "parquet" if recipe.output_format == "parquet" else "jsonl"
    pattern = FileSystems.join(output, recipe.name, "*", f"part-*.{ext}")
    root = FileSystems.join(output, recipe.name) + "/"
    return sorted(m.path.replace(root, "", 1) for r in FileSystems.match([pattern]) for m in r.metadata_list)


def _count_dead(output: str) -> int:
    from apache_beam.io.filesystems import FileSystems

    n = 0
    for r in FileSystems.match([FileSystems.join(output, "dead_letter", f"{STAGE}-*.jsonl")]):
        for m in r.metadata_list:
            with FileSystems.open(m.path) as f:
                n += sum(1 for line in f.read().splitlines() if line.strip())
    return n


def read_documents(output: str, name: str) -> list[dict]:
    """All documents of a written subset (both formats), in file order: for tests, reports and users."""
    from apache_beam.io.filesystems import FileSystems

    from pipelines.core.io import read_table

    root = FileSystems.join(output, name)
    jsonl = [
        m.path
        for r in FileSystems.match([FileSystems.join(root, "*", "part-*.jsonl")])
        for m in r.metadata_list
    ]
    if jsonl:
        docs = []
        for path in sorted(jsonl):
            with FileSystems.open(path) as f:
                docs.extend(json.loads(line) for line in f.read().decode().splitlines() if line.strip())
        return docs
    return read_table([FileSystems.join(root, "*", "part-*.parquet")]).to_pylist()
