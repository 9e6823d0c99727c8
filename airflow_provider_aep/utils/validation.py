"""
Checks of operator input that AEP would reject, run before any create call.

Each error is one line naming the field, the value and the rule.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from airflow_provider_aep.exceptions import AEPValidationError
from airflow_provider_aep.utils.timestamps import to_epoch_seconds

# XDM field types an ad hoc class may declare, as the JSON Schema each becomes (XDM type reference).
XDM_FIELD_TYPES: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "number": {"type": "number"},
    "double": {"type": "number"},
    "integer": {"type": "integer"},
    "long": {"type": "integer", "minimum": -9007199254740992, "maximum": 9007199254740992},
    "int": {"type": "integer", "minimum": -2147483648, "maximum": 2147483647},
    "short": {"type": "integer", "minimum": -32768, "maximum": 32767},
    "byte": {"type": "integer", "minimum": -128, "maximum": 127},
    "boolean": {"type": "boolean"},
    "date": {"type": "string", "format": "date"},
    "date-time": {"type": "string", "format": "date-time"},
}
FREQUENCIES = ("once", "minute", "hour", "day", "week")
MIN_INTERVAL = {"minute": 15}  # every other periodic frequency: 1 (CRMToAEP scheduleSpec)
MAPPING_SOURCE_TYPES = ("ATTRIBUTE", "EXPRESSION", "STATIC")
# Source data formats and the params/data keys each needs (aep-api.md §4.4).
SOURCE_FORMAT_REQUIREMENTS: dict[str, tuple[str, ...]] = {
    "tabular": ("params.tableName",),
    "parquet_xdm": ("data.schema.id", "params.path"),
    "delimited": ("params.path",),
    "json": ("params.path",),
    "parquet": ("params.path",),
}
_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def invalid(field: str, value: Any, rule: str) -> AEPValidationError:
    return AEPValidationError(f"{field}={value!r}: {rule}")


def require_text(field: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise invalid(field, value, "must be a non-empty string")
    return value.strip()


def require_ids(field: str, value: Any) -> list[str]:
    """A non-empty list of id strings; a single string is accepted as a list of one."""
    ids = [value] if isinstance(value, str) else list(value or [])
    if not ids:
        raise invalid(field, value, "must name at least one id")
    return [require_text(f"{field}[{i}]", v) for i, v in enumerate(ids)]


def optional_ids(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [v for v in value if v]


def adhoc_field_properties(fields: Any) -> dict[str, Any]:
    """JSON Schema properties for an ad hoc class from ``{column: xdm_type}``."""
    if not isinstance(fields, Mapping) or not fields:
        raise invalid("fields", fields, "must be a non-empty mapping of column name to XDM type")
    properties = {}
    for name, xdm_type in fields.items():
        if not isinstance(name, str) or not _FIELD_NAME.match(name):
            raise invalid(
                f"fields[{name!r}]",
                name,
                "column names must start with a letter or _ and hold only letters, digits and _",
            )
        key = xdm_type.lower() if isinstance(xdm_type, str) else xdm_type
        if key not in XDM_FIELD_TYPES:
            raise invalid(f"fields[{name!r}]", xdm_type, f"must be an XDM type, one of {', '.join(XDM_FIELD_TYPES)}")
        properties[name] = dict(XDM_FIELD_TYPES[key])
    return properties


def normalize_schedule(schedule: Any) -> dict[str, Any]:
    """scheduleParams with startTime in epoch seconds and interval as an int; checks AEP's rules."""
    if not isinstance(schedule, Mapping):
        raise invalid("schedule_params", schedule, "must be a mapping with startTime and frequency")
    out = dict(schedule)
    frequency = out.get("frequency")
    if not isinstance(frequency, str) or frequency.lower() not in FREQUENCIES:
        raise invalid("schedule_params.frequency", frequency, f"must be one of {', '.join(FREQUENCIES)}")
    out["frequency"] = frequency = frequency.lower()
    if out.get("startTime") in (None, ""):
        raise invalid(
            "schedule_params.startTime", None, "is required (epoch seconds, a datetime or an ISO-8601 string)"
        )
    out["startTime"] = to_epoch_seconds(out["startTime"], "schedule_params.startTime")
    if frequency == "once":
        for forbidden in ("interval", "backfill"):
            if out.get(forbidden) is not None:
                raise invalid(
                    f"schedule_params.{forbidden}", out[forbidden], "must not be set when frequency is 'once'"
                )
            out.pop(forbidden, None)
        return out
    interval = out.get("interval")
    try:
        out["interval"] = int(str(interval).strip()) if not isinstance(interval, bool) else None
    except ValueError:
        out["interval"] = None
    if out["interval"] is None:
        raise invalid("schedule_params.interval", interval, f"must be an integer when frequency is {frequency!r}")
    minimum = MIN_INTERVAL.get(frequency, 1)
    if out["interval"] < minimum:
        raise invalid("schedule_params.interval", interval, f"must be >= {minimum} when frequency is {frequency!r}")
    if "backfill" in out and not isinstance(out["backfill"], bool):
        raise invalid("schedule_params.backfill", out["backfill"], "must be true or false")
    return out


