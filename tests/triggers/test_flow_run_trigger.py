"""AEPFlowRunTrigger driven to its single event against a scripted httpx transport and a fake clock."""

from __future__ import annotations

import importlib
import itertools
import json
import logging
import time
from datetime import UTC, datetime

import httpx
import pytest
import time_machine

from airflow_provider_aep.hooks import aep_async
from airflow_provider_aep.hooks.aep_async import AEPAsyncHook
from airflow_provider_aep.triggers.flow_run import AEPFlowRunEvent, AEPFlowRunTrigger, next_poll, poll_lead
from airflow_provider_aep.utils.client_core import RetryPolicy
from tests.conftest import CLIENT_SECRET, ORG_ID, TOKEN, airflow_3, task_log_text
from tests.fake_aep import FakeAEP
from tests.utils.test_flow_runs import FAILED_ACTIVITIES, make_run


def import_string(path: str):
    """What the triggerer does with a trigger's classpath."""
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


RUNS = "/data/foundation/flowservice/runs"
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
NOW_S = NOW.timestamp()


@pytest.fixture
def clock():
    """Frozen wall clock; every wait of the hook and trigger advances it instead of sleeping."""
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def slept(monkeypatch, clock) -> list[float]:
    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)
        clock.shift(seconds)

    monkeypatch.setattr(AEPAsyncHook, "sleep", staticmethod(fake_sleep))
    return waits


@pytest.fixture
def fake(aep_conn, slept, monkeypatch) -> FakeAEP:
    fake = FakeAEP()
    fake.on("GET", "/data/foundation/flowservice/flows/flow-1", httpx.Response(200, json={"items": [{"id": "flow-1"}]}))

    def make_hook(self):
        return AEPAsyncHook(self.aep_conn_id, retry_args=self.retry_args, transport=fake.transport)

    monkeypatch.setattr(AEPFlowRunTrigger, "_make_hook", make_hook)
    if hasattr(aep_async.BaseHook, "aget_connection"):
        # The trigger must never take the blocking path where an async one exists (Airflow 2 and 3.0 have none).
        monkeypatch.setattr(aep_async.BaseHook, "get_connection", lambda conn_id: pytest.fail("sync connection lookup"))
    return fake


def trigger(**overrides) -> AEPFlowRunTrigger:
    kwargs = {
        "run_id": "run-1",
        "end_time": NOW_S + 3600,
        "poll_interval": 60,
        "retry_args": {"retry_limit": 2, "retry_delay": 0.5, "jitter": False},
    }
    kwargs.update(overrides)
    return AEPFlowRunTrigger("flow-1", **kwargs)


def ok(run: dict) -> httpx.Response:
    return httpx.Response(200, json={"items": [run]})


async def events_of(t: AEPFlowRunTrigger) -> list[dict]:
    return [event.payload async for event in t.run()]


# ---------------------------------------------------------------- serialization
def test_serialization_round_trip_is_plain_data_without_secrets():
    t = trigger(created_after_ms=1_700_000_000_000, retry_args=RetryPolicy(retry_limit=7).to_dict())
    classpath, kwargs = t.serialize()
    assert classpath == "airflow_provider_aep.triggers.flow_run.AEPFlowRunTrigger"
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert set(kwargs) == {
        "flow_id",
        "run_id",
        "created_after_ms",
        "aep_conn_id",
        "poll_interval",
        "end_time",
        "retry_args",
    }
    assert kwargs["end_time"] == NOW_S + 3600  # absolute wall clock, survives a triggerer restart
    assert kwargs["retry_args"]["retry_limit"] == 7
    rebuilt = import_string(classpath)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert CLIENT_SECRET not in json.dumps(kwargs) and TOKEN not in json.dumps(kwargs)


def test_bad_retry_args_fail_when_deferring_not_in_the_triggerer():
    with pytest.raises(TypeError):
        trigger(retry_args={"retry_limit": 1, "callback": "nope"})
    with pytest.raises(ValueError):
        trigger(retry_args={"retry_limit": -1})


