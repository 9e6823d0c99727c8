"""
A source table's columns, as Flow Service's explore describes them, turned into the fields of an ad hoc
schema, and checked against the fields and mappings a pipeline was given.

Type table: a column's explore ``type`` (case-insensitive) and the XDM field type its ad hoc schema field gets.

=====================================  ==============
column type                            XDM field type
=====================================  ==============
string, char, varchar, text, guid      string
boolean, bool                          boolean
byte, tinyint                          byte
short, smallint                        short
int, int32                             int
integer                                integer
long, bigint, int64                    long
float, double, real                    double
decimal, number, numeric               number
date                                   date
date-time, datetime, timestamp         date-time
=====================================  ==============

Any other type (``binary``, ``object``, ``array`` …) has no ad hoc field type: inferring fails naming the
column and its type; give ``source_fields`` for that table instead, leaving the column out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from airflow_provider_aep.utils.validation import invalid, problems_of, raise_problems

XDM_TYPE_OF_COLUMN_TYPE: dict[str, str] = {
    **dict.fromkeys(("string", "char", "varchar", "text", "guid"), "string"),
    **dict.fromkeys(("boolean", "bool"), "boolean"),
    **dict.fromkeys(("byte", "tinyint"), "byte"),
    **dict.fromkeys(("short", "smallint"), "short"),
    **dict.fromkeys(("int", "int32"), "int"),
    "integer": "integer",
    **dict.fromkeys(("long", "bigint", "int64"), "long"),
    **dict.fromkeys(("float", "double", "real"), "double"),
    **dict.fromkeys(("decimal", "number", "numeric"), "number"),
    "date": "date",
    **dict.fromkeys(("date-time", "datetime", "timestamp"), "date-time"),
}


def table_columns(structure: Any, table: str) -> list[dict[str, Any]]:
    """The columns of an explore answer for ``table`` (``{"schema": {"columns": [...]}}``)."""
    columns = ((structure or {}).get("schema") or {}).get("columns") if isinstance(structure, Mapping) else None
    if not isinstance(columns, list) or not columns:
        raise invalid("source_table", table, "AEP describes no columns for this table")
    return [dict(c) for c in columns if isinstance(c, Mapping)]


def _xdm_type(column: Mapping[str, Any], table: str) -> str:
    column_type = str(column.get("type", ""))
    xdm_type = XDM_TYPE_OF_COLUMN_TYPE.get(column_type.lower())
    if xdm_type is None:
        raise invalid(
            f"{table}.{column.get('name')}",
            column_type,
            "has a column type no XDM field type holds; give source_fields without this column",
        )
    return xdm_type


def infer_source_fields(columns: Iterable[Mapping[str, Any]], table: str) -> dict[str, str]:
    """Column name → XDM field type, per the type table; every column that cannot be mapped, listed."""
    columns = list(columns)
    types: dict[str, str] = {}

    def infer(column: Mapping[str, Any]) -> None:
        types[str(column.get("name"))] = _xdm_type(column, table)

    raise_problems(
        problems_of(*(lambda c=c: infer(c) for c in columns)),
        f"Cannot infer the source fields of table {table!r}; nothing was created from them",
    )
    return types


def check_against_table(
    columns: Iterable[Mapping[str, Any]],
    table: str,
    *,
    source_fields: Mapping[str, Any] | None,
    mappings: Iterable[Mapping[str, Any]],
    delta_column: Any = None,
) -> None:
    """Every source field, every attribute mapping's source and the delta column is a column of ``table``."""
    names = [str(c.get("name")) for c in columns]
    known = ", ".join(names)
    wanted = [
        *((f"source_fields.{f}", f) for f in source_fields or {}),
        *(
            (f"mappings[{i}].source", m.get("source"))
            for i, m in enumerate(mappings)
            if str(m.get("sourceType", "ATTRIBUTE")).upper() == "ATTRIBUTE"
        ),
        *((("delta_column", delta_column),) if delta_column is not None else ()),
    ]
    problems = [
        f"{field}={value!r}: table {table!r} has no such column (its columns: {known})"
        for field, value in wanted
        if value not in names
    ]
    raise_problems(problems, f"Source columns not in table {table!r}")
