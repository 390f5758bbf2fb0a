"""Text rendering (jats.TEXT_RENDERING 2) on real excerpts: each case is a paragraph copied unchanged from a
CC BY article of the sample (tests/fixtures/rendering/*.xml, attribution in each file's header)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.ingest import jats, mathml
from pipelines.ingest.pipeline import summarize

FIXTURES = Path(__file__).parent / "fixtures" / "rendering"


def render(name: str) -> jats.Article:
    return jats.parse_article((FIXTURES / f"{name}.xml").read_bytes(), fallback_id=name)


def text(name: str) -> str:
    [paragraph] = render(name).paragraphs
    return paragraph.text


def test_superscript_exponents_keep_numbers_apart():
    assert "Cells (8 × 10⁵) were plated" in text("sup_exponent")  # was "8 × 105"


def test_subscripts_keep_numbers_and_words_apart():
    t = text("sub_chemical")
    assert "the CO₂ diffusional restriction" in t and "CO2" not in t


def test_superscripts_without_unicode_forms_use_a_marker():
    t = text("sup_allele")
    assert "Rb^{loxP/loxP};α-Cre mice" in t  # was "RbloxP/loxP;α-Cre"


def test_citation_superscripts_are_dropped_and_counted():
    article = render("sup_citation")
    t = article.paragraphs[0].text
    assert "interactions with pathogens. The overexpression" in t  # was "pathogens6,58."
    assert article.dropped["citation_superscript"] >= 1


def test_mathml_is_rendered_and_tex_used_for_complex_formulas():
    article = render("formula_mathml_tex")
    t = article.paragraphs[0].text
    assert "coefficient of determination (R²), mean squared error" in t  # was "( [formula] )"
    assert "y\u0302_i means the predicted value" in t and t.endswith("is the mean value of y.")
    assert "[formula]" not in t and "mml" not in t and "documentclass" not in t
    assert "formula_placeholder" not in article.dropped


def test_formulas_given_only_as_images_keep_the_placeholder_and_are_counted():
    article = render("formula_image")
    assert "initial densities of [formula] . The cells" in article.paragraphs[0].text
    assert article.dropped["formula_placeholder"] == 3  # the paragraph's three inline-graphic formulas


def test_box_prose_in_its_caption_is_kept():
    """eLife 05502 Box 1: a model description whose paragraphs sit in the box's caption (was dropped)."""
    paragraphs = render("box_caption").paragraphs
    assert [p.path for p in paragraphs] == [f"sec[0]/boxed-text[0]/caption[0]/p[{i}]" for i in range(5)]
    assert paragraphs[0].text.startswith("We built a reaction-diffusion model of the BMP/Sog system")
    assert sum(p.n_tokens for p in paragraphs) >= 350  # formulas are compact: 510 words of raw XML text
    assert all(p.section_title == "Results" for p in paragraphs)
    formula = "η_s(b, d) = (η₀ + η₁d/d₀)/(1 + b/b₀)(1 + d/d₀)"  # MathML only: rendered, fractions included
    assert formula in paragraphs[1].text


def test_a_list_cut_out_of_a_paragraph_leaves_a_space():
    article = render("list_in_p")
    assert "classified into three types based on the location: According to" in article.paragraphs[0].text
    assert article.paragraphs[1].path == "p[0]/list[0]/list-item[0]/p[0]"


def test_definition_terms_are_kept_with_their_definition():
    [paragraph] = render("def_list").paragraphs
    assert paragraph.path == "def-list[0]/def-item[0]/def[0]/p[0]"
    assert paragraph.text == "MEF‐2A: myocyte enhancer factor 2A"


def test_soft_hyphens_are_removed():
    t = text("soft_hyphen")
    assert "\xad" not in t and "supernatural agent beliefsonce cognitively available" in t


def test_line_breaks_leave_a_space():
    assert text("line_break") == "Alpinia purpurata K. Schum Zingiberaceae [HUA 140922]"  # was "SchumZing..."


def test_named_entities_are_resolved_and_unknown_ones_counted():
    # The sample has named entities only in commented-out tables; the shape is PLOS's (DOCTYPE, no DTD).
    data = (
        b'<!DOCTYPE article PUBLIC "-//NLM//DTD Journal Publishing DTD v3.0 20080202//EN" '
        b'"http://dtd.nlm.nih.gov/publishing/3.0/journalpublishing3.dtd">'
        b"<article><body><p>c(1 - &szlig;)R/(R &plus; 1) with &alpha;&thinsp;=&thinsp;0.05 "
        b"and &nosuchentity; here</p></body></article>"
    )
    article = jats.parse_article(data)
    assert article.paragraphs[0].text == "c(1 - ß)R/(R + 1) with α = 0.05 and here"
    assert article.dropped == {"unknown_entity": 1}


def test_articles_without_kept_paragraphs_have_no_language():
    article = render("def_list")  # one short paragraph: below any useful min_tokens
    stats = summarize(article, [])
    assert stats["articles_by_language"] == {} and stats["articles_without_kept_paragraphs"] == 1


@pytest.mark.parametrize(
    ("base", "script", "mark", "expected"),
    [
        ("10", "4", "^", "10⁴"),
        ("Ca", "2+", "^", "Ca²⁺"),
        ("CO", "2", "_", "CO₂"),
        ("x", "i", "_", "x_i"),
        ("T", "max", "_", "T_{max}"),
        ("10", "−3.5", "^", "10^{−3.5}"),
    ],
)
def test_script_convention(base, script, mark, expected):
    assert mathml.script(base, script, mark) == expected


def test_tex_source_without_preamble():
    source = "\\documentclass[12pt]{minimal}\\usepackage{amsmath}\\begin{document}$${R}^{2}$$\\end{document}"
    assert mathml.tex(source) == "${R}^{2}$"


def test_a_raised_ring_after_a_number_is_a_degree_sign():
    # Markup as in the sample's climate papers (`40<sup>o</sup>N`, `37<sup>&#x000b0;</sup>C`).
    p = b"at 40<sup>o</sup>N and 37<sup>&#x000b0;</sup>C, the 1<sup>st</sup>"
    data = b"<article><body><p>%s</p></body></article>" % p
    assert jats.parse_article(data).paragraphs[0].text == "at 40°N and 37°C, the 1st"
