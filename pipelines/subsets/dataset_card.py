"""Hugging Face dataset card (README.md with YAML header) for one written subset."""

from __future__ import annotations

import yaml

from pipelines.core.schemas import SCHEMA_VERSION, SUBSET_DOCUMENTS
from pipelines.subsets.recipe import Recipe

_HF_DTYPES = {"string": "string", "int32": "int32", "int64": "int64"}
_LICENSE_NOTES = {
    "commercial": "articles under licences that allow commercial use (CC BY, CC BY-SA, CC0, ...)",
    "noncommercial": "articles under non-commercial licences (CC BY-NC, CC BY-NC-SA, CC BY-NC-ND, ...)",
    "other": "articles with no or a custom licence: check each article's terms before use",
}
_DESCRIPTIONS = {
    "id": "document id: `<article_id>_r<repeat>`",
    "article_id": "the article (PMCID; else DOI; else file stem)",
    "text": "the article's kept paragraphs in body order, joined by the recipe's separator (with prefixes)",
    "n_paragraphs": "paragraphs in this document",
    "n_tokens": "tokens of `text` under the subset's tokenizer",
    "license_group": "commercial / noncommercial / other (one split each)",
    "language": "most frequent paragraph language",
    "recipe": "name of the recipe that built the subset",
    "repeat": "copy number of an upsampled article, 0..factor-1 (0 for articles kept once)",
}


def _size_category(n: int) -> str:
    for limit, label in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
    ):
        if n < limit:
            return label
    return "1M<n<10M" if n < 10_000_000 else "n>10M"


def render_card(recipe: Recipe, entry: dict) -> str:
    """YAML header (a split per licence group, features, sizes), then sizes, licences, schema, recipe."""
    ext = "parquet" if recipe.output_format == "parquet" else "jsonl"
    groups = sorted(entry["groups"])
    header = {
        "pretty_name": f"biomed-enrich {recipe.name}",
        "license": "other",
        "license_name": "per-article (see license_group and the source articles)",
        "language": sorted(entry.get("languages") or ["en"]),
        "task_categories": ["text-generation"],
        "tags": ["biomedical", "pubmed-central", "pretraining", "biomed-enriched"],
        "size_categories": [_size_category(entry["documents"])],
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": g, "path": f"{g}/part-*.{ext}"} for g in groups],
            }
        ],
        "dataset_info": {
            "features": [
                {"name": f.name, "dtype": _HF_DTYPES.get(str(f.type), str(f.type))} for f in SUBSET_DOCUMENTS
            ],
            "splits": [{"name": g, "num_examples": entry["groups"][g]["documents"]} for g in groups],
        },
    }
    lines = ["---", yaml.safe_dump(header, sort_keys=False, allow_unicode=True).rstrip(), "---", ""]
    lines += [f"# {recipe.name}", "", recipe.description or "", ""]
    lines += [
        "Built by biomed-enrich `subsets` from paragraphs scored by its distilled "
        "student, re-assembled into one document per article (paragraphs whole and in body order), after "
        "the Biomed-Enriched paper (arXiv 2506.20331). Labels are model predictions, not expert judgements.",
        "",
        "## Size",
        "",
        "| split | articles | documents | paragraphs | tokens | unique paragraphs | unique tokens |",
        "|---|---|---|---|---|---|---|",
    ]
    for g in groups:
        s = entry["groups"][g]
        lines.append(
            f"| {g} | {s['articles']:,} | {s['documents']:,} | {s['paragraphs']:,} | {s['tokens']:,} "
            f"| {s['unique_paragraphs']:,} | {s['unique_tokens']:,} |"
        )
    lines.append(
        f"| **total** | {entry['articles']:,} | {entry['documents']:,} | {entry['paragraphs']:,} "
        f"| {entry['tokens']:,} "
        f"| {entry['unique_paragraphs']:,} | {entry['unique_tokens']:,} |"
    )
    lines += [
        "",
        f"Tokens counted with `{recipe.tokenizer}`. Read {entry['articles_read']:,} articles / "
        f"{entry['paragraphs_read']:,} paragraphs; the filter kept {entry['paragraphs_kept']:,} paragraphs; "
        f"{entry['articles_dropped']:,} articles had no paragraph left. Upsampled articles per rule: "
        + (", ".join(f"{k}: {v:,}" for k, v in sorted(entry["rules"].items())) or "none")
        + ". Articles per repetition factor: "
        + ", ".join(f"{k}x: {v:,}" for k, v in sorted(entry["factors"].items(), key=lambda kv: int(kv[0])))
        + ".",
        "",
        "## Licence split",
        "",
        "Each licence group is its own split (directory), so the commercial part can be used alone:",
        "",
    ]
    lines += [f"- `{g}/`: {_LICENSE_NOTES.get(g, g)}." for g in groups]
    lines += [
        "",
        "## Schema",
        "",
        f"Schema version {SCHEMA_VERSION}, one row per document (`{ext}`):",
        "",
        "| column | type | meaning |",
        "|---|---|---|",
    ]
    lines += [f"| `{f.name}` | {f.type} | {_DESCRIPTIONS.get(f.name, '')} |" for f in SUBSET_DOCUMENTS]
    lines += [
        "",
        "Documents are shuffled by a seeded hash of their id (seed "
        f"{recipe.seed}): the same inputs and seed give the same files.",
        "",
        "## Recipe",
        "",
        "```yaml",
        recipe.to_yaml().rstrip(),
        "```",
        "",
    ]
    return "\n".join(lines)
