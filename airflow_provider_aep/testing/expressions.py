"""The part of Data Prep's expression language the emulator evaluates when it previews a mapping set.

On the lexer of :mod:`airflow_provider_aep.utils.expressions`: field references, string and number literals,
and calls of the string functions in :data:`FUNCTIONS`. Anything else AEP accepts (operators, other
functions) is refused with :class:`NotEvaluated` naming what, so a preview never shows a made-up value.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from airflow_provider_aep.utils.expressions import tokens, wrapped_field


class NotEvaluated(ValueError):
    """An expression the emulator does not evaluate, or a field the row lacks."""


def _strings(function: Callable[[str], str]) -> Callable[..., Any]:
    def apply(value: Any) -> Any:
        return None if value is None else function(str(value))

    return apply


def _concat(*values: Any) -> str:
    return "".join("" if v is None else str(v) for v in values)


FUNCTIONS: Mapping[str, Callable[..., Any]] = {
    "concat": _concat,
    "lower": _strings(str.lower),
    "lcase": _strings(str.lower),
    "upper": _strings(str.upper),
    "ucase": _strings(str.upper),
    "trim": _strings(str.strip),
    "ltrim": _strings(str.lstrip),
    "rtrim": _strings(str.rstrip),
}


def not_in_row(path: str) -> NotEvaluated:
    """Data Prep's row error for a source attribute the row lacks."""
    return NotEvaluated(f"The source attribute {path} is not in the row.")


def _tokens(expression: str) -> list[tuple[str, str]]:
    found = tokens(expression)
    for kind, _, start in found:
        if kind == "other":
            raise NotEvaluated(f"the emulator does not evaluate {expression[start:].strip()!r} in {expression!r}")
    return [(kind, text) for kind, text, _ in found]


def _field(row: Mapping[str, Any], path: str) -> Any:
    if path in row:
        return row[path]
    value: Any = row
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise not_in_row(path)
        value = value[part]
    return value


def evaluate(expression: str, row: Mapping[str, Any]) -> Any:
    """The value of ``expression`` for ``row``."""
    tokens = _tokens(expression)
    position = 0

    def peek() -> tuple[str, str] | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> tuple[str, str]:
        nonlocal position
        if position >= len(tokens):
            raise NotEvaluated(f"the expression {expression!r} ends too early")
        position += 1
        return tokens[position - 1]

    def value() -> Any:
        kind, text = take()
        if kind == "string":
            return re.sub(r"\\(.)", r"\1", text[1:-1])
        if kind == "number":
            return float(text) if "." in text else int(text)
        if kind == "wrapped":
            return _field(row, wrapped_field(text))
        if kind != "name":
            raise NotEvaluated(f"unexpected {text!r} in {expression!r}")
        if peek() == ("punct", "("):
            take()
            if text not in FUNCTIONS:
                raise NotEvaluated(
                    f"the emulator does not evaluate the function {text}() (it evaluates {', '.join(FUNCTIONS)})"
                )
            args = []
            if peek() == ("punct", ")"):
                take()
            else:
                while True:
                    args.append(value())
                    separator = take()
                    if separator == ("punct", ")"):
                        break
                    if separator != ("punct", ","):
                        raise NotEvaluated(f"unexpected {separator[1]!r} in {expression!r}")
            try:
                return FUNCTIONS[text](*args)
            except TypeError:
                raise NotEvaluated(f"{text}() does not take {len(args)} arguments, in {expression!r}") from None
        return _field(row, text)

    result = value()
    if position != len(tokens):
        raise NotEvaluated(
            f"the emulator does not evaluate {' '.join(t for _, t in tokens[position:])!r} in {expression!r}"
        )
    return result
