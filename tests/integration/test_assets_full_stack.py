"""
Data awareness on a real Airflow (``airflow standalone``: api-server, scheduler with LocalExecutor,
dag-processor, triggerer; SQLite) against the emulator, in one scenario:

1. The example DAG ``aep_on_new_data`` is scheduled on an ``aep://`` Asset watched by an
   ``AEPFlowRunEventTrigger``: an AEP run of the watched flow finishing starts it exactly once, with the
   run in the asset event.
2. A producer DAG's ``AEPRunFlowOperator`` (``asset_alias``) gives its flow's dataset an asset event with
   the run id, counts and link, which starts a DAG scheduled on that dataset once; the OpenLineage
   provider's listener writes the task's COMPLETE event (file transport) with the source, the dataset,
   the output statistics and the column lineage.
3. Airflow restarts (triggerer included): the watcher resumes from its watermark in the asset state store,
   polls again and fires nothing for the run it already reported; the next run fires it once more.

Bounded in time (one overall deadline); every process started is stopped, even on failure.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from packaging.version import Version

from airflow_provider_aep.assets.aep import dataset_uri
from airflow_provider_aep.testing.standalone import Standalone, airflow_cli, airflow_env, free_port
from airflow_provider_aep.version_compat import AIRFLOW_BASE_VERSION, AIRFLOW_V_3_1_PLUS
from tests.airflow_stack import AirflowApi, check_stopped
from tests.conftest import airflow_3
from tests.integration.test_asset_events_emulator import start_run
from tests.integration.test_flow_run_emulator import build_flow, once

pytestmark = [
    pytest.mark.skipif(not airflow_3(), reason="AssetWatcher and a full airflow standalone are Airflow 3"),
    pytest.mark.skipif(not AIRFLOW_V_3_1_PLUS, reason="Airflow 3.0's REST API does not list an asset's watchers"),
]

EXAMPLES = Path(__file__).resolve().parents[2] / "example_dags"
WATCHING_DAG = "aep_on_new_data"
PRODUCER_DAG = "aep_assets_producer"
CONSUMER_DAG = "aep_assets_consumer"
DEADLINE_SECONDS = 420.0

PRODUCER = """
import pendulum
from airflow.sdk import DAG
from airflow_provider_aep.operators.flow_run import AEPRunFlowOperator

