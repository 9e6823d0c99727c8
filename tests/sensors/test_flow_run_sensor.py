"""AEPFlowRunSensor: every status in poke mode and deferred mode, and that both modes end the same way."""

from __future__ import annotations

import contextlib
import json
import logging
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
import time_machine

from airflow_provider_aep.exceptions import AEPFlowRunFailedError, AEPResourceNotFoundError, AEPValidationError
from airflow_provider_aep.hooks.aep_async import AEPAsyncHook
from airflow_provider_aep.links.aep import AEPDataflowLink, AEPFlowRunLink
from airflow_provider_aep.operators.base import DEFER_TIMEOUT_BUFFER
from airflow_provider_aep.sensors.flow_run import AEPFlowRunSensor
from airflow_provider_aep.triggers.flow_run import AEPFlowRunTrigger
from airflow_provider_aep.version_compat import (
    AirflowException,
    AirflowSensorTimeout,
    AirflowSkipException,
    BaseSensorOperator,
    TaskDeferred,
)
from tests.conftest import ORG_ID, PLATFORM, RecordingTI, task_log_text
from tests.fake_aep import FakeAEP
from tests.utils.test_flow_runs import FAILED_ACTIVITIES, make_run

FS = f"{PLATFORM}/data/foundation/flowservice"
RUN_PATH = "/data/foundation/flowservice/runs/run-1"
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
NOW_S = NOW.timestamp()
RUN_URL = f"https://experience.adobe.com/#/@{ORG_ID}/sname:dev/platform/source/dataflows/flow-1/activity/run-1"
FLOW_URL = f"https://experience.adobe.com/#/@{ORG_ID}/sname:dev/platform/source/dataflows/flow-1/activity"


@pytest.fixture
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def pokes(monkeypatch, clock) -> list[float]:
    """The sensor's sleeps between pokes advance the fake clock instead of sleeping."""
    waits: list[float] = []

    def fake_sleep(seconds: float) -> None:
        waits.append(seconds)
        clock.shift(seconds)

    monkeypatch.setattr(f"{BaseSensorOperator.__module__}.time.sleep", fake_sleep)
    return waits


@pytest.fixture
def context(aep_conn, ims, no_sleep, pokes, requests_mock):
    requests_mock.get(f"{FS}/flows/flow-1", json={"items": [{"id": "flow-1", "name": "f"}]})
    return {"ti": RecordingTI()}


def sensor(**kwargs) -> AEPFlowRunSensor:
    defaults = {
        "task_id": "wait",
        "flow_id": "flow-1",
        "run_id": "run-1",
        "poke_interval": 60,
        "timeout": 3600,
        "aep_retry_limit": 2,
    }
    defaults.update(kwargs)
    return AEPFlowRunSensor(**defaults)


def serve(requests_mock, *runs: dict, path: str = "/runs/run-1"):
    return requests_mock.get(f"{FS}{path}", [{"json": {"items": [run]}} for run in runs])


# ---------------------------------------------------------------- construction
def test_airflow_retry_delay_stays_airflows_and_never_reaches_the_hook(aep_conn):
    s = AEPFlowRunSensor(task_id="w", flow_id="f", retry_delay=timedelta(minutes=5), aep_retry_delay=3)
    assert s.retry_delay == timedelta(minutes=5)
    assert s.hook.retry_policy.retry_delay == 3


def test_init_makes_no_call_and_templates_ids_and_time(requests_mock):
    s = AEPFlowRunSensor(task_id="w", flow_id="f", created_after="{{ data_interval_start }}")
    assert requests_mock.request_history == []
    assert set(s.template_fields) == {"flow_id", "run_id", "created_after", "aep_conn_id"}
    assert [type(link) for link in s.operator_extra_links] == [AEPDataflowLink, AEPFlowRunLink]
    assert s.deferrable is False and s.timeout == 24 * 3600


