"""
Checks of operator input that AEP would reject, run before any create call: by each operator on its own
inputs, and by :func:`validate_pipeline_inputs` on a whole pipeline's, before its first create.

Each error is one line naming the field, the value and the rule; a secret-like field's value is never shown.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_aep.exceptions import AEPValidationError
from airflow_provider_aep.utils.timestamps import to_epoch_seconds
from airflow_provider_aep.utils.xdm_paths import xdm_path_exists

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
# A flow schedule starting before this is no plausible time: a small number such as 5 reads as 1970-01-01T00:00:05Z.
EARLIEST_SCHEDULE_START = datetime(2000, 1, 1, tzinfo=UTC)
_START_TIME_FORMS = "epoch seconds or milliseconds, a datetime or an ISO-8601 string"
MAPPING_SOURCE_TYPES = ("ATTRIBUTE", "EXPRESSION", "STATIC")
# Source data formats and the params/data keys each needs (aep-api.md §4.4).
SOURCE_FORMAT_REQUIREMENTS: dict[str, tuple[str, ...]] = {
    "tabular": ("params.tableName",),
    "parquet_xdm": ("data.schema.id", "params.path"),
    "delimited": ("params.path",),
    "json": ("params.path",),
    "parquet": ("params.path",),
}
MAPPING_KEYS = (
    *("sourceType", "source", "destination", "name", "description"),  # Data Prep's current form
    *("sourceAttribute", "destinationXdmPath", "identity", "identityGroup", "namespaceCode", "version"),  # the seed's
)
_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# An XDM path: dot-separated field names, each optionally indexed (``identityMap.Email[0].id``).
_XDM_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\[\d+\])?(\.[A-Za-z_][A-Za-z0-9_]*(\[\d+\])?)*$")
# The last part of a field whose value is never shown: auth.params.password, clientSecret, sasKey, token,
# credentials, and a connection's whole auth.
_SECRET_FIELD = re.compile(r"(password|passwd|secret|token|credentials?|key|auth)\W*$", re.IGNORECASE)


def is_secret_field(field: str) -> bool:
    return _SECRET_FIELD.search(field) is not None


def invalid(field: str, value: Any, rule: str) -> AEPValidationError:
    if is_secret_field(field):
        return AEPValidationError(f"{field}: {rule} (the value of a secret is not shown)")
    return AEPValidationError(f"{field}={value!r}: {rule}")


VARIANTS = ("current", "legacy")


def require_variant(value: Any) -> str:
    """Which version of the protocols tutorial a pipeline follows."""
    if value not in VARIANTS:
        raise invalid("variant", value, "must be 'current' or 'legacy'")
    return value


def shield_secrets(field: str, value: Any) -> tuple[Any, list[str], list[str]]:
    """
    ``value`` with every secret-like field that is not a string replaced by ``"***"``, the string secrets
    (to register with the masker) and the paths of the replaced ones (to refuse by name). A ``field`` that is
    not a mapping at all is replaced whole: nothing in it can be told apart from a secret.
    """
    if value is None or isinstance(value, Mapping):
        strings: list[str] = []
        refused: list[str] = []
        return _shield(field, value, strings, refused), strings, refused
    return "***", [str(value)], [field]


def _shield(path: str, value: Any, strings: list[str], refused: list[str], top: bool = True) -> Any:
    if (top or not is_secret_field(path)) and isinstance(value, Mapping):
        return {key: _shield(f"{path}.{key}", item, strings, refused, False) for key, item in value.items()}
    if not is_secret_field(path) and isinstance(value, list):
        return [_shield(f"{path}[{i}]", item, strings, refused, False) for i, item in enumerate(value)]
    if not is_secret_field(path) or value is None:
        return value
    if isinstance(value, str):
        strings.append(value)
        return value
    refused.append(path)
    return "***"


def require_url(field: str, value: Any) -> str:
    """An absolute http(s) URL with a host."""
    url = require_text(field, value)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
        raise invalid(field, value, "must be an http:// or https:// URL with a host")
    return url


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


def require_fields(fields: Any, where: str = "fields") -> Mapping[Any, Any]:
    if not isinstance(fields, Mapping) or not fields:
        raise invalid(where, fields, "must be a non-empty mapping of column name to XDM type")
    return fields


def field_property(name: Any, xdm_type: Any, where: str = "fields") -> dict[str, Any]:
    """The JSON Schema of one source column ``name`` of XDM type ``xdm_type``."""
    if not isinstance(name, str) or not _FIELD_NAME.match(name):
        raise invalid(
            f"{where}[{name!r}]",
            name,
            "column names must start with a letter or _ and hold only letters, digits and _",
        )
    key = xdm_type.lower() if isinstance(xdm_type, str) else xdm_type
    if not isinstance(key, str) or key not in XDM_FIELD_TYPES:
        raise invalid(f"{where}[{name!r}]", xdm_type, f"must be an XDM type, one of {', '.join(XDM_FIELD_TYPES)}")
    return dict(XDM_FIELD_TYPES[key])


def adhoc_field_properties(fields: Any) -> dict[str, Any]:
    """JSON Schema properties for an ad hoc class from ``{column: xdm_type}``."""
    return {name: field_property(name, xdm_type) for name, xdm_type in require_fields(fields).items()}


def check_columns(columns: Any) -> None:
    """A tabular source's ``params.columns``: ``[{name, type}]`` with valid names and XDM types."""
    if not isinstance(columns, list) or not all(isinstance(c, Mapping) for c in columns):
        raise invalid("params.columns", columns, "must be a list of {name, type} mappings")
    for column in columns:
        field_property(column.get("name"), column.get("type"), where="params.columns")


