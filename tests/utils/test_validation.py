"""A flow schedule's startTime: epoch seconds or milliseconds, datetimes and ISO strings, from 2000-01-01 on."""

from __future__ import annotations

import datetime as dt

import pytest

from airflow_provider_aep.exceptions import AEPValidationError
from airflow_provider_aep.utils.validation import normalize_schedule


@pytest.mark.parametrize(
    "start",
    [946_684_800, 946_684_800_000, "946684800", dt.datetime(2000, 1, 1, tzinfo=dt.UTC), "2000-01-01T00:00:00Z"],
    ids=["seconds", "milliseconds", "digit-string", "datetime", "iso"],
)
def test_a_start_from_2000_on_is_epoch_seconds_however_written(start):
    assert normalize_schedule({"startTime": start, "frequency": "once"}) == {
        "startTime": 946_684_800,
        "frequency": "once",
    }


@pytest.mark.parametrize(
    ("start", "reads_as"),
    [(5, "1970-01-01T00:00:05"), (946_684_799, "1999-12-31T23:59:59"), (946_684_799_000, "1999-12-31T23:59:59")],
)
def test_a_start_before_2000_is_refused_naming_field_value_and_rule(start, reads_as):
    with pytest.raises(AEPValidationError) as err:
        normalize_schedule({"startTime": start, "frequency": "hour", "interval": 1})
    assert str(err.value) == (
        f"schedule_params.startTime={start!r}: must be on or after 2000-01-01 (epoch seconds or milliseconds, "
        f"a datetime or an ISO-8601 string); it reads as {reads_as}+00:00"
    )
