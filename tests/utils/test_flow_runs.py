"""The one status table, run summaries, error extraction, the decision, and time-value parsing."""

from __future__ import annotations

import json
import logging
import pickle
from datetime import UTC, date, datetime, timedelta, timezone

import pendulum
import pytest

from airflow_provider_aep.exceptions import AEPFlowRunFailedError, AEPValidationError
from airflow_provider_aep.utils.flow_runs import (
    STATUS_OUTCOMES,
    FlowRunStatus,
    Outcome,
    QualityGate,
    outcome_of,
    progress_line,
    result_of_finished_run,
    run_batch_ids,
    run_errors,
    run_summary,
    run_window,
    timeout_message,
)
from airflow_provider_aep.utils.timestamps import to_epoch_ms, to_epoch_seconds

ORG = "ABCDEF1234567890@AdobeOrg"
STARTED_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z


def make_run(
    status: str | None = "success",
    *,
    run_id: str = "run-1",
    flow_id: str = "flow-1",
    created_at: int = STARTED_MS - 5_000,
    started: int | None = STARTED_MS,
    completed: int | None = STARTED_MS + 90_500,
    errors: list[dict] | None = None,
    activities: list[dict] | None = None,
    records: dict | None = None,
) -> dict:
    """A run object shaped like GET /runs/{id} items[0] (aep-api.md §4.9)."""
    duration = {}
    if started is not None:
        duration["startedAtUTC"] = started
    if completed is not None and status in ("success", "failed", "partialSuccess"):
        duration["completedAtUTC"] = completed
    status_summary: dict = {"errors": errors or []}
    if status is not None:
        status_summary["status"] = status
    return {
        "id": run_id,
        "flowId": flow_id,
        "createdAt": created_at,
        "updatedAt": created_at,
        "metrics": {
            "durationSummary": duration,
            "sizeSummary": {"inputBytes": 1000, "outputBytes": -1},
            "recordSummary": records
            if records is not None
            else {"inputRecordCount": 1200, "outputRecordCount": 1150, "failedRecordCount": 50},
            "fileSummary": {"inputFileCount": 2, "outputFileCount": 1, "failedFileCount": 0},
            "statusSummary": status_summary,
        },
        "activities": activities or [],
    }


FAILED_ACTIVITIES = [
    {
        "id": "a1",
        "name": "Copy Activity",
        "statusSummary": {"status": "failed", "errors": [{"code": "CONNECTOR-1001-500", "message": "copy failed"}]},
    },
    {
        "id": "a2",
        "name": "Promotion Activity",
        "statusSummary": {
            "status": "failed",
            "errors": [],
            "extensions": {"errors": [{"code": "INGEST-1212-400", "message": "bad record", "recordCount": 50}]},
        },
    },
]


# ---------------------------------------------------------------- the table
def test_every_known_status_has_exactly_one_outcome():
    assert dict(STATUS_OUTCOMES) == {
        "scheduled": Outcome.WAIT,
        "inProgress": Outcome.WAIT,
        "success": Outcome.SUCCESS,
        "partialSuccess": Outcome.PARTIAL,
        "failed": Outcome.FAILED,
    }
    assert {s.value for s in FlowRunStatus} == set(STATUS_OUTCOMES)


def test_status_matching_ignores_case():
    assert outcome_of("Failed") is Outcome.FAILED
    assert outcome_of("INPROGRESS") is Outcome.WAIT


def test_unknown_status_waits_and_warns_once_per_status(caplog):
    warned: set[str] = set()
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            assert outcome_of("cancelling", warned=warned) is Outcome.WAIT
        assert outcome_of("queued", warned=warned) is Outcome.WAIT
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "'cancelling'" in warnings[0] and "'queued'" in warnings[1]


def test_a_run_without_a_status_yet_waits_silently(caplog):
    with caplog.at_level(logging.WARNING):
        assert outcome_of(None, warned=set()) is Outcome.WAIT
    assert not caplog.records


