"""JATS / NLM article XML -> article metadata + body paragraphs. Pure: bytes in, dataclasses out.

What becomes a paragraph (see docs/ingest.md):
- every `p` of the main article's `<body>` that sits directly in `body` or in nested `sec`s
  (path `sec[2]/sec[0]/p[1]`, 0-based among same-tag siblings, as in the released Biomed-Enriched);
- the `p`s of prose-bearing blocks (`list`, `disp-quote`, `boxed-text`, `statement`, `def-list`
  definitions) wherever they sit in the body, as paragraphs of their own placed after the paragraph
  that holds them, with their full path (`sec[0]/p[3]/list[0]/list-item[1]/p[0]`);
- never: table cells, figure / table / supplementary captions, footnotes, front and back matter,
  sub-articles (translations, decision letters, replies) and anything after the main `</body>`.
Text rendering (version `TEXT_RENDERING`, rules and examples in docs/ingest.md): inline markup is
flattened without added spaces (`samples<xref>34</xref>.` -> `samples34.`) except superscripts and
subscripts, which keep numbers apart (`10<sup>4</sup>` -> `10⁴`, `T<sub>max</sub>` -> `T_{max}`, see
`pipelines.ingest.mathml.script`); citation superscripts (only `xref`s and separators) are dropped; formulas
become linear text (MathML rendered, TeX source as `$...$`, ` [formula] ` only when neither exists);
`<break/>` and blocks cut out of a sentence leave a space; undeclared named entities (`&alpha;`) are
resolved from the HTML5 table; soft hyphens and zero-width characters are removed and whitespace
(no-break, thin spaces...) collapsed to one space; `def-list` terms prefix their definition.

Speed: the XML is fed to lxml only up to the main `</body>` (back matter, reference lists, floats and
sub-articles are never parsed), tables, figures, media and abstracts are cut out of the bytes before
parsing (one regex scan finds them and the body's end), one filtered C-level pass over the body finds
every element to rewrite or remove, the walk visits only `body`, `sec`, `p` and prose blocks, each
paragraph's text is one C-level text serialisation (`text_of`), and whitespace is collapsed without
splitting into words whenever the text allows (`clean`). When built, `jats_c` (jats_c.pyx) does the walk,
the text, the rendering's per-element work, the pruning scan and the author names over libxml2's nodes,
with the same output (`COMPILED` says whether it runs). Safety: no DTD loading, no network, no entity
expansion, and any document that declares entities in an internal DTD subset is refused before parsing.
"""

from __future__ import annotations

import hashlib
import html.entities
import re
import threading
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from pipelines.ingest import mathml

# Bumped whenever the text of a paragraph can change for the same XML: recorded in ingest_stats.json
# so cached teacher answers and trained models know which rendering they saw. 1: flattened text with
# ` [formula] ` for every formula (teacher labels v1/v2); 2: scripts, formulas, breaks, boxes, def terms.
TEXT_RENDERING = 2

# Elements whose content is a formula: rendered to linear text (`render_formula`), never walked.
FORMULA_TAGS = frozenset({"inline-formula", "disp-formula", "math", "tex-math"})
# Block children holding prose: cut out of the surrounding sentence, their `p`s become paragraphs.
PROSE_BLOCKS = frozenset({"list", "disp-quote", "boxed-text", "statement", "def-list", "verse-group"})
# Dropped blocks that interrupt a sentence: the text on either side is kept apart by a space.
BLOCKS = frozenset(
    {
        "table-wrap",
        "table-wrap-group",
        "table",
        "fig",
        "fig-group",
        "graphic",
        "media",
        "supplementary-material",
        "chem-struct-wrap",
        "array",
        "code",
        "preformat",
        "alternatives",
        "glossary",
    }
)
# Block or non-prose children dropped from the text and never walked.
DROPPED = BLOCKS | {
    "fn",
    "fn-group",
    "ref-list",
    "object-id",
    "label",
    "attrib",
    "permissions",
}
# Captions are dropped (figures, tables) except a `boxed-text` caption, whose `p`s are the box's prose.
CAPTION = "caption"
FORMULA = " [formula] "
# Containers in which a `p` is a paragraph of the prose flow.
SECTION_TAGS = frozenset({"body", "sec"})
_CC_URL = re.compile(
    r"https?://(?:www\.)?creativecommons\.org/(?:licenses/[a-z\-]+(?:/\d\.\d)?(?:/[a-z]{2})?|publicdomain/(?:zero|mark)/\d\.\d)/?",
    re.I,
)
_NONCOMMERCIAL = re.compile(r"non[\s\-]?commercial|by[\-_ ]?nc\b", re.I)
_CC_TEXT = re.compile(r"creative\s*commons|\bcc[\-_ ]?by\b|creativecommonsby|\bcc0\b|public\s+domain", re.I)
_BODY_END = re.compile(rb"</(?:[A-Za-z_][\w.\-]*:)?body\s*>")
_DIGITS = re.compile(r"(\d+)")
_PMC_FILE = re.compile(r"^PMC\d+(?:\.(\d+))?$")
_VERSION = re.compile(r"^PMC\d+\.(\d+)$", re.I)