# ---------------------------------------------------------------- poke mode
def test_success_returns_the_summary_and_pushes_both_links(context, requests_mock, pokes):
    serve(requests_mock, make_run("scheduled"), make_run("inProgress"), make_run("success"))
    result = sensor().execute(context)
    assert result["run_id"] == "run-1" and result["status"] == "success"
    assert result["records"] == {"input": 1200, "output": 1150, "failed": 50}
    assert result["files"] == {"input": 2, "output": 1, "failed": 0}
    assert result["duration_seconds"] == 90.5
    assert (result["dataflow_url"], result["run_url"]) == (FLOW_URL, RUN_URL)
    assert json.loads(json.dumps(result)) == result
    assert context["ti"].xcom == {"dataflow_url": FLOW_URL, "run_url": RUN_URL}
    assert pokes == [60, 60]


def test_failed_fails_with_error_codes_messages_and_link(context, requests_mock):
    serve(
        requests_mock,
        make_run(
            "failed", errors=[{"code": "CONNECTOR-1001-500", "message": "copy failed"}], activities=FAILED_ACTIVITIES
        ),
    )
    with pytest.raises(AEPFlowRunFailedError) as err:
        sensor().execute(context)
    text = str(err.value)
    assert "[CONNECTOR-1001-500] copy failed" in text and "[INGEST-1212-400] bad record" in text and RUN_URL in text


def test_partial_success_succeeds_with_a_warning(context, requests_mock, caplog, capsys):
    serve(requests_mock, make_run("partialSuccess"))
    with caplog.at_level(logging.WARNING):
        result = sensor().execute(context)
    assert result["status"] == "partialSuccess"
    assert "finished partialSuccess: 50 records failed" in task_log_text(caplog, capsys)


def test_partial_success_fails_when_asked(context, requests_mock):
    serve(requests_mock, make_run("partialSuccess"))
    with pytest.raises(AEPFlowRunFailedError, match="partialSuccess"):
        sensor(fail_on_partial_success=True).execute(context)


def test_an_unknown_status_keeps_waiting_and_warns_once(context, requests_mock, caplog, capsys):
    serve(requests_mock, make_run("draining"), make_run("draining"), make_run("draining"), make_run("success"))
    with caplog.at_level(logging.WARNING):
        assert sensor().execute(context)["status"] == "success"
    assert task_log_text(caplog, capsys).count("status 'draining'") == 1


def test_each_poke_logs_a_progress_line(context, requests_mock, caplog, capsys):
    serve(requests_mock, make_run("inProgress"), make_run("success"))
    with caplog.at_level(logging.INFO):
        sensor().execute(context)
    text = task_log_text(caplog, capsys)
    assert text.count("AEP flow run run-1 of flow flow-1: inProgress, elapsed") == 1
    assert text.count("AEP flow run run-1 of flow flow-1: success, elapsed 1m30s; records input 1,200") == 1


def test_without_a_run_id_it_waits_for_the_newest_run_after_created_after(context, requests_mock):
    listing = requests_mock.get(
        f"{FS}/runs",
        [
            {"json": {"items": []}},
            {
                "json": {
                    "items": [
                        make_run("inProgress", run_id="old", created_at=1_717_243_200_500),
                        make_run("inProgress", run_id="run-1", created_at=1_717_243_201_000),
                    ]
                }
            },
        ],
    )
    serve(requests_mock, make_run("inProgress"), make_run("success"))
    result = sensor(run_id=None, created_after="2024-06-01T12:00:00+00:00").execute(context)
    assert result["run_id"] == "run-1"
    assert listing.call_count == 2  # then the found run is read by id
    query = parse_qsl(urlsplit(listing.request_history[0].url).query)
    assert ("property", "createdAt>=1717243200000") in query and ("property", "flowId==flow-1") in query
    assert context["ti"].xcom["run_url"] == RUN_URL


@pytest.mark.parametrize("deferrable", [False, True], ids=["poke", "deferred"])
def test_waiting_for_a_first_run_logs_its_lower_bound_in_readable_utc(
    context, requests_mock, caplog, capsys, deferrable
):
    requests_mock.get(f"{FS}/runs", [{"json": {"items": []}}, {"json": {"items": [make_run("success")]}}])
    waiting = sensor(deferrable=deferrable, run_id=None, created_after=1_704_063_600_000)  # epoch ms
    with caplog.at_level(logging.INFO), contextlib.suppress(TaskDeferred):
        waiting.execute(context)
    text = task_log_text(caplog, capsys)
    assert "No run of AEP flow flow-1 created at or after 2023-12-31 23:00:00 UTC yet" in text
    assert "1704063600" not in text