@pytest.mark.skipif(not airflow_3(), reason="BaseEventTrigger is Airflow 3")
def test_the_event_trigger_takes_a_retry_policy_and_stores_one_plain_spelling_of_it():
    from airflow.triggers.base import BaseEventTrigger

    from airflow_provider_aep.triggers.flow_run import AEPFlowRunEventTrigger

    policy = RetryPolicy(retry_limit=3, jitter=False)
    classpath, kwargs = AEPFlowRunEventTrigger("flow-1", retry_args=policy).serialize()
    assert kwargs["retry_args"] == policy.to_dict() and json.loads(json.dumps(kwargs)) == kwargs
    # However the same policy is written, Airflow sees the same trigger, so it is not recreated on a parse.
    for spelling in ({"retry_limit": 3, "jitter": False}, policy.to_dict()):
        assert AEPFlowRunEventTrigger("flow-1", retry_args=spelling).serialize() == (classpath, kwargs)
    assert BaseEventTrigger.hash(*import_string(classpath)(**kwargs).serialize()) == BaseEventTrigger.hash(
        classpath, kwargs
    )
    assert AEPFlowRunEventTrigger("flow-1").serialize()[1]["retry_args"] == RetryPolicy().to_dict()
    with pytest.raises(ValueError):
        AEPFlowRunEventTrigger("flow-1", retry_args={"retry_limit": -1})


# ---------------------------------------------------------------- status branches
async def test_success_yields_one_success_event_with_the_summary(fake, slept):
    fake.on("GET", f"{RUNS}/run-1", ok(make_run("scheduled")), ok(make_run("inProgress")), ok(make_run("success")))
    events = await events_of(trigger())
    assert len(events) == 1
    event = events[0]
    assert (event["status"], event["flow_id"], event["run_id"]) == ("success", "flow-1", "run-1")
    summary = event["summary"]
    assert summary["status"] == "success"
    assert summary["records"] == {"input": 1200, "output": 1150, "failed": 50}
    assert summary["run_url"].endswith(f"@{ORG_ID}/sname:dev/platform/source/dataflows/flow-1/activity/run-1")
    assert slept == [59.5, 59.5]  # planned poll_lead early, so a run's end is seen within 60 s
    assert json.loads(json.dumps(event)) == event


async def test_failed_yields_a_failed_event_carrying_the_errors(fake):
    fake.on("GET", f"{RUNS}/run-1", ok(make_run("failed", activities=FAILED_ACTIVITIES)))
    (event,) = await events_of(trigger())
    assert event["status"] == "failed"
    assert [e["code"] for e in event["summary"]["errors"]] == ["CONNECTOR-1001-500", "INGEST-1212-400"]


async def test_partial_success_is_a_finished_run_judged_by_the_task(fake):
    fake.on("GET", f"{RUNS}/run-1", ok(make_run("partialSuccess")))
    (event,) = await events_of(trigger())
    assert (event["status"], event["summary"]["status"]) == ("success", "partialSuccess")


async def test_an_unknown_status_keeps_waiting_and_warns_once(fake, caplog, capsys):
    fake.on(
        "GET",
        f"{RUNS}/run-1",
        ok(make_run("cancelling")),
        ok(make_run("cancelling")),
        ok(make_run("cancelling")),
        ok(make_run("success")),
    )
    with caplog.at_level(logging.WARNING):
        (event,) = await events_of(trigger())
    assert event["status"] == "success"
    assert task_log_text(caplog, capsys).count("status 'cancelling'") == 1


async def test_each_poll_logs_a_progress_line(fake, caplog, capsys):
    fake.on("GET", f"{RUNS}/run-1", ok(make_run("inProgress")), ok(make_run("success")))
    with caplog.at_level(logging.INFO):
        await events_of(trigger())
    text = task_log_text(caplog, capsys)
    assert text.count("AEP flow run run-1 of flow flow-1: inProgress, elapsed") == 1
    assert text.count("AEP flow run run-1 of flow flow-1: success, elapsed 1m30s; records input 1,200") == 1


# ---------------------------------------------------------------- newest run after a time
async def test_without_a_run_id_it_waits_for_a_run_then_follows_it(fake):
    created_after = 1_717_243_200_000
    listings = iter(
        [
            {"items": []},
            {"items": [make_run("inProgress", run_id="run-a", created_at=created_after + 10)]},
        ]
    )
    fake.on("GET", RUNS, lambda request: httpx.Response(200, json=next(listings)))
    fake.on("GET", f"{RUNS}/run-a", ok(make_run("inProgress", run_id="run-a")), ok(make_run("success", run_id="run-a")))
    (event,) = await events_of(trigger(run_id=None, created_after_ms=created_after))
    assert (event["status"], event["run_id"], event["summary"]["run_id"]) == ("success", "run-a", "run-a")
    listed = [r for r in fake.platform_calls() if r.url.path == RUNS]
    assert len(listed) == 2  # once the run is known it is read by id
    assert ("property", f"createdAt>={created_after}") in listed[0].url.params.multi_items()


