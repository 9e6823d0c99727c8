"""AEPRunFlowOperator: POST /runs from a templated window, XCom before waiting, and the sensor's wait."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pendulum
import pytest
import time_machine

from airflow_provider_aep.exceptions import AEPFlowRunFailedError, AEPValidationError
from airflow_provider_aep.hooks.aep_async import AEPAsyncHook
from airflow_provider_aep.links.aep import AEPDataflowLink, AEPFlowRunLink
from airflow_provider_aep.operators.base import DEFER_TIMEOUT_BUFFER
from airflow_provider_aep.operators.flow_run import AEPRunFlowOperator
from airflow_provider_aep.triggers.flow_run import AEPFlowRunTrigger
from airflow_provider_aep.version_compat import AirflowSensorTimeout, TaskDeferred
from tests.conftest import ORG_ID, PLATFORM, RecordingTI
from tests.fake_aep import FakeAEP
from tests.utils.test_flow_runs import FAILED_ACTIVITIES, make_run

FS = f"{PLATFORM}/data/foundation/flowservice"
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
NOW_S = int(NOW.timestamp())
WINDOW_START = datetime(2024, 6, 1, 11, 0, tzinfo=UTC)
WINDOW_END = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
RUN_URL = f"https://experience.adobe.com/#/@{ORG_ID}/sname:dev/platform/source/dataflows/flow-1/activity/run-1"
FLOW_URL = f"https://experience.adobe.com/#/@{ORG_ID}/sname:dev/platform/source/dataflows/flow-1/activity"


@pytest.fixture
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def waits(monkeypatch, clock) -> list[float]:
    slept: list[float] = []

    def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.shift(seconds)

    monkeypatch.setattr("airflow_provider_aep.operators.flow_run.time.sleep", fake_sleep)
    return slept


@pytest.fixture
def flow(requests_mock):
    """The flow the operator reads for its Copy transformation's deltaColumn; this one has none."""
    return requests_mock.get(f"{FS}/flows/flow-1", json={"items": [{"id": "flow-1", "transformations": []}]})


@pytest.fixture
def ti_context(aep_conn, ims, no_sleep, waits, flow):
    return {"ti": RecordingTI()}


def operator(**kwargs) -> AEPRunFlowOperator:
    defaults = {
        "task_id": "run_flow",
        "flow_id": "flow-1",
        "window_start": WINDOW_START,
        "window_end": WINDOW_END,
        "poll_interval": 60,
        "timeout": 3600,
        "aep_retry_limit": 1,
    }
    defaults.update(kwargs)
    return AEPRunFlowOperator(**defaults)


def create_answer(requests_mock, body=None, status=201):
    return requests_mock.post(
        f"{FS}/runs", status_code=status, json=body or {"items": [{"id": "run-1", "etag": '"e"'}]}
    )


def serve(requests_mock, *runs: dict):
    return requests_mock.get(f"{FS}/runs/run-1", [{"json": {"items": [run]}} for run in runs])


# ---------------------------------------------------------------- the POST
def test_init_makes_no_call(requests_mock):
    op = operator(window_start="{{ data_interval_start }}", window_end="{{ data_interval_end }}")
    assert requests_mock.request_history == []
    assert {"flow_id", "window_start", "window_end", "delta_column", "aep_conn_id"} <= set(op.template_fields)
    assert [type(link) for link in op.operator_extra_links] == [AEPDataflowLink, AEPFlowRunLink]


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (WINDOW_START, WINDOW_END),
        (pendulum.instance(WINDOW_START), pendulum.instance(WINDOW_END)),
        ("2024-06-01 11:00:00+00:00", "2024-06-01 12:00:00+00:00"),  # rendered {{ data_interval_start }}
        (int(WINDOW_START.timestamp()), int(WINDOW_END.timestamp())),
        (int(WINDOW_START.timestamp()) * 1000, str(int(WINDOW_END.timestamp()) * 1000)),
    ],
)
def test_posts_the_window_in_epoch_seconds(ti_context, requests_mock, start, end):
    post = create_answer(requests_mock)
    result = operator(window_start=start, window_end=end, wait_for_completion=False).execute(ti_context)
    assert result == "run-1"
    assert post.last_request.json() == {
        "flowId": "flow-1",
        "params": {"startTime": NOW_S, "windowStartTime": int(WINDOW_START.timestamp()), "windowEndTime": NOW_S},
    }


