# cython: language_level=3
"""Compiled twins of ingest's hot paths (`jats.py`, `mathml.py`), working on libxml2's nodes instead of
Python element proxies: 1.4-1.5x the Python code per article (docs/ingest.md, Performance).

- text: `text_of` + `clean` in one pass over the text nodes (`_text`);
- the paragraph walk (`walk`: `jats._walk`, `_walk_block`, `_walk_definition`, `_title`);
- `prepare`'s pass finding the elements to rewrite (`collect`), the formulas (`render_formula`,
  `formula_parts`: `jats._formula_text`, `mathml.render`) and the scripts (`render_scripts`);
- the byte pruning before parsing (`pruned`: `jats._pruned_pieces`), the author names (`authors`).

Each gives exactly what the Python it stands in for gives (tests/test_ingest_compiled.py compares the
two on every sample article and on other projects' fixtures); the Python stays as the reference and
the fallback when this module is not built (`jats.COMPILED`). The tree is only read here, from the node
structs, never through a libxml2 function (nothing to link against: lxml carries its own libxml2);
edits go through lxml's API (`el.text = ...`, and the Python helpers for removals).
"""

cimport lxml.includes.etreepublic as cetree
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memchr, memcmp, memcpy, strcmp, strlen
from lxml.includes cimport tree
from lxml.includes.tree cimport xmlNode

from pipelines.ingest import jats as J  # (jats imports this module at its end: its rules are all set)
from pipelines.ingest import mathml

cetree.import_lxml__etree()


cdef enum:
    NAMES = 64  # room in a `_Names` table


cdef class _Names:
    """Local names of one of jats.py's name sets -> small ints, found by their first byte (one or two
    comparisons for the common inline names, and no Python object per lookup)."""

    cdef bytes storage  # the names, NUL-terminated, owned here
    cdef const char* name[NAMES]
    cdef size_t length[NAMES]
    cdef int value[NAMES]
    cdef int start[257]  # entries of first byte c: start[c] to start[c + 1]

    def __init__(self, dict values):
        cdef int i, c
        cdef size_t offset = 0
        items = sorted((str(k).encode(), v) for k, v in values.items())
        if len(items) > NAMES:
            raise ValueError(f"{len(items)} names: more than a _Names table holds ({NAMES})")
        self.storage = b"".join(k + b"\0" for k, _ in items)
        for i, (key, v) in enumerate(items):
            self.name[i] = <const char*>self.storage + offset
            self.length[i] = len(key)
            self.value[i] = v
            offset += len(key) + 1
        i = 0
        for c in range(257):
            while i < len(items) and (<bytes>items[i][0])[0] < c:
                i += 1
            self.start[c] = i

    cdef int find(self, const char* n) noexcept:
        """Entry of the NUL-terminated name `n`, -1 if none."""
        cdef int i
        cdef unsigned char c = n[0]
        for i in range(self.start[c], self.start[c + 1]):
            if strcmp(n, self.name[i]) == 0:
                return i
        return -1

    cdef int get(self, const char* n) noexcept:
        """Value of the name `n`, 0 if it is not in the table."""
        cdef int i = self.find(n)
        return self.value[i] if i >= 0 else 0

# The walked elements (`jats._WALKED`; inside lists, quotes and boxes also `jats._WALKED_NESTED`'s
# `def-item` and K_NESTED: list items, definitions, a box's caption); anything else is skipped.
cdef enum Kind:
    K_OTHER, K_P, K_SEC, K_BLOCK, K_DEF_ITEM, K_NESTED  # the last two: only when nested

cdef struct Buf:
    char* data
    size_t len
    size_t cap
    bint heap  # `data` was allocated here (it starts as the caller's stack buffer)


cdef enum:
    STACK = 8192  # most paragraphs fit: no allocation


cdef inline void _start(Buf* b, char* stack) noexcept:
    b.data = stack
    b.len = 0
    b.cap = STACK
    b.heap = False


cdef inline void _release(Buf* b) noexcept:
    if b.heap:
        free(b.data)


cdef int _add_bytes(Buf* b, const void* s, size_t n) except -1:
    cdef char* grown
    if b.len + n > b.cap:
        b.cap = (b.len + n) * 2
        grown = <char*>(realloc(b.data, b.cap) if b.heap else malloc(b.cap))
        if grown is NULL:
            raise MemoryError()
        if not b.heap:
            memcpy(grown, b.data, b.len)
        b.data = grown
        b.heap = True
    memcpy(b.data + b.len, s, n)
    b.len += n
    return 0


cdef inline int _add(Buf* b, const char* s) except -1:
    return _add_bytes(b, s, strlen(s))


