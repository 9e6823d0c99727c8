"""The type table from explored column types to ad hoc XDM field types, and the check of given fields and
mappings against a table's columns."""

from __future__ import annotations

import pytest

from airflow_provider_aep.exceptions import AEPValidationError
from airflow_provider_aep.utils.source_columns import (
    XDM_TYPE_OF_COLUMN_TYPE,
    check_against_table,
    infer_source_fields,
    table_columns,
)
from airflow_provider_aep.utils.validation import XDM_FIELD_TYPES

COLUMNS = [
    {"name": "OrderID", "type": "integer"},
    {"name": "Freight", "type": "Decimal"},
    {"name": "OrderDate", "type": "datetime"},
    {"name": "Shipped", "type": "bool"},
]


def test_every_mapped_type_is_an_xdm_field_type_an_adhoc_class_accepts():
    assert set(XDM_TYPE_OF_COLUMN_TYPE.values()) <= set(XDM_FIELD_TYPES)


def test_columns_are_typed_by_the_table_case_insensitively():
    assert infer_source_fields(COLUMNS, "Orders") == {
        "OrderID": "integer",
        "Freight": "number",
        "OrderDate": "date-time",
        "Shipped": "boolean",
    }


def test_unmappable_columns_fail_one_line_each_naming_column_and_type():
    columns = [*COLUMNS, {"name": "Photo", "type": "binary"}, {"name": "Tags", "type": "array"}]
    with pytest.raises(AEPValidationError) as err:
        infer_source_fields(columns, "Employees")
    lines = str(err.value).splitlines()
    assert lines[0] == "Cannot infer the source fields of table 'Employees'; nothing was created from them: 2 problems"
    assert lines[1].startswith("  - Employees.Photo='binary': has a column type no XDM field type holds")
    assert lines[2].startswith("  - Employees.Tags='array': ")


def test_a_missing_field_mapping_source_or_delta_column_is_named():
    mappings = [
        {"sourceType": "ATTRIBUTE", "source": "OrderId", "destination": "_id"},
        {"sourceType": "EXPRESSION", "source": "concat(OrderID, 'x')", "destination": "_id"},  # not a column
    ]
    with pytest.raises(AEPValidationError) as err:
        check_against_table(
            COLUMNS,
            "Orders",
            source_fields={"OrderID": "string", "Frieght": "number"},
            mappings=mappings,
            delta_column="Modified",
        )
    known = "its columns: OrderID, Freight, OrderDate, Shipped"
    assert str(err.value).splitlines() == [
        "Source columns not in table 'Orders': 3 problems",
        f"  - source_fields.Frieght='Frieght': table 'Orders' has no such column ({known})",
        f"  - mappings[0].source='OrderId': table 'Orders' has no such column ({known})",
        f"  - delta_column='Modified': table 'Orders' has no such column ({known})",
    ]
    check_against_table(COLUMNS, "Orders", source_fields=None, mappings=mappings[1:], delta_column="OrderDate")


def test_an_answer_without_columns_is_refused():
    with pytest.raises(AEPValidationError, match="source_table='T': AEP describes no columns"):
        table_columns({"format": "flat", "schema": {}}, "T")
