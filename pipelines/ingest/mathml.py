"""Formulas and scripts -> linear text a reader would write (docs/ingest.md, "Text rendering").

- Superscripts / subscripts (`<sup>`, `<sub>`, MathML `msup`, `msub`...): Unicode super/subscript
  characters when every character has one (digits, `+ - − = ( )`): `10⁴`, `CO₂`, `Ca²⁺`; otherwise
  `^x` / `_x` for one character and `^{...}` / `_{...}` for more (`noto^{tk241}`, `T_{max}`).
- MathML: token elements give their text, layout elements a linear form (`a/b`, `√x`, `x̄`,
  `∑_{i=1}^{n}`); relations are spaced (`n = 5`). `render` also says whether the expression was
  simple (tokens and scripts only): a complex one is rendered from the article's TeX when it has one.
- TeX (`<tex-math>`): the formula's LaTeX source without the document preamble, as `$...$`.

No maintained MathML-to-text converter was found on PyPI (`mathml-to-latex` 1.0.0: one release,
2024, LaTeX output only; `mathml2latex`: last release 2019), so this covers the common elements.
"""

from __future__ import annotations

import functools

from lxml import etree

# Text content of an element (tail excluded) from lxml's C-level text serialiser. Bound once: passing
# the keywords on every call costs a quarter of a short call.
text_content = functools.partial(etree.tostring, method="text", encoding=str, with_tail=False)