cdef int _gather(Buf* b, xmlNode* top) except -1:
    """The text content of `top` (libxml2's `xmlNodeGetContent`, lxml's text serialiser): text and CDATA
    of all descendants. Entity nodes add nothing, as there (undeclared: the DTD is never loaded);
    `jats.prepare` has resolved the body's before any paragraph is read."""
    cdef xmlNode* c = top.children
    while c is not NULL:
        if c.type == tree.XML_TEXT_NODE or c.type == tree.XML_CDATA_SECTION_NODE:
            if c.content is not NULL:
                _add(b, <const char*>c.content)
        elif c.type == tree.XML_ELEMENT_NODE and c.children is not NULL:
            _gather(b, c)
        c = c.next
    return 0


cdef inline int _space(const unsigned char* p, size_t left) noexcept:
    """For the non-ASCII character starting at `p`: its length in bytes if `str.split` counts it as
    whitespace; minus its length if it is one of the invisibles `jats.clean` removes (soft hyphen,
    zero-width space / joiner, BOM); else 0."""
    cdef unsigned char c = p[0]
    if c == 0xC2 and left >= 2:
        if p[1] == 0x85 or p[1] == 0xA0:
            return 2
        return -2 if p[1] == 0xAD else 0
    if left < 3:
        return 0
    if c == 0xE1:
        return 3 if p[1] == 0x9A and p[2] == 0x80 else 0  # U+1680
    if c == 0xE2 and p[1] == 0x80:
        if 0x80 <= p[2] <= 0x8A or p[2] == 0xA8 or p[2] == 0xA9 or p[2] == 0xAF:  # U+2000-200A, 2028/9, 202F
            return 3
        return -3 if p[2] == 0x8B else 0  # U+200B
    if c == 0xE2 and p[1] == 0x81:
        if p[2] == 0x9F:  # U+205F
            return 3
        return -3 if p[2] == 0xA0 else 0  # U+2060
    if c == 0xE3:
        return 3 if p[1] == 0x80 and p[2] == 0x80 else 0  # U+3000
    if c == 0xEF:
        return -3 if p[1] == 0xBB and p[2] == 0xBF else 0  # U+FEFF
    return 0


cdef size_t _clean(char* data, size_t n, Py_ssize_t* spaces) noexcept:
    """`jats.clean` on UTF-8 bytes, in place: invisibles removed, whitespace runs -> one space, ends
    stripped. Returns the new length; `spaces`: the spaces left (words - 1).

    ASCII bytes take a branch-free path (each byte is written, the output position advances unless it
    is a second space in a row): a branch per word boundary would mispredict at every space."""
    cdef unsigned char* s = <unsigned char*>data
    cdef size_t i = 0, o = 0
    cdef unsigned int c, ws, keep, prev = 1  # prev: the last character read was whitespace (none at start)
    cdef Py_ssize_t count = 0
    cdef int k
    while i < n:
        c = s[i]
        if c < 0x80:
            ws = (c == 32) | (c - 9 <= 4) | (c - 0x1C <= 3)
            s[o] = 32 if ws else c
            keep = 1 - (ws & prev)
            o += keep
            count += ws & keep
            prev = ws
            i += 1
            continue
        k = _space(s + i, n - i)
        if k > 0:  # a non-ASCII space
            s[o] = 32
            keep = 1 - prev
            o += keep
            count += keep
            prev = 1
            i += k
        elif k < 0:  # an invisible character: gone, as if it was never there
            i -= k
        else:
            s[o] = c
            o += 1
            prev = 0
            i += 1
    if o and s[o - 1] == 32:
        o -= 1
        count -= 1
    spaces[0] = count
    return o


cdef tuple _text(xmlNode* node):
    """(clean text, words) of an element."""
    cdef char stack[STACK]
    cdef Buf b
    cdef Py_ssize_t spaces = 0
    cdef size_t n
    _start(&b, stack)
    try:
        _gather(&b, node)
        n = _clean(b.data, b.len, &spaces)
        if n == 0:
            return "", 0
        return PyUnicode_DecodeUTF8(b.data, n, NULL), spaces + 1
    finally:
        _release(&b)


cdef inline bint _is(xmlNode* node, const char* name) noexcept:
    return node.type == tree.XML_ELEMENT_NODE and strcmp(<const char*>node.name, name) == 0


cdef xmlNode* _child(xmlNode* parent, const char* name) noexcept:
    cdef xmlNode* c = parent.children if parent is not NULL else NULL
    while c is not NULL:
        if _is(c, name):
            return c
        c = c.next
    return NULL


cdef object _title(xmlNode* node):
    """`jats._title`: the clean text of the first `title` child, None when absent or empty."""
    cdef xmlNode* title
    if node is NULL:
        return None
    title = _child(node, "title")
    if title is NULL:
        return None
    return _text(title)[0] or None


cdef bint _has_attribute(xmlNode* node, const char* name) noexcept:
    cdef tree.xmlAttr* attr = node.properties
    while attr is not NULL:
        if attr.ns is NULL and strcmp(<const char*>attr.name, name) == 0:
            return True
        attr = attr.next
    return False


