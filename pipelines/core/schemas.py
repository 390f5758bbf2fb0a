"""Every dataset's pyarrow schema, defined once.

Stages meet only through these datasets (see README "Data flow"); writers cast to these schemas
and tests check every written file against them. Column names follow the released
Biomed-Enriched dataset where it has them.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = 1

# Label orders exactly as in the released dataset's score vectors.
DOMAIN_LABELS: tuple[str, ...] = ("biomedical", "clinical", "other")
DOCUMENT_TYPE_LABELS: tuple[str, ...] = ("Study", "Other", "Review", "Clinical case")
EDUCATIONAL_SCORES: tuple[int, ...] = (1, 2, 3, 4, 5)

LICENSE_GROUPS: tuple[str, ...] = ("commercial", "noncommercial", "other")

PARAGRAPHS = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("article_id", pa.string(), nullable=False),
        pa.field("pmid", pa.string()),
        pa.field("path", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
        pa.field("section_title", pa.string()),
        pa.field("language", pa.string()),
        pa.field("language_score", pa.float64()),
        pa.field("license_url", pa.string()),
        pa.field("license_group", pa.string()),
        pa.field("article_type", pa.string()),
        pa.field("article_title", pa.string()),
        pa.field("journal", pa.string()),
        pa.field("authors", pa.list_(pa.string())),
        pa.field("article_url", pa.string()),
        pa.field("retracted", pa.bool_()),
        # Position of the paragraph in body order (0-based, over kept paragraphs): lets
        # subsets rebuild articles in order without re-parsing paths.
        pa.field("paragraph_index", pa.int32(), nullable=False),
        pa.field("source", pa.string()),
    ],
    metadata={"dataset": "paragraphs", "schema_version": str(SCHEMA_VERSION)},
)

LABELS = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("document_type", pa.string(), nullable=False),
        pa.field("domain", pa.string(), nullable=False),
        pa.field("educational_score", pa.int8(), nullable=False),
        # Teacher distributions in the orders above; null where the server gave no logprobs.
        pa.field("document_type_probs", pa.list_(pa.float32())),
        pa.field("domain_probs", pa.list_(pa.float32())),
        pa.field("educational_score_probs", pa.list_(pa.float32())),
        pa.field("educational_score_expected", pa.float32()),
        pa.field("teacher_model", pa.string(), nullable=False),
        pa.field("prompt_version", pa.string(), nullable=False),
        pa.field("input_tokens", pa.int32()),
        pa.field("output_tokens", pa.int32()),
        # Carried so a labels dataset is self-contained for training (join key is `id`).
        pa.field("article_id", pa.string()),
        pa.field("text", pa.string()),
        pa.field("section_title", pa.string()),
        pa.field("path", pa.string()),
    ],
    metadata={"dataset": "labels", "schema_version": str(SCHEMA_VERSION)},
)

SCORE_COLUMNS = pa.schema(
    [
        pa.field("document_type", pa.string(), nullable=False),
        pa.field("domain", pa.string(), nullable=False),
        pa.field("educational_score", pa.float64(), nullable=False),
        pa.field("document_type_scores", pa.list_(pa.float64()), nullable=False),
        pa.field("domain_scores", pa.list_(pa.float64()), nullable=False),
        pa.field("model_id", pa.string(), nullable=False),
    ]
)

SCORED = pa.schema(
    list(PARAGRAPHS) + list(SCORE_COLUMNS),
    metadata={"dataset": "scored", "schema_version": str(SCHEMA_VERSION)},
)

SUBSET_DOCUMENTS = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("article_id", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
        pa.field("n_paragraphs", pa.int32(), nullable=False),
        pa.field("n_tokens", pa.int64(), nullable=False),
        pa.field("license_group", pa.string()),
        pa.field("language", pa.string()),
        pa.field("recipe", pa.string(), nullable=False),
        pa.field("repeat", pa.int32(), nullable=False),
    ],
    metadata={"dataset": "subset", "schema_version": str(SCHEMA_VERSION)},
)

DEAD_LETTER_FIELDS = ("stage", "source", "reason", "detail")


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Select, order and cast `table`'s columns to `schema` (missing nullable columns become null).

    Extra columns pass through after the schema's own, so stages can carry what they do not know.
    """
    columns, fields = [], []
    for field in schema:
        if field.name in table.column_names:
            columns.append(table[field.name].cast(field.type))
        elif field.nullable:
            columns.append(pa.nulls(table.num_rows, field.type))
        else:
            dataset = schema.metadata[b"dataset"].decode()
            raise ValueError(f"column {field.name!r} is required by the {dataset} schema")
        fields.append(field)
    for name in table.column_names:
        if name not in schema.names:
            columns.append(table[name])
            fields.append(table.schema.field(name))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields, metadata=schema.metadata))
