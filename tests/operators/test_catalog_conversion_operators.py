from __future__ import annotations

from urllib.parse import parse_qs, quote

import pytest

from airflow_provider_aep.exceptions import AEPResourceConflictError, AEPValidationError
from airflow_provider_aep.operators.catalog import AEPCreateDatasetOperator
from airflow_provider_aep.operators.conversion import AEPCreateMappingSetOperator
from tests.conftest import task_log_text
from tests.operators.conftest import CAT, CONV, SR, posts

SCHEMA_ID = "https://ns.adobe.com/acme/schemas/target"


# ---------------------------------------------------------------- dataset
def test_dataset_is_created_with_the_tutorial_payload(context, requests_mock):
    lookup = requests_mock.get(f"{CAT}/dataSets", json={})
    post = requests_mock.post(f"{CAT}/dataSets", status_code=201, json=["@/dataSets/5e8a55ca53662c18af37a83a"])
    op = AEPCreateDatasetOperator(task_id="t", name="Protocols target dataset", schema_id=SCHEMA_ID)
    assert op.execute(context) == "5e8a55ca53662c18af37a83a"
    assert post.last_request.json() == {
        "name": "Protocols target dataset",
        "schemaRef": {"id": SCHEMA_ID, "contentType": "application/vnd.adobe.xed-full-notext+json; version=1"},
    }
    assert parse_qs(post.last_request.query) == {"requestdatasource": ["true"]}
    assert parse_qs(lookup.last_request.query)["property"] == ["name==protocols target dataset"]


def test_dataset_of_that_name_on_the_same_schema_is_reused(context, requests_mock):
    requests_mock.get(f"{CAT}/dataSets", json={"ds1": {"name": "D", "schemaRef": {"id": SCHEMA_ID}}})
    assert AEPCreateDatasetOperator(task_id="t", name="D", schema_id=SCHEMA_ID).execute(context) == "ds1"
    assert posts(requests_mock) == []


def test_dataset_of_that_name_on_another_schema_is_a_conflict(context, requests_mock):
    requests_mock.get(f"{CAT}/dataSets", json={"ds1": {"name": "D", "schemaRef": {"id": "https://other"}}})
    with pytest.raises(
        AEPResourceConflictError, match=r"dataset 'D' already exists \(ds1\) but differs.*schema is 'https://other'"
    ):
        AEPCreateDatasetOperator(task_id="t", name="D", schema_id=SCHEMA_ID).execute(context)
    assert posts(requests_mock) == []


def test_dataset_if_exists_fail(context, requests_mock):
    requests_mock.get(f"{CAT}/dataSets", json={"ds1": {"name": "D", "schemaRef": {"id": SCHEMA_ID}}})
    with pytest.raises(AEPResourceConflictError, match="already exists with id ds1 and if_exists='fail'"):
        AEPCreateDatasetOperator(task_id="t", name="D", schema_id=SCHEMA_ID, if_exists="fail").execute(context)


def test_of_two_datasets_with_the_name_the_oldest_is_used_and_the_other_logged_as_an_orphan(
    context, requests_mock, caplog, capsys
):
    ref = {"schemaRef": {"id": SCHEMA_ID}}
    requests_mock.get(
        f"{CAT}/dataSets",
        json={"newer": {"name": "D", "created": 2000, **ref}, "older": {"name": "D", "created": 1000, **ref}},
    )
    assert AEPCreateDatasetOperator(task_id="t", name="D", schema_id=SCHEMA_ID).execute(context) == "older"
    assert posts(requests_mock) == []
    logs = task_log_text(caplog, capsys)
    assert "2 datasets named 'D' exist (older, newer); using the oldest, older" in logs
    assert "orphans to clean up" in logs and "newer" in logs


def test_dataset_needs_a_name_and_a_schema(context, requests_mock):
    with pytest.raises(AEPValidationError, match="schema_id=None"):
        AEPCreateDatasetOperator(task_id="t", name="D", schema_id=None).execute(context)
    assert requests_mock.call_count == 0


def test_bad_if_exists_is_refused_at_construction():
    with pytest.raises(AEPValidationError, match="if_exists='skip': must be one of reuse, fail"):
        AEPCreateDatasetOperator(task_id="t", name="D", schema_id=SCHEMA_ID, if_exists="skip")