cdef _Names _KINDS = _Names({
    **{name: K_NESTED for name in J._WALKED_NESTED - J._WALKED},
    "def-item": K_DEF_ITEM,
    **{name: K_BLOCK for name in J.PROSE_BLOCKS},
    "p": K_P,
    "sec": K_SEC,
})


cdef class _Walk:
    """One body's walk: the document (for proxies handed to Python) and where paragraphs go."""

    cdef cetree._Document doc
    cdef list out
    cdef object paragraph_type
    cdef object python_paragraph
    cdef bytes holds_block

    cdef int walk(self, xmlNode* container, str prefix, str title, bint nested) except -1:
        cdef xmlNode* child = container.children
        cdef dict counts = {}
        cdef Kind kind
        cdef str name, path, text
        cdef Py_ssize_t words
        while child is not NULL:
            if child.type == tree.XML_ELEMENT_NODE:
                kind = <Kind>_KINDS.get(<const char*>child.name)
                if kind >= K_DEF_ITEM and not nested:
                    kind = K_OTHER
                if kind != K_OTHER:
                    name = (<bytes>child.name).decode("utf-8")
                    idx = counts.get(name, 0)
                    counts[name] = idx + 1
                    path = f"{prefix}{name}[{idx}]"
                    if kind == K_P and not _has_attribute(child, self.holds_block):
                        text, words = _text(child)
                        if text:
                            self.out.append(self.paragraph_type(path, text, title, words))
                    elif kind == K_P:
                        self.python_paragraph(cetree.elementFactory(self.doc, child), path, title, self.out)
                    elif kind == K_SEC:
                        self.walk(child, path + "/", _title(child) or title, False)
                    elif kind == K_BLOCK:
                        self.block(child, path, title)
                    elif kind == K_DEF_ITEM:
                        self.definition(child, path + "/", title)
                    else:  # K_NESTED
                        self.walk(child, path + "/", title, True)
            child = child.next
        return 0

    cdef int block(self, xmlNode* block, str path, str title) except -1:
        if strcmp(<const char*>block.name, "boxed-text") == 0:
            title = _title(block) or _title(_child(block, "caption")) or title
        return self.walk(block, path + "/", title, True)

    cdef int definition(self, xmlNode* item, str prefix, str title) except -1:
        cdef Py_ssize_t start = len(self.out)
        cdef xmlNode* term
        cdef str term_text = ""
        self.walk(item, prefix, title, True)
        term = _child(item, "term")
        if term is not NULL:
            term_text = _text(term)[0]
        if term_text and len(self.out) > start:
            first = self.out[start]
            text = f"{term_text} {first.text}" if term_text[-1] in ":.–—-=" else f"{term_text}: {first.text}"
            self.out[start] = self.paragraph_type(first.path, text, first.section_title, text.count(" ") + 1)
        return 0


# `jats.prepare`'s groups of elements to rewrite, by local name (any namespace).
cdef enum Group:
    G_NONE, G_SCRIPT, G_FORMULA, G_PROSE, G_CAPTION, G_BLOCK, G_BREAK, G_DROPPED


cdef _Names _GROUPS = _Names({
    **{name: G_DROPPED for name in J.DROPPED - J.BLOCKS},
    **{name: G_BLOCK for name in J.BLOCKS},
    **{name: G_FORMULA for name in J.FORMULA_TAGS},
    **{name: G_PROSE for name in J.PROSE_BLOCKS},
    J.CAPTION: G_CAPTION,
    "sup": G_SCRIPT,
    "sub": G_SCRIPT,
    "break": G_BREAK,
})


cdef int _collect(cetree._Document doc, xmlNode* top, list found) except -1:
    """Fill `found` (a list per group, `G_NONE`'s for entities), each in document order."""
    cdef xmlNode* c = top.children
    cdef Group group
    while c is not NULL:
        if c.type == tree.XML_ENTITY_REF_NODE:
            (<list>found[G_NONE]).append(cetree.elementFactory(doc, c))
        elif c.type == tree.XML_ELEMENT_NODE:
            group = <Group>_GROUPS.get(<const char*>c.name)
            if group != G_NONE:
                el = cetree.elementFactory(doc, c)
                (<list>found[group]).append(el)
                if group == G_BLOCK:  # spaced after (this list), then stripped (in document order)
                    (<list>found[G_DROPPED]).append(el)
            if c.children is not NULL:
                _collect(doc, c, found)
        c = c.next
    return 0


def collect(cetree._Element body) -> tuple[list, ...]:
    """The elements `jats.prepare` rewrites, in document order, as `jats._collect`'s filtered `iter` finds
    them: (entities, formulas, captions, scripts, prose blocks, elements to strip, elements to space after).
    """
    cdef list found = [[] for _ in range(G_DROPPED + 1)]
    _collect(body._doc, body._c_node, found)
    return (found[G_NONE], found[G_FORMULA], found[G_CAPTION], found[G_SCRIPT], found[G_PROSE],
            found[G_DROPPED], found[G_BLOCK] + found[G_BREAK])


