"""Whether a path names a field of an XDM resource (standard library only: the emulator uses it too)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any


def xdm_path_exists(documents: Iterable[Mapping[str, Any]], path: str) -> bool:
    """
    True when ``path`` (``person.name.firstName``) names a field of the fully expanded XDM resources
    ``documents`` (a schema, or a class and its field groups). Below an object that lists no properties,
    anything is taken to exist: the schema does not say.
    """
    nodes = [doc for doc in documents if isinstance(doc, Mapping)]
    for segment in re.sub(r"\[\d+\]", "", path).split("."):
        elements = [_element(node) for node in nodes]
        if any(_properties(e) is None and e.get("type") in (None, "object") for e in elements):
            return True
        nodes = [p[segment] for e in elements if (p := _properties(e)) and isinstance(p.get(segment), Mapping)]
        if not nodes:
            return False
    return True


def _element(node: Mapping[str, Any]) -> Mapping[str, Any]:
    """The node whose properties an XDM path steps into: an array's items, else the node itself."""
    while node.get("type") == "array" and isinstance(node.get("items"), Mapping):
        node = node["items"]
    return node


def _properties(node: Mapping[str, Any]) -> dict[str, Any] | None:
    """The fields a node lists, its own and its ``definitions``' (how field groups hold theirs); None for none."""
    holders = [
        node,
        *((node.get("definitions") or {}).values() if isinstance(node.get("definitions"), Mapping) else ()),
    ]
    found = [h["properties"] for h in holders if isinstance(h, Mapping) and isinstance(h.get("properties"), Mapping)]
    return {key: value for props in found for key, value in props.items()} if found else None