# ---------------------------------------------------------------- mapping set
LEGACY = [
    {"destinationXdmPath": "_id", "sourceAttribute": "OrderID", "identity": False, "version": 0},
    {"destinationXdmPath": "createdByBatchID", "sourceAttribute": "OrderDate"},
]


TARGET_SCHEMA = {"$id": SCHEMA_ID, "type": "object", "properties": {"_id": {"type": "string"}, "createdByBatchID": {}}}


@pytest.fixture
def target_schema(requests_mock):
    return requests_mock.get(f"{SR}/tenant/schemas/{quote(SCHEMA_ID, safe='')}", json=TARGET_SCHEMA)


@pytest.fixture
def data_prep_validates(requests_mock):
    """Data Prep's validation passing every mapping."""
    return requests_mock.post(
        f"{CONV}/mappingSets/validate",
        json=lambda request, _: {
            "validationResponse": [{"status": "SUCCESS", "errors": None} for _ in request.json()["mappings"]]
        },
    )


def test_mapping_set_sends_the_current_form_from_legacy_mappings(
    context, requests_mock, target_schema, data_prep_validates
):
    requests_mock.get(f"{CONV}/mappingSets", json={"data": [], "_page": {"count": 0}})
    post = requests_mock.post(f"{CONV}/mappingSets", json={"id": "ms1", "version": 0, "createdDate": 1})
    op = AEPCreateMappingSetOperator(task_id="t", name="orders-mapping", schema_id=SCHEMA_ID, mappings=LEGACY)
    assert op.execute(context) == "ms1"
    assert context["ti"].xcom == {"mapping_version": "0"}
    assert post.last_request.json() == {
        "name": "orders-mapping",
        "outputSchema": {
            "schemaRef": {"id": SCHEMA_ID, "contentType": "application/vnd.adobe.xed-full+json;version=1"}
        },
        "mappings": [
            {"sourceType": "ATTRIBUTE", "source": "OrderID", "destination": "_id"},
            {"sourceType": "ATTRIBUTE", "source": "OrderDate", "destination": "createdByBatchID"},
        ],
    }
    # Data Prep validated exactly what was then created, first
    assert data_prep_validates.last_request.json() == post.last_request.json()
    assert [r.path for r in requests_mock.request_history if r.method == "POST"][-2:] == [
        "/data/foundation/conversion/mappingsets/validate",
        "/data/foundation/conversion/mappingsets",
    ]


def test_mappings_data_prep_refuses_fail_one_line_each_before_the_create(context, requests_mock, target_schema):
    requests_mock.get(f"{CONV}/mappingSets", json={"data": [], "_page": {"count": 0}})
    requests_mock.post(
        f"{CONV}/mappingSets/validate",
        json={
            "validationResponse": [
                {"status": "SUCCESS", "errors": None},
                {
                    "status": "FAILED",
                    "errors": [{"source": "upper(OrderDate", "exception": "The expression cannot be parsed."}],
                },
                {"status": "FAILED", "errors": [{"exception": "Type mismatch."}, {"exception": "Second reason."}]},
            ]
        },
    )
    mappings = [
        {"source": "OrderID", "destination": "_id"},
        {"sourceType": "EXPRESSION", "source": "upper(OrderDate", "destination": "createdByBatchID"},
        {"source": "OrderDate", "destination": "_id"},
    ]
    with pytest.raises(AEPValidationError) as err:
        AEPCreateMappingSetOperator(task_id="t", name="m", schema_id=SCHEMA_ID, mappings=mappings).execute(context)
    assert str(err.value).splitlines() == [
        "Data Prep refuses mappings of mapping set 'm'; nothing was created: 2 problems",
        "  - mappings[1] 'upper(OrderDate' -> 'createdByBatchID': The expression cannot be parsed.",
        "  - mappings[2] 'OrderDate' -> '_id': Type mismatch.; Second reason.",
    ]
    assert [r.path for r in posts(requests_mock)] == ["/data/foundation/conversion/mappingsets/validate"]