class JatsError(ValueError):
    """An article that cannot be read; `reason` is a short machine-friendly code for dead letters."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(slots=True)
class Paragraph:
    path: str
    text: str
    section_title: str
    # Whitespace-separated words of `text`: the unit of the minimum-length filter.
    n_tokens: int


@dataclass
class Article:
    article_id: str
    pmcid: str | None = None
    pmid: str | None = None
    doi: str | None = None
    title: str | None = None
    journal: str | None = None
    authors: list[str] = field(default_factory=list)
    article_type: str | None = None
    xml_lang: str | None = None
    license_url: str | None = None
    license_group: str = "other"
    license_source: str | None = None
    retracted: bool = False
    article_url: str | None = None
    has_body: bool = False
    # Parsed only after a fallback (malformed DOCTYPE dropped, or lxml recovery on a complete document).
    recovered: bool = False
    # PMC article version (`PMC123.2`: 2) from `article-id pub-id-type="pmcid-ver"` or the file name.
    version: int | None = None
    paragraphs: list[Paragraph] = field(default_factory=list)
    # What the text rendering left out, per reason (summed into ingest_stats.json `dropped`).
    dropped: Counter = field(default_factory=Counter)


def local(tag: object) -> str | None:
    """Local name of an element tag (`{ns}p` -> `p`); None for comments, PIs and entities."""
    if not isinstance(tag, str):
        return None
    return tag.rpartition("}")[2]


_LOCAL = threading.local()
_ARTICLE_START = re.compile(rb"<((?:[A-Za-z_][\w.\-]*:)?article)[\s>/]")
_TAG = re.compile(rb"<(/?)([A-Za-z_][\w.:\-]*)[^>]*?(/?)>")


# Never `collect_ids=False`: with lxml 6 / libxml2 2.14 it makes libxml2 try to fetch the external DTD.
# Comments and PIs are kept (removing them costs time); every walker skips them and the text
# serialisation (`text_of`) ignores their content.
def _parser() -> etree.XMLParser:
    """One parser per thread (lxml parsers are not thread-safe; Beam runs DoFns in threads)."""
    parser = getattr(_LOCAL, "parser", None)
    if parser is None:
        parser = _LOCAL.parser = etree.XMLParser(
            resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=False
        )
    return parser


def _full_parse(data: bytes) -> etree._Element:
    try:
        return etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as e:
        raise JatsError("malformed_xml", str(e)) from None


_PROLOG_NOISE = re.compile(rb"<!--.*?-->|<\?.*?\?>|<!DOCTYPE[^\[>]*(?:\[.*?\])?\s*>", re.S)


def _closing_tags(data: bytes, end: int | None = None) -> tuple[bytes, bytes] | None:
    """(end tags closing `article` and the wrappers opened before it, the root element's name), looking
    at `data[:end]` only."""
    m = _ARTICLE_START.search(data, 0, len(data) if end is None else end)
    if m is None:
        return None
    stack: list[bytes] = []
    head = _PROLOG_NOISE.sub(b"", data[: m.start()])
    for close, name, empty in _TAG.findall(head):
        if close:
            if stack and stack[-1] == name:
                stack.pop()
        elif not empty:
            stack.append(name)
    opened = [*stack, m.group(1)]
    return b"".join(b"</%s>" % name for name in reversed(opened)), opened[0]


# Elements cut out of the bytes before parsing (never used: tables, figures, media, abstracts, reference
# lists), each replaced by a space so the words around it stay apart. Tree-level `prepare` applies the
# same rules to anything this misses (e.g. prefixed tags), so pruning only saves time.
_PRUNE_DROP = (
    b"table-wrap",
    b"fig",
    b"supplementary-material",
    b"graphic",
    b"media",
    b"ref-list",
    b"abstract",
    b"trans-abstract",
)
# The text after a cut block needs no separating space when it starts with these (`Table 3<table-wrap/>.`).
_NO_SPACE_BEFORE = frozenset(bytes([c]) for c in b".,;:)]!?\n\r\t ")
# A never-used element's start tag, or (group 1 None) the main body's end tag: one scan finds both.
_PRUNE_OPEN = re.compile(rb"<(?:(" + b"|".join(re.escape(t) for t in _PRUNE_DROP) + rb")[\s>/]|/body>)")
_BODY_CLOSE = b"</body>"


def prune(head: bytes) -> bytes:
    """Cut whole never-used elements out of XML bytes (nesting of the same tag respected)."""
    pieces, _ = _pruned_pieces(head, len(head))
    return head if pieces is None else b"".join(pieces)


def _element_end(data: bytes, start: int, tag: bytes, limit: int) -> int:
    """End offset of the element whose start tag begins at `start`; -1: not closed before `limit`,
    -2: its start tag is not even closed."""
    find = data.find
    gt = find(b">", start, limit)
    if gt < 0:
        return -2
    if data[gt - 1] == 47:  # self-closing `/>`
        return gt + 1
    close, opening, depth, scan = b"</" + tag + b">", b"<" + tag, 1, gt
    while depth:
        k = find(close, scan, limit)
        if k < 0:
            return -1
        nested = find(opening, scan, k)
        while nested >= 0:
            if data[nested + len(opening)] in b" \t\r\n>/" and data[find(b">", nested) - 1] != 47:
                depth += 1
            nested = find(opening, nested + 1, k)
        depth -= 1
        scan = k + len(close)
    return scan


def _pruned_pieces(data: bytes, stop: int | None) -> tuple[list | None, int]:
    """(`data[:stop]` with never-used elements cut, `stop`). The pieces are views of `data` (no copy until
    they are joined); None when nothing is cut or an element is unbalanced (the parser judges the
    original). `stop` None: up to and including the first `</body>` (`data.find` would scan the same
    bytes again), -1 when there is none. `jats_c.pruned` is its compiled twin (the pieces joined)."""
    if jats_c is not None:
        pruned, stop = jats_c.pruned(data, stop)
        return None if pruned is None else [pruned], stop
    out: list = []
    view = memoryview(data)
    pos = 0
    limit = len(data) if stop is None else stop
    search = _PRUNE_OPEN.search
    m = search(data, 0, limit)
    while m is not None:  # searching on from the end of each cut skips what it held (tables are big)
        i = m.start()
        tag = m.group(1)
        if tag is None:  # `</body>`
            if stop is None:
                stop = limit = m.end()
                break
            m = search(data, m.end(), limit)
            continue
        end = _element_end(data, i, tag, limit)
        if stop is None and end != -2:  # the first `</body>` may lie inside: the cut then ends there
            inner = data.find(_BODY_CLOSE, i, len(data) if end < 0 else end)
            if inner >= 0:
                stop = limit = inner + len(_BODY_CLOSE)
                end = _element_end(data, i, tag, limit)
        if end == -2:
            break
        if end == -1:  # unbalanced; when the first `</body>` was not in it, there is none
            return None, -1 if stop is None else stop
        out.append(view[pos:i])
        if end >= limit or data[end : end + 1] not in _NO_SPACE_BEFORE:
            out.append(b" ")
        pos = end
        m = search(data, pos, limit)
    if stop is None:  # no `</body>` at all
        return None, -1
    if not out:
        return None, stop
    out.append(view[pos:stop])
    return out, stop


def _ends_with(data: bytes, suffix: bytes) -> bool:
    """`data.rstrip().endswith(suffix)` without copying a whole article to strip a few trailing bytes."""
    tail = data[-4096:].rstrip()
    if len(tail) < len(suffix):  # (almost) 4 kB of trailing whitespace: look at everything
        tail = data.rstrip()
    return tail.endswith(suffix)


def _parse(data: bytes, *, stop_after_body: bool = True) -> etree._Element:
    """Parse only up to the main `</body>`: back matter, references, floats and sub-articles are never parsed.

    When the document ends with its root's end tag (not truncated), the bytes up to the first
    `</body>` are closed with the end tags of `article` and its wrappers and parsed. Anything
    unexpected (no `</body>`, a first body that is not the main article's, a syntax error, trailing
    content) falls back to parsing the whole document, which then reports the real error. A syntax
    error after the body is therefore not seen: nothing we keep lives there.
    """
    pieces, end = _pruned_pieces(data, None) if stop_after_body else (None, -1)
    if end < 0 and stop_after_body:
        m = _BODY_END.search(data)
        end = m.end() if m else -1
        if end >= 0:
            pieces, _ = _pruned_pieces(data, end)
    if end < 0:
        return _full_parse(data)
    found = _closing_tags(data, end)
    # The document must end with its root's end tag: a truncated file is never half-read.
    if found is not None and _ends_with(data, b"</%s>" % found[1]):
        closing = found[0]
        if pieces is not None:
            pieces.append(closing)
        whole = [memoryview(data)[:end], closing]
        for candidate in (pieces, whole) if pieces is not None else (whole,):
            try:
                return etree.fromstring(b"".join(candidate), _parser())
            except etree.XMLSyntaxError:
                pass
    return _full_parse(data)


_DOCTYPE = re.compile(rb"<!DOCTYPE[^\[>]*>")
_FIRST_TAG = re.compile(rb"<([A-Za-z_][\w.\-]*(?::[\w.\-]+)?)[\s>/]")


def _recover(data: bytes, error: JatsError) -> etree._Element:
    """Second chance for complete documents only (a truncated file is never patched up).

    1. a malformed DOCTYPE (e.g. `PUBLIC"..."` without a space) is dropped: we never use the DTD;
    2. lxml's recovery mode, only for an undeclared namespace prefix (the document is well-formed XML,
       just not namespace-well-formed) and when the document ends with its root's closing tag.
    """
    head = data[:4096]
    if b"<!DOCTYPE" in head:
        stripped = _DOCTYPE.sub(b"", data, count=1)
        try:
            return _parse(stripped)
        except JatsError:
            pass
    else:
        stripped = data
    m = _FIRST_TAG.search(re.sub(rb"<[?!][^>]*>", b"", stripped[:4096]))
    namespace_only = "Namespace prefix" in error.detail and "is not defined" in error.detail
    if namespace_only and m and stripped.rstrip().endswith(b"</" + m.group(1) + b">"):
        parser = etree.XMLParser(
            recover=True,
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            remove_comments=True,
            remove_pis=True,
        )
        root = etree.fromstring(stripped, parser)
        if root is not None:
            return root
    raise error


def declares_entities(data: bytes) -> bool:
    """`b"<!ENTITY" in data`, found faster: `!` is rare in XML, and a one-byte `find` is a `memchr`,
    while the substring search stops at every `<`. Too many `!`s: the plain search on what is left."""
    find = data.find
    i = find(b"!")
    for _ in range(64):
        if i < 0:
            return False
        if data[i - 1 : i + 7] == b"<!ENTITY":
            return True
        i = find(b"!", i + 1)
    return i >= 0 and b"<!ENTITY" in data[i - 1 :]


def check_safe(data: bytes) -> None:
    """Refuse documents that declare entities (billion laughs, XXE): real JATS never needs them."""
    if declares_entities(data):
        raise JatsError("hostile_xml", "document declares XML entities (internal DTD subset)")


def find_article(root: etree._Element) -> etree._Element:
    """The (first) `article` element, through OAI-PMH and `pmc-articleset` wrappers, namespace-agnostic."""
    if local(root.tag) == "article":
        return root
    for el in root.iter("{*}article"):
        return el
    raise JatsError("not_jats", f"no <article> element (root is <{local(root.tag)}>)")


# Soft hyphen and zero-width characters: removed (they are not part of any word as read).
_INVISIBLE = ("\xad", "\u200b", "\u2060", "\ufeff")
# Whitespace other than the ASCII space that an ASCII text can hold, and the double space.
_ASCII_EXTRA_SPACE = ("  ", "\n", "\t", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f")


def clean(text: str) -> str:
    """Collapse whitespace runs (incl. newlines, no-break and thin spaces) to one space, strip the ends,
    remove soft hyphens and zero-width characters.

    Splitting into words is the costly part, so most texts skip it: a text whose only whitespace is
    single ASCII spaces just needs its ends stripped. ASCII texts are checked with a few substring
    searches; others with `isprintable` (every whitespace character but the ASCII space is
    non-printable) after turning no-break and thin spaces, the usual non-printables, into spaces.
    """
    if text.isascii():
        for space in _ASCII_EXTRA_SPACE:
            if space in text:
                return " ".join(text.split())
        return text.strip()
    if not text.isprintable():
        text = text.replace("\xa0", " ").replace("\u2009", " ")
        if not text.isprintable():
            for char in _INVISIBLE:
                if char in text:
                    text = text.replace(char, "")
            return " ".join(text.split())
    if "  " in text:
        return " ".join(text.split())
    return text.strip()


_text_content = mathml.text_content


def text_of(el: etree._Element) -> str:
    """Text content of `el` (all descendant text, tail excluded), as XPath `string()` but from lxml's C-level
    text serialiser, which is ~2.5x cheaper per call than evaluating an XPath; a leaf's is its `.text`
    (4x cheaper again: names, titles, ids, most superscripts are leaves)."""
    if not len(el):
        return el.text or ""
    return _text_content(el)


def _wild(names: frozenset[str]) -> tuple[str, ...]:
    """lxml tag filters for these local names in any namespace (`{*}p` also matches a bare `p`)."""
    return tuple(f"{{*}}{n}" for n in sorted(names))


_BLOCK_TAGS = _wild(BLOCKS)
_FORMULA_TAGS = _wild(FORMULA_TAGS)
_PROSE_TAGS = _wild(PROSE_BLOCKS)
_SCRIPT_TAGS = ("{*}sup", "{*}sub")
_PREPARED = (
    etree.Entity,
    *_FORMULA_TAGS,
    *_BLOCK_TAGS,
    *_SCRIPT_TAGS,
    "{*}break",
    f"{{*}}{CAPTION}",
    *_PROSE_TAGS,
    *_wild(DROPPED - BLOCKS),
)
_COMPLEX_MATH = tuple(f"{{*}}{name}" for name in mathml.COMPLEX)
# A superscript holding only citations and these separators is a citation marker: dropped.
_CITATION_SEPARATORS = " ,;–-−()[]\u2009\xa0"
# Superscripts without letters or digits that are still raised: charges (`Na⁺`, `Cl⁻`).
_SIGNS = frozenset({"+", "-", "−", "++", "2+", "+/+", "=", "±"})
_ALNUM = re.compile(r"[^\W_]")
_CLOSING = frozenset(".,;:)]!? \n\t")
# Unlinked citation numbers written as `<sup>10)</sup>` (some journals' style).
_PAREN_CITATION = re.compile(r"^\d+(?:\s*[,–\-]\s*\d+)*\)$")
# Superscripts written as plain text: ordinals (`5<sup>th</sup>`) and marks that are raised already.
_PLAIN_SUPERSCRIPTS = frozenset({"st", "nd", "rd", "th", "o", "a", "os", "as", "er", "e", "ème", "ª", "º"})


_HOLDS_BLOCK = "biomed-enrich-holds-block"


def _space_tail(el: etree._Element) -> None:
    """A space after `el` (a block cut out of a sentence, a line break) unless punctuation follows."""
    tail = el.tail
    if not tail:
        el.tail = " "
    elif tail[0] not in _CLOSING:
        el.tail = " " + tail


def render_formula(
    el: etree._Element, dropped: Counter, parts: list[etree._Element] | None = None
) -> str | None:
    """Linear text of a formula element: MathML rendered when simple (or when there is no TeX), else the
    TeX source, else the MathML rendering, else the placeholder. None: a formula written as plain markup (no
    MathML, no TeX, but text): left in place to be read like any text.

    `parts`: the formula elements of `el` (descendant-or-self, document order) when the caller has them."""
    text = _formula_text(el, parts) if jats_c is None else jats_c.render_formula(el)
    if text == "":
        dropped["formula_placeholder"] += 1
        return FORMULA
    return text


def _formula_text(el: etree._Element, parts: list[etree._Element] | None) -> str | None:
    """`render_formula`'s text, "" when nothing readable can be made. `jats_c.render_formula` is its
    compiled twin."""
    if parts is None:
        parts = list(el.iter(*_FORMULA_TAGS))
    math = tex = None
    for part in parts:
        name = part.tag.rpartition("}")[2]
        if name == "math":
            if math is None:
                math = part
        elif name == "tex-math" and tex is None:
            tex = part
    text = ""
    if math is not None and tex is not None and next(math.iter(*_COMPLEX_MATH), None) is not None:
        math = None  # complex, and the article gives its TeX: use that
    if math is not None:
        text, simple = mathml.render(math)
        if text and (simple or tex is None):
            return text
    if tex is not None:
        source = mathml.tex(text_of(tex))
        if source:
            return source
    if text:
        return text
    if math is None and tex is None and text_of(el).strip():
        return None
    return ""


def _render_formulas(formulas: list[etree._Element], dropped: Counter) -> None:
    """Replace each outermost formula element (of `formulas`, in document order) by its linear text."""
    inner: set = set()
    for el in formulas:
        if el in inner:  # inside a formula rendered already
            continue
        if jats_c is not None:
            parts = jats_c.formula_parts(el)
        else:
            parts = list(el.iter(*_FORMULA_TAGS)) if len(el) else [el]
        inner.update(parts)
        text = render_formula(el, dropped, parts)
        if text is None:
            continue
        el.clear(keep_tail=True)
        el.text = f" {text} " if el.tag[-12:] == "disp-formula" else text


def _is_citation(sup: etree._Element, text: str) -> bool:
    """A superscript made of citation links and separators (`<sup><xref>3</xref>,<xref>4</xref></sup>`)."""
    parent = sup.getparent()
    if (parent is not None and local(parent.tag) == "xref") or _PAREN_CITATION.match(text):
        return True
    if len(sup) == 0:
        return False
    rest = text
    found = False
    for el in sup.iter():  # a few elements: cheaper than setting up a tag filter
        tag = el.tag
        if tag.__class__ is str and tag[-4:] == "xref" and tag.rpartition("}")[2] == "xref":
            found = True
            rest = rest.replace(text_of(el), "", 1)
    return found and not rest.strip(_CITATION_SEPARATORS)


# Characters that `_is_citation` reads as separators once whitespace is collapsed (all of `str.split`'s).
_SEPARATOR_OR_SPACE = _CITATION_SEPARATORS + "".join(c for c in map(chr, range(0x3001)) if c.isspace())


def _links_only(sup: etree._Element) -> bool:
    """A superscript of leaf `xref`s (no whitespace in their text) and separators: what `_is_citation`
    calls a citation, decided from the children without serialising. False: not sure, ask `_is_citation`."""
    if sup.text and sup.text.strip(_SEPARATOR_OR_SPACE):
        return False
    for child in sup:
        tag = child.tag
        if tag.__class__ is not str or tag[-4:] != "xref" or tag.rpartition("}")[2] != "xref" or len(child):
            return False
        text = child.text
        if text and not text.isprintable():  # whitespace (other than a space) or invisibles: be careful
            return False
        if text and " " in text:
            return False
        tail = child.tail
        if tail and tail.strip(_SEPARATOR_OR_SPACE):
            return False
    return True


def _render_scripts(scripts: list[etree._Element], dropped: Counter) -> None:
    """`<sup>` / `<sub>` -> their text with a script marker (`mathml.script`); citation markers dropped."""
    for el in scripts:
        parent = el.getparent()
        if parent is None:  # inside a script rendered already
            continue
        sup = el.tag[-3:] == "sup"
        if len(el) == 0:
            raw = el.text
            if not raw:
                continue
            if raw.isdigit() and not (sup and parent.tag[-4:] == "xref"):  # an exponent or index (the
                el.text = raw.translate(mathml.SUP if sup else mathml.SUB)  # common case, made quick)
                continue
        elif sup and _links_only(el):  # the usual citation marker, recognised without reading its text
            dropped["citation_superscript"] += 1
            _drop_citation(el)
            continue
        else:
            raw = text_of(el)
        text = " ".join(raw.split())
        if sup and _is_citation(el, text):
            dropped["citation_superscript"] += 1
            _drop_citation(el)
            continue
        if sup and text in mathml.DEGREE and _after_digit(el, parent):
            text = "°"  # `40<sup>o</sup>N`: a degree sign
        elif not sup or not (text in _PLAIN_SUPERSCRIPTS or not (_ALNUM.search(text) or text in _SIGNS)):
            text = mathml.script("", text, "^" if sup else "_")
        # else written plain: an ordinal (`5th`) or a raised mark (`*`, `†`, `®`, `−/−`)
        if text and raw[0].isspace():  # `ko/ko </sup>female`: the space belongs between the words
            text = " " + text
        if text and raw[-1].isspace():
            text += " "
        el.clear(keep_tail=True)
        el.text = text


def _after_digit(el: etree._Element, parent: etree._Element) -> bool:
    prev = el.getprevious()
    before = (prev.tail if prev is not None else parent.text) or ""
    return before[-1:].isdigit()


def _drop_citation(sup: etree._Element) -> None:
    """Remove a citation superscript; `word <sup>12</sup>.` leaves `word.`, not `word .`."""
    tail = sup.tail or ""
    if tail[:1] in _CLOSING:
        prev = sup.getprevious()
        if prev is not None and prev.tail:
            prev.tail = prev.tail.rstrip()
        elif prev is None:
            parent = sup.getparent()
            if parent.text:
                parent.text = parent.text.rstrip()
    _detach(sup, "")


def _resolve_entities(entities: list, dropped: Counter) -> None:
    """Undeclared named entities (`&alpha;`: the DTD is never loaded, the parser keeps them as entity
    nodes) -> their character (HTML5 table)."""
    for ent in entities:
        char = html.entities.html5.get(f"{ent.name};")
        if char is None:
            dropped["unknown_entity"] += 1
            char = ""
        parent = ent.getparent()
        text = char + (ent.tail or "")
        prev = ent.getprevious()
        if prev is not None:
            prev.tail = (prev.tail or "") + text
        else:
            parent.text = (parent.text or "") + text
        parent.remove(ent)


def _collect(body: etree._Element) -> tuple[list, ...]:
    """The elements `prepare` rewrites, found in one C-level pass (each extra pass costs a whole tree
    walk), in document order: (entities, formulas, captions, scripts, prose blocks, elements to strip,
    elements to space after). `jats_c.collect` is its compiled twin."""
    entities, formulas, captions, scripts, blocks, stripped, spaced = [], [], [], [], [], [], []
    for el in body.iter(*_PREPARED):
        tag = el.tag
        if tag is etree.Entity:
            entities.append(el)
            continue
        name = tag.rpartition("}")[2]
        if name == "sup" or name == "sub":
            scripts.append(el)
        elif name in FORMULA_TAGS:
            formulas.append(el)
        elif name in PROSE_BLOCKS:
            blocks.append(el)
        elif name == CAPTION:
            captions.append(el)
        elif name in BLOCKS:  # a dropped block: the words on either side stay apart
            spaced.append(el)
            stripped.append(el)
        elif name == "break":
            spaced.append(el)
        else:
            stripped.append(el)
    return entities, formulas, captions, scripts, blocks, stripped, spaced


def prepare(body: etree._Element, dropped: Counter | None = None) -> None:
    """Rewrite the body in place so that a paragraph's text is the text content of its element: render
    formulas and scripts, space breaks, drop non-prose subtrees (a space stands for a dropped block),
    keep only `boxed-text` captions, and mark the `p`s that hold a prose block."""
    dropped = Counter() if dropped is None else dropped
    collect = _collect if jats_c is None else jats_c.collect
    entities, formulas, captions, scripts, blocks, stripped, spaced = collect(body)
    for el in spaced:
        _space_tail(el)
    if entities:
        _resolve_entities(entities, dropped)
    if formulas:
        _render_formulas(formulas, dropped)
    _strip(stripped)
    for el in captions:
        parent = el.getparent()
        if parent is not None and local(parent.tag) != "boxed-text":
            _detach(el, "")
    if scripts:
        (_render_scripts if jats_c is None else jats_c.render_scripts)(scripts, dropped)
    for el in blocks:
        for ancestor in el.iterancestors():
            name = local(ancestor.tag)
            if name == "p":
                ancestor.set(_HOLDS_BLOCK, "1")
                break
            if name in SECTION_TAGS or name in PROSE_BLOCKS:
                break


def _strip(elements: list[etree._Element]) -> None:
    """Remove these elements (document order), keeping their tails: `etree.strip_elements` without its
    walk over the whole body (the few elements are known already). Those no longer in the body (inside
    a rendered formula, or a block removed just before) are left alone or removed from that fragment."""
    for el in elements:
        if el.getparent() is not None:
            _detach(el, "")


def _detach(el: etree._Element, separator: str = " ") -> None:
    """Remove `el` from its parent but keep its tail text in place (after `separator`: a block cut out
    of a sentence must not glue the words on either side)."""
    parent = el.getparent()
    tail = el.tail or ""
    if separator and tail[:1] not in _CLOSING:
        tail = separator + tail
    if tail:
        prev = el.getprevious()
        if prev is not None:
            prev.tail = (prev.tail or "") + tail
        else:
            parent.text = (parent.text or "") + tail
    parent.remove(el)


def _relative_path(el: etree._Element, top: etree._Element) -> str:
    """`bold[0]/list[1]`: path of `el` below `top`, 0-based among same-tag siblings."""
    parts = []
    while el is not top:
        parent = el.getparent()
        name = local(el.tag)
        idx = sum(1 for sib in el.itersiblings(preceding=True) if local(sib.tag) == name)
        parts.append(f"{name}[{idx}]")
        el = parent
    return "/".join(reversed(parts))


def _paragraph(p: etree._Element, path: str, title: str, out: list[Paragraph]) -> None:
    """One `p`: its own text (prose blocks cut out), then the blocks' paragraphs.

    The text is final when taken: the only later edits (`_detach`) happen inside paragraphs not yet read.
    """
    blocks = []
    if p.get(_HOLDS_BLOCK):
        for block in p.iter(*_PROSE_TAGS):
            if not any(b is a for a in block.iterancestors() for b, _ in blocks):
                blocks.append((block, f"{path}/{_relative_path(block, p)}"))
        for block, _ in blocks:
            _detach(block)
    text = clean(text_of(p))
    if text:
        out.append(Paragraph(path, text, title, text.count(" ") + 1))
    for block, block_path in blocks:
        _walk_block(block, block_path, title, out)


def _title(sec: etree._Element | None) -> str | None:
    if sec is None:
        return None
    title = _child(sec, "title")
    return None if title is None else clean(text_of(title)) or None


_WALKED = frozenset({"p", "sec"}) | PROSE_BLOCKS
_WALKED_NESTED = _WALKED | frozenset({"list-item", "def-item", "def", CAPTION})


def _walk(
    container: etree._Element, prefix: str, title: str, out: list[Paragraph], nested: bool = False
) -> None:
    """Collect paragraphs of a body / sec (or, `nested`, a list / quote / box) in document order.

    Only the walked tags count; indexes count same-tag siblings only, so skipping the others does not
    change any path. (A plain child loop with a set lookup is cheaper than lxml's multi-tag filter.)
    """
    walked = _WALKED_NESTED if nested else _WALKED
    counts: dict[str, int] = {}
    for child in container:
        tag = child.tag
        if tag.__class__ is not str:  # comment, PI, entity
            continue
        name = tag.rpartition("}")[2] if tag[0] == "{" else tag
        if name not in walked:
            continue
        idx = counts.get(name, 0)
        counts[name] = idx + 1
        path = f"{prefix}{name}[{idx}]"
        if name == "p" and not child.get(_HOLDS_BLOCK):  # the common case, inlined
            text = clean(text_of(child))
            if text:
                out.append(Paragraph(path, text, title, text.count(" ") + 1))
        elif name == "p":
            _paragraph(child, path, title, out)
        elif name == "sec":
            _walk(child, path + "/", _title(child) or title, out)
        elif name in PROSE_BLOCKS:
            _walk_block(child, path, title, out)
        elif name == "def-item":
            _walk_definition(child, path + "/", title, out)
        else:  # list-item, def, a box's caption
            _walk(child, path + "/", title, out, nested=True)


def _walk_definition(item: etree._Element, prefix: str, title: str, out: list[Paragraph]) -> None:
    """A `def-item`: its definition's paragraphs, the first one prefixed with the term (`term: text`)."""
    start = len(out)
    _walk(item, prefix, title, out, nested=True)
    term = _child(item, "term")
    term_text = clean(text_of(term)) if term is not None else ""
    if term_text and len(out) > start:
        first = out[start]
        text = f"{term_text} {first.text}" if term_text[-1] in ":.–—-=" else f"{term_text}: {first.text}"
        out[start] = Paragraph(first.path, text, first.section_title, text.count(" ") + 1)


def _walk_block(block: etree._Element, path: str, title: str, out: list[Paragraph]) -> None:
    """A list / quote / box / statement: its `p`s (and nested secs, lists) become paragraphs."""
    if local(block.tag) == "boxed-text":
        title = _title(block) or _title(_child(block, CAPTION)) or title
    _walk(block, path + "/", title, out, nested=True)


def body_paragraphs(body: etree._Element, dropped: Counter | None = None) -> list[Paragraph]:
    """Paragraphs of a `<body>` in document order. Modifies `body` (see `prepare`); what the rendering
    leaves out is counted in `dropped`."""
    prepare(body, dropped)
    return walk_prepared(body)


def walk_prepared(body: etree._Element) -> list[Paragraph]:
    """Paragraphs of a body that `prepare` has rewritten (the compiled walk when built)."""
    out: list[Paragraph] = []
    if jats_c is not None:
        jats_c.walk(body, out, Paragraph, _paragraph, _HOLDS_BLOCK)
    else:
        _walk(body, "", "", out)
    return out


# --- metadata -------------------------------------------------------------------------------------


# Tag filters (`el.iter("{*}name")`) cost 2 us each to set up, 15 us for twenty names: more than a Python
# loop over a few children. So small lookups loop in Python and compare local names; only searches
# through a large subtree (article-meta, the body) use lxml's filters.


def _first(parent: etree._Element | None, *names: str) -> etree._Element | None:
    """First descendant-or-self named `names[0]` in document order, else the first named `names[1]`...
    (any namespace). A C-level search: for large subtrees."""
    if parent is None:
        return None
    for name in names:
        for el in parent.iter(f"{{*}}{name}"):
            return el
    return None


def _first_near(parent: etree._Element | None, *names: str) -> etree._Element | None:
    """`_first` for small subtrees (a contributor, a title group, the journal metadata): one Python pass."""
    if parent is None:
        return None
    later: dict[str, etree._Element] = {}
    for el in parent.iter():
        tag = el.tag
        if tag.__class__ is not str:
            continue
        name = tag.rpartition("}")[2]
        if name == names[0]:
            return el
        if name in names and name not in later:
            later[name] = el
    return next((later[name] for name in names[1:] if name in later), None)


def _child(parent: etree._Element | None, name: str) -> etree._Element | None:
    """First child element named `name` (any namespace)."""
    if parent is None:
        return None
    for el in parent:
        tag = el.tag
        if tag.__class__ is str and tag.rpartition("}")[2] == name:
            return el
    return None


def _children(parent: etree._Element, name: str) -> Iterator[etree._Element]:
    """Child elements named `name` (any namespace), in order."""
    for el in parent:
        tag = el.tag
        if tag.__class__ is str and tag.rpartition("}")[2] == name:
            yield el


def normalize_pmcid(value: str | None) -> str | None:
    """`123`, `PMC123`, `PMC123.2` -> `PMC123` (versions dropped: the article is the same)."""
    if not value:
        return None
    m = _DIGITS.search(value.strip())
    return f"PMC{m.group(1)}" if m else None


def license_group(url: str | None, text: str | None = None) -> str:
    """commercial (CC BY, BY-SA, BY-ND, CC0, PD) / noncommercial (any NC) / other, from a URL or a text."""
    for value in (url, text):
        if not value:
            continue
        v = value.lower()
        if _NONCOMMERCIAL.search(v) or "/by-nc" in v:
            return "noncommercial"
        if "creativecommons.org/licenses/by" in v or "creativecommons.org/publicdomain" in v:
            return "commercial"
        if value is text and _CC_TEXT.search(v):
            return "commercial"
    return "other"


def _xlink_href(el: etree._Element) -> str | None:
    for key, value in el.attrib.items():
        if local(key) == "href":
            return value.strip()
    return None


def article_license(meta: etree._Element | None) -> tuple[str | None, str, str | None]:
    """(license_url, license_group, where it came from) from the article's own permissions.

    Order of trust: ali:license_ref -> license/@xlink:href -> CC URL in license-p -> license/@license-type
    -> license-p text -> copyright-statement text.
    """
    perms = _first(meta, "permissions")
    # Old NLM DTDs put license / copyright-statement directly in article-meta.
    return _license_in(meta if perms is None else perms)


def _license_in(perms: etree._Element | None) -> tuple[str | None, str, str | None]:
    """`article_license` once the permissions element (or article-meta without one) is known."""
    if perms is None:
        return None, "other", None
    for el in perms.iter("{*}license_ref"):
        url = clean(text_of(el))
        if url:
            return url, license_group(url), "ali:license_ref"
    licenses = [el for el in perms.iter("{*}license")]
    for lic in licenses:
        href = _xlink_href(lic)
        if href and _CC_URL.search(href):
            return href, license_group(href), "license/@xlink:href"
    texts = []
    for lic in licenses:
        text = clean(text_of(lic))
        texts.append(text)
        m = _CC_URL.search(text)
        if m:
            return m.group(0), license_group(m.group(0)), "license-p"
    for lic in licenses:
        href = _xlink_href(lic)
        if href:
            return href, license_group(href, " ".join(texts)), "license/@xlink:href"
    for lic in licenses:
        kind = lic.get("license-type") or ""
        if _CC_TEXT.search(kind):
            return None, license_group(None, kind), "license/@license-type"
    for text in texts:
        if _CC_TEXT.search(text):
            return None, license_group(None, text), "license-p"
    for el in perms.iter("{*}copyright-statement"):
        text = clean(text_of(el))
        m = _CC_URL.search(text)
        if m:
            return m.group(0), license_group(m.group(0)), "copyright-statement"
        if _CC_TEXT.search(text):
            return None, license_group(None, text), "copyright-statement"
    return None, "other", None


def _meta_children(meta: etree._Element | None) -> tuple[dict[str, str], etree._Element | None, list]:
    """(article ids by `pub-id-type`, the first `title-group`, the `contrib-group`s): what metadata reads
    from article-meta's children, in one pass over them (it has dozens)."""
    ids: dict[str, str] = {}
    title_group = None
    groups: list[etree._Element] = []
    if meta is None:
        return ids, title_group, groups
    for el in meta:
        tag = el.tag
        if tag.__class__ is not str:
            continue
        name = tag.rpartition("}")[2]
        if name == "article-id":
            if el.text:
                ids.setdefault(el.get("pub-id-type", ""), el.text.strip())
        elif name == "contrib-group":
            groups.append(el)
        elif name == "title-group" and title_group is None:
            title_group = el
    return ids, title_group, groups


def _authors(groups: list[etree._Element]) -> list[str]:
    """Author names (`given surname`, else the name's text, else a collab) of these `contrib-group`s."""
    names: list[str] = []
    for group in groups:
        for contrib in _children(group, "contrib"):
            if contrib.get("contrib-type", "author") != "author":
                continue
            name = _first_near(contrib, "name", "string-name")
            if name is not None:
                given = surname = None  # the first of each, in one pass over the name's children
                for part in name:
                    tag = part.tag
                    if tag.__class__ is str:
                        tag = tag.rpartition("}")[2]
                        if tag == "given-names" and given is None:
                            given = part
                        elif tag == "surname" and surname is None:
                            surname = part
                parts = [clean(text_of(e)) for e in (given, surname) if e is not None]
                full = " ".join(p for p in parts if p) or clean(text_of(name))
            else:
                collab = _first_near(contrib, "collab")
                full = clean(text_of(collab)) if collab is not None else ""
            if full:
                names.append(full)
    return names


RETRACTED_RELATIONS = frozenset({"retraction-forward", "retracted-by", "retraction"})
RETRACTION_NOTICE_RELATIONS = frozenset({"retracted-article"})


def article_metadata(article: etree._Element, fallback_id: str) -> Article:
    front = _child(article, "front")
    meta = _child(front, "article-meta")
    ids, title_group, contrib_groups = _meta_children(meta)
    pmcid = normalize_pmcid(ids.get("pmcid") or ids.get("pmc") or ids.get("pmcid-ver"))
    file_match = _PMC_FILE.match(fallback_id)
    if pmcid is None and file_match:
        pmcid = normalize_pmcid(fallback_id)  # PMC names its files by accession (PMC123.xml, PMC123.1.xml)
    version = _VERSION.match(ids.get("pmcid-ver", "").strip()) or _VERSION.match(ids.get("pmcid", "").strip())
    if version is None and file_match and normalize_pmcid(fallback_id) == pmcid:
        version = file_match
    doi = ids.get("doi")
    pmid = ids.get("pmid")
    if pmid and not pmid.isdigit():
        pmid = None
    title_el = _first_near(title_group, "article-title")
    journal_meta = _child(front, "journal-meta")
    journal_el = _first_near(journal_meta, "journal-title", "journal-id")
    perms = None
    relations = set()
    if meta is not None:  # one walk of article-meta for both (`article_license` finds perms alone)
        for el in meta.iter("{*}permissions", "{*}related-article"):
            if el.tag.rpartition("}")[2] == "related-article":
                relations.add((el.get("related-article-type") or "").lower())
            elif perms is None:
                perms = el
    license_url, group, source = _license_in(meta if perms is None else perms)
    article_type = article.get("article-type") or None
    retracted = (
        bool(relations & (RETRACTED_RELATIONS | RETRACTION_NOTICE_RELATIONS)) or article_type == "retraction"
    )
    title = clean(text_of(title_el)) if title_el is not None else None
    if title and title.upper().startswith(("RETRACTED:", "RETRACTED ARTICLE")):
        retracted = True
    lang = next((v for k, v in article.attrib.items() if local(k) == "lang"), None)
    article_id = pmcid or (f"doi:{doi}" if doi else fallback_id)
    url = (
        f"https://doi.org/{doi}"
        if doi
        else (f"https://pmc.ncbi.nlm.nih.gov/articles/{pmcid}/" if pmcid else None)
    )
    return Article(
        article_id=article_id,
        pmcid=pmcid,
        pmid=pmid,
        doi=doi,
        title=title or None,
        journal=clean(text_of(journal_el)) if journal_el is not None else None,
        authors=(_authors if jats_c is None else jats_c.authors)(contrib_groups),
        article_type=article_type,
        xml_lang=lang.lower() if lang else None,
        license_url=license_url,
        license_group=group,
        license_source=source,
        retracted=retracted,
        article_url=url,
        version=int(version.group(1)) if version and version.group(1) else None,
    )


def parse_article(data: bytes, fallback_id: str = "unknown") -> Article:
    """XML bytes of one article (bare, OAI-PMH or pmc-articleset wrapped) -> Article with body paragraphs.

    `fallback_id` is the file stem: a PMC-style name (`PMC123`, `PMC123.2`) gives the PMCID when the XML
    has none; otherwise it is the article id when the article has neither PMCID nor DOI.
    Raises JatsError(reason) for empty, malformed, hostile or non-JATS input.
    """
    if not data or data.isspace():
        raise JatsError("empty", "no bytes")
    check_safe(data)
    try:
        root = _parse(data)
        recovered = False
    except JatsError as error:
        root = _recover(data, error)
        recovered = True
    article = find_article(root)
    result = article_metadata(article, fallback_id)
    result.recovered = recovered
    body = _child(article, "body")
    if body is not None:
        result.has_body = True
        result.paragraphs = body_paragraphs(body, result.dropped)
    return result


def paragraph_id(article_id: str, path: str) -> str:
    """Stable paragraph id: first 16 hex of sha1(`article_id|path`) (the teacher labels' recipe)."""
    return hashlib.sha1(f"{article_id}|{path}".encode()).hexdigest()[:16]


def _compiled_module():
    """`jats_c`, the compiled twins of this module's hot paths (setup.py builds it), unless it is not built
    or older than its source (an edited checkout not rebuilt: its rules could differ from the code here).
    Without it the Python below gives the same output, slower."""
    try:
        from pipelines.ingest import jats_c
    except ImportError:
        return None
    source = Path(__file__).with_name("jats_c.pyx")
    if source.exists() and source.stat().st_mtime > Path(jats_c.__file__).stat().st_mtime:
        warnings.warn(
            "pipelines/ingest/jats_c.pyx is newer than its build: using the Python code "
            "(rebuild with `pip install -e .`)",
            stacklevel=2,
        )
        return None
    return jats_c


# Last: jats_c reads this module's name sets and rules when it is imported.
jats_c = _compiled_module()
COMPILED = jats_c is not None
