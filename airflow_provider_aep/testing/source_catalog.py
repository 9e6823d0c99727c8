"""The tables a protocols (Generic OData) base connection of the emulator can explore, and their rows.

A small Northwind-like catalog: each table has typed columns, as ``GET /connections/{id}/explore?objectType=table``
describes them (``name``, ``type`` and the ``xdm`` type AEP proposes), and a fixed number of rows generated
from the table's name, so previews are the same on every call and every emulator, and a run of a flow reading
the table counts exactly those rows.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from functools import cached_property
from typing import Any

# A column's explore ``type`` and the JSON Schema AEP proposes for it under ``xdm``.
XDM_OF_TYPE: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "integer": {"type": "integer", "minimum": -2147483648, "maximum": 2147483647},
    "long": {"type": "integer", "minimum": -9007199254740992, "maximum": 9007199254740992},
    "double": {"type": "number"},
    "decimal": {"type": "number"},
    "boolean": {"type": "boolean"},
    "date": {"type": "string", "format": "date"},
    "date-time": {"type": "string", "format": "date-time"},
    "binary": {"type": "string", "contentEncoding": "base64"},
}
_EPOCH = dt.datetime(1996, 7, 4, tzinfo=dt.UTC)
_CITIES = ("Berlin", "London", "Madrid", "Paris", "Seattle", "Lyon", "Graz", "Bern", "Torino", "Oulu")
_WORDS = ("Alfreds", "Ana", "Antonio", "Around", "Berglunds", "Blauer", "Blondel", "Bolido", "Bon", "Bottom")


@dataclass(frozen=True)
class SourceTable:
    """One explorable table: ``path`` as AEP shows it (and as a source connection's ``tableName`` names it)."""

    path: str
    columns: tuple[tuple[str, str], ...]  # (name, explore type)
    row_count: int
    key: str | None = None  # an integer or string key column, numbered 1..row_count
    name: str = ""

    def describe_columns(self) -> list[dict[str, Any]]:
        return [{"name": n, "type": t, "xdm": dict(XDM_OF_TYPE[t])} for n, t in self.columns]

    def listing(self) -> dict[str, Any]:
        return {
            "type": "table",
            "name": self.name or self.path,
            "path": self.path,
            "canPreview": True,
            "canFetchSchema": True,
        }

    def rows(self, limit: int | None = None) -> list[dict[str, Any]]:
        return [dict(r) for r in self._all_rows[:limit]]

    @cached_property
    def _all_rows(self) -> list[dict[str, Any]]:
        rng = random.Random(f"source-table:{self.path}")
        return [self._row(rng, i) for i in range(1, self.row_count + 1)]

    def _row(self, rng: random.Random, number: int) -> dict[str, Any]:
        return {name: self._value(rng, name, kind, number) for name, kind in self.columns}

    def _value(self, rng: random.Random, name: str, kind: str, number: int) -> Any:
        if name == self.key:
            return number if kind in ("integer", "long") else f"{self.path[:3].upper()}{number:05d}"
        when = _EPOCH + dt.timedelta(hours=7 * number + rng.randint(0, 6))
        values: dict[str, Any] = {
            "string": f"{rng.choice(_WORDS)} {rng.choice(_CITIES)}",
            "integer": rng.randint(1, 1000),
            "long": rng.randint(1, 10**12),
            "double": round(rng.uniform(0, 1000), 2),
            "decimal": round(rng.uniform(0, 1000), 2),
            "boolean": rng.random() < 0.5,
            "date": when.date().isoformat(),
            "date-time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "binary": "iVBORw0KGgo=",
        }
        return values[kind]


def table(path: str, row_count: int, key: str | None, *columns: tuple[str, str]) -> SourceTable:
    unknown = [t for _, t in columns if t not in XDM_OF_TYPE]
    if unknown:
        raise ValueError(f"table {path!r}: unknown column types {unknown}; known: {', '.join(XDM_OF_TYPE)}")
    return SourceTable(path=path, columns=tuple(columns), row_count=row_count, key=key)


def northwind() -> dict[str, SourceTable]:
    """The default catalog: Northwind's row counts; ``Employees.Photo`` is binary, which no XDM field type holds."""
    tables = [
        table(
            "Orders", 830, "OrderID",
            ("OrderID", "integer"), ("CustomerID", "string"), ("EmployeeID", "integer"), ("OrderDate", "date-time"),
            ("RequiredDate", "date-time"), ("ShippedDate", "date-time"), ("Freight", "decimal"),
            ("ShipName", "string"), ("ShipCity", "string"), ("ShipCountry", "string"),
        ),
        table(
            "Customers", 91, "CustomerID",
            ("CustomerID", "string"), ("CompanyName", "string"), ("ContactName", "string"), ("City", "string"),
            ("Country", "string"), ("Phone", "string"), ("ModifiedDate", "date-time"),
        ),
        table(
            "Employees", 9, "EmployeeID",
            ("EmployeeID", "integer"), ("LastName", "string"), ("FirstName", "string"), ("Title", "string"),
            ("BirthDate", "date"), ("HireDate", "date-time"), ("City", "string"), ("Country", "string"),
            ("Photo", "binary"),
        ),
    ]  # fmt: skip
    return {t.path: t for t in tables}
