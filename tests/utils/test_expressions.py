import pytest

from airflow_provider_aep.utils.expressions import fields_read
from airflow_provider_aep.utils.lineage import ColumnMapping, FlowDatasets, operator_lineage


@pytest.mark.parametrize(
    ("expression", "fields"),
    [
        ("OrderID", ("OrderID",)),
        ("lower(ShipName)", ("ShipName",)),
        ("concat(FirstName, ' ', LastName, FirstName)", ("FirstName", "LastName")),
        ('concat(${First Name}, "(LastName)", address.city)', ("First Name", "address.city")),
        ("${order\\.id}", ("order.id",)),
        ("iif(Freight > 10 && Shipped == true, upper(ShipCity), null)", ("Freight", "Shipped", "ShipCity")),
        ("Quantity * 2 + -1", ("Quantity",)),
        ("'only a literal'", ()),
        ("now()", ()),
    ],
)
def test_an_expression_names_the_fields_it_reads_not_its_functions_literals_or_keywords(expression, fields):
    assert fields_read(expression) == fields


def test_column_lineage_gives_each_destination_the_columns_its_mapping_reads():
    pytest.importorskip("airflow.providers.openlineage")
    source = ("aep-source://spec/base", "Orders")
    datasets = FlowDatasets(
        "flow-1",
        ("dataset-1",),
        (source,),
        (
            ColumnMapping("OrderID", "_id", "ATTRIBUTE"),
            ColumnMapping("concat(lower(ShipName), '-', ShipCity)", "person.name.fullName", "EXPRESSION"),
            ColumnMapping("EU", "homeAddress.region", "STATIC"),
        ),
    )
    (output,) = operator_lineage(datasets, "ORG@AdobeOrg", "prod").outputs
    columns = output.facets["columnLineage"].fields
    shown = {
        name: (
            [(f.namespace, f.name, f.field) for f in c.inputFields],
            c.transformationType,
            c.transformationDescription,
        )
        for name, c in columns.items()
    }
    assert shown == {
        "_id": ([(*source, "OrderID")], "IDENTITY", ""),
        "person.name.fullName": (
            [(*source, "ShipName"), (*source, "ShipCity")],
            "TRANSFORMED",
            "concat(lower(ShipName), '-', ShipCity)",
        ),
        "homeAddress.region": ([], "TRANSFORMED", "EU"),
    }
