import pyarrow as pa
import pytest

from pipelines.core import schemas


def test_scored_extends_paragraphs_with_release_columns():
    assert schemas.SCORED.names[: len(schemas.PARAGRAPHS.names)] == schemas.PARAGRAPHS.names
    for name in ("document_type", "domain", "educational_score", "document_type_scores", "domain_scores"):
        assert name in schemas.SCORED.names
    assert schemas.DOCUMENT_TYPE_LABELS == ("Study", "Other", "Review", "Clinical case")
    assert schemas.DOMAIN_LABELS == ("biomedical", "clinical", "other")


def test_conform_orders_casts_fills_and_keeps_extras():
    t = pa.table(
        {
            "extra": [1],
            "text": ["x"],
            "id": ["a"],
            "article_id": ["PMC1"],
            "path": ["p[0]"],
            "paragraph_index": [0],
        }
    )
    out = schemas.conform(t, schemas.PARAGRAPHS)
    assert out.schema.names[: len(schemas.PARAGRAPHS)] == schemas.PARAGRAPHS.names
    assert out.column("paragraph_index").type == pa.int32()
    assert out.column("language").null_count == 1
    assert out.schema.names[-1] == "extra"


def test_conform_rejects_missing_required_column():
    with pytest.raises(ValueError, match="article_id.*required"):
        schemas.conform(pa.table({"id": ["a"]}), schemas.PARAGRAPHS)
