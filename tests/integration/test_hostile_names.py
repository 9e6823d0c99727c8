"""Names with any character round-trip: pipelines named with commas, quotes, operators, wildcards, spaces and
unicode are created once and found again by a re-run (dag.test against the emulator, whose filters read
``,`` as a list of values, ``*`` as a Catalog wildcard and strip quotes and outer spaces, as AEP's do).
Duplicates are never silent, and the teardown finds and deletes every copy."""

from __future__ import annotations

import collections

import requests

from airflow_provider_aep.hooks.aep import AEPHook
from airflow_provider_aep.operators.schema_registry import adhoc_class_title
from airflow_provider_aep.pipelines import find_pipeline_resources, pipeline_resource_names
from airflow_provider_aep.utils.defaults import DATA_LAKE_CONNECTION_SPEC_ID
from tests.conftest import ONE_LEGACY_PIPELINE, PIPELINE_KINDS, pipeline_resource_counts, xcoms

HOSTILE_NAMES = [
    "Orders, EU",
    "Comma,Set",
    'Say "hi"',
    "it's",
    "a==b",
    "x<y>z!=1",
    "tilde~^(a+)+$",
    "star*name",
    "double  space",
    "ünïcødé 名前",
    "semi;colon&amp=1#frag%20+plus",
    "'quoted'",
]

DAG_SOURCE = """
import pendulum
from airflow_provider_aep.version_compat import DAG
from airflow_provider_aep.pipelines import build_protocols_pipeline

try:
    from airflow.sdk import TaskGroup
except ImportError:  # Airflow 2
    from airflow.utils.task_group import TaskGroup

with DAG("hostile_names", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False) as dag:
    for index, name in enumerate({names!r}):
        with TaskGroup(f"pipeline_{{index}}"):
            pipeline = build_protocols_pipeline(
                name=name,
                variant="legacy",
                source_table="Orders",
                source_fields={{"OrderID": "string", "OrderDate": "date-time"}},
                mappings=[{{"source": "OrderID", "destination": "_id"}}],
                delta_column="OrderDate",
                odata_url="https://services.odata.org/V4/Northwind/Northwind.svc",
                schedule_params={{"startTime": 1_700_000_000, "frequency": "minute", "interval": 15}},
                aep_retry_delay=0.01,
            )
            {teardown}
"""


def names_held(pipeline_emulator) -> collections.Counter[tuple[str, str]]:
    """(kind, name or title) of every resource the emulator holds."""
    state = pipeline_emulator.snapshot()["prod"]
    return collections.Counter(
        (kind, resource.get("title") or resource.get("name"))
        for kind in PIPELINE_KINDS
        for resource in state[kind].values()
    )


def expected(name: str) -> set[tuple[str, str]]:
    names = pipeline_resource_names(name)
    return {
        ("classes", adhoc_class_title(names["adhoc_schema"])),
        ("schemas", names["adhoc_schema"]),
        ("schemas", names["target_schema"]),
        ("datasets", names["dataset"]),
        ("connections", names["base_connection"]),
        ("connections", names["dataset_base_connection"]),
        ("sourceConnections", names["source_connection"]),
        ("targetConnections", names["target_connection"]),
        ("mappingSets", names["mapping_set"]),
        ("flows", names["dataflow"]),
    }


def test_pipelines_with_hostile_names_exist_once_after_a_rerun(load_dag_file, pipeline_emulator):
    pipeline_emulator.page_size = 5  # lookups that filter here page through whole lists
    dag = load_dag_file(DAG_SOURCE.format(names=HOSTILE_NAMES, teardown=""), "hostile_names").dag
    for attempt in ("first run", "re-run"):
        run = dag.test()
        failed = {ti.task_id: ti.state for ti in run.get_task_instances() if ti.state != "success"}
        assert run.state == "success", (attempt, failed)
        held = names_held(pipeline_emulator)
        for name in HOSTILE_NAMES:
            assert {key: held[key] for key in expected(name)} == dict.fromkeys(expected(name), 1), (attempt, name)
        assert pipeline_resource_counts(pipeline_emulator) == {
            kind: count * len(HOSTILE_NAMES) for kind, count in ONE_LEGACY_PIPELINE.items()
        }