def walk(cetree._Element body, list out, paragraph_type, python_paragraph, str holds_block) -> None:
    """Append the paragraphs of a prepared `body` to `out`, as `jats._walk(body, "", "", out)` does.

    `paragraph_type`: `jats.Paragraph`; `python_paragraph`: `jats._paragraph`, for a `p` carrying the
    `holds_block` attribute."""
    cdef _Walk state = _Walk()
    state.doc = body._doc
    state.out = out
    state.paragraph_type = paragraph_type
    state.python_paragraph = python_paragraph
    state.holds_block = holds_block.encode()
    state.walk(body._c_node, "", "", False)


def text(cetree._Element element) -> str:
    """`jats.clean(jats.text_of(element))` of a prepared element (for tests)."""
    return _text(element._c_node)[0]


# `jats._PRUNE_DROP`: the never-used elements cut out of the bytes before parsing.
cdef _Names _PRUNED = _Names({name.decode(): 1 for name in J._PRUNE_DROP})


cdef inline bint _tag_end(unsigned char c) noexcept:
    return c == 32 or 9 <= c <= 13 or c == 62 or c == 47  # whitespace (bytes regex `\s`), `>`, `/`


cdef inline int _pruned(const unsigned char* name, Py_ssize_t left) noexcept:
    """Entry in `_PRUNED` of the element whose start tag's name begins at `name` (`left` bytes follow),
    else -1."""
    cdef int i
    cdef size_t n
    for i in range(_PRUNED.start[name[0]], _PRUNED.start[name[0] + 1]):
        n = _PRUNED.length[i]
        if left > <Py_ssize_t>n and memcmp(name, _PRUNED.name[i], n) == 0 and _tag_end(name[n]):
            return i
    return -1


cdef Py_ssize_t _cut(const unsigned char* base, Py_ssize_t pos, Py_ssize_t limit, int* which) noexcept:
    """`jats._PRUNE_OPEN.search`: offset of the next start tag of a never-used element (`which`: its
    index in `_PRUNED`) or of the next `</body>` (`which` -1) in `base[pos:limit]`; -1 when neither."""
    cdef const unsigned char* at
    cdef Py_ssize_t i = pos, left
    while i < limit:
        at = <const unsigned char*>memchr(base + i, 60, limit - i)  # `<`
        if at is NULL:
            return -1
        i = at - base
        left = limit - i - 1
        if left >= 6 and at[1] == 47 and memcmp(at + 1, b"/body>", 6) == 0:
            which[0] = -1
            return i
        if left > 0:
            which[0] = _pruned(at + 1, left)
            if which[0] >= 0:
                return i
        i += 1
    return -1


cdef Py_ssize_t _find(const unsigned char* base, Py_ssize_t n, const char* needle, Py_ssize_t k,
                      Py_ssize_t start, Py_ssize_t end) noexcept:
    """`bytes.find(needle, start, end)` on `base[:n]`."""
    cdef const unsigned char* at
    if end > n:
        end = n
    while start + k <= end:
        at = <const unsigned char*>memchr(base + start, needle[0], end - start - k + 1)
        if at is NULL:
            return -1
        start = at - base
        if memcmp(at, needle, k) == 0:
            return start
        start += 1
    return -1


cdef Py_ssize_t _element_end(const unsigned char* base, Py_ssize_t n, Py_ssize_t start, const char* tag,
                             Py_ssize_t limit) noexcept:
    """`jats._element_end`: end offset of the element whose start tag is at `start`; -1: not closed before
    `limit`, -2: its start tag is not even closed."""
    cdef char close[64]
    cdef char opening[64]
    cdef Py_ssize_t t = strlen(tag), gt, k, nested, depth = 1, scan, after
    gt = _find(base, n, b">", 1, start, limit)
    if gt < 0:
        return -2
    if base[gt - 1] == 47:  # self-closing `/>`
        return gt + 1
    close[0], close[1] = 60, 47
    memcpy(close + 2, tag, t)
    close[t + 2] = 62
    opening[0] = 60
    memcpy(opening + 1, tag, t)
    scan = gt
    while depth:
        k = _find(base, n, close, t + 3, scan, limit)
        if k < 0:
            return -1
        nested = _find(base, n, opening, t + 1, scan, k)
        while nested >= 0:
            after = base[nested + t + 1]
            if after == 32 or after == 9 or after == 13 or after == 10 or after == 62 or after == 47:
                gt = _find(base, n, b">", 1, nested, n)
                if base[gt - 1 if gt >= 0 else n - 2] != 47:
                    depth += 1
            nested = _find(base, n, opening, t + 1, nested + 1, k)
        depth -= 1
        scan = k + t + 3
    return scan


