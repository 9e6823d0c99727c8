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


def fields_read(expression: str) -> tuple[str, ...]:
    """
    The source fields an expression reads, in order of first use: every reference that is not a function
    being called, a keyword or inside a literal. Operators and other characters are passed over, so an
    expression this module cannot evaluate still names its fields.
    """
    found: dict[str, None] = {}
    position, end = 0, len(expression)
    while position < end:
        match = TOKEN.match(expression, position)
        if not match:
            position += 1  # an operator (+, ==, ?:, ...): reads no field
            continue
        kind, text = match.lastgroup, match.group(match.lastgroup or 0)
        position = match.end()
        if kind == "wrapped":
            found[wrapped_field(text)] = None
        elif kind == "name" and text.lower() not in KEYWORDS and not expression[position:].lstrip().startswith("("):
            found[text] = None
    return tuple(found)