with DAG("{dag_id}", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"), catchup=False):
    AEPRunFlowOperator(
        task_id="start_run",
        flow_id="{flow_id}",
        window_start="{{{{ macros.datetime.now(macros.dateutil.tz.UTC) - macros.timedelta(hours=1) }}}}",
        window_end="{{{{ macros.datetime.now(macros.dateutil.tz.UTC) }}}}",
        asset_alias="aep-producer-dataset",
        poll_interval=0.5,
        timeout=120,
        deferrable=False,
    )
"""

CONSUMER = """
import pendulum
from airflow.sdk import DAG, Asset, task

DATASET = Asset(uri="{uri}")

with DAG("{dag_id}", schedule=[DATASET], start_date=pendulum.datetime(2024, 1, 1, tz="UTC"), catchup=False):

    @task
    def runs_behind(triggering_asset_events=None):
        return [event.extra.get("run_id") for event in triggering_asset_events[DATASET]]

    runs_behind()
"""


def _flow_dataset(emulator, flow_id: str) -> str:
    state = emulator.snapshot()["prod"]
    (target,) = state["flows"][flow_id]["targetConnectionIds"]
    return state["targetConnections"][target]["params"]["dataSetId"]


def test_watcher_outlet_events_lineage_and_a_restart_on_the_real_stack(emulator, hook, tmp_path):
    if not airflow_cli().exists():
        pytest.skip(f"airflow standalone is not available (no {airflow_cli()})")
    deadline = time.monotonic() + DEADLINE_SECONDS
    watched, produced = build_flow(hook, once(), "watched"), build_flow(hook, once(), "produced")
    org, sandbox = hook.config.org_id, hook.config.sandbox
    watched_uri = dataset_uri(org, sandbox, _flow_dataset(emulator, watched))
    produced_uri = dataset_uri(org, sandbox, _flow_dataset(emulator, produced))

    dags = tmp_path / "dags"
    dags.mkdir()
    shutil.copy(EXAMPLES / f"{WATCHING_DAG}.py", dags)
    (dags / f"{PRODUCER_DAG}.py").write_text(PRODUCER.format(dag_id=PRODUCER_DAG, flow_id=produced))
    (dags / f"{CONSUMER_DAG}.py").write_text(CONSUMER.format(dag_id=CONSUMER_DAG, uri=produced_uri))
    lineage_file = tmp_path / "openlineage.jsonl"
    home = tmp_path / "airflow_home"
    home.mkdir()
    env = airflow_env(
        home,
        free_port(),
        dags,
        connection_json=emulator.connection_json(),
        overrides={
            "AEP_ON_NEW_DATA_FLOW_ID": watched,
            "AEP_ON_NEW_DATA_ORG_ID": org,
            "AEP_ON_NEW_DATA_SANDBOX": sandbox,
            "AEP_ON_NEW_DATA_DATASET_ID": _flow_dataset(emulator, watched),
            "AEP_ON_NEW_DATA_POLL_SECONDS": "1",
            "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
                {"type": "file", "log_file_path": str(lineage_file), "append": True}
            ),
            "AIRFLOW__OPENLINEAGE__NAMESPACE": "aep-tests",
        },
    )
    stacks: list[Standalone] = [Standalone(env, tmp_path, tmp_path / "standalone-1.log")]
    api = AirflowApi(
        stacks[0].base_url,
        deadline,
        check=lambda: stacks[-1].died(),
        context=lambda: f"--- airflow standalone log (tail) ---\n{stacks[-1].tail(120)}",
        label="assets full stack",
    )
    stopped: list[tuple[list[str], list[str]]] = []
    try:
        scenario = Scenario(api, emulator, hook, watched, watched_uri, produced_uri, lineage_file)
        scenario.before_restart()
        stopped.append(stacks[-1].stop())
        api.mark("Airflow stopped; starting it again on the same home")
        stacks.append(Standalone(env, tmp_path, tmp_path / "standalone-2.log"))
        scenario.after_restart()
        # The first triggerer took the first look; the second read the mark from the asset state store, or,
        # on an Airflow without one (before 3.3), took its first look again and said why.
        first_look, resumed = f"Watching AEP flow {watched}: ", f"Watching AEP flow {watched} from its stored watermark"
        assert first_look in (tmp_path / "standalone-1.log").read_text()
        second_log = (tmp_path / "standalone-2.log").read_text()
        if Version("3.3") <= AIRFLOW_BASE_VERSION:
            assert resumed in second_log and first_look not in second_log
        else:
            assert first_look in second_log and "gives triggers no asset state store" in second_log
    finally:
        api.client.close()
        if stacks[-1].running() or len(stopped) < len(stacks):
            stopped.append(stacks[-1].stop())
        api.mark("every Airflow process stopped")
    survivors = [s for _, group in stopped for s in group]
    killed = [k for group, _ in stopped for k in group]
    check_stopped(killed, survivors)


class Scenario:
    def __init__(self, api: AirflowApi, emulator, hook, watched: str, watched_uri: str, produced_uri: str, lineage):
        self.api, self.emulator, self.hook = api, emulator, hook
        self.watched, self.watched_uri, self.produced_uri = watched, watched_uri, produced_uri
        self.lineage_file: Path = lineage
        self.reported: list[str] = []

    # ------------------------------------------------------------ helpers
    def asset(self, uri: str, *, watched: bool = False) -> dict[str, Any]:
        def found():
            assets = self.api.get_json("/assets", uri_pattern=uri)["assets"]
            asset = next((a for a in assets if a["uri"] == uri), None)
            return asset if asset and (asset["watchers"] or not watched) else None

        return self.api.wait_until(f"asset {uri}{' and its watcher' if watched else ''}", found)

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        return self.api.get_json(f"/dags/{dag_id}/dagRuns", order_by="start_date")["dag_runs"]

    def finished_runs(self, dag_id: str, count: int) -> list[dict[str, Any]]:
        def done():
            runs = self.dag_runs(dag_id)
            if len(runs) > count:
                self.api.fail(f"{dag_id} ran {len(runs)} times, expected {count}: {runs}")
            failed = [r for r in runs if r["state"] == "failed"]
            if failed:
                self.api.fail(f"{dag_id} failed: {failed}")
            return runs if len(runs) == count and all(r["state"] == "success" for r in runs) else None

        return self.api.wait_until(f"{count} successful runs of {dag_id}", done)

    def returned(self, dag_id: str, run_id: str, task_id: str) -> Any:
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value"
        value = self.api.get_json(path, deserialize="true")["value"]
        return json.loads(value) if isinstance(value, str) else value

    def list_reads(self, since: int = 0) -> int:
        return sum(
            1
            for r in self.emulator.request_log[since:]
            if r.method == "GET"
            and r.path.endswith("/runs")
            and f"flowId=={self.watched}" in r.query.get("property", [])
        )

    def trigger_events(self) -> list[dict[str, Any]]:
        asset_id = self.asset(self.watched_uri)["id"]
        events = self.api.get_json("/assets/events", asset_id=asset_id, order_by="timestamp")["asset_events"]
        return [e["extra"] for e in events]

    def watcher_fires_once_for(self, run_id: str, runs_so_far: int) -> None:
        self.reported.append(run_id)
        runs = self.finished_runs(WATCHING_DAG, runs_so_far)
        value = self.returned(WATCHING_DAG, runs[-1]["dag_run_id"], "report_new_data")
        assert [r["run_id"] for r in value] == [run_id], value
        assert value[0]["flow_id"] == self.watched and value[0]["status"] == "success", value
        assert value[0]["records"]["output"] > 0 and value[0]["run_url"].endswith(f"/activity/{run_id}"), value
        extras = self.trigger_events()
        assert [e["from_trigger"] for e in extras] == [True] * len(self.reported), extras
        assert [e["payload"]["run_id"] for e in extras] == self.reported, extras

    # ------------------------------------------------------------ the scenario
    def before_restart(self) -> None:
        api = self.api
        api.login()
        api.mark("api-server up")
        for dag_id in (WATCHING_DAG, PRODUCER_DAG, CONSUMER_DAG):
            api.wait_for_dag(dag_id)
        api.mark("DAGs parsed and unpaused")

        # 1. The watcher runs in the triggerer; once it has looked twice, a new run of the flow fires it.
        (watcher,) = self.asset(self.watched_uri, watched=True)["watchers"]
        self.trigger_id = watcher["trigger_id"]
        api.wait_until("the watcher to read the flow's runs twice", lambda: self.list_reads() >= 2)
        api.mark("watcher polling in the triggerer")
        self.watcher_fires_once_for(start_run(self.hook, self.watched), 1)
        api.mark("the watched run started aep_on_new_data once")

        # 2. A run started by a task: the dataset's asset event, a run of the DAG scheduled on it, lineage.
        response = api.client.post(f"/api/v2/dags/{PRODUCER_DAG}/dagRuns", json={"logical_date": None})
        if response.status_code != 200:
            api.fail(f"triggering {PRODUCER_DAG} failed: {response.status_code} {response.text[:1000]}")
        (produced,) = self.finished_runs(PRODUCER_DAG, 1)
        summary = self.returned(PRODUCER_DAG, produced["dag_run_id"], "start_run")
        (consumed,) = self.finished_runs(CONSUMER_DAG, 1)
        assert self.returned(CONSUMER_DAG, consumed["dag_run_id"], "runs_behind") == [summary["run_id"]]
        events = api.get_json("/assets/events", asset_id=self.asset(self.produced_uri)["id"])["asset_events"]
        (event,) = events
        assert (event["source_dag_id"], event["source_task_id"]) == (PRODUCER_DAG, "start_run"), event
        assert event["extra"]["run_id"] == summary["run_id"] and event["extra"]["status"] == "success", event
        assert event["extra"]["records"] == summary["records"] and event["extra"]["run_url"] == summary["run_url"]
        api.mark("the producer's asset event started the consumer once")
        self.check_lineage(summary)

    def check_lineage(self, summary: dict[str, Any]) -> None:
        def complete():
            if not self.lineage_file.exists():
                return None
            events = [json.loads(line) for line in self.lineage_file.read_text().splitlines() if line.strip()]
            return next(
                (
                    e
                    for e in events
                    if e.get("eventType") == "COMPLETE" and e["job"]["name"] == f"{PRODUCER_DAG}.start_run"
                ),
                None,
            )

        event = self.api.wait_until("the producer task's OpenLineage COMPLETE event", complete)
        state = self.emulator.snapshot()["prod"]
        flow = state["flows"][summary["flow_id"]]
        (source,) = [state["sourceConnections"][s] for s in flow["sourceConnectionIds"]]
        (source_dataset,) = event["inputs"]
        assert source_dataset["namespace"] == (
            f"aep-source://{source['connectionSpec']['id']}/{source['baseConnectionId']}"
        ), source_dataset
        assert source_dataset["name"] == "Orders", source_dataset
        (output,) = event["outputs"]
        assert f"{output['namespace']}/{output['name']}" == self.produced_uri, output
        stats = output["outputFacets"]["outputStatistics"]
        assert (stats["rowCount"], stats["size"]) == (summary["records"]["output"], summary["bytes"]["output"]), stats
        columns = output["facets"]["columnLineage"]["fields"]
        (order_id,) = columns["_id"]["inputFields"]
        assert (order_id["namespace"], order_id["name"], order_id["field"]) == (
            source_dataset["namespace"],
            "Orders",
            "OrderID",
        ), columns
        assert columns["_id"]["transformationType"] == "IDENTITY", columns
        assert set(columns) == {"_id", "createdByBatchID"}, columns
        assert event["run"]["facets"]["externalQuery"]["externalQueryId"] == summary["run_id"], event["run"]
        self.api.mark("OpenLineage COMPLETE event with inputs, outputs, statistics and column lineage")

    def after_restart(self) -> None:
        api = self.api
        reads = len(self.emulator.request_log)
        api.login()
        api.mark("api-server up again")
        # 3. The restarted triggerer runs the same trigger (the DAG file was parsed again, same kwargs) and
        #    reads from its stored watermark: several polls later, aep_on_new_data has still run once.
        api.wait_until("the watcher to poll three times after the restart", lambda: self.list_reads(reads) >= 3)
        (watcher,) = self.asset(self.watched_uri, watched=True)["watchers"]
        assert watcher["trigger_id"] == self.trigger_id, (watcher, self.trigger_id)
        assert len(self.dag_runs(WATCHING_DAG)) == 1 and len(self.trigger_events()) == 1
        api.mark("no second event after the restart")
        self.watcher_fires_once_for(start_run(self.hook, self.watched), 2)
        api.mark("the next run started aep_on_new_data once more")
        assert len(self.dag_runs(CONSUMER_DAG)) == 1