def test_delta_column_is_sent_by_name(ti_context, requests_mock, flow):
    post = create_answer(requests_mock)
    operator(delta_column="updatedAt", wait_for_completion=False).execute(ti_context)
    assert post.last_request.json()["params"]["deltaColumn"] == {"name": "updatedAt"}
    assert not flow.called  # given, so the flow is not read


def test_without_delta_column_the_flows_copy_transformation_gives_it(ti_context, requests_mock, flow):
    """AEP needs deltaColumn on a flow's first on-demand run: the Copy transformation's is sent."""
    delta = {"name": "OrderDate", "dateFormat": "yyyy-MM-ddTHH:mm:ssZ", "timezone": "UTC"}
    transformations = [
        {"name": "Copy", "params": {"deltaColumn": delta}},
        {"name": "Mapping", "params": {"mappingId": "ms1", "mappingVersion": "0"}},
    ]
    requests_mock.get(f"{FS}/flows/flow-1", json={"items": [{"id": "flow-1", "transformations": transformations}]})
    post = create_answer(requests_mock)
    operator(wait_for_completion=False).execute(ti_context)
    assert post.last_request.json()["params"]["deltaColumn"] == delta


@pytest.mark.parametrize(
    "answer",
    [
        {"items": [{"id": "run-1", "etag": '"e"'}]},  # the on-demand doc
        {"id": "run-1", "etag": '"e"'},  # the OpenAPI spec
        make_run("scheduled"),  # the older doc: the full run
    ],
)
def test_every_documented_answer_shape_of_post_runs(ti_context, requests_mock, answer):
    create_answer(requests_mock, answer)
    assert operator(wait_for_completion=False).execute(ti_context) == "run-1"
    assert ti_context["ti"].xcom == {"dataflow_url": FLOW_URL, "run_id": "run-1", "run_url": RUN_URL}


@pytest.mark.parametrize(
    ("start", "end", "match"),
    [
        (WINDOW_END, WINDOW_START, "must be before"),
        (WINDOW_START, WINDOW_START, "must be before"),
        ("not a time", WINDOW_END, "window_start"),
        (WINDOW_START, None, "window_end is required"),
    ],
)
def test_a_bad_window_fails_before_any_call(ti_context, requests_mock, start, end, match):
    with pytest.raises(AEPValidationError, match=match):
        operator(window_start=start, window_end=end).execute(ti_context)
    assert requests_mock.request_history == []


# ---------------------------------------------------------------- waiting in the worker
def test_waits_and_returns_the_summary_after_pushing_xcom_first(ti_context, requests_mock, waits):
    create_answer(requests_mock)
    serve(requests_mock, make_run("scheduled"), make_run("inProgress"), make_run("success"))
    result = operator().execute(ti_context)
    assert result["run_id"] == "run-1" and result["status"] == "success" and result["run_url"] == RUN_URL
    assert json.loads(json.dumps(result)) == result
    assert ti_context["ti"].pushed_order == ["dataflow_url", "run_id", "run_url"]
    assert waits == [60, 60]


def test_a_failed_run_fails_with_its_errors(ti_context, requests_mock):
    create_answer(requests_mock)
    serve(requests_mock, make_run("inProgress"), make_run("failed", activities=FAILED_ACTIVITIES))
    with pytest.raises(AEPFlowRunFailedError, match=r"CONNECTOR-1001-500.*INGEST-1212-400") as err:
        operator().execute(ti_context)
    assert RUN_URL in str(err.value)
    assert ti_context["ti"].xcom["run_id"] == "run-1"  # pushed before waiting, so it is there on failure