async def test_the_newest_matching_run_is_watched(fake):
    fake.on(
        "GET",
        RUNS,
        httpx.Response(
            200,
            json={
                "items": [
                    make_run("success", run_id="older", created_at=10),
                    make_run("failed", run_id="newer", created_at=20),
                ]
            },
        ),
    )
    (event,) = await events_of(trigger(run_id=None, created_after_ms=5))
    assert (event["status"], event["run_id"]) == ("failed", "newer")


def test_the_event_logs_as_one_short_line_with_its_outcome_and_ids():
    summary = {"run_id": "run-1", "errors": [{"code": "X", "message": "m" * 500}], "records": {"input": 1}}
    event = AEPFlowRunEvent(
        {
            "status": "success",
            "message": "run finished success",
            "flow_id": "flow-1",
            "run_id": "run-1",
            "summary": summary,
        }
    )
    text = repr(event)
    assert text == (
        "TriggerEvent<{'status': 'success', 'flow_id': 'flow-1', 'run_id': 'run-1', 'message': 'run finished success'}>"
    )
    assert event.payload["summary"] == summary  # the task still gets everything


# ---------------------------------------------------------------- deadline
async def test_a_past_deadline_times_out_before_any_status_read(fake):
    (event,) = await events_of(trigger(end_time=NOW_S - 1))
    assert event["status"] == "timeout"
    assert event["summary"] is None
    assert "AEP flow run run-1 of flow flow-1" in event["message"] and "status not read yet" in event["message"]
    assert fake.platform_calls() == []


async def test_the_deadline_is_honoured_within_one_poll_interval(fake, slept):
    fake.on("GET", f"{RUNS}/run-1", ok(make_run("inProgress")))
    (event,) = await events_of(trigger(end_time=NOW_S + 150, poll_interval=60))
    assert event["status"] == "timeout"
    assert slept == [59.5, 59.5, 31]  # the last wait stops at the deadline
    assert "run-1" in event["message"] and "'inProgress'" in event["message"]
    assert event["summary"]["run_url"] in event["message"]
    assert len(fake.platform_calls()) == 3


async def test_polls_keep_their_times_however_long_a_read_takes(fake, slept, clock):
    starts: list[float] = []

    def slow(run: dict):
        def answer(request: httpx.Request) -> httpx.Response:
            starts.append(time.time())
            clock.shift(2)  # AEP took 2 s to answer
            return ok(run)

        return answer

    fake.on("GET", f"{RUNS}/run-1", *(slow(make_run("inProgress")) for _ in range(3)), ok(make_run("success")))
    (event,) = await events_of(trigger())
    assert event["status"] == "success"
    assert [round(b - a, 6) for a, b in itertools.pairwise(starts)] == [59.5, 59.5]


@pytest.mark.parametrize(
    ("due", "now", "expected"),
    [
        (100.0, 100.1, 109.5),  # one period after the last due time, not after its (slow) read
        (100.0, 100.0 + 30, 130.0),  # the loop was late: at once, not a burst of catch-up polls
        (100.1, 100.1, 110.0),  # on the next slot, with every other poll due in it
    ],
)
def test_polls_fall_due_on_shared_slots_one_period_apart(due, now, expected):
    assert next_poll(due, 9.5, now) == pytest.approx(expected)


@pytest.mark.parametrize(("interval", "lead"), [(1, 0.1), (5, 0.5), (10, 0.75), (60, 0.75), (600, 0.75)])
def test_polls_are_planned_a_little_less_than_an_interval_apart(interval, lead):
    assert poll_lead(interval) == pytest.approx(lead)


async def test_waiting_for_a_run_that_never_appears_times_out(fake):
    fake.on("GET", RUNS, httpx.Response(200, json={"items": []}))
    (event,) = await events_of(trigger(run_id=None, created_after_ms=1, end_time=NOW_S + 100))
    assert (event["status"], event["run_id"]) == ("timeout", None)
    assert "no matching run appeared" in event["message"]
    assert "/dataflows/flow-1/activity" in event["message"]


