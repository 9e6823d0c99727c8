"""AEPRunFlowOperator: POST /runs from a templated window, XCom before waiting, and the sensor's wait."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pendulum
import pytest
import time_machine

from airflow_provider_aep.exceptions import (
    AEPFlowRunFailedError,
    AEPQualityGateError,
    AEPResourceNotFoundError,
    AEPRetriggerRefusedError,
    AEPValidationError,
)
from airflow_provider_aep.hooks.aep_async import AEPAsyncHook
from airflow_provider_aep.links.aep import AEPDataflowLink, AEPFlowRunLink
from airflow_provider_aep.operators.base import DEFER_TIMEOUT_BUFFER
from airflow_provider_aep.operators.flow_run import AEPRetriggerFlowRunOperator, AEPRunFlowOperator
from airflow_provider_aep.triggers.flow_run import AEPFlowRunTrigger
from airflow_provider_aep.version_compat import AirflowFailException, AirflowSensorTimeout, TaskDeferred
from tests.conftest import ORG_ID, PLATFORM, RecordingTI, task_log_text
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
    assert flow.call_count == 1  # read only to know it exists


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


@pytest.mark.parametrize("deferrable", [False, True], ids=["poke", "deferred"])
def test_a_flow_that_does_not_exist_fails_on_the_first_call_naming_it(
    aep_conn, ims, no_sleep, waits, requests_mock, deferrable
):
    requests_mock.get(f"{FS}/flows/no-such-flow", status_code=404, json={"title": "Resource not found"})
    with pytest.raises(AEPResourceNotFoundError) as err:
        operator(flow_id="no-such-flow", deferrable=deferrable).execute(retried_context())
    assert str(err.value) == "AEP flow no-such-flow does not exist in sandbox 'dev': no run can be started"
    calls = [(r.method, r.path) for r in requests_mock.request_history if "/ims/" not in r.url]
    assert calls == [("GET", "/data/foundation/flowservice/flows/no-such-flow")]


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


# ---------------------------------------------------------------- the quality gate and diagnostics
PROMOTED = [
    {
        "name": "Promotion Activity",
        "statusSummary": {"status": "success"},
        "targetInfo": [{"id": "t1", "type": "TargetConnection", "reference": {"type": "Batch", "ids": ["B1"]}}],
    }
]
CAT = f"{PLATFORM}/data/foundation/catalog"
EXPORT = f"{PLATFORM}/data/foundation/export"


def serve_diagnostics(requests_mock):
    requests_mock.get(
        f"{CAT}/batches/B1",
        json={"B1": {"status": "success", "recordCount": 1200, "failedRecordCount": 50, "errors": []}},
    )
    requests_mock.get(
        f"{EXPORT}/batches/B1/meta",
        [
            {"json": {"data": [{"name": "parsing_errors_0.json"}, {"name": "conversion_errors_0.json"}]}},
            {"json": {"_errors": [{"code": "1401", "message": "Row is corrupted."}]}},
            {"json": {"_errors": [{"code": "1555", "message": "A required field is missing."}]}},
        ],
    )


def outcome(fn):
    try:
        return ("returned", fn())
    except Exception as exc:
        return (type(exc).__name__, str(exc))


async def run_trigger_against(fake: FakeAEP, trigger, monkeypatch, clock) -> dict:
    async def fake_sleep(seconds: float) -> None:
        clock.shift(seconds)

    monkeypatch.setattr(AEPAsyncHook, "sleep", staticmethod(fake_sleep))
    monkeypatch.setattr(AEPFlowRunTrigger, "_make_hook", lambda self: AEPAsyncHook(transport=fake.transport))
    (event,) = [e.payload async for e in trigger.run()]
    return json.loads(json.dumps(event))


async def test_a_gate_failure_reads_as_one_line_with_diagnostics_in_both_modes(
    ti_context, requests_mock, monkeypatch, clock
):
    create_answer(requests_mock)
    serve(requests_mock, make_run("success", activities=PROMOTED))
    serve_diagnostics(requests_mock)
    gate = {"max_failed_records": 10, "diagnostics_rows": 1}
    in_worker = outcome(lambda: operator(**gate).execute(ti_context))
    assert in_worker[0] == "AEPQualityGateError"  # final: Airflow's retry would judge the same run again
    assert issubclass(AEPQualityGateError, (AEPFlowRunFailedError, AirflowFailException))
    first, *rest = in_worker[1].splitlines()
    assert first == (
        "AEP flow run run-1 of flow flow-1 finished success but failed the quality gate: 50 of 1,200 records failed "
        f"(4.17%), more than max_failed_records=10. See {RUN_URL} (dataflow: {FLOW_URL})"
    )
    assert "Batch B1: success; records input 1,200, output ?, failed 50" in rest
    assert rest[-2:] == ["Row errors (1 shown):", "  batch B1: [1401] Row is corrupted."]
    pushed = ti_context["ti"].xcom["run_summary"]
    assert pushed["batch_ids"] == ["B1"] and pushed["diagnostics"]["row_errors"][0]["code"] == "1401"

    serve(requests_mock, make_run("inProgress"))
    serve_diagnostics(requests_mock)
    op = operator(deferrable=True, **gate)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({"ti": RecordingTI()})
    fake = FakeAEP()
    fake.on(
        "GET",
        "/data/foundation/flowservice/runs/run-1",
        httpx.Response(200, json={"items": [make_run("success", activities=PROMOTED)]}),
    )
    event = await run_trigger_against(fake, deferred.value.trigger, monkeypatch, clock)
    resumed_ti = RecordingTI()
    assert outcome(lambda: op.execute_complete({"ti": resumed_ti}, event)) == in_worker
    assert resumed_ti.xcom["run_summary"] == pushed


def test_a_run_within_the_gate_succeeds_and_reads_no_diagnostics(ti_context, requests_mock):
    create_answer(requests_mock)
    serve(requests_mock, make_run("success", activities=PROMOTED))
    result = operator(max_failed_records=50, max_failed_ratio=0.05).execute(ti_context)
    assert result["status"] == "success" and "diagnostics" not in result
    assert not [r for r in requests_mock.request_history if "/batches/" in r.path]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_failed_ratio": 2}, "max_failed_ratio=2"),
        ({"max_failed_records": -5}, "max_failed_records=-5"),
        ({"diagnostics_rows": -1}, "diagnostics_rows=-1"),
        ({"retrigger_failed": -1}, "retrigger_failed=-1"),
        ({"retrigger_failed": 1.5}, "retrigger_failed=1.5"),
    ],
)
def test_bad_run_outcome_arguments_fail_when_the_dag_is_defined(kwargs, match):
    with pytest.raises(AEPValidationError, match=match):
        operator(**kwargs)


# ---------------------------------------------------------------- re-trigger
def serve_run(requests_mock, run_id: str, *runs: dict):
    return requests_mock.get(f"{FS}/runs/{run_id}", [{"json": {"items": [run]}} for run in runs])


def failed_run(run_id: str = "run-1") -> dict:
    run = windowed("failed", run_id=run_id)
    run["metrics"]["statusSummary"]["errors"] = [{"code": "CONNECTOR-1001-500", "message": "copy failed"}]
    return run


def test_a_failed_run_is_re_triggered_and_the_new_run_followed(ti_context, requests_mock, caplog, capsys):
    create_answer(requests_mock)
    serve_run(requests_mock, "run-1", make_run("inProgress"), failed_run())
    requests_mock.get(f"{FS}/runs", json={"items": [failed_run()]})  # no re-run of it yet
    action = requests_mock.post(f"{FS}/runs/run-1/action", json=make_run("scheduled", run_id="run-2"))
    serve_run(requests_mock, "run-2", make_run("inProgress", run_id="run-2"), make_run("success", run_id="run-2"))
    with caplog.at_level("INFO"):
        result = operator(retrigger_failed=2).execute(ti_context)
    assert (result["run_id"], result["status"]) == ("run-2", "success")
    assert action.call_count == 1 and action.last_request.qs == {"op": ["re_trigger"]}
    assert ti_context["ti"].xcom["run_id"] == "run-2" and ti_context["ti"].xcom["run_url"].endswith("/run-2")
    assert "Re-triggered failed AEP flow run run-1 (1 of 2): following run run-2" in task_log_text(caplog, capsys)
    assert len([r for r in requests_mock.request_history if r.method == "POST" and r.path.endswith("/runs")]) == 1


def test_re_triggers_stop_at_the_limit_and_fail_with_the_last_runs_errors(ti_context, requests_mock):
    create_answer(requests_mock)
    serve_run(requests_mock, "run-1", failed_run())
    serve_run(requests_mock, "run-2", failed_run("run-2"))
    # What AEP lists for the window: run-1 failed (counted, then no re-run of it yet), then both failed.
    both = {"items": [failed_run("run-2"), failed_run()]}
    requests_mock.get(f"{FS}/runs", [{"json": {"items": [failed_run()]}}] * 2 + [{"json": both}])
    action = requests_mock.post(f"{FS}/runs/run-1/action", json={"id": "run-2"})
    with pytest.raises(
        AEPFlowRunFailedError, match=r"^AEP flow run run-2 of flow flow-1 failed: \[CONNECTOR-1001-500\]"
    ):
        operator(retrigger_failed=1).execute(ti_context)
    assert action.call_count == 1


def test_a_failed_run_without_a_window_is_not_re_triggered(ti_context, requests_mock, caplog, capsys):
    create_answer(requests_mock)
    serve_run(requests_mock, "run-1", make_run("failed"))
    action = requests_mock.post(f"{FS}/runs/run-1/action", json={"id": "run-2"})
    with caplog.at_level("WARNING"), pytest.raises(AEPFlowRunFailedError):
        operator(retrigger_failed=1).execute(ti_context)
    assert action.call_count == 0
    assert "AEP reports no window for run run-1, so it is not re-triggered" in task_log_text(caplog, capsys)


def test_a_refused_re_trigger_is_one_line_and_the_failure_stands(ti_context, requests_mock, caplog, capsys):
    create_answer(requests_mock)
    serve_run(requests_mock, "run-1", failed_run())
    requests_mock.get(f"{FS}/runs", json={"items": [failed_run()]})
    requests_mock.post(
        f"{FS}/runs/run-1/action",
        status_code=400,
        json={
            "type": "https://ns.adobe.com/aep/errors/FLOW-1100-400",
            "title": "Invalid request",
            "status": 400,
            "errorMessage": "The request could not be processed.\nNot a batch source.",
        },
    )
    with caplog.at_level("WARNING"), pytest.raises(AEPFlowRunFailedError, match="CONNECTOR-1001-500"):
        operator(retrigger_failed=3).execute(ti_context)
    refusals = [line for line in task_log_text(caplog, capsys).splitlines() if "refused" in line]
    assert len(refusals) == 1
    assert (
        "AEP refused to re-trigger flow run run-1 of flow flow-1 (HTTP 400): [FLOW-1100-400] The request could not "
        "be processed. Not a batch source." in refusals[0]
    )


async def test_deferred_re_trigger_defers_again_for_the_new_run(ti_context, requests_mock, monkeypatch, clock):
    create_answer(requests_mock)
    serve_run(requests_mock, "run-1", make_run("scheduled"))
    with pytest.raises(TaskDeferred) as first:
        operator(deferrable=True, retrigger_failed=1).execute(ti_context)

    fake = FakeAEP()
    fake.on("GET", "/data/foundation/flowservice/runs/run-1", httpx.Response(200, json={"items": [failed_run()]}))
    failed_event = await run_trigger_against(fake, first.value.trigger, monkeypatch, clock)

    listed = requests_mock.get(f"{FS}/runs", json={"items": [failed_run()]})
    action = requests_mock.post(f"{FS}/runs/run-1/action", json={"id": "run-2"})
    serve_run(requests_mock, "run-2", make_run("inProgress", run_id="run-2"))
    resumed = operator(deferrable=True, retrigger_failed=1)  # a new instance, as Airflow resumes with
    with pytest.raises(TaskDeferred) as second:
        resumed.execute_complete(ti_context, failed_event)
    assert second.value.trigger.run_id == "run-2" and action.call_count == 1

    fake.on(
        "GET",
        "/data/foundation/flowservice/runs/run-2",
        httpx.Response(200, json={"items": [failed_run("run-2")]}),
    )
    again_failed = await run_trigger_against(fake, second.value.trigger, monkeypatch, clock)
    listed.reset()
    requests_mock.get(f"{FS}/runs", json={"items": [failed_run("run-2"), failed_run()]})
    with pytest.raises(AEPFlowRunFailedError, match="run-2"):  # two failed runs of the window: no third
        operator(deferrable=True, retrigger_failed=1).execute_complete(ti_context, again_failed)
    assert action.call_count == 1


# ---------------------------------------------------------------- reattach
class DagRun:
    """The context's DAG run: due at ``due`` (``run_after``; the logical date on Airflow 2), started at
    ``start_date``, which clearing a task of a finished DAG run resets to the clearing time."""

    def __init__(self, due: datetime, start_date: datetime | None = None) -> None:
        self.run_after = self.logical_date = due
        self.start_date = start_date or due


def windowed(status: str, run_id: str = "run-0", window=(WINDOW_START, WINDOW_END)) -> dict:
    run = make_run(status, run_id=run_id, created_at=(NOW_S - 600) * 1000)  # by the try before, 10 min ago
    run["params"] = {
        "startTime": NOW_S - 60,
        "windowStartTime": int(window[0].timestamp()),
        "windowEndTime": int(window[1].timestamp()),
    }
    return run


def retried_context() -> dict:
    return {"ti": RecordingTI(), "dag_run": DagRun(NOW - timedelta(minutes=30))}


def test_a_retried_task_follows_the_run_its_earlier_try_started(
    aep_conn, ims, no_sleep, waits, flow, requests_mock, caplog, capsys
):
    listed = requests_mock.get(f"{FS}/runs", json={"items": [windowed("inProgress")]})
    post = create_answer(requests_mock)
    serve_run(requests_mock, "run-0", windowed("inProgress"), windowed("success"))
    context = retried_context()
    with caplog.at_level("INFO"):
        result = operator().execute(context)
    assert result["run_id"] == "run-0" and post.call_count == 0
    assert context["ti"].xcom["run_id"] == "run-0"
    assert "Reattached to AEP flow run run-0 of flow flow-1" in task_log_text(caplog, capsys)
    since_ms = int((NOW - timedelta(minutes=30)).timestamp() * 1000) - 60_000
    assert listed.last_request.qs["property"] == ["flowid==flow-1", f"createdat>={since_ms}"]


def test_a_cleared_task_of_a_finished_dag_run_follows_its_run_instead_of_starting_a_second(
    aep_conn, ims, no_sleep, waits, flow, requests_mock, caplog, capsys
):
    """Clearing restarts the finished DAG run now, after its run was created: the look-up still finds the run."""
    listed = requests_mock.get(f"{FS}/runs", json={"items": [windowed("success")]})
    post = create_answer(requests_mock)
    serve_run(requests_mock, "run-0", windowed("success"))
    due = NOW - timedelta(hours=2)
    context = {"ti": RecordingTI(), "dag_run": DagRun(due, start_date=NOW - timedelta(minutes=1))}
    with caplog.at_level("INFO"):
        result = operator().execute(context)
    assert (result["run_id"], result["status"]) == ("run-0", "success")
    assert post.call_count == 0
    assert "Reattached to AEP flow run run-0 of flow flow-1" in task_log_text(caplog, capsys)
    since_ms = int(due.timestamp() * 1000) - 60_000
    assert listed.last_request.qs["property"] == ["flowid==flow-1", f"createdat>={since_ms}"]


@pytest.mark.parametrize(
    "earlier",
    [
        windowed("failed"),  # a failed run is not reattached: the retry starts a new one
        windowed("inProgress", window=(WINDOW_START - timedelta(hours=1), WINDOW_START)),  # another window
    ],
    ids=["failed", "other-window"],
)
def test_a_retry_starts_a_new_run_when_no_earlier_one_fits(
    aep_conn, ims, no_sleep, waits, flow, requests_mock, earlier
):
    requests_mock.get(f"{FS}/runs", json={"items": [earlier]})
    post = create_answer(requests_mock)
    serve(requests_mock, make_run("success"))
    assert operator().execute(retried_context())["run_id"] == "run-1"
    assert post.call_count == 1


def test_the_newest_run_of_the_window_decides(aep_conn, ims, no_sleep, waits, flow, requests_mock):
    newer_failed = windowed("failed", run_id="run-9")
    newer_failed["createdAt"] += 10_000
    requests_mock.get(f"{FS}/runs", json={"items": [windowed("success"), newer_failed]})
    post = create_answer(requests_mock)
    serve(requests_mock, make_run("success"))
    assert operator().execute(retried_context())["run_id"] == "run-1" and post.call_count == 1


# ---------------------------------------------------------------- AEPRetriggerFlowRunOperator
def retrigger_operator(**kwargs):
    return AEPRetriggerFlowRunOperator(task_id="rerun", run_id="run-1", poll_interval=60, timeout=3600, **kwargs)


def test_the_retrigger_operator_re_runs_a_run_and_follows_the_new_one(ti_context, requests_mock):
    serve_run(requests_mock, "run-1", failed_run())
    requests_mock.get(f"{FS}/runs", json={"items": []})
    action = requests_mock.post(f"{FS}/runs/run-1/action", json={"id": "run-2"})
    serve_run(requests_mock, "run-2", make_run("inProgress", run_id="run-2"), make_run("success", run_id="run-2"))
    result = retrigger_operator().execute(ti_context)
    assert (result["run_id"], result["flow_id"], result["status"]) == ("run-2", "flow-1", "success")
    assert action.call_count == 1
    assert ti_context["ti"].xcom == {"dataflow_url": FLOW_URL, "run_id": "run-2", "run_url": FLOW_URL + "/run-2"}


def test_the_retrigger_operator_says_in_one_line_why_aep_refused(ti_context, requests_mock):
    serve_run(requests_mock, "run-1", make_run("inProgress"))
    requests_mock.get(f"{FS}/runs", json={"items": []})
    requests_mock.post(
        f"{FS}/runs/run-1/action",
        status_code=400,
        json={"type": "https://ns.adobe.com/aep/errors/FLOW-1422-400", "status": 400, "errorMessage": "not finished"},
    )
    with pytest.raises(AEPRetriggerRefusedError) as err:
        retrigger_operator(wait_for_completion=False).execute(ti_context)
    assert str(err.value) == (
        "AEP refused to re-trigger flow run run-1 of flow flow-1 (HTTP 400): [FLOW-1422-400] not finished"
    )


def test_the_retrigger_operator_checks_a_given_flow_id(ti_context, requests_mock):
    serve_run(requests_mock, "run-1", failed_run())
    with pytest.raises(AEPValidationError, match="run_id='run-1' is a run of flow flow-1, not flow_id='flow-9'"):
        retrigger_operator(flow_id="flow-9").execute(ti_context)
    assert not [r for r in requests_mock.request_history if r.method == "POST" and "/flowservice/" in r.path]
