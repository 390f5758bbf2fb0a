"""Offline language identification on the sample's Portuguese, Spanish and English articles."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from pipelines.ingest import jats, langid


def manifest_languages(pmc_sample: Path) -> dict[str, str]:
    rows = csv.DictReader((pmc_sample / "MANIFEST.tsv").open(encoding="utf-8"), delimiter="\t")
    return {r["file"]: r["language"] for r in rows}


@pytest.mark.parametrize("language", ["pt", "es"])
def test_non_english_articles_are_recognised(pmc_sample, language):
    files = [f for f, lang in manifest_languages(pmc_sample).items() if lang == language]
    assert files
    right = total = 0
    for name in files:
        article = jats.parse_article((pmc_sample / name).read_bytes(), name)
        texts = [p.text for p in article.paragraphs if p.n_tokens >= 64]
        for code, score in langid.detect_paragraphs(texts):
            total += 1
            right += code == language
            assert 0.0 <= score <= 1.0
    assert total >= 80
    assert right / total >= 0.98, (right, total)


def test_english_sample_and_per_paragraph_agreement(pmc_sample):
    files = [f for f, lang in manifest_languages(pmc_sample).items() if lang == "en"][:60]
    agree = total = english = 0
    for name in files:
        article = jats.parse_article((pmc_sample / name).read_bytes(), name)
        texts = [p.text for p in article.paragraphs if p.n_tokens >= 64]
        per_article = langid.detect_paragraphs(texts)
        for text, (code, _score) in zip(texts, per_article, strict=True):
            total += 1
            english += code == "en"
            agree += langid.detect(text)[0] == code
    assert total > 500
    assert english / total >= 0.99
    assert agree / total >= 0.99


def test_mixed_article_falls_back_to_per_paragraph():
    english = (
        "The patients were treated with antibiotics and recovered fully within two weeks of admission. " * 3
    )
    portuguese = "Os pacientes foram tratados com antibióticos e recuperaram totalmente em duas semanas. " * 3
    result = langid.detect_paragraphs([english, portuguese, english, portuguese])
    assert [code for code, _ in result] == ["en", "pt", "en", "pt"]


def test_undetermined_and_odd_text():
    assert langid.detect("") == ("und", 0.0)
    assert langid.detect("12 34 56 7.8 % ± 0.5") == ("und", 0.0)
    code, score = langid.detect("Die Ergebnisse zeigen, dass die Behandlung wirksam war.\x00\x07")
    assert code == "de" and score > 0
    assert langid.detect_paragraphs([]) == []