def test_hooks_find_a_hostile_name_exactly_and_nothing_that_only_resembles_it(pipeline_emulator):
    hook = AEPHook()
    for name in ("Orders, EU", "Orders", "EU", " Orders, EU", "Orders,EU", "Order*"):
        hook.create_base_connection(
            {"name": name, "connectionSpec": {"id": DATA_LAKE_CONNECTION_SPEC_ID, "version": "1.0"}}
        )
    for name in ("Orders, EU", "Orders", "Order*", "Orders,EU"):
        assert [c["name"] for c in hook.find_base_connections_by_name(name)] == [name]
    assert hook.find_base_connections_by_name("Order") == []


def _post(emulator, path: str, body: dict) -> str:
    """Create a resource behind the provider's back (someone else, or a lost create committed late)."""
    answer = requests.post(
        f"{emulator.base_url}{path}", headers={**emulator.headers(), "Content-Type": "application/json"}, json=body
    ).json()
    return answer["id"] if isinstance(answer, dict) else answer[0].rsplit("/", 1)[-1]


def test_duplicates_are_logged_the_oldest_is_used_and_the_teardown_deletes_every_copy(
    load_dag_file, pipeline_emulator, capfd, caplog
):
    dag = load_dag_file(DAG_SOURCE.format(names=["Dup, EU"], teardown="pipeline.teardown()"), "hostile_names_dup").dag
    creates = dag.partial_subset([t for t in dag.task_ids if not t.endswith("delete_pipeline")])
    assert creates.test().state == "success"
    names = pipeline_resource_names("Dup, EU")
    hook = AEPHook()
    (first,) = hook.find_base_connections_by_name(names["base_connection"])
    (target_schema,) = hook.find_schemas_by_title(names["target_schema"])
    extra = _post(
        pipeline_emulator,
        "/data/foundation/flowservice/connections",
        {"name": names["base_connection"], "connectionSpec": {"id": DATA_LAKE_CONNECTION_SPEC_ID, "version": "1.0"}},
    )
    # An orphaned dataset keeps the target schema in use: only a teardown that deletes it first can delete the schema.
    orphan_dataset = _post(
        pipeline_emulator,
        "/data/foundation/catalog/dataSets?requestDataSource=true",
        {"name": names["dataset"], "schemaRef": {"id": target_schema["$id"]}},
    )
    capfd.readouterr()

    assert creates.test().state == "success"
    captured = capfd.readouterr()
    logs = captured.out + captured.err + caplog.text
    assert (
        f"2 base connections named {names['base_connection']!r} exist ({first['id']}, {extra}); using the oldest"
        in logs
    )
    assert f"orphans to clean up (the pipeline's teardown deletes them all): {orphan_dataset}" in logs
    flow = next(iter(pipeline_emulator.snapshot()["prod"]["flows"].values()))
    source = pipeline_emulator.snapshot()["prod"]["sourceConnections"][flow["sourceConnectionIds"][0]]
    assert source["baseConnectionId"] == first["id"]  # the pipeline kept using the oldest
    assert {first["id"], extra} <= set(find_pipeline_resources(hook, "Dup, EU")["base_connection_ids"])

    run = dag.test()
    assert run.state == "success", {ti.task_id: ti.state for ti in run.get_task_instances()}
    summary = xcoms(run, "pipeline_0.delete_pipeline")["return_value"]
    assert {extra, first["id"]} <= set(summary["deleted"]["base_connections"])
    assert orphan_dataset in summary["deleted"]["datasets"]
    # Adobe documents no mapping-set delete: the strict emulator refuses it, so the teardown leaves it, saying so.
    assert set(summary["left_in_place"]) == {"mapping_sets"}, summary
    assert pipeline_resource_counts(pipeline_emulator) == {**dict.fromkeys(PIPELINE_KINDS, 0), "mappingSets": 1}
