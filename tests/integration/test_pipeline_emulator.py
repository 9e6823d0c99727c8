"""The provisioning operators as a real DAG (dag.test) against the emulator: re-runs and faults never duplicate."""

from __future__ import annotations

import collections

import pytest

from airflow_provider_aep.testing import AEPEmulator, FaultConfig
from tests.conftest import ONE_LEGACY_PIPELINE, pipeline_resource_counts, xcoms

DAG_SOURCE = """
import pendulum
from airflow_provider_aep.version_compat import DAG
from airflow_provider_aep.pipelines import build_protocols_pipeline

with DAG("{dag_id}", schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False,
         render_template_as_native_obj=True,
         params={{"table": "Orders"}}) as dag:
    pipeline = build_protocols_pipeline(
        name="IT {variant}",
        variant="{variant}",
        source_table="{{{{ params.table }}}}",
        source_fields={{"OrderID": "string", "CustomerID": "string", "OrderDate": "date-time"}},
        odata_url="https://services.odata.org/V4/Northwind/Northwind.svc",
        mappings=[{{"sourceAttribute": "OrderID", "destinationXdmPath": "_id"}}],
        delta_column="OrderDate",
        schedule_params={{"startTime": "{{{{ dag_run.start_date }}}}", "frequency": "minute", "interval": 15}},
        aep_retry_delay=0.05,
        aep_retry_limit=8,
    )
    teardown = pipeline.teardown()
"""

EXPECTED_COUNTS = {
    "legacy": ONE_LEGACY_PIPELINE,
    "current": {
        "classes": 0,
        "schemas": 1,
        "datasets": 1,
        "connections": 1,
        "sourceConnections": 1,
        "targetConnections": 1,
        "mappingSets": 1,
        "flows": 1,
    },
}


def _states(run):
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


def _creates(record) -> bool:
    """A POST that creates (not a token, not Data Prep's validation dry run)."""
    return record.method == "POST" and "/ims/" not in record.path and not record.path.endswith("/validate")


@pytest.mark.parametrize("variant", ["legacy", "current"])
def test_pipeline_twice_creates_each_resource_once(load_dag_file, emulator, variant):
    module = load_dag_file(
        DAG_SOURCE.format(dag_id=f"it_pipeline_{variant}", variant=variant), f"it_pipeline_{variant}"
    )
    dag = module.dag.partial_subset(
        [t for t in module.dag.task_ids if t != "delete_pipeline"], include_downstream=False
    )

    first = dag.test()
    assert first.state == "success", _states(first)
    assert pipeline_resource_counts(emulator) == EXPECTED_COUNTS[variant]
    creates_after_first = sum(1 for r in emulator.request_log if _creates(r))

    emulator.reset_log()
    second = dag.test()
    assert second.state == "success", _states(second)
    assert pipeline_resource_counts(emulator) == EXPECTED_COUNTS[variant]
    assert [r for r in emulator.request_log if _creates(r)] == []
    assert creates_after_first == sum(EXPECTED_COUNTS[variant].values())

    flow = next(iter(emulator.snapshot()["prod"]["flows"].values()))
    assert flow["name"] == f"IT {variant} dataflow"
    assert flow["scheduleParams"]["frequency"] == "minute"


def test_pipeline_survives_faults_without_duplicates(load_dag_file, emulator):
    module = load_dag_file(DAG_SOURCE.format(dag_id="it_pipeline_faults", variant="legacy"), "it_pipeline_faults")
    dag = module.dag.partial_subset(
        [t for t in module.dag.task_ids if t != "delete_pipeline"], include_downstream=False
    )
    emulator.faults = FaultConfig(rate=0.3, drop_after_commit_rate=0.3, retry_after=0, seed=5)

    run = dag.test()
    assert run.state == "success", _states(run)
    faults = collections.Counter(r.fault for r in emulator.request_log if r.fault)
    assert faults["drop_after_commit"] >= 1 and sum(faults.values()) > faults["drop_after_commit"], faults
    assert pipeline_resource_counts(emulator) == EXPECTED_COUNTS["legacy"]

    run = dag.test()
    assert run.state == "success", _states(run)
    assert pipeline_resource_counts(emulator) == EXPECTED_COUNTS["legacy"]


@pytest.mark.parametrize(
    ("mapping_set_delete", "mapping_set_outcome"),
    [(None, "left_in_place"), ("404", "left_in_place"), ("delete", "deleted")],
)
def test_teardown_removes_everything_the_pipeline_created(
    load_dag_file, monkeypatch, mapping_set_delete, mapping_set_outcome
):
    """Adobe documents no mapping-set delete: when AEP refuses it (405, the strict default) or knows no such route
    (404), the mapping set is reported left in place, never as deleted or already gone."""
    dag_id = f"it_pipeline_teardown_{mapping_set_delete}"
    with AEPEmulator(time_scale=3600, seed=11, mapping_set_delete=mapping_set_delete) as emulator:
        monkeypatch.setenv("AIRFLOW_CONN_AEP_DEFAULT", emulator.connection_json())
        module = load_dag_file(DAG_SOURCE.format(dag_id=dag_id, variant="legacy"), dag_id)
        run = module.dag.test()
        assert run.state == "success", _states(run)
        mapping_sets_left = 1 if mapping_set_outcome == "left_in_place" else 0
        assert pipeline_resource_counts(emulator) == {
            **dict.fromkeys(ONE_LEGACY_PIPELINE, 0),
            "mappingSets": mapping_sets_left,
        }
        summary = xcoms(run, "delete_pipeline")["return_value"]
        mapping_set_id = xcoms(run, "mapping_set")["return_value"]
        assert summary[mapping_set_outcome]["mapping_sets"] == [mapping_set_id]
        assert list(emulator.snapshot()["prod"]["mappingSets"]) == [mapping_set_id] * mapping_sets_left
        others = {"deleted", "already_gone", "left_in_place"} - {mapping_set_outcome}
        assert all("mapping_sets" not in summary[key] for key in others)
        assert set(summary["deleted"]) == {
            "flows",
            "source_connections",
            "target_connections",
            "base_connections",
            "datasets",
            "schemas",
            "classes",
        } | ({"mapping_sets"} if mapping_set_outcome == "deleted" else set())
