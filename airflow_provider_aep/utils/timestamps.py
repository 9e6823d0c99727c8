"""Turning the many ways users write a point in time into AEP's epoch numbers."""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any

from airflow_provider_aep.exceptions import AEPValidationError

# Epoch values above this are milliseconds: 1e11 seconds is the year 5138, 1e11 ms is 1973.
_MS_THRESHOLD = 100_000_000_000


def to_epoch_ms(value: Any, field: str = "time") -> int:
    """
    Epoch milliseconds from a datetime (aware, or naive meaning UTC), an ISO-8601 string, or an epoch
    number in seconds or milliseconds (int, float or digit string; told apart by magnitude).
    """
    if isinstance(value, bool) or value is None:
        raise AEPValidationError(f"{field}={value!r}: must be a datetime, an ISO-8601 string or epoch seconds/milliseconds")
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return int(aware.timestamp() * 1000)
    if isinstance(value, date):
        return to_epoch_ms(datetime(value.year, value.month, value.day, tzinfo=timezone.utc), field)
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            try:
                return to_epoch_ms(datetime.fromisoformat(text.replace("Z", "+00:00")), field)
            except ValueError:
                raise AEPValidationError(
                    f"{field}={value!r}: must be a datetime, an ISO-8601 string or epoch seconds/milliseconds"
                ) from None
        return to_epoch_ms(number, field)
    if isinstance(value, int | float):
        if value < 0:
            raise AEPValidationError(f"{field}={value!r}: must not be negative")
        return int(value) if value >= _MS_THRESHOLD else int(value * 1000)
    raise AEPValidationError(
        f"{field}={value!r}: must be a datetime, an ISO-8601 string or epoch seconds/milliseconds, "
        f"not {type(value).__name__}"
    )


def to_epoch_seconds(value: Any, field: str = "time") -> int:
    return to_epoch_ms(value, field) // 1000