def test_partial_success_follows_the_flag(ti_context, requests_mock):
    create_answer(requests_mock)
    serve(requests_mock, make_run("partialSuccess"))
    assert operator().execute(ti_context)["status"] == "partialSuccess"
    with pytest.raises(AEPFlowRunFailedError, match="partialSuccess"):
        operator(fail_on_partial_success=True).execute({"ti": RecordingTI()})


def test_waiting_times_out_within_one_poll_interval(ti_context, requests_mock, waits):
    create_answer(requests_mock)
    serve(requests_mock, make_run("inProgress"))
    with pytest.raises(AirflowSensorTimeout, match=r"run-1.*'inProgress'"):
        operator(timeout=150).execute(ti_context)
    assert waits == [60, 60, 30]


def test_transient_errors_while_waiting_do_not_fail_the_task(ti_context, requests_mock):
    create_answer(requests_mock)
    requests_mock.get(
        f"{FS}/runs/run-1",
        [
            {"status_code": 502, "json": {"message": "bad gateway"}},
            {"status_code": 502, "json": {"message": "bad gateway"}},
            {"status_code": 429, "json": {"message": "slow down"}},
            {"json": {"items": [make_run("success")]}},
        ],
    )
    assert operator().execute(ti_context)["status"] == "success"


# ---------------------------------------------------------------- deferrable
def test_deferrable_defers_with_the_same_trigger_after_pushing_xcom(ti_context, requests_mock):
    create_answer(requests_mock)
    serve(requests_mock, make_run("scheduled"))
    with pytest.raises(TaskDeferred) as deferred:
        operator(deferrable=True, timeout=600, poll_interval=30).execute(ti_context)
    trigger = deferred.value.trigger
    assert isinstance(trigger, AEPFlowRunTrigger)
    _, kwargs = trigger.serialize()
    assert (kwargs["flow_id"], kwargs["run_id"], kwargs["end_time"], kwargs["poll_interval"]) == (
        "flow-1",
        "run-1",
        NOW_S + 600,
        30,
    )
    assert deferred.value.timeout == timedelta(seconds=600 + 30 + DEFER_TIMEOUT_BUFFER)
    assert ti_context["ti"].xcom == {"dataflow_url": FLOW_URL, "run_id": "run-1", "run_url": RUN_URL}


def test_deferrable_with_an_already_finished_run_does_not_defer(ti_context, requests_mock):
    create_answer(requests_mock)
    serve(requests_mock, make_run("success"))
    assert operator(deferrable=True).execute(ti_context)["status"] == "success"


@pytest.mark.parametrize("final", ["success", "failed", "partialSuccess"])
async def test_execute_complete_matches_waiting_in_the_worker(ti_context, requests_mock, monkeypatch, clock, final):
    def outcome(fn):
        try:
            return ("returned", fn())
        except Exception as exc:
            return (type(exc).__name__, str(exc))

    create_answer(requests_mock)
    serve(
        requests_mock,
        make_run("inProgress"),
        make_run(final, activities=FAILED_ACTIVITIES if final != "success" else None),
    )
    in_worker = outcome(lambda: operator().execute(ti_context))

    serve(requests_mock, make_run("inProgress"))
    op = operator(deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({"ti": RecordingTI()})

    async def fake_sleep(seconds: float) -> None:
        clock.shift(seconds)

    fake = FakeAEP()
    fake.on(
        "GET",
        "/data/foundation/flowservice/runs/run-1",
        httpx.Response(200, json={"items": [make_run("inProgress")]}),
        httpx.Response(
            200, json={"items": [make_run(final, activities=FAILED_ACTIVITIES if final != "success" else None)]}
        ),
    )
    monkeypatch.setattr(AEPAsyncHook, "sleep", staticmethod(fake_sleep))
    monkeypatch.setattr(AEPFlowRunTrigger, "_make_hook", lambda self: AEPAsyncHook(transport=fake.transport))
    (event,) = [e.payload async for e in deferred.value.trigger.run()]
    resumed = outcome(lambda: op.execute_complete({"ti": RecordingTI()}, json.loads(json.dumps(event))))
    assert resumed == in_worker