def normalize_mapping(index: int, mapping: Any) -> dict[str, Any]:
    """One mapping in the current form (sourceType/source/destination), accepting the seed's legacy form too."""
    field = f"mappings[{index}]"
    if not isinstance(mapping, Mapping):
        raise invalid(field, mapping, "must be a mapping with a source and a destination")
    source = mapping.get("source", mapping.get("sourceAttribute"))
    destination = mapping.get("destination", mapping.get("destinationXdmPath"))
    out: dict[str, Any] = {
        "sourceType": str(mapping.get("sourceType", "ATTRIBUTE")).upper(),
        "source": require_text(f"{field}.source", source),
        "destination": require_text(f"{field}.destination", destination),
    }
    if out["sourceType"] not in MAPPING_SOURCE_TYPES:
        raise invalid(
            f"{field}.sourceType", mapping.get("sourceType"), f"must be one of {', '.join(MAPPING_SOURCE_TYPES)}"
        )
    for optional in ("name", "description"):
        if mapping.get(optional):
            out[optional] = mapping[optional]
    return out


def normalize_mappings(mappings: Any) -> list[dict[str, Any]]:
    if isinstance(mappings, (Mapping, str)) or not isinstance(mappings, Iterable):
        raise invalid("mappings", mappings, "must be a non-empty list of mappings")
    normalized = [normalize_mapping(i, m) for i, m in enumerate(mappings)]
    if not normalized:
        raise invalid("mappings", mappings, "must be a non-empty list of mappings")
    return normalized


def normalize_transformations(transformations: Any) -> list[dict[str, Any]]:
    """Transformations as AEP wants them; a Mapping's mappingVersion is sent as a string, as the flow spec types it."""
    if isinstance(transformations, (Mapping, str)) or not isinstance(transformations, Iterable):
        raise invalid("transformations", transformations, "must be a list of {name, params}")
    out = []
    for i, item in enumerate(transformations):
        if not isinstance(item, Mapping):
            raise invalid(f"transformations[{i}]", item, "must be a mapping with name and params")
        name = require_text(f"transformations[{i}].name", item.get("name"))
        params = item.get("params") or {}
        if not isinstance(params, Mapping):
            raise invalid(f"transformations[{i}].params", params, "must be a mapping")
        params = dict(params)
        if name == "Mapping":
            require_text(f"transformations[{i}].params.mappingId", params.get("mappingId"))
            if params.get("mappingVersion") is not None:
                params["mappingVersion"] = str(params["mappingVersion"])
        out.append({"name": name, "params": params})
    return out


def validate_against_flow_spec(
    flow_spec: Mapping[str, Any], transformations: list[dict[str, Any]], schedule: Mapping[str, Any]
) -> None:
    """Check transformations and scheduleParams against the JSON schemas the flow spec itself publishes."""
    import jsonschema

    spec_name = flow_spec.get("name") or flow_spec.get("id")
    specs = {t.get("name"): t.get("spec") for t in flow_spec.get("transformationSpecs") or []}
    for i, transformation in enumerate(transformations):
        if specs and transformation["name"] not in specs:
            raise invalid(
                f"transformations[{i}].name",
                transformation["name"],
                f"flow spec {spec_name} accepts only {', '.join(sorted(map(str, specs)))}",
            )
        if specs.get(transformation["name"]):
            _check(
                specs[transformation["name"]],
                transformation["params"],
                f"transformations[{i}].params",
                spec_name,
                jsonschema,
            )
    schedule_spec = (flow_spec.get("scheduleSpec") or {}).get("spec")
    if schedule_spec:
        _check(schedule_spec, dict(schedule), "schedule_params", spec_name, jsonschema)


def _check(schema: Mapping[str, Any], instance: Any, field: str, spec_name: Any, jsonschema: Any) -> None:
    validator_cls = jsonschema.validators.validator_for(schema)
    errors = sorted(validator_cls(schema).iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        error = errors[0]
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        raise invalid(f"{field}{path}", error.instance, f"{error.message} (flow spec {spec_name})")
