"""One-line documentation of config keys, read from the dataclass schemas' own source.

A schema documents a field in one of three places, and ``--help`` shows the first found: a comment at the
end of the field's line (``max_steps: int = 1000  # ...``), a block of comments right above the field, or
the class docstring's Google-style ``Attributes:`` section. Reading the source keeps the docs where a
developer edits the field, with no second copy to drift.
"""

from __future__ import annotations

import ast
import inspect
import io
import re
import textwrap
import tokenize
from functools import cache

_SECTION = re.compile(r"^\s*(Args|Arguments|Attributes|Returns|Raises|Yields|Examples?|Notes?):\s*$")
_ATTRIBUTE = re.compile(r"^(\s*)([A-Za-z_][A-Za-z0-9_]*)(?:\s*\([^)]*\))?:\s*(.*)$")


def first_sentence(text: str, limit: int = 110) -> str:
    """The text on one line, cut to its first sentence when it is longer than ``limit`` characters."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    m = re.search(r"(?<=[.;])\s", text)
    if m and m.start() <= limit:
        return text[: m.start()].rstrip(";")
    return text[: limit - 1].rstrip() + "…"


def class_summary(cls: type) -> str:
    """First paragraph of a class docstring on one line ("" when there is none)."""
    doc = inspect.getdoc(cls) or ""
    return first_sentence(doc.split("\n\n", 1)[0]) if doc else ""


def _attributes_section(doc: str) -> dict[str, str]:
    """``name -> description`` from a Google-style ``Attributes:`` section."""
    out: dict[str, str] = {}
    lines = doc.splitlines()
    inside, indent, current = False, None, None
    for line in lines:
        if _SECTION.match(line):
            inside = line.strip().startswith("Attributes")
            indent, current = None, None
            continue
        if not inside:
            continue
        if not line.strip():
            current = None
            continue
        m = _ATTRIBUTE.match(line)
        depth = len(line) - len(line.lstrip())
        if m and (indent is None or depth == indent):
            indent, current = depth, m.group(2)
            out[current] = m.group(3).strip()
        elif current is not None and indent is not None and depth > indent:
            out[current] += " " + line.strip()
    return out


def _source_comments(cls: type) -> dict[str, str]:
    """``field -> comment`` from the end of a field's line or the comment block right above it."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    comments: dict[int, str] = {}
    code_lines: set[int] = set()
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                comments[tok.start[0]] = tok.string.lstrip("#").strip()
            elif tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER):
                code_lines.add(tok.start[0])
    except (tokenize.TokenError, IndentationError):
        return {}
    tree = ast.parse(source)
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    out: dict[str, str] = {}
    for node in body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        name = node.target.id
        end = node.end_lineno or node.lineno
        trailing = [comments[n] for n in range(node.lineno, end + 1) if n in comments and n in code_lines]
        if trailing:
            out[name] = " ".join(trailing)
            continue
        above, n = [], node.lineno - 1
        while n in comments and n not in code_lines:
            above.insert(0, comments[n])
            n -= 1
        if above:
            out[name] = " ".join(above)
    return out


@cache
def field_docs(cls: type) -> dict[str, str]:
    """One-line doc of each documented field of a dataclass.

    Args:
        cls: A dataclass of a config schema.

    Returns:
        ``field name -> one line`` for every field that has a doc (a source comment wins over the
        docstring's ``Attributes:`` entry, being closer to the field).
    """
    docs = {k: first_sentence(v) for k, v in _attributes_section(inspect.getdoc(cls) or "").items() if v}
    docs.update({k: first_sentence(v) for k, v in _source_comments(cls).items() if v})
    return docs