# ---------------------------------------------------------------- summaries and errors
def test_summary_has_ids_times_counts_and_links_and_is_json():
    summary = run_summary(make_run("success"), "flow-1", ORG, "dev")
    assert json.loads(json.dumps(summary)) == summary
    assert summary == {
        "run_id": "run-1",
        "flow_id": "flow-1",
        "status": "success",
        "window_start": None,
        "window_end": None,
        "created_at": "2023-12-31T23:59:55+00:00",
        "started_at": "2024-01-01T00:00:00+00:00",
        "completed_at": "2024-01-01T00:01:30.500000+00:00",
        "duration_seconds": 90.5,
        "records": {"input": 1200, "output": 1150, "failed": 50},
        "files": {"input": 2, "output": 1, "failed": 0},
        "errors": [],
        "batch_ids": [],
        "dataflow_url": f"https://experience.adobe.com/#/@{ORG}/sname:dev/platform/source/dataflows/flow-1/activity",
        "run_url": f"https://experience.adobe.com/#/@{ORG}/sname:dev/platform/source/dataflows/flow-1/activity/run-1",
    }


def test_summary_of_a_run_in_progress_has_no_completion_and_unknown_counts_are_none():
    run = make_run("inProgress", records={"inputRecordCount": -1})
    summary = run_summary(run, None, ORG, "prod")
    assert summary["flow_id"] == "flow-1"  # taken from the run when not given
    assert (summary["completed_at"], summary["duration_seconds"]) == (None, None)
    assert summary["records"] == {"input": None, "output": None, "failed": None}


def test_errors_come_from_the_run_and_every_activity_deduplicated():
    run = make_run(
        "failed",
        errors=[{"code": "CONNECTOR-1001-500", "message": "copy failed"}],
        activities=FAILED_ACTIVITIES,
    )
    assert run_errors(run) == [
        {"code": "CONNECTOR-1001-500", "message": "copy failed"},
        {"code": "INGEST-1212-400", "message": "bad record", "activity": "Promotion Activity"},
    ]


def test_errors_are_read_from_the_misspelt_activities_key_too():
    run = make_run("failed")
    run["activites"] = run.pop("activities") + FAILED_ACTIVITIES[:1]
    assert run_errors(run) == [{"code": "CONNECTOR-1001-500", "message": "copy failed", "activity": "Copy Activity"}]


def test_summary_keeps_at_most_twenty_errors():
    errors = [{"code": f"E-{i}", "message": "m"} for i in range(50)]
    assert len(run_summary(make_run("failed", errors=errors), "f", ORG, "dev")["errors"]) == 20


def test_progress_line_shows_status_elapsed_and_records():
    summary = run_summary(make_run("inProgress"), "flow-1", ORG, "dev")
    line = progress_line(summary, now=STARTED_MS / 1000 + 125)
    assert (
        line
        == "AEP flow run run-1 of flow flow-1: inProgress, elapsed 2m05s; records input 1,200, output 1,150, failed 50"
    )


# ---------------------------------------------------------------- decision
def test_success_returns_the_summary():
    summary = run_summary(make_run("success"), "flow-1", ORG, "dev")
    assert result_of_finished_run(summary) == summary


def test_failed_raises_with_codes_messages_and_the_run_link():
    run = make_run(
        "failed", errors=[{"code": "CONNECTOR-1001-500", "message": "copy failed"}], activities=FAILED_ACTIVITIES
    )
    summary = run_summary(run, "flow-1", ORG, "dev")
    with pytest.raises(AEPFlowRunFailedError) as err:
        result_of_finished_run(summary)
    text = str(err.value)
    assert "run-1" in text and "failed" in text
    assert "[CONNECTOR-1001-500] copy failed" in text
    assert "[INGEST-1212-400] bad record" in text
    assert summary["run_url"] in text
    assert err.value.summary == summary


def test_partial_success_warns_by_default_and_fails_when_asked(caplog):
    summary = run_summary(make_run("partialSuccess", activities=FAILED_ACTIVITIES[1:]), "flow-1", ORG, "dev")
    with caplog.at_level(logging.WARNING):
        assert result_of_finished_run(summary) == summary
    warning = caplog.records[-1].getMessage()
    assert "partialSuccess" in warning and "50 records failed" in warning and summary["run_url"] in warning
    with pytest.raises(AEPFlowRunFailedError, match=r"partialSuccess.*INGEST-1212-400"):
        result_of_finished_run(summary, fail_on_partial_success=True)