def test_a_bad_created_after_is_a_clear_error(context):
    with pytest.raises(ValueError, match="created_after"):
        sensor(run_id=None, created_after="last tuesday").execute(context)


def test_transient_errors_while_poking_do_not_fail_the_task(context, requests_mock):
    requests_mock.get(
        f"{FS}/runs/run-1",
        [
            {"status_code": 429, "json": {"error_code": "429050", "message": "Too many requests"}},
            {"status_code": 429, "json": {"error_code": "429050", "message": "Too many requests"}},
            {"status_code": 429, "json": {"error_code": "429050", "message": "Too many requests"}},  # retries exhausted
            {"status_code": 503, "json": {"message": "down"}},
            {"json": {"items": [make_run("success")]}},
        ],
    )
    assert sensor().execute(context)["status"] == "success"


def test_a_permanent_error_fails_the_poke(context, requests_mock):
    requests_mock.get(
        f"{FS}/runs/run-1",
        status_code=404,
        json={"type": "https://ns.adobe.com/aep/errors/FLOW-1439-404", "title": "Resource not found"},
    )
    with pytest.raises(AirflowException, match="FLOW-1439-404"):
        sensor().execute(context)


def test_poke_mode_times_out_within_one_poll_interval(context, requests_mock, pokes):
    serve(requests_mock, make_run("inProgress"))
    with pytest.raises(AirflowSensorTimeout) as err:
        sensor(timeout=150).execute(context)
    assert pokes == [60, 60, 60]  # the deadline (150 s) is noticed at the first poke after it
    assert "run-1" in str(err.value) and "'inProgress'" in str(err.value) and RUN_URL in str(err.value)


def test_soft_fail_skips_on_timeout_and_on_a_failed_run(context, requests_mock):
    serve(requests_mock, make_run("inProgress"))
    with pytest.raises(AirflowSkipException):
        sensor(timeout=100, soft_fail=True).execute(context)
    serve(requests_mock, make_run("failed"))
    with pytest.raises(AirflowSkipException) as skipped:
        sensor(soft_fail=True).execute({"ti": RecordingTI()})
    assert isinstance(skipped.value.__cause__, AEPFlowRunFailedError)


# ---------------------------------------------------------------- failing fast, in every mode
def test_a_flow_that_does_not_exist_fails_on_the_first_poke_naming_it(context, requests_mock, pokes):
    requests_mock.get(f"{FS}/flows/no-such-flow", status_code=404, json={"title": "Resource not found"})
    requests_mock.get(f"{FS}/runs", json={"items": []})
    with pytest.raises(AEPResourceNotFoundError, match="AEP flow no-such-flow does not exist in sandbox 'dev'"):
        sensor(flow_id="no-such-flow", run_id=None).execute(context)
    assert pokes == []  # not one wait before failing


def test_a_run_of_another_flow_fails_on_the_first_poke_naming_both(context, requests_mock, pokes):
    serve(requests_mock, make_run("success", flow_id="flow-2"))
    with pytest.raises(
        AEPValidationError, match=r"run_id='run-1' is a run of AEP flow flow-2, not of flow_id='flow-1'"
    ):
        sensor().execute(context)
    assert pokes == []


async def test_deferred_the_trigger_fails_fast_on_a_missing_flow_and_a_foreign_run(context, monkeypatch, clock):
    async def fake_sleep(seconds: float) -> None:
        clock.shift(seconds)

    monkeypatch.setattr(AEPAsyncHook, "sleep", staticmethod(fake_sleep))
    fake = FakeAEP()
    fake.on("GET", "/data/foundation/flowservice/flows/no-such-flow", httpx.Response(404, json={"status": 404}))
    fake.on("GET", "/data/foundation/flowservice/runs", httpx.Response(200, json={"items": []}))
    fake.on("GET", RUN_PATH, httpx.Response(200, json={"items": [make_run("inProgress", flow_id="flow-2")]}))
    monkeypatch.setattr(
        AEPFlowRunTrigger,
        "_make_hook",
        lambda self: AEPAsyncHook(self.aep_conn_id, retry_args=self.retry_args, transport=fake.transport),
    )
    ends = []
    for flow_id, run_id in (("no-such-flow", None), ("flow-1", "run-1")):
        trigger = AEPFlowRunTrigger(flow_id, run_id=run_id, end_time=NOW_S + 3600, poll_interval=60)
        (event,) = [e.payload async for e in trigger.run()]
        with pytest.raises(AirflowException) as err:
            sensor(deferrable=True, flow_id=flow_id, run_id=run_id).execute_complete(context, event)
        ends.append(str(err.value))
    assert "AEP flow no-such-flow does not exist" in ends[0]
    assert "run_id='run-1' is a run of AEP flow flow-2, not of flow_id='flow-1'" in ends[1]
    assert len(fake.platform_calls()) == 3  # one read each, and one flow lookup: no waiting