# ---------------------------------------------------------------- tokens and transient errors
async def test_a_token_that_expires_mid_wait_is_renewed(fake, aep_conn):
    issued: list[str] = []

    def ims(request: httpx.Request) -> httpx.Response:
        issued.append(f"short-token-{len(issued) + 1}")
        # Valid for 200 s: refreshed at half its lifetime (shorter than the 300 s lead), after 100 s.
        return httpx.Response(200, json={"access_token": issued[-1], "token_type": "bearer", "expires_in": 200})

    original = fake.handle

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/ims/token/v3":
            fake.requests.append(request)
            return ims(request)
        return original(request)

    fake.handle = handle
    fake.on(
        "GET",
        f"{RUNS}/run-1",
        ok(make_run("inProgress")),
        ok(make_run("inProgress")),
        ok(make_run("inProgress")),
        ok(make_run("success")),
    )
    (event,) = await events_of(trigger())
    assert event["status"] == "success"
    auths = [r.headers["Authorization"] for r in fake.platform_calls()]
    assert auths[0] == "Bearer short-token-1" and auths[-1] == "Bearer short-token-2"
    assert len(issued) == 2


async def test_a_token_revoked_mid_wait_is_refreshed_on_401(fake):
    fake.on(
        "GET",
        f"{RUNS}/run-1",
        ok(make_run("inProgress")),
        httpx.Response(401, json={"error_code": "401013", "message": "Oauth token is not valid"}),
        ok(make_run("success")),
    )
    (event,) = await events_of(trigger())
    assert event["status"] == "success"
    assert fake.tokens_issued == 2


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
async def test_transient_errors_while_polling_are_retried(fake, slept, status):
    fake.on(
        "GET",
        f"{RUNS}/run-1",
        ok(make_run("inProgress")),
        httpx.Response(status, headers={"Retry-After": "5"} if status == 429 else {}, json={"message": "busy"}),
        ok(make_run("success")),
    )
    (event,) = await events_of(trigger())
    assert event["status"] == "success"
    assert slept[:2] == [59.5, 5.0 if status == 429 else 0.5]


async def test_retryable_errors_beyond_the_retry_limit_keep_polling_until_the_deadline(fake, caplog, capsys):
    outage = [httpx.Response(503, json={"message": "down"})] * 6
    fake.on("GET", f"{RUNS}/run-1", *outage, ok(make_run("success")))
    with caplog.at_level(logging.WARNING):
        (event,) = await events_of(trigger(retry_args={"retry_limit": 1, "retry_delay": 1, "jitter": False}))
    assert event["status"] == "success"
    assert "polling on" in task_log_text(caplog, capsys)


async def test_network_errors_while_polling_do_not_end_the_wait(fake):
    fake.on("GET", f"{RUNS}/run-1", httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), ok(make_run("success")))
    (event,) = await events_of(trigger())
    assert event["status"] == "success"


# ---------------------------------------------------------------- errors
async def test_a_permanent_api_error_is_one_error_event_with_ids(fake):
    fake.on(
        "GET",
        f"{RUNS}/run-1",
        httpx.Response(
            403,
            json={
                "type": "https://ns.adobe.com/aep/errors/FLOW-2120-403",
                "title": "Forbidden",
                "detail": "no permission",
            },
        ),
    )
    events = await events_of(trigger())
    assert len(events) == 1
    event = events[0]
    assert (event["status"], event["flow_id"], event["run_id"]) == ("error", "flow-1", "run-1")
    assert "FLOW-2120-403" in event["message"] and "no permission" in event["message"]
    assert CLIENT_SECRET not in event["message"] and TOKEN not in event["message"]


async def test_a_bad_connection_is_an_error_event(monkeypatch, fake):
    monkeypatch.setenv("AIRFLOW_CONN_AEP_DEFAULT", '{"conn_type": "aep", "login": "x", "password": "y"}')
    (event,) = await events_of(trigger())
    assert event["status"] == "error" and "org_id" in event["message"]


async def test_an_error_after_the_event_never_produces_a_second_event(fake, monkeypatch):
    fake.on("GET", f"{RUNS}/run-1", ok(make_run("success")))

    async def broken_close(self):
        raise RuntimeError("close failed")

    monkeypatch.setattr(AEPAsyncHook, "aclose", broken_close)
    events = await events_of(trigger())
    assert [e["status"] for e in events] == ["success"]