@pytest.mark.parametrize("status", ["scheduled", "inProgress", "somethingNew", None])
def test_deciding_an_unfinished_run_is_a_programming_error(status):
    with pytest.raises(ValueError):
        result_of_finished_run(run_summary(make_run(status), "f", ORG, "dev"))


def test_an_error_message_ending_in_a_period_does_not_double_it():
    summary = run_summary(
        make_run("failed", errors=[{"code": "CONNECTOR-1-500", "message": "The server closed the connection."}]),
        "f",
        ORG,
        "dev",
    )
    with pytest.raises(AEPFlowRunFailedError) as err:
        result_of_finished_run(summary)
    assert "closed the connection. See https://" in str(err.value) and ".." not in str(err.value)


def test_failure_survives_pickling():
    err = AEPFlowRunFailedError("boom", {"run_id": "r"})
    clone = pickle.loads(pickle.dumps(err))
    assert (str(clone), clone.summary) == ("boom", {"run_id": "r"})


def test_timeout_message_names_the_run_status_deadline_and_link():
    text = timeout_message("flow-1", "run-1", "inProgress", STARTED_MS / 1000, "https://x/run-1")
    assert text == (
        "Timed out waiting for AEP flow run run-1 of flow flow-1: the deadline 2024-01-01 00:00:00 UTC passed "
        "(last status 'inProgress'). See https://x/run-1"
    )
    assert "no matching run appeared" in timeout_message("flow-1", None, None, 0, "u")


