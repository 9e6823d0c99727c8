"""Benchmark 2: provisioning round trips against the emulator (20 ms added latency per call).

Runs in its own process (``python -m bench.provisioning``; it sets up a throwaway AIRFLOW_HOME):

* ``ours``: ``example_dags/aep_protocols_ingestion.py`` without its sensor, through ``dag.test()``,
  first run and re-run, for the ``current`` and ``legacy`` tutorial variants. Per task: requests,
  new TCP connections (emulator ``connection_count`` delta) and time in ``execute``.
* ``aepp``: the same ``current``-variant resources created with aepp (Adobe's community SDK), as a
  user would write it (no get-or-create), pointed at the emulator (bench venv only).
* ``http_hook``: the same with ``HttpHook`` from apache-airflow-providers-http, by hand: one token
  request, then the creates (no get-or-create).

Requests are counted from ``emulator.request_log``: ``token`` = /ims/token/v3, ``create`` = a Platform
POST, ``lookup`` = GET and Data Prep's dry runs (POST validate/preview), ``other`` = everything else (PATCH,
PUT, DELETE).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

LATENCY = 0.02
ODATA_SPEC = "8e6b41a8-d998-4545-ad7d-c6a9fff406c3"
DATA_LAKE_SPEC = "c604ff05-7f1a-43c0-8e18-33bf874cb11c"
PROFILE = "https://ns.adobe.com/xdm/context/profile"
FIELD_GROUPS = (
    "https://ns.adobe.com/xdm/context/profile-person-details",
    "https://ns.adobe.com/xdm/context/profile-personal-details",
)
ODATA_URL = "https://services.odata.org/V4/Northwind/Northwind.svc"


# POSTs that create nothing: Data Prep's dry runs of a mapping set.
DRY_RUN_SUFFIXES = ("/mappingSets/validate", "/mappingSets/preview")


def kind_of(record: Any) -> str:
    if record.path.endswith("/ims/token/v3"):
        return "token"
    if record.method == "GET" or record.path.endswith(DRY_RUN_SUFFIXES):
        return "lookup"
    if record.method == "POST":
        return "create"
    return "other"


def count_kinds(records: list[Any]) -> dict[str, int]:
    counts = collections.Counter(kind_of(r) for r in records)
    out = {k: counts.get(k, 0) for k in ("token", "lookup", "create", "other")}
    out["total"] = len(records)
    out["errors"] = sum(1 for r in records if r.status >= 400)
    return out


def resource_counts(emu: Any) -> dict[str, int]:
    state = emu.snapshot()["prod"]
    kinds = (
        "classes",
        "schemas",
        "datasets",
        "connections",
        "sourceConnections",
        "targetConnections",
        "mappingSets",
        "flows",
    )
    return {k: len(state[k]) for k in kinds if state[k]}


def minimum(resources: int, first_run: bool) -> dict[str, int]:
    """The least a re-run-safe provisioning can do: one token, one existence lookup per resource (which
    a re-run needs to find it) plus the flow-spec lookup, and one create per resource on the first run."""
    return {"token": 1, "lookup": resources + 1, "create": resources if first_run else 0, "other": 0}


# ---------------------------------------------------------------------------------------------- ours
def _setup_airflow(home: Path) -> Path:
    dags = home / "dags"
    dags.mkdir(parents=True, exist_ok=True)
    os.environ["AIRFLOW_HOME"] = str(home)
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(dags)
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    from airflow.utils import db

    db.resetdb()
    return dags


def _load_example(dags: Path, variant: str) -> Any:
    import importlib.util

    from bench.common import REPO

    name = f"bench_protocols_{variant}"
    source = (REPO / "example_dags" / "aep_protocols_ingestion.py").read_text()
    source = source.replace('dag_id="aep_protocols_ingestion"', f'dag_id="{name}"')
    path = dags / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    dag = module.dag
    # The run's defaults, set on the loaded DAG rather than by editing its source text.
    dag.params["variant"] = variant
    dag.params["name"] = f"Bench {variant}"
    keep = [t for t in dag.task_ids if t != "wait_for_first_run"]
    return dag.partial_subset(task_ids=keep, include_downstream=False)


class TaskMeter:
    """Wraps ``execute`` of the AEP operator classes: per task, requests, new connections, seconds."""

    def __init__(self, emu: Any) -> None:
        self.emu = emu
        self.rows: list[dict[str, Any]] = []
        self._patched: list[tuple[type, Callable]] = []

    def patch(self, dag: Any) -> None:
        from airflow_provider_aep.operators.base import AEPBaseOperator

        for cls in {type(t) for t in dag.tasks}:
            if not issubclass(cls, AEPBaseOperator) or "execute" in getattr(cls, "_bench_wrapped", ()):
                continue
            original = cls.execute
            meter = self

            def execute(op: Any, context: Any, _original: Callable = original, meter: Any = meter) -> Any:
                before_conn, before_log = meter.emu.connection_count, len(meter.emu.request_log)
                started = time.perf_counter()
                try:
                    return _original(op, context)
                finally:
                    seconds = time.perf_counter() - started
                    records = meter.emu.request_log[before_log:]
                    meter.rows.append(
                        {
                            "task_id": op.task_id,
                            "seconds": seconds,
                            "connections": meter.emu.connection_count - before_conn,
                            **count_kinds(records),
                        }
                    )

            cls.execute = execute
            cls._bench_wrapped = ("execute",)
            self._patched.append((cls, original))

    def unpatch(self) -> None:
        for cls, original in self._patched:
            cls.execute = original
            del cls._bench_wrapped
        self._patched.clear()


def run_ours(variant: str, dags: Path) -> dict[str, Any]:
    from airflow_provider_aep.testing import AEPEmulator
    from airflow_provider_aep.utils.client_core import TOKEN_CACHE

    TOKEN_CACHE.clear()
    out: dict[str, Any] = {"variant": variant}
    with AEPEmulator(time_scale=3600, latency=LATENCY, seed=1) as emu:
        os.environ["AIRFLOW_CONN_AEP_DEFAULT"] = emu.connection_json()
        dag = _load_example(dags, variant)
        meter = TaskMeter(emu)
        meter.patch(dag)
        try:
            for label in ("first_run", "re_run"):
                emu.reset_log()
                meter.rows.clear()
                conn_before = emu.connection_count
                started = time.perf_counter()
                dag_run = dag.test()
                wall = time.perf_counter() - started
                states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
                if dag_run.state != "success":
                    raise RuntimeError(f"{variant} {label}: {dag_run.state} {states}")
                records = emu.request_log
                out[label] = {
                    "wall_s": wall,
                    "aep_task_seconds": sum(r["seconds"] for r in meter.rows),
                    "requests": count_kinds(records),
                    "connections": emu.connection_count - conn_before,
                    "tasks": list(meter.rows),
                    "aep_tasks": len(meter.rows),
                }
        finally:
            meter.unpatch()
        resources = resource_counts(emu)
    n = sum(resources.values())
    out["resources"] = resources
    out["minimum"] = {"first_run": minimum(n, True), "re_run": minimum(n, False)}
    for label in ("first_run", "re_run"):
        m = out["minimum"][label]
        out["minimum"][label]["wall_s_floor"] = sum(m.values()) * LATENCY  # sequential, latency-bound
    return out


# ------------------------------------------------------------------------------ the same by hand
def _schema_body(prefix: str) -> dict[str, Any]:
    return {
        "type": "object",
        "title": f"{prefix} target schema",
        "description": "bench",
        "allOf": [{"$ref": PROFILE}, *({"$ref": fg} for fg in FIELD_GROUPS)],
        "meta:containerId": "tenant",
        "meta:resourceType": "schemas",
        "meta:xdmType": "object",
        "meta:class": PROFILE,
    }


def _bodies(prefix: str, schema_id: str) -> dict[str, dict[str, Any]]:
    return {
        "dataset": {
            "name": f"{prefix} dataset",
            "schemaRef": {"id": schema_id, "contentType": "application/vnd.adobe.xed-full-notext+json; version=1"},
        },
        "base": {
            "name": f"{prefix} base connection",
            "auth": {"specName": "Anonymous Authentication", "params": {"url": ODATA_URL}},
            "connectionSpec": {"id": ODATA_SPEC, "version": "1.0"},
        },
        "mapping": {
            "outputSchema": {
                "schemaRef": {"id": schema_id, "contentType": "application/vnd.adobe.xed-full+json;version=1"}
            },
            "mappings": [{"sourceType": "ATTRIBUTE", "source": "OrderID", "destination": "_id"}],
        },
    }


def _source_body(prefix: str, base_id: str) -> dict[str, Any]:
    return {
        "name": f"{prefix} source connection",
        "baseConnectionId": base_id,
        "data": {"format": "tabular"},
        "params": {
            "tableName": "Orders",
            "columns": [{"name": "OrderID", "type": "string", "xdm": {"type": "string"}}],
        },
        "connectionSpec": {"id": ODATA_SPEC, "version": "1.0"},
    }


def _target_body(prefix: str, schema_id: str, dataset_id: str) -> dict[str, Any]:
    return {
        "name": f"{prefix} target connection",
        "data": {
            "format": "parquet_xdm",
            "schema": {"id": schema_id, "version": "application/vnd.adobe.xed-full+json;version=1"},
        },
        "params": {"dataSetId": dataset_id},
        "connectionSpec": {"id": DATA_LAKE_SPEC, "version": "1.0"},
    }


def _flow_body(prefix: str, spec_id: str, source_id: str, target_id: str, mapping_id: str) -> dict[str, Any]:
    return {
        "name": f"{prefix} dataflow",
        "flowSpec": {"id": spec_id, "version": "1.0"},
        "sourceConnectionIds": [source_id],
        "targetConnectionIds": [target_id],
        "transformations": [
            {"name": "Copy", "params": {"deltaColumn": {"name": "OrderDate"}}},
            {"name": "Mapping", "params": {"mappingId": mapping_id, "mappingVersion": "0"}},
        ],
        "scheduleParams": {"startTime": int(time.time()), "frequency": "minute", "interval": 15},
    }


def provision_with_aepp(emu: Any, prefix: str) -> dict[str, str]:
    """The current-variant pipeline with aepp, as its docs show it, pointed at the emulator."""
    import aepp
    from aepp import catalog, dataprep, flowservice, schema

    # aepp builds every service URL from the module-level endpoints and IMS from the config object.
    aepp.configure(
        org_id=emu.org_id,
        client_id=emu.client_id,
        secret=emu.client_secret,
        scopes="openid,AdobeID,read_organizations,additional_info.projectedProductContext,session",
        sandbox="prod",
        environment="support",
        endpoint=emu.base_url,
    )
    aepp.config.config_object["imsEndpoint"] = emu.base_url
    aepp.config.config_object["oauthTokenEndpointV2"] = f"{emu.base_url}/ims/token/v3"
    ids: dict[str, str] = {}
    schemas = schema.Schema()
    ids["schema"] = schemas.createSchema(_schema_body(prefix))["$id"]
    bodies = _bodies(prefix, ids["schema"])
    cat = catalog.Catalog()
    created = cat.createDataSet(data=bodies["dataset"], requestDataSource=True)
    ids["dataset"] = created[0].split("/")[-1]
    flows = flowservice.FlowService()
    ids["base"] = flows.createConnection(data=bodies["base"])["id"]
    ids["source"] = flows.createSourceConnection(data=_source_body(prefix, ids["base"]))["id"]
    ids["target"] = flows.createTargetConnection(data=_target_body(prefix, ids["schema"], ids["dataset"]))["id"]
    prep = dataprep.DataPrep()
    ids["mapping"] = prep.createMappingSet(mappingSet=bodies["mapping"])["id"]
    ids["flow_spec"] = flows.getFlowSpecIdFromNames("CRMToAEP")
    ids["flow"] = flows.createFlow(
        flow_spec_id=ids["flow_spec"],
        obj=_flow_body(prefix, ids["flow_spec"], ids["source"], ids["target"], ids["mapping"]),
    )["id"]
    return ids


def provision_with_http_hook(emu: Any, prefix: str) -> dict[str, str]:
    """The current-variant pipeline with a generic HttpHook: the token, then the creates, by hand."""
    from airflow.providers.http.hooks.http import HttpHook

    os.environ["AIRFLOW_CONN_AEP_HTTP"] = json.dumps({"conn_type": "http", "host": emu.base_url})
    ims = HttpHook(method="POST", http_conn_id="aep_http")
    token = ims.run(
        "/ims/token/v3",
        data={
            "grant_type": "client_credentials",
            "client_id": emu.client_id,
            "client_secret": emu.client_secret,
            "scope": "openid",
        },
    ).json()["access_token"]
    headers = {
        "Authorization": f"Bearer {token}",
        "x-api-key": emu.client_id,
        "x-gw-ims-org-id": emu.org_id,
        "x-sandbox-name": "prod",
        "Content-Type": "application/json",
    }
    post = HttpHook(method="POST", http_conn_id="aep_http")
    get = HttpHook(method="GET", http_conn_id="aep_http")

    def create(path: str, body: dict[str, Any], accept: str = "application/json") -> Any:
        return post.run(path, json=body, headers={**headers, "Accept": accept}).json()

    ids: dict[str, str] = {}
    ids["schema"] = create(
        "/data/foundation/schemaregistry/tenant/schemas", _schema_body(prefix), "application/vnd.adobe.xed+json"
    )["$id"]
    bodies = _bodies(prefix, ids["schema"])
    ids["dataset"] = create("/data/foundation/catalog/dataSets?requestDataSource=true", bodies["dataset"])[0].split(
        "/"
    )[-1]
    fs = "/data/foundation/flowservice"
    ids["base"] = create(f"{fs}/connections", bodies["base"])["id"]
    ids["source"] = create(f"{fs}/sourceConnections", _source_body(prefix, ids["base"]))["id"]
    ids["target"] = create(f"{fs}/targetConnections", _target_body(prefix, ids["schema"], ids["dataset"]))["id"]
    ids["mapping"] = create("/data/foundation/conversion/mappingSets", bodies["mapping"])["id"]
    specs = get.run(f"{fs}/flowSpecs", data={"property": 'name=="CRMToAEP"'}, headers=headers).json()
    ids["flow_spec"] = specs["items"][0]["id"]
    ids["flow"] = create(
        f"{fs}/flows", _flow_body(prefix, ids["flow_spec"], ids["source"], ids["target"], ids["mapping"])
    )["id"]
    return ids


def run_manual(name: str, provision: Callable[[Any, str], dict[str, str]]) -> dict[str, Any]:
    from airflow_provider_aep.testing import AEPEmulator

    out: dict[str, Any] = {"variant": "current"}
    with AEPEmulator(time_scale=3600, latency=LATENCY, seed=1) as emu:
        for label in ("first_run", "re_run"):
            emu.reset_log()
            conn_before = emu.connection_count
            started = time.perf_counter()
            error = None
            try:
                provision(emu, f"Bench {name}")
            except Exception as exc:  # a re-run without get-or-create may fail: that is a result
                error = f"{type(exc).__name__}: {str(exc)[:200]}"
                if label == "first_run":
                    traceback.print_exc()
            out[label] = {
                "wall_s": time.perf_counter() - started,
                "requests": count_kinds(emu.request_log),
                "connections": emu.connection_count - conn_before,
                "error": error,
                "resources_after": sum(resource_counts(emu).values()),
            }
        out["resources"] = resource_counts(emu)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variants", default="current,legacy")
    parser.add_argument("--skip-manual", action="store_true")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="aep-bench-prov-"))
    try:
        dags = _setup_airflow(home)
        result: dict[str, Any] = {"latency_s": LATENCY, "ours": {}, "manual": {}}
        for variant in args.variants.split(","):
            result["ours"][variant] = run_ours(variant, dags)
        if not args.skip_manual:
            try:
                import aepp  # noqa: F401

                result["manual"]["aepp"] = run_manual("aepp", provision_with_aepp)
            except ImportError:
                result["manual"]["aepp"] = {"unavailable": "aepp is not installed (it lives in .venv-bench only)"}
            try:
                import airflow.providers.http.hooks.http  # noqa: F401

                result["manual"]["http_hook"] = run_manual("http_hook", provision_with_http_hook)
            except ImportError:
                result["manual"]["http_hook"] = {"unavailable": "apache-airflow-providers-http is not installed"}
        print(json.dumps(result))
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
