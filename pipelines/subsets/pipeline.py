"""The subsets stage on Beam: scored paragraphs -> one document per article, filtered, upsampled, prefixed.

The per-article work is pure (`pipelines.subsets.documents`); this pipeline groups paragraphs by
article, applies every recipe, and writes each subset as
`<output>/<subset>/<license_group>/part-*.parquet|jsonl` so licence groups stay separable (as the
released commercial / noncommercial splits). Output order is a seeded hash shuffle, so a rerun
with the same seed writes the same files, and the repeats of an article are spread out.

Runnable on its own: `python -m pipelines.subsets.pipeline --help` (Beam's flags pass through).
"""

from __future__ import annotations

import argparse
import json
import time

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipelines.core.dead_letters import WriteDeadLetters, count_dead_letters, dead_letter
from pipelines.core.io import ReadDataset, parquet_files, read_json, read_table, write_json
from pipelines.core.options import pipeline_options
from pipelines.core.schemas import SUBSET_DOCUMENTS
from pipelines.core.stats import MergeCounts
from pipelines.subsets.dataset_card import render_card
from pipelines.subsets.documents import (
    STAGE,
    article_documents,
    article_summary,
    empty_summary,
    num_shards,
    rejected_letters,
    shuffle_key,
    totals,
)
from pipelines.subsets.recipe import Recipe, load_recipes

# Columns every recipe needs from the scored dataset; recipes add the ones their rules use.
BASE_COLUMNS = ("id", "article_id", "paragraph_index", "text", "license_group", "language")
WORK_DIR = "_subsets_work"


class BuildDocuments(beam.DoFn):
    """(article id, rows) -> the recipe's documents; a count record per article and dead letters tagged."""

    def __init__(self, recipe: Recipe):
        self.recipe = recipe

    def setup(self):
        from pipelines.subsets.tokens import token_counter

        self.count_tokens = token_counter(self.recipe.tokenizer)

    def process(self, element):
        article_id, rows = element
        try:
            docs, stats = article_documents(article_id, rows, self.recipe, self.count_tokens)
        except Exception as e:  # noqa: BLE001 - one bad article must not sink the job
            yield beam.pvalue.TaggedOutput(
                "dead", dead_letter(STAGE, article_id, f"{self.recipe.name}: {type(e).__name__}", str(e))
            )
            return
        yield beam.pvalue.TaggedOutput("stats", article_summary(stats))
        yield from docs


class WriteShard(beam.DoFn):
    """Write one shard file, documents in seeded-shuffle order."""

    def __init__(self, output: str, recipe: Recipe):
        self.output, self.recipe = output, recipe

    def process(self, element):
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
    """((licence group, shard, shard count), (shuffle key, id, document)) for one document."""
    key = shuffle_key(recipe.seed, doc["id"])
    total = num_shards(counts[doc["license_group"]], recipe.docs_per_shard)
    return (doc["license_group"], key % total, total), (key, doc["id"], doc)


def by_article(row: dict) -> tuple:
    return row["article_id"], row


def license_group(doc: dict) -> str:
    return doc["license_group"]


class BuildSubset(beam.PTransform):
    """Grouped articles -> one recipe's shards and its summary under the work dir; returns dead letters."""

    def __init__(self, recipe: Recipe, output: str):
        super().__init__(label=f"Subset {recipe.name}")
        self.recipe, self.output = recipe, output

    def expand(self, articles):
        recipe = self.recipe
        built = articles | "Build" >> beam.ParDo(BuildDocuments(recipe)).with_outputs(
            "dead", "stats", main="docs"
        )
        counts = (
            built.docs | "Group of" >> beam.Map(license_group) | "Count" >> beam.combiners.Count.PerElement()
        )
        (
            built.docs
            | "Shard" >> beam.Map(assign_shard, counts=beam.pvalue.AsDict(counts), recipe=recipe)
            | "Group shards" >> beam.GroupByKey()
            | "Write" >> beam.ParDo(WriteShard(self.output, recipe))
        )
        (
            built.stats
            | "Summarise" >> beam.CombineGlobally(MergeCounts(empty_summary()))
            | "Stats json" >> beam.Map(json.dumps)
            | "Write stats"
            >> beam.io.WriteToText(
                FileSystems.join(self.output, WORK_DIR, recipe.name),
                file_name_suffix=".json",
                shard_name_template="",
            )
        )
        return built.dead


def build_pipeline(
    pipeline, files: list[str], recipes: list[Recipe], output: str, columns: list[str]
) -> None:
    """Read scored shards once, group by article, and fan out one branch per recipe."""
    articles = (
        pipeline
        | ReadDataset(files, columns, label="Read scored")
        | "By article" >> beam.Map(by_article)
        | "Group articles" >> beam.GroupByKey()
    )
    dead = [articles | BuildSubset(recipe, output) for recipe in recipes]
    # Paragraphs no recipe can place (duplicate ids, no paragraph_index): dead-lettered once, not per recipe.
    dead.append(articles | "Rejected paragraphs" >> beam.FlatMapTuple(rejected_letters))
    _ = dead | "All dead" >> beam.Flatten() | WriteDeadLetters(output, STAGE)


def _delete(path: str) -> None:
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
    stats["dead_letters"] = sum(count_dead_letters(output, STAGE).values())
    _delete(FileSystems.join(output, WORK_DIR))
    write_json(stats, FileSystems.join(output, f"{STAGE}_stats.json"))
    return stats


def _subset_files(output: str, recipe: Recipe) -> list[str]:
    ext = "parquet" if recipe.output_format == "parquet" else "jsonl"
    pattern = FileSystems.join(output, recipe.name, "*", f"part-*.{ext}")
    root = FileSystems.join(output, recipe.name) + "/"
    return sorted(m.path.replace(root, "", 1) for r in FileSystems.match([pattern]) for m in r.metadata_list)


def read_documents(output: str, name: str) -> list[dict]:
    """All documents of a written subset (both formats), in file order: for tests, reports and users."""
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


def main(argv: list[str] | None = None) -> dict:
    """`python -m pipelines.subsets.pipeline SCORED... --recipe R --output DIR [Beam flags]`."""
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.subsets.pipeline", description=__doc__.split("\n")[0]
    )
    parser.add_argument("scored", nargs="+", help="Scored datasets: directories, Parquet files or globs.")
    parser.add_argument(
        "--recipe", "-r", action="append", required=True, help="Preset name, YAML file or 'paper'."
    )
    parser.add_argument("--output", "-o", required=True, help="Output root: one directory per subset.")
    parser.add_argument(
        "--tokenizer", help="Override the recipes' tokenizer: 'whitespace' or a local HF tokenizer."
    )
    parser.add_argument("--seed", type=int, help="Override the recipes' shuffle seed.")
    parser.add_argument("--format", dest="output_format", help="Override the output format: parquet|jsonl.")
    known, beam_args = parser.parse_known_args(argv)
    return run_subsets(**vars(known), beam_args=beam_args)


if __name__ == "__main__":
    main()