# ---------------------------------------------------------------- time values
@pytest.mark.parametrize(
    "value",
    [
        datetime(2024, 1, 1, tzinfo=UTC),
        datetime(2024, 1, 1),  # naive means UTC
        datetime(2024, 1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
        pendulum.datetime(2024, 1, 1, tz="UTC"),
        date(2024, 1, 1),
        "2024-01-01T00:00:00Z",
        "2024-01-01 00:00:00+00:00",  # how "{{ data_interval_start }}" renders
        "2024-01-01T01:00:00+01:00",
        1_704_067_200,
        1_704_067_200.0,
        1_704_067_200_000,
        "1704067200",
        "1704067200000",
        " 1704067200.000 ",
    ],
)
def test_to_epoch_ms_accepts_datetimes_iso_strings_seconds_and_milliseconds(value):
    assert to_epoch_ms(value) == STARTED_MS


def test_to_epoch_ms_none_and_empty_mean_no_value():
    assert to_epoch_ms(None) is None
    assert to_epoch_ms("  ") is None


@pytest.mark.parametrize("value", ["yesterday-ish", True, [1], float("nan")])
def test_to_epoch_ms_rejects_other_values(value):
    with pytest.raises(ValueError):
        to_epoch_ms(value)


def test_to_epoch_seconds_truncates():
    assert to_epoch_seconds(1_704_067_200_999) == 1_704_067_200
    assert to_epoch_seconds(None) is None


# ---------------------------------------------------------------- batches and windows
PROMOTION = {
    "name": "Promotion Activity",
    "targetInfo": [
        {"id": "t1", "type": "TargetConnection", "reference": {"type": "Batch", "ids": ["B1", "B2"]}},
        {"id": "t2", "type": "TargetConnection", "reference": {"type": "Batch", "ids": ["B2", "B3"]}},
        {"id": "t3", "type": "TargetConnection", "reference": {"type": "Dataset", "ids": ["D1"]}},
    ],
}


def test_batch_ids_come_from_the_activities_targets_once_each():
    assert run_batch_ids(make_run("success", activities=[PROMOTION])) == ["B1", "B2", "B3"]
    assert run_summary(make_run("success", activities=[PROMOTION]), "f", ORG, "dev")["batch_ids"] == ["B1", "B2", "B3"]
    assert run_batch_ids(make_run("failed")) == []


def test_a_runs_window_comes_from_its_params_or_its_activities():
    on_demand = make_run("scheduled")
    on_demand["params"] = {"startTime": 5, "windowStartTime": "1704067200", "windowEndTime": 1704070800}
    assert run_window(on_demand) == (1704067200, 1704070800)
    scheduled = make_run(
        "inProgress",
        activities=[
            {"durationSummary": {"extensions": {"windowStart": STARTED_MS, "windowEnd": STARTED_MS + 900_000}}}
        ],
    )
    assert run_window(scheduled) == (1704067200, 1704068100)
    assert run_window(make_run("scheduled")) is None
    assert run_window({"params": {"windowStartTime": "soon", "windowEndTime": 1}}) is None
    summary = run_summary(on_demand, "f", ORG, "dev")
    assert (summary["window_start"], summary["window_end"]) == (
        "2024-01-01T00:00:00+00:00",
        "2024-01-01T01:00:00+00:00",
    )


# ---------------------------------------------------------------- the quality gate
@pytest.mark.parametrize(
    ("gate", "failed", "passes"),
    [
        ({"max_failed_records": 50}, 50, True),  # at the limit passes: only more than it fails
        ({"max_failed_records": 49}, 50, False),
        ({"max_failed_ratio": 0.05}, 50, True),  # 50 of 1,200 is 4.17%
        ({"max_failed_ratio": 0.04}, 50, False),
        ({"max_failed_records": 0, "max_failed_ratio": 0}, 0, True),
        ({"max_failed_records": 0}, 1, False),
        ({}, 1_000, True),  # no gate
    ],
)
def test_the_gate_fails_only_what_breaks_a_threshold(gate, failed, passes):
    summary = run_summary(
        make_run("success", records={"inputRecordCount": 1200, "failedRecordCount": failed}), "flow-1", ORG, "dev"
    )
    if passes:
        assert result_of_finished_run(summary, gate=QualityGate(**gate)) == summary
    else:
        with pytest.raises(AEPFlowRunFailedError, match="failed the quality gate"):
            result_of_finished_run(summary, gate=QualityGate(**gate))


def test_a_gate_failure_is_one_line_with_counts_thresholds_and_both_links():
    summary = run_summary(make_run("success"), "flow-1", ORG, "dev")
    with pytest.raises(AEPFlowRunFailedError) as err:
        result_of_finished_run(summary, gate=QualityGate(max_failed_records=10, max_failed_ratio=0.01))
    assert str(err.value) == (
        "AEP flow run run-1 of flow flow-1 finished success but failed the quality gate: 50 of 1,200 records "
        "failed (4.17%), more than max_failed_records=10 and max_failed_ratio=0.01 (1%). "
        f"See {summary['run_url']} (dataflow: {summary['dataflow_url']})"
    )
    assert err.value.summary == summary


def test_the_gate_judges_a_partial_success_too_and_leaves_failures_as_they_were():
    partial = run_summary(make_run("partialSuccess"), "flow-1", ORG, "dev")
    with pytest.raises(AEPFlowRunFailedError, match=r"finished partialSuccess but failed the quality gate: 50 of"):
        result_of_finished_run(partial, gate=QualityGate(max_failed_records=0))
    failed = run_summary(make_run("failed", errors=[{"code": "C-1", "message": "m"}]), "flow-1", ORG, "dev")
    with pytest.raises(AEPFlowRunFailedError) as err:
        result_of_finished_run(failed, gate=QualityGate(max_failed_records=0))
    assert "quality gate" not in str(err.value) and "[C-1] m" in str(err.value)


def test_failed_rows_of_no_input_break_any_ratio_and_an_unknown_count_is_warned(caplog):
    none_read = run_summary(make_run("success", records={"inputRecordCount": 0, "failedRecordCount": 3}), "f", ORG, "d")
    with pytest.raises(AEPFlowRunFailedError, match=r"3 of 0 records failed, more than max_failed_ratio=0.5"):
        result_of_finished_run(none_read, gate=QualityGate(max_failed_ratio=0.5))
    unknown = run_summary(make_run("success", records={"inputRecordCount": 10}), "f", ORG, "d")
    with caplog.at_level(logging.WARNING):
        assert result_of_finished_run(unknown, gate=QualityGate(max_failed_records=0)) == unknown
    assert "quality gate cannot be checked" in caplog.text


@pytest.mark.parametrize(
    ("gate", "match"),
    [
        ({"max_failed_records": -1}, "max_failed_records=-1"),
        ({"max_failed_records": 1.5}, "max_failed_records=1.5"),
        ({"max_failed_records": True}, "max_failed_records=True"),
        ({"max_failed_ratio": 1.5}, r"max_failed_ratio=1.5: must be a share of the input records from 0 to 1"),
        ({"max_failed_ratio": -0.1}, "max_failed_ratio=-0.1"),
        ({"max_failed_ratio": "1%"}, "max_failed_ratio='1%'"),
    ],
)
def test_gate_thresholds_are_checked_with_a_clear_error(gate, match):
    with pytest.raises(AEPValidationError, match=match):
        QualityGate(**gate)


# ---------------------------------------------------------------- diagnostics in the judgement
DIAGNOSTICS = {
    "errors": [{"code": "INGEST-1212-400", "message": "Encountered 50 errors"}],
    "batch_ids": ["B1"],
    "batches": [
        {
            "id": "B1",
            "status": "success",
            "records": {"input": 1200, "output": 1150, "failed": 50},
            "errors": [
                {"code": "INGEST-1212-400", "message": "Encountered 50 errors"},
                {"code": "INGEST-1401-400", "message": "corrupt", "records": 50},
            ],
        }
    ],
    "row_errors": [{"batch_id": "B1", "file": "f.json", "code": "1401", "message": "Row is corrupted."}],
    "unavailable": ["the row errors of batch B2: HTTP 500"],
}


def test_a_gate_failure_carries_the_diagnostics_in_its_error_and_summary():
    summary = run_summary(make_run("success"), "flow-1", ORG, "dev")
    asked: list[dict] = []
    with pytest.raises(AEPFlowRunFailedError) as err:
        result_of_finished_run(
            summary, gate=QualityGate(max_failed_records=0), diagnose=lambda s: asked.append(s) or DIAGNOSTICS
        )
    assert asked == [summary]
    first, *rest = str(err.value).splitlines()
    assert "failed the quality gate" in first
    assert rest == [
        "Errors: [INGEST-1212-400] Encountered 50 errors",
        "Batch B1: success; records input 1,200, output 1,150, failed 50: [INGEST-1401-400] corrupt",
        "Row errors (1 shown):",
        "  batch B1: [1401] Row is corrupted.",
        "Not available: the row errors of batch B2: HTTP 500",
    ]
    assert err.value.summary == {**summary, "diagnostics": DIAGNOSTICS}


def test_a_partial_success_returns_its_diagnostics_and_a_success_reads_none(caplog):
    partial = run_summary(make_run("partialSuccess"), "flow-1", ORG, "dev")
    with caplog.at_level(logging.WARNING):
        assert result_of_finished_run(partial, diagnose=lambda s: DIAGNOSTICS)["diagnostics"] == DIAGNOSTICS
    assert "Row errors (1 shown)" in caplog.records[-1].getMessage()
    success = run_summary(make_run("success"), "flow-1", ORG, "dev")
    assert result_of_finished_run(success, diagnose=lambda s: pytest.fail("read diagnostics of a success")) == success


def test_diagnostics_that_cannot_be_read_never_hide_the_runs_outcome(caplog):
    failed = run_summary(make_run("failed", errors=[{"code": "C-1", "message": "boom"}]), "flow-1", ORG, "dev")

    def broken(summary):
        raise RuntimeError("Data Access is down")

    with caplog.at_level(logging.WARNING), pytest.raises(AEPFlowRunFailedError) as err:
        result_of_finished_run(failed, diagnose=broken)
    assert str(err.value).splitlines()[0].startswith("AEP flow run run-1 of flow flow-1 failed: [C-1] boom. See ")
    assert "Not available: RuntimeError: Data Access is down" in str(err.value)
    assert "Reading AEP's diagnostics" in caplog.text