def test_matching_mapping_set_is_reused_with_its_version(context, requests_mock):
    requests_mock.get(f"{CONV}/mappingSets", json={"data": [{"id": "ms1", "name": "m"}], "_page": {"count": 1}})
    requests_mock.get(
        f"{CONV}/mappingSets/ms1",
        json={
            "id": "ms1",
            "version": 2,
            "xdmSchema": SCHEMA_ID,
            "mappings": [
                {
                    "sourceType": "text/x.schema-path",
                    "source": "OrderID",
                    "destination": "_id",
                    "sourceAttribute": "OrderID",
                }
            ],
        },
    )
    op = AEPCreateMappingSetOperator(
        task_id="t", name="m", schema_id=SCHEMA_ID, mappings=[{"source": "OrderID", "destination": "_id"}]
    )
    assert op.execute(context) == "ms1"
    assert context["ti"].xcom == {"mapping_version": "2"}
    assert posts(requests_mock) == []


def test_mapping_set_with_other_mappings_is_a_conflict(context, requests_mock):
    requests_mock.get(f"{CONV}/mappingSets", json={"data": [{"id": "ms1", "name": "m"}]})
    requests_mock.get(
        f"{CONV}/mappingSets/ms1",
        json={"id": "ms1", "xdmSchema": SCHEMA_ID, "mappings": [{"source": "A", "destination": "_id"}]},
    )
    op = AEPCreateMappingSetOperator(
        task_id="t", name="m", schema_id=SCHEMA_ID, mappings=[{"source": "B", "destination": "_id"}]
    )
    with pytest.raises(AEPResourceConflictError, match="mappings is"):
        op.execute(context)


@pytest.mark.parametrize(
    ("mappings", "message"),
    [
        ([], "mappings=[]: must be a non-empty list"),
        ([{"source": "A"}], "mappings[0].destination=None: must be a non-empty string"),
        ([{"destination": "_id"}], "mappings[0].source=None: must be a non-empty string"),
        (
            [{"source": "A", "destination": "_id", "sourceType": "SQL"}],
            "mappings[0].sourceType='SQL': must be one of ATTRIBUTE, EXPRESSION, STATIC",
        ),
        ({"source": "A"}, "must be a non-empty list"),
        ([{"source": "A", "destination": "person..name."}], "mappings[0].destination='person..name.': must be an XDM"),
        (
            [{"source": "A", "destination": "_id", "transform": "upper"}],
            "mappings[0]=['transform']: unknown keys; a mapping takes sourceType, source, destination",
        ),
    ],
)
def test_mapping_set_validation_makes_no_call(context, requests_mock, mappings, message):
    with pytest.raises(AEPValidationError) as err:
        AEPCreateMappingSetOperator(task_id="t", name="m", schema_id=SCHEMA_ID, mappings=mappings).execute(context)
    assert message in str(err.value)
    assert requests_mock.call_count == 0


def test_mappings_to_fields_the_schema_lacks_are_refused_before_the_create(context, requests_mock, target_schema):
    requests_mock.get(f"{CONV}/mappingSets", json={"data": [], "_page": {"count": 0}})
    mappings = [
        {"source": "A", "destination": "_id"},
        {"source": "B", "destination": "person.name"},
        {"source": "C", "destination": "_id.inner"},
    ]
    with pytest.raises(AEPValidationError) as err:
        AEPCreateMappingSetOperator(task_id="t", name="m", schema_id=SCHEMA_ID, mappings=mappings).execute(context)
    assert str(err.value).splitlines()[1:] == [
        f"  - mappings[1].destination='person.name': is not a field of schema {SCHEMA_ID}",
        f"  - mappings[2].destination='_id.inner': is not a field of schema {SCHEMA_ID}",
    ]
    assert target_schema.last_request.headers["Accept"] == "application/vnd.adobe.xed-full+json; version=1"
    assert posts(requests_mock) == []


def test_aep_retry_settings_reach_the_hook_and_leave_airflow_retries_alone():
    import datetime as dt

    op = AEPCreateDatasetOperator(
        task_id="t",
        name="D",
        schema_id=SCHEMA_ID,
        aep_retry_limit=7,
        aep_retry_delay=0.5,
        aep_retry_args={"max_delay": 9},
        retries=2,
        retry_delay=dt.timedelta(minutes=3),
    )
    policy = op.hook.retry_policy
    assert (policy.retry_limit, policy.retry_delay, policy.max_delay) == (7, 0.5, 9)
    assert (op.retries, op.retry_delay) == (2, dt.timedelta(minutes=3))