# ---------------------------------------------------------------- deferrable mode
def test_a_finished_run_never_defers(context, requests_mock):
    serve(requests_mock, make_run("success"))
    result = sensor(deferrable=True).execute(context)
    assert result["status"] == "success"


def test_a_finished_failed_run_fails_without_deferring(context, requests_mock):
    serve(requests_mock, make_run("failed", activities=FAILED_ACTIVITIES))
    with pytest.raises(AEPFlowRunFailedError, match="INGEST-1212-400"):
        sensor(deferrable=True).execute(context)


def test_a_running_run_defers_with_ids_deadline_and_retry_settings(context, requests_mock):
    serve(requests_mock, make_run("inProgress"))
    with pytest.raises(TaskDeferred) as deferred:
        sensor(
            deferrable=True, timeout=600, poke_interval=30, aep_retry_limit=4, aep_retry_args={"retry_delay": 2}
        ).execute(context)
    trigger = deferred.value.trigger
    assert isinstance(trigger, AEPFlowRunTrigger)
    _, kwargs = trigger.serialize()
    assert kwargs["flow_id"] == "flow-1" and kwargs["run_id"] == "run-1"
    assert kwargs["end_time"] == NOW_S + 600
    assert kwargs["poll_interval"] == 30
    assert (kwargs["retry_args"]["retry_limit"], kwargs["retry_args"]["retry_delay"]) == (4, 2)
    assert deferred.value.method_name == "execute_complete"
    # Airflow's own deferral timeout only backs up the trigger's deadline.
    assert deferred.value.timeout == timedelta(seconds=600 + 30 + DEFER_TIMEOUT_BUFFER)
    assert context["ti"].xcom == {"dataflow_url": FLOW_URL, "run_url": RUN_URL}


def test_no_run_yet_defers_with_the_lower_bound_and_no_run_id(context, requests_mock):
    requests_mock.get(f"{FS}/runs", json={"items": []})
    with pytest.raises(TaskDeferred) as deferred:
        sensor(deferrable=True, run_id=None, created_after=1_717_243_200).execute(context)
    _, kwargs = deferred.value.trigger.serialize()
    assert (kwargs["run_id"], kwargs["created_after_ms"]) == (None, 1_717_243_200_000)


def test_transient_errors_before_deferring_still_defer(context, requests_mock):
    requests_mock.get(f"{FS}/runs/run-1", status_code=503, json={"message": "down"})
    with pytest.raises(TaskDeferred):
        sensor(deferrable=True).execute(context)


# ---------------------------------------------------------------- deferred mode ends like poke mode
@pytest.fixture
def trigger_against(monkeypatch, aep_conn, clock):
    """Run the real trigger against a scripted httpx transport serving ``runs`` in turn."""

    async def fake_sleep(seconds: float) -> None:
        clock.shift(seconds)

    monkeypatch.setattr(AEPAsyncHook, "sleep", staticmethod(fake_sleep))

    async def run(trigger: AEPFlowRunTrigger, *runs: dict) -> dict:
        fake = FakeAEP()
        fake.on("GET", RUN_PATH, *[httpx.Response(200, json={"items": [r]}) for r in runs])
        monkeypatch.setattr(
            AEPFlowRunTrigger,
            "_make_hook",
            lambda self: AEPAsyncHook(self.aep_conn_id, retry_args=self.retry_args, transport=fake.transport),
        )
        events = [e.payload async for e in trigger.run()]
        assert len(events) == 1
        return json.loads(json.dumps(events[0]))  # what survives the trip through the metadata DB

    return run


