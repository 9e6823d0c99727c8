"""Turning the many ways users write a point in time into AEP's epoch numbers."""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, time
from typing import Any

from airflow_provider_aep.exceptions import AEPValidationError

_NUMBER = re.compile(r"^[+-]?\d+(\.\d+)?$")
# Below this a number is epoch seconds, above it milliseconds: 1e11 s is the year 5138, 1e11 ms is 1973.
_MS_THRESHOLD = 1e11
# A number read as milliseconds past this (2100-01-01) is no plausible time: microseconds or nanoseconds.
_LATEST_MS = 4_102_444_800_000
_RULE = "must be a datetime, an ISO-8601 string, or epoch seconds or milliseconds"


def to_epoch_ms(value: Any, field: str = "time") -> int | None:
    """
    Epoch milliseconds from a datetime (naive = UTC), a date, an ISO-8601 string, or epoch seconds or
    milliseconds as int, float or digit string (told apart by magnitude). None or "" gives None.
    Anything else raises :class:`AEPValidationError` naming ``field``.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise AEPValidationError(f"{field}={value!r}: {_RULE}")
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return round(aware.timestamp() * 1000)
    if isinstance(value, date):
        return to_epoch_ms(datetime.combine(value, time(), tzinfo=UTC), field)
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise AEPValidationError(f"{field}={value!r}: {_RULE} (finite, not negative)")
        if value > _LATEST_MS:
            raise AEPValidationError(
                f"{field}={value!r}: {_RULE}; as milliseconds it is after 2100-01-01 (microseconds or nanoseconds?)"
            )
        return round(value if value >= _MS_THRESHOLD else value * 1000)
    if isinstance(value, str):
        text = value.strip()
        if _NUMBER.match(text):
            return to_epoch_ms(float(text) if "." in text else int(text), field)
        try:
            return to_epoch_ms(datetime.fromisoformat(text), field)
        except ValueError:
            pass
        try:
            import pendulum

            return to_epoch_ms(pendulum.parse(text), field)
        except Exception:
            raise AEPValidationError(f"{field}={value!r}: {_RULE}") from None
    raise AEPValidationError(f"{field}={value!r}: {_RULE}, not {type(value).__name__}")


def to_epoch_seconds(value: Any, field: str = "time") -> int | None:
    ms = to_epoch_ms(value, field)
    return None if ms is None else ms // 1000