cdef inline bint _no_space_before(unsigned char c) noexcept:
    """`jats._NO_SPACE_BEFORE`."""
    return (c == 46 or c == 44 or c == 59 or c == 58 or c == 41 or c == 93 or c == 33 or c == 63 or c == 10
            or c == 13 or c == 9 or c == 32)


def pruned(const unsigned char[::1] data, stop):
    """`jats._pruned_pieces` with the pieces joined: (`data[:stop]` with never-used elements cut, or None
    when nothing is cut or an element is unbalanced; `stop`, found as the first `</body>`'s end when None,
    -1 when there is none)."""
    cdef Py_ssize_t n = data.shape[0]
    cdef const unsigned char* base = &data[0] if n else NULL
    cdef Py_ssize_t pos = 0, i, end, inner, limit, c_stop = -1 if stop is None else stop
    cdef bint found_stop = stop is not None
    cdef int which = 0
    cdef char stack[STACK]
    cdef Buf out
    cdef bint cut = False
    limit = c_stop if found_stop else n
    _start(&out, stack)
    try:
        i = _cut(base, 0, limit, &which)
        while i >= 0:
            if which < 0:  # `</body>`
                if not found_stop:
                    c_stop = limit = i + 7
                    found_stop = True
                    break
                i = _cut(base, i + 7, limit, &which)
                continue
            end = _element_end(base, n, i, _PRUNED.name[which], limit)
            if not found_stop and end != -2:  # the first `</body>` may lie inside: the cut then ends there
                inner = _find(base, n, b"</body>", 7, i, n if end < 0 else end)
                if inner >= 0:
                    c_stop = limit = inner + 7
                    found_stop = True
                    end = _element_end(base, n, i, _PRUNED.name[which], limit)
            if end == -2:
                break
            if end == -1:  # unbalanced; when the first `</body>` was not in it, there is none
                return None, c_stop
            _add_bytes(&out, base + pos, i - pos)
            if end >= limit or not _no_space_before(base[end]):
                _add_bytes(&out, b" ", 1)
            cut = True
            pos = end
            i = _cut(base, pos, limit, &which)
        if not found_stop:
            return None, -1
        if not cut:
            return None, c_stop
        _add_bytes(&out, base + pos, c_stop - pos)
        return out.data[:out.len], c_stop
    finally:
        _release(&out)


# --- formulas: `jats.render_formula` and `mathml.render` over the nodes ---------------------------------

cdef frozenset _TOKENS = mathml._TOKENS
cdef frozenset _ROWS = mathml._ROWS
cdef frozenset _SIMPLE = mathml._SIMPLE
cdef frozenset _LAYOUT = mathml._LAYOUT
cdef frozenset _COMPLEX = frozenset(mathml.COMPLEX)
cdef frozenset _BINARY = mathml._BINARY
cdef frozenset _RELATIONS = mathml._RELATIONS
cdef frozenset _WORD_RELATIONS = mathml._WORD_RELATIONS
cdef frozenset _SPACED = mathml._SPACED
cdef frozenset _INVISIBLE_OPERATORS = mathml._INVISIBLE_OPERATORS
cdef dict _INVISIBLE = mathml._INVISIBLE
cdef dict _ACCENTS = mathml._ACCENTS
_script = mathml.script
_wrap = mathml._wrap


cdef inline str _name(xmlNode* node):
    return (<bytes>node.name).decode("utf-8")


cdef str _content(xmlNode* node):
    """Text content of an element, uncleaned (`jats.text_of`, `mathml._token` before its strip)."""
    cdef char stack[STACK]
    cdef Buf b
    _start(&b, stack)
    try:
        _gather(&b, node)
        return PyUnicode_DecodeUTF8(b.data, b.len, NULL) if b.len else ""
    finally:
        _release(&b)


cdef int _formula_parts(xmlNode* node, list found) except -1:
    """Descendant-or-self elements named in `jats.FORMULA_TAGS` (document order), as raw pointers."""
    cdef xmlNode* c
    if node.type != tree.XML_ELEMENT_NODE:
        return 0
    if _GROUPS.get(<const char*>node.name) == G_FORMULA:
        found.append(<size_t>node)
    c = node.children
    while c is not NULL:
        _formula_parts(c, found)
        c = c.next
    return 0


def formula_parts(cetree._Element el) -> list:
    """`list(el.iter(*jats._FORMULA_TAGS))`: the formula elements of `el`, `el` included."""
    cdef list found = []
    _formula_parts(el._c_node, found)
    return [cetree.elementFactory(el._doc, <xmlNode*><size_t>p) for p in found]


cdef bint _holds(xmlNode* node, frozenset names) except -1:
    """Whether `node` or an element below it has a local name in `names`."""
    cdef xmlNode* c
    if node.type != tree.XML_ELEMENT_NODE:
        return False
    if _name(node) in names:
        return True
    c = node.children
    while c is not NULL:
        if _holds(c, names):
            return True
        c = c.next
    return False


