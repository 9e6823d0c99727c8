from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

# Every emulator call of the run is judged against Adobe's OpenAPI specs (tests/conformance).
pytest_plugins = ["tests.conformance.plugin"]

# A throwaway Airflow home (SQLite) for the whole run, set before anything imports Airflow.
AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="aep-tests-airflow-"))
DAGS_FOLDER = AIRFLOW_HOME / "dags"
DAGS_FOLDER.mkdir()
os.environ["AIRFLOW_HOME"] = str(AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS_FOLDER)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)

CLIENT_ID = "test-client-id"
CLIENT_SECRET = "s3cr3t-client-secret-value"
ORG_ID = "ABCDEF1234567890@AdobeOrg"
IMS = "https://ims.example.test"
PLATFORM = "https://platform.example.test"
TOKEN = "tok-AAAA-1111-secret-token"


def conn_json(**extra_overrides):
    extra = {"org_id": ORG_ID, "sandbox": "dev", "ims_url": IMS, "platform_url": PLATFORM}
    extra.update(extra_overrides)
    return json.dumps({"conn_type": "aep", "login": CLIENT_ID, "password": CLIENT_SECRET, "extra": extra})


def airflow_3() -> bool:
    from airflow_provider_aep.version_compat import AIRFLOW_V_3_0_PLUS

    return AIRFLOW_V_3_0_PLUS


# Where Airflow's own secret masker lives, to spy on what the provider registers.
SECRET_MASKER = "airflow.sdk.log.mask_secret" if airflow_3() else "airflow.utils.log.secrets_masker.mask_secret"


# Loggers that an operator's or a trigger's `self.log` gets when it is a logging-module logger.
TASK_LOGGERS = ("airflow.task.", "airflow_provider_aep.triggers.")


def as_words(text: str) -> str:
    """``text`` with each run of whitespace made one space: Airflow 3.0 logs a task's error only to stdout,
    wrapped at 80 columns, so a logged message is compared word by word."""
    return " ".join(text.split())


def task_log_text(caplog, capsys) -> str:
    """Task logs. Where `self.log` is a logging-module logger (Airflow 2 and 3.0), Airflow's handlers write each
    record both to caplog and to stdout, so caplog alone holds each line exactly once; where it is structlog
    (Airflow 3.1+), the lines are on stdout only. Which one is told by the records, not the version."""
    out = capsys.readouterr().out
    logging_module = any(record.name.startswith(TASK_LOGGERS) for record in caplog.records)
    return caplog.text if logging_module else caplog.text + out


PIPELINE_KINDS = (
    "classes",
    "schemas",
    "datasets",
    "connections",
    "sourceConnections",
    "targetConnections",
    "mappingSets",
    "flows",
)
# What one pipeline of the legacy (seed) tutorial leaves in the emulator: the ad hoc class, the ad hoc and
# target schemas, the dataset, the source and dataset base connections, and one of each of the rest.
ONE_LEGACY_PIPELINE = {
    "classes": 1,
    "schemas": 2,
    "datasets": 1,
    "connections": 2,
    "sourceConnections": 1,
    "targetConnections": 1,
    "mappingSets": 1,
    "flows": 1,
}
# The current variant has no ad hoc schema (nor its class) and no dataset base connection.
ONE_CURRENT_PIPELINE = {**ONE_LEGACY_PIPELINE, "classes": 0, "schemas": 1, "connections": 1}
LEGACY_ONLY_TASKS = ("adhoc_schema", "dataset_base_connection")


def pipeline_resource_counts(emulator, sandbox: str = "prod") -> dict[str, int]:
    """How many resources of each pipeline kind the emulator holds."""
    state = emulator.snapshot()[sandbox]
    return {kind: len(state[kind]) for kind in PIPELINE_KINDS}


def xcoms(dag_run, task_id: str) -> dict[str, Any]:
    """The XComs a task of a finished ``dag.test()`` run pushed, by key."""
    from airflow.utils.session import create_session

    with create_session() as session:
        if airflow_3():
            from airflow.models.xcom import XComModel

            rows = session.scalars(
                XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag_run.dag_id, task_ids=task_id)
            ).all()
            return {row.key: XComModel.deserialize_value(row) for row in rows}
        from airflow.models.xcom import XCom

        rows = XCom.get_many(run_id=dag_run.run_id, dag_ids=dag_run.dag_id, task_ids=task_id, session=session).all()
        return {row.key: row.value for row in rows}  # Airflow 2 deserializes on load


class RecordingTI:
    """Stands in for the TaskInstance in unit tests: records XCom pushes and their order."""

    def __init__(self) -> None:
        self.xcom: dict[str, object] = {}
        self.pushed_order: list[str] = []

    def xcom_push(self, key: str, value: object) -> None:
        self.xcom[key] = value
        self.pushed_order.append(key)


@pytest.fixture(autouse=True)
def _fresh_token_cache(tmp_path_factory, monkeypatch):
    """No token from another test: an empty process cache, and a token cache directory of this test's own."""
    from airflow_provider_aep.utils.client_core import TOKEN_CACHE

    monkeypatch.setenv("AIRFLOW__AEP__TOKEN_CACHE_DIR", str(tmp_path_factory.mktemp("aep-tokens")))
    TOKEN_CACHE.clear()
    yield
    TOKEN_CACHE.clear()


@pytest.fixture
def aep_conn(monkeypatch):
    """An `aep_default` connection from the environment (no Airflow DB needed)."""
    monkeypatch.setenv("AIRFLOW_CONN_AEP_DEFAULT", conn_json())
    return "aep_default"


@pytest.fixture
def no_sleep(monkeypatch):
    """Record the sync hook's retry back-off sleeps instead of sleeping."""
    from airflow_provider_aep.hooks.aep import AEPHook

    slept: list[float] = []
    monkeypatch.setattr(AEPHook, "sleep", staticmethod(slept.append))
    return slept


@pytest.fixture
def ims(requests_mock):
    """IMS answering one fresh token per call: tok-1, tok-2, …"""
    counter = {"n": 0}

    def issue(request, context):
        counter["n"] += 1
        return {"access_token": f"{TOKEN}-{counter['n']}", "token_type": "bearer", "expires_in": 86399}

    return requests_mock.post(f"{IMS}/ims/token/v3", json=issue)


@pytest.fixture(scope="session")
def airflow_db():
    """A fresh Airflow metadata DB (SQLite), created once per test run, for dag.test()."""
    from airflow.utils import db

    db.resetdb()


@pytest.fixture
def load_dag_file(airflow_db):
    """
    Put a DAG file into the dags folder and import it; ``dag.test()`` needs the DAG to live in a bundle.

    Usage: ``module = load_dag_file(path_or_source, "name")``; the file keeps ``name``.py.
    """
    loaded: list[str] = []

    def _load(source: str | Path, name: str):
        target = DAGS_FOLDER / f"{name}.py"
        text = Path(source).read_text() if isinstance(source, Path) else source
        target.write_text(text)
        spec = importlib.util.spec_from_file_location(name, target)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        loaded.append(name)
        return module

    yield _load
    for name in loaded:
        sys.modules.pop(name, None)