def normalize_schedule(schedule: Any) -> dict[str, Any]:
    """scheduleParams with startTime in epoch seconds and interval as an int; checks AEP's rules."""
    if not isinstance(schedule, Mapping):
        raise invalid("schedule_params", schedule, "must be a mapping with startTime and frequency")
    out = dict(schedule)
    frequency = out.get("frequency")
    if not isinstance(frequency, str) or frequency.lower() not in FREQUENCIES:
        raise invalid("schedule_params.frequency", frequency, f"must be one of {', '.join(FREQUENCIES)}")
    out["frequency"] = frequency = frequency.lower()
    start = out.get("startTime")
    if start in (None, ""):
        raise invalid(
            "schedule_params.startTime",
            None,
            f"is required ({_START_TIME_FORMS})",
        )
    out["startTime"] = to_epoch_seconds(start, "schedule_params.startTime")
    if out["startTime"] < EARLIEST_SCHEDULE_START.timestamp():
        when = datetime.fromtimestamp(out["startTime"], UTC).isoformat()
        raise invalid(
            "schedule_params.startTime",
            start,
            f"must be on or after {EARLIEST_SCHEDULE_START.date()} ({_START_TIME_FORMS}); it reads as {when}",
        )
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
    unknown = [key for key in mapping if key not in MAPPING_KEYS]
    if unknown:
        raise invalid(f"{field}", sorted(map(str, unknown)), f"unknown keys; a mapping takes {', '.join(MAPPING_KEYS)}")
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
    if not _XDM_PATH.match(out["destination"]):
        raise invalid(
            f"{field}.destination",
            out["destination"],
            "must be an XDM path: field names joined by '.', e.g. person.name",
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
        where = field + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        # jsonschema's messages quote the value, which a secret's must never be
        message = f"fails the {error.validator!r} rule" if is_secret_field(where) else error.message
        raise invalid(where, error.instance, f"{message} (flow spec {spec_name})")


def check_destination_exists(index: int, mapping: Mapping[str, Any], documents: list[Any], what: str) -> None:
    """A mapping's destination is a field of ``what`` (the target schema, fully expanded in ``documents``)."""
    if not xdm_path_exists(documents, mapping["destination"]):
        raise invalid(f"mappings[{index}].destination", mapping["destination"], f"is not a field of {what}")


# ---------------------------------------------------------------- a whole pipeline
def problems_of(*checks: Callable[[], Any]) -> list[str]:
    """The message of each check that fails, in order: several problems are reported together."""
    found = []
    for check in checks:
        try:
            check()
        except AEPValidationError as exc:
            found.append(str(exc))
    return found


def raise_problems(problems: list[str], what: str) -> None:
    if len(problems) == 1:
        raise AEPValidationError(f"{what}: {problems[0]}")
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise AEPValidationError(f"{what}: {len(problems)} problems\n{lines}")


def validate_pipeline_inputs(
    *,
    name: Any,
    variant: Any,
    source_table: Any,
    source_fields: Any,
    mappings: Any,
    schedule_params: Any,
    odata_url: Any,
    delta_column: Any,
    field_group_ids: Any,
    flow_spec_name: Any,
) -> list[dict[str, Any]]:
    """
    Every local check of a protocols pipeline's inputs, all at once, with the rules the operators apply to
    their own: an :class:`AEPValidationError` listing each problem on its own line. Returns the mappings in
    their current form. ``source_fields`` None: the columns are checked later, against the explored table.
    """
    columns = source_fields if isinstance(source_fields, Mapping) else {}
    normalized: list[tuple[int, dict[str, Any]]] = []
    problems = problems_of(
        lambda: require_text("name", name),
        lambda: require_variant(variant),
        lambda: require_text("source_table", source_table),
        lambda: require_url("odata_url", odata_url),
        *(() if source_fields is None else (lambda: require_fields(source_fields, "source_fields"),)),
        *(partial(field_property, n, t, "source_fields") for n, t in columns.items()),
        lambda: normalize_schedule(schedule_params),
        lambda: require_text("flow_spec_name", flow_spec_name),
        lambda: [require_text(f"field_group_ids[{i}]", g) for i, g in enumerate(_as_list(field_group_ids))],
    )
    if delta_column is not None:
        problems += problems_of(lambda: _require_column("delta_column", delta_column, columns))
    if isinstance(mappings, (Mapping, str)) or not isinstance(mappings, Iterable) or not list(mappings):
        problems += problems_of(lambda: normalize_mappings(mappings))
    else:
        for index, mapping in enumerate(mappings):
            problems += problems_of(partial(_normalize_into, normalized, index, mapping))
        problems += problems_of(
            *(
                partial(_require_column, f"mappings[{i}].source", m["source"], columns)
                for i, m in normalized
                if m["sourceType"] == "ATTRIBUTE"
            )
        )
    raise_problems(problems, "The pipeline's inputs are invalid; nothing was created")
    return [mapping for _, mapping in normalized]


def _normalize_into(normalized: list[tuple[int, dict[str, Any]]], index: int, mapping: Any) -> None:
    normalized.append((index, normalize_mapping(index, mapping)))


def _require_column(field: str, value: Any, columns: Mapping[Any, Any]) -> None:
    require_text(field, value)
    if columns and value not in columns:
        raise invalid(field, value, f"must be one of the source fields: {', '.join(map(str, columns))}")


def _as_list(value: Any) -> list[Any]:
    return [value] if isinstance(value, str) else list(value or [])


# POST /flows/{id}/action?op=...: the spec's uppercase values (aep-api.md §4.8).
FLOW_STATE_ACTIONS = {"enabled": "ENABLE", "disabled": "DISABLE"}


def flow_state_action(state: Any) -> str:
    """The ``op`` that puts a flow in ``state``; a clear error for a state a flow cannot be put in."""
    if state not in FLOW_STATE_ACTIONS:
        raise AEPValidationError(f"state={state!r}: must be one of {', '.join(map(repr, FLOW_STATE_ACTIONS))}")
    return FLOW_STATE_ACTIONS[state]