cdef list _elements(xmlNode* node):
    cdef list out = []
    cdef xmlNode* c = node.children
    while c is not NULL:
        if c.type == tree.XML_ELEMENT_NODE:
            out.append(<size_t>c)
        c = c.next
    return out


cdef str _token(xmlNode* node):
    cdef str text = _content(node).strip()
    return "" if text in _INVISIBLE_OPERATORS else text


cdef int _runs(xmlNode* node, list parts, Buf* b) except -1:
    """`math.itertext()`: each run of adjacent text nodes is one part (an element's text, a tail).
    `b` holds the run being read (empty at each call and return)."""
    cdef xmlNode* c = node.children
    while True:
        if c is not NULL and (c.type == tree.XML_TEXT_NODE or c.type == tree.XML_CDATA_SECTION_NODE):
            if c.content is not NULL:
                _add(b, <const char*>c.content)
            c = c.next
            continue
        if b.len:
            parts.append(PyUnicode_DecodeUTF8(b.data, b.len, NULL))
            b.len = 0
        if c is NULL:
            return 0
        if c.type == tree.XML_ELEMENT_NODE:
            _runs(c, parts, b)
        c = c.next


cdef class _Renderer:
    """`mathml._Renderer` over the nodes (same rules, same order)."""

    cdef bint simple
    cdef cetree._Document doc

    cdef str row(self, xmlNode* el):
        cdef list parts = []
        cdef xmlNode* child = el.children
        cdef str name, op
        while child is not NULL:
            if child.type == tree.XML_ELEMENT_NODE:
                name = _name(child)
                if name == "mo":
                    op = _token(child)
                    if op:
                        infix = op in _BINARY and parts and not (<str>parts[-1]).endswith(" ")
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
            child = child.next
        return "".join(parts)

    cdef str render(self, xmlNode* el, str name):
        cdef list children
        cdef str base, over, index
        if name in _TOKENS:
            return _token(el)
        if name in _ROWS:
            return self.row(el)
        children = _elements(el)
        if name not in _SIMPLE and not (name == "mover" and self.is_accent(children)):
            self.simple = False
        if (name == "msup" or name == "msub") and len(children) == 2:
            return _script(self.child(children, 0), self.child(children, 1), "^" if name == "msup" else "_")
        if name == "msubsup" and len(children) == 3:
            base = _script(self.child(children, 0), self.child(children, 1), "_")
            return _script(base, self.child(children, 2), "^")
        if name == "mfrac" and len(children) == 2:
            return f"{_wrap(self.child(children, 0))}/{_wrap(self.child(children, 1))}"
        if name == "msqrt":
            return f"√{_wrap(self.row(el))}"
        if name == "mroot" and len(children) == 2:
            index = self.child(children, 1)
            return {"3": "∛", "4": "∜"}.get(index, f"{index}√") + _wrap(self.child(children, 0))
        if (name == "mover" or name == "munder" or name == "munderover") and len(children) >= 2:
            base = self.child(children, 0)
            if name == "mover":
                over = self.child(children, 1)
                if over in _ACCENTS and len(base) == 1:
                    return base + _ACCENTS[over]
                return _script(base, over, "^")
            base = _script(base, self.child(children, 1), "_")
            return _script(base, self.child(children, 2), "^") if name == "munderover" else base
        if name == "mfenced":
            proxy = cetree.elementFactory(self.doc, el)
            opening, closing = proxy.get("open", "("), proxy.get("close", ")")
            separator = (proxy.get("separators") or ",").strip()[:1] or ","
            return opening + f"{separator} ".join([self.child(children, i) for i in range(len(children))]) + closing
        if name == "mtable":
            return "; ".join([self.child(children, i) for i in range(len(children))])
        if name == "mtr" or name == "mlabeledtr":
            start = 1 if name == "mlabeledtr" else 0
            return ", ".join([self.child(children, i) for i in range(start, len(children))])
        if name == "semantics":
            return self.child(children, 0) if children else ""
        if name in ("annotation", "annotation-xml", "mphantom", "none", "mprescripts"):
            return ""
        if name == "mspace":
            return " "
        return self.row(el)

    cdef str child(self, list children, Py_ssize_t i):
        cdef xmlNode* node = <xmlNode*><size_t>children[i]
        return self.render(node, _name(node))

    cdef bint is_accent(self, list children) except -1:
        """`mathml._is_accent`."""
        return (len(children) == 2 and _token(<xmlNode*><size_t>children[1]) in _ACCENTS
                and len(_token(<xmlNode*><size_t>children[0])) == 1)


