"""A small RFC 6902 subset (add, replace, remove, test) used by XDM and Flow Service PATCH."""

from __future__ import annotations

import copy
from typing import Any


class PatchError(ValueError):
    pass


def _tokens(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PatchError(f"Invalid JSON pointer {pointer!r}")
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def _index(container: list[Any], token: str, *, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return len(container)
    if not token.isdigit():
        raise PatchError(f"Invalid array index {token!r}")
    idx = int(token)
    if idx > len(container) or (idx == len(container) and not allow_end):
        raise PatchError(f"Array index {idx} out of range")
    return idx


def apply_patch(doc: Any, operations: Any, *, create_parents: bool = False) -> Any:
    """Apply ``operations`` to a copy of ``doc``; ``op`` is case-insensitive (the Flow spec uses ADD/REPLACE).

    ``create_parents`` lets ``add`` create missing intermediate objects, which Flow Service tolerates.
    """
    if not isinstance(operations, list) or not operations:
        raise PatchError("The PATCH body must be a non-empty JSON Patch array.")
    result = copy.deepcopy(doc)
    for operation in operations:
        if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
            raise PatchError("Each patch operation needs 'op' and 'path'.")
        op = str(operation["op"]).lower()
        tokens = _tokens(str(operation["path"]))
        if not tokens:
            raise PatchError("Patching the document root is not supported.")
        parent: Any = result
        for tok in tokens[:-1]:
            if isinstance(parent, list):
                parent = parent[_index(parent, tok, allow_end=False)]
            elif isinstance(parent, dict):
                if tok not in parent:
                    if op == "add" and create_parents:
                        parent[tok] = {}
                    else:
                        raise PatchError(f"Path {operation['path']!r} does not exist")
                parent = parent[tok]
            else:
                raise PatchError(f"Path {operation['path']!r} does not exist")
        last = tokens[-1]
        if op in ("add", "replace"):
            if "value" not in operation:
                raise PatchError(f"Operation {op} needs a 'value'.")
            value = copy.deepcopy(operation["value"])
            if isinstance(parent, list):
                idx = _index(parent, last, allow_end=(op == "add"))
                if op == "add":
                    parent.insert(idx, value)
                else:
                    parent[idx] = value
            elif isinstance(parent, dict):
                if op == "replace" and last not in parent:
                    raise PatchError(f"Path {operation['path']!r} does not exist")
                parent[last] = value
            else:
                raise PatchError(f"Path {operation['path']!r} does not exist")
        elif op == "remove":
            if isinstance(parent, list):
                parent.pop(_index(parent, last, allow_end=False))
            elif isinstance(parent, dict) and last in parent:
                del parent[last]
            else:
                raise PatchError(f"Path {operation['path']!r} does not exist")
        elif op == "test":
            current = parent[_index(parent, last, allow_end=False)] if isinstance(parent, list) else parent.get(last)
            if current != operation.get("value"):
                raise PatchError(f"Test failed at {operation['path']!r}")
        else:
            raise PatchError(f"Unsupported operation {operation['op']!r} received.")
    return result
