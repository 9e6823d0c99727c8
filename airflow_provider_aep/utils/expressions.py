"""
The lexical part of Data Prep's expression language (Adobe's "Data Prep mapping functions" guide): field
references (``name``, ``name.child``, ``${First Name}``), string and number literals, calls. Shared by the
column lineage of expression mappings and the emulator's evaluation of them.
"""

from __future__ import annotations

import re

TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<number>-?\d+(?:\.\d+)?)
      | (?P<wrapped>\$\{[^}]*\})
      | (?P<name>[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*)
      | (?P<punct>[(),])
    )""",
    re.VERBOSE,
)
# Words of the language that are names by their spelling but read no field.
KEYWORDS = frozenset({"true", "false", "null", "and", "or", "not", "eq", "ne", "lt", "le", "gt", "ge", "div", "mod"})


def wrapped_field(token: str) -> str:
    """The field a ``${...}`` reference names (a ``\\.`` inside stands for a dot of the name)."""
    return token[2:-1].replace("\\.", ".")


def tokens(expression: str) -> list[tuple[str, str, int]]:
    """
    ``(kind, text, start)`` of each token: a ``TOKEN`` group, or ``other`` for a character no token starts
    with (an operator such as ``+``, ``==`` or ``?``), which a reader may refuse or pass over.
    """
    found, position, end = [], 0, len(expression.rstrip())
    while position < end:
        match = TOKEN.match(expression, position)
        if match:
            kind = match.lastgroup or ""
            found.append((kind, match.group(kind), match.start(kind)))
            position = match.end()
        else:
            start = len(expression) - len(expression[position:].lstrip())
            found.append(("other", expression[start], start))
            position = start + 1
    return found


def fields_read(expression: str) -> tuple[str, ...]:
    """
    The source fields an expression reads, in order of first use: every reference that is not a function
    being called, a keyword or inside a literal. Operators are passed over, so an expression the emulator
    cannot evaluate still names its fields.
    """
    found: dict[str, None] = {}
    read = tokens(expression)
    for index, (kind, text, _) in enumerate(read):
        called = index + 1 < len(read) and read[index + 1][:2] == ("punct", "(")
        if kind == "wrapped":
            found[wrapped_field(text)] = None
        elif kind == "name" and text.lower() not in KEYWORDS and not called:
            found[text] = None
    return tuple(found)