cdef tuple _render_math(cetree._Document doc, xmlNode* math):
    """`mathml.render` of a MathML `math` element: (linear text, whether it was simple)."""
    cdef list parts
    cdef str text
    cdef _Renderer renderer
    cdef char stack[STACK]
    cdef Buf b
    if not _holds(math, _LAYOUT):
        parts = []
        _start(&b, stack)
        try:
            _runs(math, parts, &b)
        finally:
            _release(&b)
        text = "".join([(<str>part).strip() for part in parts]).translate(_INVISIBLE)
        if not _SPACED.intersection(text):
            return " ".join(text.split()), True
    renderer = _Renderer()
    renderer.simple = True
    renderer.doc = doc
    text = " ".join(renderer.render(math, _name(math)).split())
    return text, renderer.simple


def render_formula(cetree._Element el):
    """`jats._formula_text`: the formula's text, None for plain markup, "" when nothing readable can be
    made (`jats.render_formula` then writes the placeholder)."""
    cdef list parts = []
    cdef xmlNode* math = NULL
    cdef xmlNode* tex = NULL
    cdef xmlNode* part
    cdef str text = "", source
    cdef bint simple = False
    _formula_parts(el._c_node, parts)
    for address in parts:
        part = <xmlNode*><size_t>address
        if strcmp(<const char*>part.name, "math") == 0:
            if math is NULL:
                math = part
        elif strcmp(<const char*>part.name, "tex-math") == 0 and tex is NULL:
            tex = part
    if math is not NULL and tex is not NULL and _holds(math, _COMPLEX):
        math = NULL  # complex, and the article gives its TeX: use that
    if math is not NULL:
        text, simple = _render_math(el._doc, math)
        if text and (simple or tex is NULL):
            return text
    if tex is not NULL:
        source = mathml.tex(_content(tex))
        if source:
            return source
    if text:
        return text
    if math is NULL and tex is NULL and _content(el._c_node).strip():
        return None
    return ""



# --- scripts: `jats._render_scripts` reading the nodes, editing through lxml ----------------------------

cdef inline bint _proxied(xmlNode* node) noexcept:
    """lxml's `_isElement`: the nodes that are children in lxml's API (elements, comments, PIs, entities)."""
    return (node.type == tree.XML_ELEMENT_NODE or node.type == tree.XML_COMMENT_NODE
            or node.type == tree.XML_PI_NODE or node.type == tree.XML_ENTITY_REF_NODE)


cdef inline bint _is_text(xmlNode* node) noexcept:
    return node.type == tree.XML_TEXT_NODE or node.type == tree.XML_CDATA_SECTION_NODE


cdef bint _is_leaf(xmlNode* node) noexcept:
    """`len(el) == 0`."""
    cdef xmlNode* c = node.children
    while c is not NULL:
        if _proxied(c):
            return False
        c = c.next
    return True


cdef object _run(xmlNode* c):
    """lxml's `.text` (from the first child) or `.tail` (from the next sibling): the adjacent text nodes
    from `c` on, None when there are none."""
    cdef char stack[STACK]
    cdef Buf b
    if c is NULL or not _is_text(c):
        return None
    _start(&b, stack)
    try:
        while c is not NULL and _is_text(c):
            if c.content is not NULL:
                _add(&b, <const char*>c.content)
            c = c.next
        return PyUnicode_DecodeUTF8(b.data, b.len, NULL)
    finally:
        _release(&b)


cdef inline xmlNode* _parent(xmlNode* node) noexcept:
    """`getparent()`."""
    cdef xmlNode* parent = node.parent
    return parent if parent is not NULL and _proxied(parent) else NULL


cdef inline xmlNode* _previous(xmlNode* node) noexcept:
    """`getprevious()`."""
    cdef xmlNode* c = node.prev
    while c is not NULL and not _proxied(c):
        c = c.prev
    return c


cdef inline bint _ends(xmlNode* node, const char* suffix) noexcept:
    """Whether the element's local name ends with `suffix` (`el.tag[-n:] == suffix`)."""
    cdef size_t n = strlen(<const char*>node.name), k = strlen(suffix)
    return node.type == tree.XML_ELEMENT_NODE and n >= k and strcmp(<const char*>node.name + n - k, suffix) == 0


cdef bint _links_only(xmlNode* sup, str separators) except -1:
    """`jats._links_only`."""
    cdef xmlNode* child = sup.children
    text = _run(child)
    if text and (<str>text).strip(separators):
        return False
    while child is not NULL:
        if _proxied(child):
            if not _is(child, "xref") or not _is_leaf(child):
                return False
            text = _run(child.children)
            if text and (not (<str>text).isprintable() or " " in text):
                return False
            tail = _run(child.next)
            if tail and (<str>tail).strip(separators):
                return False
        child = child.next
    return True


cdef int _xref_texts(xmlNode* node, list found) except -1:
    """Text of every `xref` in `node`'s subtree (itself included), document order."""
    cdef xmlNode* c
    if node.type != tree.XML_ELEMENT_NODE:
        return 0
    if strcmp(<const char*>node.name, "xref") == 0:
        found.append(_content(node))
    c = node.children
    while c is not NULL:
        _xref_texts(c, found)
        c = c.next
    return 0


