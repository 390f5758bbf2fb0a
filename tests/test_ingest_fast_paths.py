"""Ingest shortcuts taken for speed give what the plain rule they replace gives (docs/ingest.md, Speed)."""

from __future__ import annotations

import random

import pytest
from lxml import etree

from pipelines.ingest import jats


@pytest.fixture(autouse=True, params=["compiled", "python"])
def ingest_code(request, monkeypatch):
    """Each shortcut holds in both codes: the compiled module (`jats_c`) and the Python it stands in for."""
    if request.param == "python":
        monkeypatch.setattr(jats, "jats_c", None)
    elif not jats.COMPILED:
        pytest.skip("pipelines.ingest.jats_c is not built")


def test_entity_declarations_are_found_like_a_substring_search():
    rng = random.Random(17)
    cases = [b"", b"!", b"<!ENTITY", b"x<!ENTIT", b"!<!ENTITY", b"a!" * 100 + b"<!ENTITY x 'y'>"]
    cases += [bytes(rng.choice(b"<!ENTITYa") for _ in range(rng.randint(0, 200))) for _ in range(3000)]
    for data in cases:
        assert jats.declares_entities(data) == (b"<!ENTITY" in data), data


def _old_way(data: bytes) -> tuple[bytes | None, int]:
    """The body end by `find`, then `prune` of the bytes up to it (what the one scan replaces)."""
    end = data.find(b"</body>")
    if end < 0:
        return None, -1
    head = data[: end + len(b"</body>")]
    pruned = jats.prune(head)
    return (None if pruned is head else pruned), len(head)


@pytest.mark.parametrize(
    "data",
    [
        b"<article><body><p>a<fig><p>x</p></fig>.</p></body><back><fig/></back></article>",
        b"<article><body><p>a<fig><fig>x</fig></fig>b</p></body></article>",
        b"<article><body><p>a<fig>x</body>y</fig></p></body></article>",  # first </body> inside a cut
        b"<article><body><p>a<fig>x</p></body></article>",  # unbalanced: nothing cut
        b"<article><abstract>s</abstract><body/><p/></article>",  # no </body>
        b"<article><body><p>a<table-wrap/>b</p></body><sub-article><body/></sub-article></article>",
    ],
)
def test_one_scan_finds_the_body_end_and_the_cuts(data):
    pieces, end = jats._pruned_pieces(data, None)
    assert (None if pieces is None else b"".join(pieces), end) == _old_way(data)


def test_one_scan_agrees_on_random_markup():
    rng = random.Random(17)
    tokens = [b"<fig>", b"</fig>", b"<fig/>", b"<fig ", b"x", b".", b" ", b">", b"</body>", b"<table-wrap>"]
    for _ in range(5000):
        data = b"".join(rng.choice(tokens) for _ in range(rng.randint(0, 12)))
        pieces, end = jats._pruned_pieces(data, None)
        assert (None if pieces is None else b"".join(pieces), end) == _old_way(data), data


@pytest.mark.parametrize(
    ("sup", "shortcut"),
    [
        ("<sup><xref>1</xref>,<xref>2</xref></sup>", True),
        ("<sup>[<xref>3</xref>–<xref>5</xref>]</sup>", True),
        ("<sup> <xref>1</xref>,\n<xref>2</xref> </sup>", True),
        ("<sup><xref/></sup>", True),
        ("<sup><xref>1</xref>a</sup>", False),  # not a citation
        ("<sup><xref>1 2</xref></sup>", False),  # the general rule decides (a citation)
        ("<sup><xref>1\n</xref></sup>", False),  # the general rule decides (not one)
        ("<sup><xref><italic>1</italic></xref></sup>", False),
        ("<sup><italic>1</italic></sup>", False),
    ],
)
def test_the_citation_shortcut_only_says_what_the_general_rule_says(sup, shortcut):
    el = etree.fromstring(f"<p>word{sup}.</p>")[0]
    assert jats._links_only(el) is shortcut
    if shortcut:
        assert jats._is_citation(el, " ".join(jats.text_of(el).split()))


def test_dropped_elements_are_removed_with_their_tails_kept():
    data = (
        b"<article><body><sec><label>1.</label><title>T<fn><p>n</p></fn></title>"
        b"<p>a<fn><p>x</p></fn>b <disp-formula><label>(1)</label><tex-math>x</tex-math></disp-formula>"
        b" c<object-id>o</object-id>d</p></sec></body></article>"
    )
    [paragraph] = jats.parse_article(data).paragraphs
    assert (paragraph.path, paragraph.section_title, paragraph.text) == ("sec[0]/p[0]", "T", "ab $x$ cd")