SUP = str.maketrans("0123456789+-−=()", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁻⁼⁽⁾")
SUB = str.maketrans("0123456789+-−=()", "₀₁₂₃₄₅₆₇₈₉₊₋₋₌₍₎")
_SCRIPTABLE = frozenset("0123456789+-−=()")
# Relations: always spaced. Binary operators: spaced when infix (something stands before them).
_RELATIONS = frozenset("=<>≤≥⩽⩾≦≧≈≠∼≃≅≡∝→←↔⇒⇔↦∈∉∋⊂⊆⊃⊇≪≫≲≳≺≻:")
_WORD_RELATIONS = frozenset({"->", "<=", ">=", ":="})
_BINARY = frozenset("+-−±∓×·÷*")
_SPACED = _RELATIONS | _BINARY | frozenset(",")
DEGREE = frozenset({"∘", "°", "○", "o"})
# Function application, invisible times / separator / plus: operators a reader does not see.
_INVISIBLE_OPERATORS = frozenset({"\u2061", "\u2062", "\u2063", "\u2064", "\u200b"})
_INVISIBLE = str.maketrans("", "", "\u2061\u2062\u2063\u2064\u200b")
# mover accents -> combining characters (x̄, x̂, x̃, ẋ, x⃗).
_ACCENTS = {
    "¯": "\u0304",
    "‾": "\u0304",
    "_": "\u0304",
    "^": "\u0302",
    "ˆ": "\u0302",
    "~": "\u0303",
    "˜": "\u0303",
    "˙": "\u0307",
    ".": "\u0307",
    "→": "\u20d7",
    "⃗": "\u20d7",
}
_TOKENS = frozenset({"mi", "mn", "mo", "mtext", "ms"})
# Containers rendered as the concatenation of their children.
_ROWS = frozenset({"math", "mrow", "mstyle", "mpadded", "menclose", "merror", "maction"})
# Layout elements that make an expression complex (rendered from TeX when the article has it).
COMPLEX = ("mfrac", "msqrt", "mroot", "mtable", "munder", "munderover", "mmultiscripts")
# Anything but tokens and plain rows: `render` walks the tree only when one of these is present.
_LAYOUT = frozenset(
    name
    for name in (
        "msup",
        "msub",
        "msubsup",
        "mfrac",
        "msqrt",
        "mroot",
        "mover",
        "munder",
        "munderover",
        "mfenced",
        "mtable",
        "mtr",
        "mlabeledtr",
        "mtd",
        "semantics",
        "annotation",
        "annotation-xml",
        "mphantom",
        "mspace",
        "mmultiscripts",
        "mprescripts",
        "none",
    )
)
_SIMPLE = frozenset({"math", "mrow", "mstyle", "mpadded", "semantics", "msup", "msub", "msubsup"}) | _TOKENS


def scriptable(text: str) -> bool:
    """Every character has a Unicode superscript and subscript form."""
    return bool(text) and _SCRIPTABLE.issuperset(text)


def script(base: str, text: str, mark: str) -> str:
    """`base` with a superscript (`mark` `^`) or subscript (`_`) `text` appended, keeping numbers apart."""
    text = text.strip()
    if not text:
        return base
    if mark == "^" and text in DEGREE:  # `109^∘`: a degree sign written as a superscript ring
        return base + "°"
    if scriptable(text):
        return base + text.translate(SUP if mark == "^" else SUB)
    if len(text) == 1:
        return f"{base}{mark}{text}"
    return f"{base}{mark}{{{text}}}"


def _local(el: etree._Element) -> str:
    tag = el.tag
    if tag.__class__ is not str:
        return ""
    return tag.rpartition("}")[2]


def _wrap(text: str) -> str:
    """Parenthesise a compound operand (`a+b` -> `(a+b)`) so `x/y` and `√x` stay unambiguous."""
    if len(text) <= 1 or text.isalnum() or (text[0] == "(" and text[-1] == ")"):
        return text
    return f"({text})"


def _is_accent(children: list[etree._Element]) -> bool:
    """`mover` of one character and an accent mark (x̄): rendered as one Unicode letter."""
    return len(children) == 2 and _token(children[1]) in _ACCENTS and len(_token(children[0])) == 1


def _token(el: etree._Element) -> str:
    text = el.text if len(el) == 0 else text_content(el)
    if not text:
        return ""
    text = text.strip()
    return "" if text in _INVISIBLE_OPERATORS else text


class _Renderer:
    __slots__ = ("simple",)

    def __init__(self) -> None:
        self.simple = True

    def row(self, el: etree._Element) -> str:
        parts: list[str] = []
        for child in el:
            tag = child.tag
            if tag.__class__ is not str:
                continue
            name = tag.rpartition("}")[2]
            if name == "mo":
                op = _token(child)
                if not op:
                    continue
                infix = op in _BINARY and parts and not parts[-1].endswith(" ")
                if infix or op in _RELATIONS or op in _WORD_RELATIONS:
                    parts.append(f" {op} ")
                elif op == ",":
                    parts.append(", ")
                else:
                    parts.append(op)
            elif name in _TOKENS:
                parts.append(_token(child))
            else:
                parts.append(self.render(child, name))
        return "".join(parts)

    def render(self, el: etree._Element, name: str = "") -> str:
        name = name or _local(el)
        if name in _TOKENS:
            return _token(el)
        if name in _ROWS:
            return self.row(el)
        children = [c for c in el if c.tag.__class__ is str]
        if name not in _SIMPLE and not (name == "mover" and _is_accent(children)):
            self.simple = False
        if name in ("msup", "msub") and len(children) == 2:
            return script(self.render(children[0]), self.render(children[1]), "^" if name == "msup" else "_")
        if name == "msubsup" and len(children) == 3:
            base = script(self.render(children[0]), self.render(children[1]), "_")
            return script(base, self.render(children[2]), "^")
        if name == "mfrac" and len(children) == 2:
            return f"{_wrap(self.render(children[0]))}/{_wrap(self.render(children[1]))}"
        if name == "msqrt":
            return f"√{_wrap(self.row(el))}"
        if name == "mroot" and len(children) == 2:
            index = self.render(children[1])
            return {"3": "∛", "4": "∜"}.get(index, f"{index}√") + _wrap(self.render(children[0]))
        if name in ("mover", "munder", "munderover") and len(children) >= 2:
            base = self.render(children[0])
            if name == "mover":
                over = self.render(children[1])
                if over in _ACCENTS and len(base) == 1:
                    return base + _ACCENTS[over]
                return script(base, over, "^")
            base = script(base, self.render(children[1]), "_")
            return script(base, self.render(children[2]), "^") if name == "munderover" else base
        if name == "mfenced":
            opening, closing = el.get("open", "("), el.get("close", ")")
            separator = (el.get("separators") or ",").strip()[:1] or ","
            return opening + f"{separator} ".join(self.render(c) for c in children) + closing
        if name in ("mtable",):
            return "; ".join(self.render(c) for c in children)
        if name in ("mtr", "mlabeledtr"):
            cells = children[1:] if name == "mlabeledtr" else children
            return ", ".join(self.render(c) for c in cells)
        if name == "semantics":
            return self.render(children[0]) if children else ""
        if name in ("annotation", "annotation-xml", "mphantom", "none", "mprescripts"):
            return ""
        if name == "mspace":
            return " "
        return self.row(el)


def _has_layout(math: etree._Element) -> bool:
    """Whether `math` holds a layout element (a Python loop: most formulas are a few tokens, and a
    twenty-tag lxml filter costs 15 us to set up)."""
    for el in math.iter():
        tag = el.tag
        if tag.__class__ is str and tag.rpartition("}")[2] in _LAYOUT:
            return True
    return False


def render(math: etree._Element) -> tuple[str, bool]:
    """(linear text of a MathML `math` element, whether it held only tokens, rows and scripts)."""
    if not _has_layout(math):  # tokens in rows (`n`, `x1`, `log`): their text
        text = "".join(part.strip() for part in math.itertext()).translate(_INVISIBLE)
        if not _SPACED.intersection(text):
            return " ".join(text.split()), True
    renderer = _Renderer()
    text = " ".join(renderer.render(math).split())
    return text, renderer.simple


def tex(source: str) -> str:
    """LaTeX source of a `<tex-math>`: the formula without preamble, as `$...$` ("" when empty)."""
    begin = source.find("\\begin{document}")
    if begin >= 0:
        source = source[begin + 16 :]
        end = source.rfind("\\end{document}")
        if end >= 0:
            source = source[:end]
    source = source.strip()
    for opening, closing in (("$$", "$$"), ("$", "$"), ("\\[", "\\]"), ("\\(", "\\)")):
        if source.startswith(opening) and source.endswith(closing) and len(source) >= 2 * len(opening):
            source = source[len(opening) : len(source) - len(closing)].strip()
            break
    source = " ".join(source.split())
    return f"${source}$" if source else ""