cdef bint _is_citation(xmlNode* sup, str text) except -1:
    """`jats._is_citation`."""
    cdef xmlNode* parent = _parent(sup)
    cdef list links = []
    if (parent is not NULL and _is(parent, "xref")) or J._PAREN_CITATION.match(text):
        return True
    if _is_leaf(sup):
        return False
    _xref_texts(sup, links)
    rest = text
    for link in links:
        rest = rest.replace(link, "", 1)
    return bool(links) and not rest.strip(J._CITATION_SEPARATORS)


cdef bint _after_digit(xmlNode* el, xmlNode* parent) except -1:
    """`jats._after_digit`."""
    cdef xmlNode* prev = _previous(el)
    before = (_run(prev.next) if prev is not NULL else _run(parent.children)) or ""
    return (<str>before)[-1:].isdigit()


def render_scripts(list scripts, dropped) -> None:
    """`jats._render_scripts`: the same decisions, read from the nodes; the edits go through lxml."""
    cdef cetree._Element el
    cdef xmlNode* node
    cdef xmlNode* parent
    cdef bint sup
    cdef str separators = J._SEPARATOR_OR_SPACE
    for el in scripts:
        node = el._c_node
        parent = _parent(node)
        if parent is NULL:  # inside a script rendered already
            continue
        sup = _ends(node, "sup")
        if _is_leaf(node):
            raw = _run(node.children)
            if not raw:
                continue
            if (<str>raw).isdigit() and not (sup and _ends(parent, "xref")):
                el.text = (<str>raw).translate(mathml.SUP if sup else mathml.SUB)
                continue
        elif sup and _links_only(node, separators):
            dropped["citation_superscript"] += 1
            J._drop_citation(el)
            continue
        else:
            raw = _content(node)
        text = " ".join((<str>raw).split())
        if sup and _is_citation(node, text):
            dropped["citation_superscript"] += 1
            J._drop_citation(el)
            continue
        if sup and text in mathml.DEGREE and _after_digit(node, parent):
            text = "°"
        elif not sup or not (text in J._PLAIN_SUPERSCRIPTS or not (J._ALNUM.search(text) or text in J._SIGNS)):
            text = _script("", text, "^" if sup else "_")
        if text and (<str>raw)[0].isspace():
            text = " " + text
        if text and (<str>raw)[-1].isspace():
            text += " "
        el.clear(keep_tail=True)
        el.text = text


# --- metadata -------------------------------------------------------------------------------------------

cdef xmlNode* _first_near(xmlNode* node, const char* first, const char* second) noexcept:
    """`jats._first_near(node, first[, second])`: the first descendant-or-self named `first` in document
    order, else the first named `second` (NULL for none)."""
    cdef xmlNode* found_second = NULL
    cdef xmlNode* c = node
    while c is not NULL:  # pre-order over the subtree, without recursion
        if c.type == tree.XML_ELEMENT_NODE:
            if strcmp(<const char*>c.name, first) == 0:
                return c
            if second is not NULL and found_second is NULL and strcmp(<const char*>c.name, second) == 0:
                found_second = c
            if c.children is not NULL:
                c = c.children
                continue
        while c is not node and c.next is NULL:
            c = c.parent
        if c is node:
            break
        c = c.next
    return found_second


cdef object _attribute(xmlNode* node, const char* name):
    """The value of `node`'s attribute `name` (no namespace), None when absent."""
    cdef tree.xmlAttr* attr = node.properties
    while attr is not NULL:
        if attr.ns is NULL and strcmp(<const char*>attr.name, name) == 0:
            return _run(attr.children) or ""
        attr = attr.next
    return None


def authors(list groups) -> list:
    """`jats._authors`: author names of these `contrib-group` elements."""
    cdef cetree._Element group
    cdef xmlNode* contrib
    cdef xmlNode* name
    cdef xmlNode* part
    cdef xmlNode* given
    cdef xmlNode* surname
    cdef list names = [], parts
    cdef str full
    for group in groups:
        contrib = group._c_node.children
        while contrib is not NULL:
            kind = _attribute(contrib, "contrib-type") if _is(contrib, "contrib") else ""
            if kind is None or kind == "author":
                name = _first_near(contrib, "name", "string-name")
                if name is not NULL:
                    given = surname = NULL
                    part = name.children
                    while part is not NULL:
                        if given is NULL and _is(part, "given-names"):
                            given = part
                        elif surname is NULL and _is(part, "surname"):
                            surname = part
                        part = part.next
                    parts = []
                    if given is not NULL:
                        parts.append(_text(given)[0])
                    if surname is not NULL:
                        parts.append(_text(surname)[0])
                    full = " ".join([p for p in parts if p]) or _text(name)[0]
                else:
                    name = _first_near(contrib, "collab", NULL)
                    full = _text(name)[0] if name is not NULL else ""
                if full:
                    names.append(full)
            contrib = contrib.next
    return names