def outcome(fn):
    try:
        return ("returned", fn())
    except Exception as exc:
        return (type(exc).__name__, str(exc))


@pytest.mark.parametrize(
    ("run", "options"),
    [
        (make_run("success"), {}),
        (
            make_run(
                "failed",
                errors=[{"code": "CONNECTOR-1001-500", "message": "copy failed"}],
                activities=FAILED_ACTIVITIES,
            ),
            {},
        ),
        (make_run("partialSuccess"), {}),
        (make_run("partialSuccess"), {"fail_on_partial_success": True}),
        (make_run("failed"), {"soft_fail": True}),
        (make_run("success"), {"max_failed_records": 50, "max_failed_ratio": 0.05}),  # 50 of 1,200 failed
        (make_run("success"), {"max_failed_records": 49}),
        (make_run("partialSuccess"), {"max_failed_ratio": 0.01}),
        (make_run("success"), {"max_failed_records": 0, "soft_fail": True}),
    ],
    ids=[
        "success",
        "failed",
        "partial-ok",
        "partial-fails",
        "failed-soft",
        "gate-passes",
        "gate-fails",
        "gate-fails-partial",
        "gate-fails-soft",
    ],
)
async def test_execute_complete_returns_and_raises_exactly_like_poke_mode(
    context, requests_mock, trigger_against, run, options
):
    serve(requests_mock, make_run("inProgress"), run)
    poked_ti = RecordingTI()
    poke = outcome(lambda: sensor(**options).execute({"ti": poked_ti}))

    deferring = sensor(deferrable=True, **options)
    serve(requests_mock, make_run("inProgress"))
    with pytest.raises(TaskDeferred) as deferred:
        deferring.execute({"ti": RecordingTI()})
    event = await trigger_against(deferred.value.trigger, make_run("inProgress"), run)
    ti = RecordingTI()
    resumed = outcome(lambda: deferring.resume_execution("execute_complete", {"event": event}, {"ti": ti}))

    assert resumed == poke
    assert ti.xcom.get("run_url") == RUN_URL
    assert ti.xcom.get("run_summary") == poked_ti.xcom.get("run_summary")
    if options.get("soft_fail"):
        assert poke[0] == "AirflowSkipException"
    if "max_failed_records" in options and poke[0] != "returned":
        assert poked_ti.xcom["run_summary"]["diagnostics"]["errors"] == []


async def test_deferred_timeout_is_a_sensor_timeout_and_soft_fail_skips(context, requests_mock, trigger_against, clock):
    serve(requests_mock, make_run("inProgress"))
    for soft_fail, expected in ((False, AirflowSensorTimeout), (True, AirflowSkipException)):
        s = sensor(deferrable=True, timeout=150, soft_fail=soft_fail)
        with pytest.raises(TaskDeferred) as deferred:
            s.execute({"ti": RecordingTI()})
        event = await trigger_against(deferred.value.trigger, make_run("inProgress"))
        assert event["status"] == "timeout"
        with pytest.raises(expected) as err:
            s.resume_execution("execute_complete", {"event": event}, {"ti": RecordingTI()})
        if not soft_fail:
            assert "'inProgress'" in str(err.value) and RUN_URL in str(err.value)


def test_airflows_own_deferral_timeout_is_a_sensor_timeout_too(context):
    s = sensor(deferrable=True, soft_fail=True)
    with pytest.raises(AirflowSkipException):
        s.resume_execution("__fail__", {"error": "Trigger/execution timeout"}, {"ti": RecordingTI()})


@pytest.mark.parametrize(
    ("event", "match"),
    [
        (
            {
                "status": "error",
                "flow_id": "flow-1",
                "run_id": "run-1",
                "message": "AEPApiError: forbidden",
                "summary": None,
            },
            "forbidden",
        ),
        ({"status": "bogus"}, "does not understand"),
        (None, "does not understand"),
    ],
)
def test_error_and_malformed_events_fail_the_task(context, event, match):
    with pytest.raises(AirflowException, match=match):
        sensor(deferrable=True).execute_complete(context, event)
