"""The compiled ingest (`pipelines/ingest/jats_c.pyx`) gives exactly what the Python code it replaces gives:
same paragraphs, texts, titles, token counts, metadata and dropped counts, on every sample article and on
other projects' fixtures, and the same whitespace rules on every whitespace and invisible character."""

from __future__ import annotations

import os
import random

import pytest
from lxml import etree
from test_ingest_external_fixtures import FILES

from pipelines.ingest import jats
from pipelines.ingest.pipeline import source_stem

NOT_BUILT = "pipelines.ingest.jats_c is not built (`pip install -e .` builds it with a C compiler)"
compiled = pytest.mark.skipif(not jats.COMPILED, reason=NOT_BUILT)


def test_ci_runs_the_compiled_ingest():
    """CI installs with `pip install -e .`, which builds the module: a failed build must not pass unseen."""
    if os.environ.get("CI") != "true" and not jats.COMPILED:
        pytest.skip("not CI, and the compiled module is not built")
    assert jats.COMPILED


def _parse(data: bytes, fallback_id: str) -> jats.Article | str:
    try:
        return jats.parse_article(data, fallback_id)
    except jats.JatsError as error:
        return error.reason


def _both(monkeypatch, data: bytes, fallback_id: str) -> tuple[jats.Article | str, jats.Article | str]:
    fast = _parse(data, fallback_id)
    with monkeypatch.context() as m:
        m.setattr(jats, "jats_c", None)
        slow = _parse(data, fallback_id)
    return fast, slow


@compiled
def test_compiled_and_python_agree_on_every_sample_article(pmc_sample, monkeypatch):
    files = sorted(p for p in pmc_sample.rglob("*") if p.suffix in (".xml", ".nxml"))
    assert len(files) >= 1000
    paragraphs = 0
    for path in files:
        fast, slow = _both(monkeypatch, path.read_bytes(), source_stem(str(path)))
        assert fast == slow, path.name
        paragraphs += len(fast.paragraphs) if isinstance(fast, jats.Article) else 0
    assert paragraphs > 30_000


@compiled
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_compiled_and_python_agree_on_other_projects_fixtures(path, monkeypatch):
    fast, slow = _both(monkeypatch, path.read_bytes(), source_stem(str(path)))
    assert isinstance(fast, jats.Article)
    assert fast == slow


@compiled
@pytest.mark.parametrize(
    "body",
    [
        # scripts: exponents, citations (linked, parenthesised, inside an xref), degrees, ordinals, nesting
        "<p>8×10<sup>4</sup> cells<sup><xref>1</xref>,<xref>2</xref></sup>. 40<sup>o</sup>N, 5<sup>th</sup>"
        " CO<sub>2</sub> <xref><sup>3</sup></xref> ref<sup>10)</sup> a<sup>b<sub>2</sub></sup> Na<sup>+</sup>"
        " noto<sup>tk241</sup> x<sup> 2 </sup>y <sup><xref>4 5</xref></sup>! <sup>&alpha;1</sup></p>",
        # formulas: MathML only, TeX only, both (complex: TeX wins), plain markup, nothing readable
        "<p>Let <inline-formula><mml:math xmlns:mml='http://www.w3.org/1998/Math/MathML'><mml:mi>n</mml:mi>"
        "<mml:mo>=</mml:mo><mml:mfrac><mml:mn>1</mml:mn><mml:mi>k</mml:mi></mml:mfrac></mml:math>"
        "</inline-formula> and <inline-formula><tex-math>\\alpha^2</tex-math></inline-formula></p>"
        "<disp-formula><alternatives><tex-math>$\\sqrt{x}$</tex-math><math><msqrt><mi>x</mi></msqrt></math>"
        "</alternatives></disp-formula><p>a <inline-formula>x<sup>2</sup></inline-formula> b"
        " <inline-formula><graphic/></inline-formula> c <inline-formula><math>"
        "<mfenced open='[' separators=';'><mi>a</mi><mi>b</mi></mfenced>"
        "<mover><mi>x</mi><mo>¯</mo></mover></math></inline-formula></p>",
        # blocks inside paragraphs, boxes with captions, definitions, breaks, dropped elements, comments
        "<sec><title>M<fn><p>n</p></fn></title><p>see:<list><list-item><p>one</p></list-item></list>Then"
        "<break/>more<table-wrap><p>t</p></table-wrap>.<!-- c --></p><boxed-text><caption>"
        "<title>Box 1</title><p>box prose</p></caption><p>in box</p></boxed-text><def-list><def-item>"
        "<term>T</term><def><p>d</p></def></def-item></def-list><fig><caption><p>cap</p></caption></fig>"
        "<p>\xad\u200bsoft\xa0 end</p></sec>",
    ],
)
def test_compiled_and_python_agree_on_every_rendering_rule(body, monkeypatch):
    # A DOCTYPE (never loaded) makes `&alpha;` an entity to resolve, not a syntax error.
    doctype = '<!DOCTYPE article PUBLIC "-//NLM//DTD JATS 1.2//EN" "JATS-archivearticle1.dtd">'
    data = f"{doctype}<article><front><article-meta/></front><body>{body}</body></article>".encode()
    fast, slow = _both(monkeypatch, data, "PMC1")
    assert isinstance(fast, jats.Article) and fast.paragraphs
    assert fast == slow


@compiled
def test_whitespace_and_invisible_characters_are_cleaned_as_in_python():
    """Every character `str.split` calls whitespace that XML allows (and UTF-8 neighbours of them), the
    invisibles `clean` removes, in random mixtures with ASCII and non-ASCII letters."""
    spaces = [chr(c) for c in range(0x3001) if chr(c).isspace() and (c >= 0x20 or c in (9, 10, 13))]
    others = ["a", "Z", ".", "é", "α", "中", "\u2061", "\u200c", "\u2030", "\u205e", "\u3001", "\ufefe"]
    others.append("\U0001d465")  # 4-byte UTF-8
    alphabet = spaces + others + ["\xad", "\u200b", "\u2060", "\ufeff"]
    rng = random.Random(5)
    texts = ["", " ", "a", "a  b", "\xad", " \u3000x\u2029y\x85 "]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40))) for _ in range(5000)]
    for text in texts:
        leaf = etree.Element("p")
        leaf.text = text
        mixed = etree.fromstring(b"<p>a<i>b</i>c</p>")
        mixed.text, mixed[0].text, mixed[0].tail = text, text[::-1], text
        for el in (leaf, mixed):
            assert jats.jats_c.text(el) == jats.clean(jats.text_of(el)), repr(text)
