"""Flow Service operators: connections, the flow spec lookup and the dataflow."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow_provider_aep.exceptions import (
    AEPDuplicateResourceError,
    AEPResourceConflictError,
    AEPResourceNotFoundError,
    AEPValidationError,
)
from airflow_provider_aep.links.aep import AEPDataflowLink
from airflow_provider_aep.links.urls import DATAFLOW_URL_KEY
from airflow_provider_aep.operators.base import (
    AEPBaseOperator,
    AEPFlowLineageOperator,
    AEPGetOrCreateOperator,
    differ,
)
from airflow_provider_aep.utils.defaults import DATA_LAKE_CONNECTION_SPEC_ID
from airflow_provider_aep.utils.source_columns import table_columns
from airflow_provider_aep.utils.timestamps import to_epoch_seconds
from airflow_provider_aep.utils.validation import (
    SOURCE_FORMAT_REQUIREMENTS,
    check_columns,
    flow_state_action,
    invalid,
    normalize_schedule,
    normalize_transformations,
    require_ids,
    require_text,
    shield_secrets,
    validate_against_flow_spec,
)
from airflow_provider_aep.version_compat import ParamsDict, mask_secret

TARGET_SCHEMA_VERSION = "application/vnd.adobe.xed-full+json;version=1"
CREATED_KEY = "created"
_STRING = "must be a string; a secret of any other type is refused"


def _current_dag() -> Any:
    """The DAG being defined around the operator, if any (only needed on Airflow 2)."""
    try:
        from airflow.models.dag import DagContext  # Airflow 2
    except ImportError:
        return None
    return DagContext.get_current_dag()


def _spec_ref(spec_id: str) -> dict[str, str]:
    return {"id": spec_id, "version": "1.0"}


class AEPCreateBaseConnectionOperator(AEPGetOrCreateOperator):
    """
    Get or create a base connection (``POST /connections``): a protocol source's, or the legacy
    dataset base connection (``connection_spec_id`` = the Data Lake spec, no ``auth``).

    :param auth: ``{"specName": ..., "params": {...}}``, e.g. ``{"specName": "Anonymous Authentication",
        "params": {"url": ...}}`` for Generic OData. Keep credentials in Airflow connections or variables
        and template them in. Secret-like fields (``password``, ``secret``, ``token``, ``key``, ``credentials``)
        are masked in the rendered view and the logs; one that is not a string is refused by name, unshown.
    :return: the base connection id; XCom ``created`` says whether this task created it.
    """

    template_fields: Sequence[str] = (
        *AEPBaseOperator.template_fields,
        "name",
        "connection_spec_id",
        "auth",
        "description",
    )
    template_fields_renderers = {"auth": "json"}

    def __init__(
        self,
        *,
        name: str,
        connection_spec_id: str,
        auth: Mapping[str, Any] | None = None,
        description: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.name = name
        self.connection_spec_id = connection_spec_id
        self.auth = auth
        self.description = description
        self._refused_secrets: list[str] = []

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """Render, then keep every secret of ``auth`` out of the rendered view, whatever its type."""
        super().render_template_fields(context, jinja_env)
        self.auth, secrets, self._refused_secrets = shield_secrets("auth", self.auth)
        for secret in secrets:
            mask_secret(secret)

    def execute(self, context: Any) -> str:
        name = require_text("name", self.name)
        spec_id = require_text("connection_spec_id", self.connection_spec_id)
        _, _, refused = shield_secrets("auth", self.auth)
        for path in self._refused_secrets or refused:  # `auth` itself when it is no mapping
            raise invalid(path, None, "must be a mapping with specName and params" if path == "auth" else _STRING)
        if self.auth is not None and "specName" not in self.auth:
            raise invalid("auth", self.auth, "must be a mapping with specName and params")
        hook = self.hook

        def create() -> str:
            payload: dict[str, Any] = {"name": name, "connectionSpec": _spec_ref(spec_id)}
            if self.description:
                payload["description"] = self.description
            if self.auth:
                payload["auth"] = dict(self.auth)
            return hook.create_base_connection(payload)

        def differences(existing: dict[str, Any]) -> list[str]:
            diffs = differ("connection spec", (existing.get("connectionSpec") or {}).get("id"), spec_id)
            if self.auth and (existing.get("auth") or {}).get("specName") not in (None, self.auth.get("specName")):
                diffs += differ("auth.specName", existing["auth"]["specName"], self.auth.get("specName"))
            return diffs

        connection_id, created = self.get_or_create(
            kind="base connection",
            name=name,
            find=lambda: hook.find_base_connections_by_name(name),
            create=create,
            differences=differences,
        )
        context["ti"].xcom_push(key=CREATED_KEY, value=created)
        return connection_id


class AEPCreateSourceConnectionOperator(AEPGetOrCreateOperator):
    """
    Get or create a source connection (``POST /sourceConnections``).

    Current protocols variant: ``data={"format": "tabular"}``, ``params={"tableName": ..., "columns": [...]}``.
    Legacy variant: ``data={"format": "parquet_xdm", "schema": {"id": <ad hoc schema $id>}}``,
    ``params={"path": ...}``.

    ``params`` shares its name with Airflow's own task ``params``; values given here go to AEP, and
    DAG-level Params still reach templates. ``source_params`` is the same argument without that overlap.
    :return: the source connection id.
    """

    template_fields: Sequence[str] = (
        *AEPBaseOperator.template_fields,
        "name",
        "base_connection_id",
        "connection_spec_id",
        "data",
        "source_params",
        "description",
    )
    template_fields_renderers = {"data": "json", "source_params": "json"}

    def __init__(
        self,
        *,
        name: str,
        base_connection_id: str,
        connection_spec_id: str,
        data: Mapping[str, Any],
        params: Mapping[str, Any] | None = None,
        source_params: Mapping[str, Any] | None = None,
        description: str | None = None,
        **kwargs: Any,
    ) -> None:
        # Airflow merges DAG Params into `params` before __init__ runs; keep only what this task was given.
        own, inherited = _split_task_params(params, kwargs.get("dag") or _current_dag())
        super().__init__(params=inherited, **kwargs)
        self.name = name
        self.base_connection_id = base_connection_id
        self.connection_spec_id = connection_spec_id
        self.data = data
        if own and source_params is not None:
            raise AEPValidationError("params and source_params are the same argument: pass only one of them")
        # source_params may be an XComArg or a template, resolved only at run time.
        self.source_params = own or source_params or {}
        self.description = description

    def execute(self, context: Any) -> str:
        name = require_text("name", self.name)
        base_id = require_text("base_connection_id", self.base_connection_id)
        spec_id = require_text("connection_spec_id", self.connection_spec_id)
        data, params = self._validated_data_and_params()
        hook = self.hook

        def create() -> str:
            payload: dict[str, Any] = {
                "name": name,
                "baseConnectionId": base_id,
                "data": data,
                "params": params,
                "connectionSpec": _spec_ref(spec_id),
            }
            if self.description:
                payload["description"] = self.description
            return hook.create_source_connection(payload)

        def differences(existing: dict[str, Any]) -> list[str]:
            have_data = existing.get("data") or {}
            have_params = existing.get("params") or {}
            return (
                differ("base connection", existing.get("baseConnectionId"), base_id)
                + differ("connection spec", (existing.get("connectionSpec") or {}).get("id"), spec_id)
                + differ("data.format", have_data.get("format"), data["format"])
                + differ(
                    "data.schema.id", (have_data.get("schema") or {}).get("id"), (data.get("schema") or {}).get("id")
                )
                + differ("params.tableName", have_params.get("tableName"), params.get("tableName"))
                + differ("params.path", have_params.get("path"), params.get("path"))
            )

        connection_id, _ = self.get_or_create(
            kind="source connection",
            name=name,
            find=lambda: hook.find_source_connections_by_name(name, base_id),
            create=create,
            differences=differences,
        )
        return connection_id

    def _validated_data_and_params(self) -> tuple[dict[str, Any], dict[str, Any]]:
        if not isinstance(self.data, Mapping):
            raise invalid("data", self.data, "must be a mapping with a format")
        data, params = dict(self.data), dict(self.source_params or {})
        fmt = data.get("format")
        if fmt not in SOURCE_FORMAT_REQUIREMENTS:
            raise invalid("data.format", fmt, f"must be one of {', '.join(SOURCE_FORMAT_REQUIREMENTS)}")
        for path in SOURCE_FORMAT_REQUIREMENTS[fmt]:
            root, *rest = path.split(".")
            value: Any = {"data": data, "params": params}[root]
            for key in rest:
                value = value.get(key) if isinstance(value, Mapping) else None
            if not value:
                raise invalid(path, value, f"is required when data.format is {fmt!r}")
        if fmt == "parquet_xdm":
            data["schema"] = {"version": "application/vnd.adobe.xed-full-notext+json; version=1", **data["schema"]}
        if params.get("columns") is not None:
            check_columns(params["columns"])
        return data, params


def _split_task_params(params: Any, dag: Any) -> tuple[dict[str, Any], Any]:
    """Split what Airflow hands ``__init__`` as ``params`` into this task's own values and the DAG's Params."""
    if params is None:
        return {}, None
    if not isinstance(params, ParamsDict):
        return dict(params), None
    if hasattr(ParamsDict, "filter_params_by_source"):  # Airflow 3 tags each Param with where it came from
        own = ParamsDict.filter_params_by_source(params, "task")
        return {key: own.get_param(key).value for key in own}, ParamsDict.filter_params_by_source(params, "dag")
    # Airflow 2 merged them untagged: what the DAG declares with the same value is the DAG's.
    dag_params = dag.params if dag is not None else ParamsDict()
    own_keys = [k for k in params if k not in dag_params or dag_params.get_param(k).value != params.get_param(k).value]
    return {k: params.get_param(k).value for k in own_keys}, {
        k: params.get_param(k) for k in params if k not in own_keys
    }


class AEPCreateTargetConnectionOperator(AEPGetOrCreateOperator):
    """
    Get or create a Data Lake target connection (``POST /targetConnections``) writing to a dataset.

    :param base_connection_id: only for the legacy tutorial's dataset base connection; current AEP takes none.
    :return: the target connection id.
    """

    template_fields: Sequence[str] = (
        *AEPBaseOperator.template_fields,
        "name",
        "dataset_id",
        "schema_id",
        "base_connection_id",
        "connection_spec_id",
        "data_format",
        "description",
    )

    def __init__(
        self,
        *,
        name: str,
        dataset_id: str,
        schema_id: str,
        base_connection_id: str | None = None,
        connection_spec_id: str = DATA_LAKE_CONNECTION_SPEC_ID,
        data_format: str = "parquet_xdm",
        description: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.name = name
        self.dataset_id = dataset_id
        self.schema_id = schema_id
        self.base_connection_id = base_connection_id
        self.connection_spec_id = connection_spec_id
        self.data_format = data_format
        self.description = description

    def execute(self, context: Any) -> str:
        name = require_text("name", self.name)
        dataset_id = require_text("dataset_id", self.dataset_id)
        schema_id = require_text("schema_id", self.schema_id)
        spec_id = require_text("connection_spec_id", self.connection_spec_id)
        data_format = require_text("data_format", self.data_format)
        base_id = self.base_connection_id or None
        hook = self.hook

        def create() -> str:
            payload: dict[str, Any] = {
                "name": name,
                "data": {"format": data_format, "schema": {"id": schema_id, "version": TARGET_SCHEMA_VERSION}},
                "params": {"dataSetId": dataset_id},
                "connectionSpec": _spec_ref(spec_id),
            }
            if base_id:
                payload["baseConnectionId"] = base_id
            if self.description:
                payload["description"] = self.description
            return hook.create_target_connection(payload)

        def differences(existing: dict[str, Any]) -> list[str]:
            return (
                differ("dataset", (existing.get("params") or {}).get("dataSetId"), dataset_id)
                + differ("schema", ((existing.get("data") or {}).get("schema") or {}).get("id"), schema_id)
                + differ("base connection", existing.get("baseConnectionId") or None, base_id)
            )

        connection_id, _ = self.get_or_create(
            kind="target connection",
            name=name,
            find=lambda: hook.find_target_connections_by_name(name, spec_id),
            create=create,
            differences=differences,
        )
        return connection_id


class AEPGetFlowSpecOperator(AEPBaseOperator):
    """
    Look up a flow spec id by name (``GET /flowSpecs?property=name==…``); ``CRMToAEP`` serves the protocols sources.

    :return: the flow spec id. Fails clearly when no spec (not found) or several specs carry the name.
    """

    template_fields: Sequence[str] = (*AEPBaseOperator.template_fields, "name")

    def __init__(self, *, name: str = "CRMToAEP", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.name = name

    def execute(self, context: Any) -> str:
        name = require_text("name", self.name)
        specs = self.hook.find_flow_specs_by_name(name)
        sandbox = self.hook.config.sandbox
        if not specs:
            raise AEPResourceNotFoundError(f"No flow spec named {name!r} in sandbox {sandbox!r}")
        if len(specs) > 1:
            raise AEPDuplicateResourceError(
                "flow spec", name, [s.get("id", "?") for s in specs], where=f" in sandbox {sandbox!r}"
            )
        self.log.info("Found flow spec %r: %s", name, specs[0]["id"])
        return specs[0]["id"]


class AEPExploreSourceOperator(AEPBaseOperator):
    """
    Explore what a source's base connection reads (``GET /connections/{id}/explore``), before mapping it.

    :param base_connection_id: a base connection of a source that can be explored (e.g. Generic OData).
    :param table: a table's path as the listing shows it; None lists the tables.
    :param preview_rows: with ``table``, also return up to this many of its rows (0: none, and none asked for).
    :return: without ``table``, the tables: ``[{"type", "name", "path", "canPreview", "canFetchSchema"}]``;
        with it, ``{"table", "columns": [{"name", "type", "xdm"}], "rows": [...]}``.
    """

    template_fields: Sequence[str] = (*AEPBaseOperator.template_fields, "base_connection_id", "table", "preview_rows")

    def __init__(self, *, base_connection_id: str, table: str | None = None, preview_rows: int = 0, **kwargs: Any):
        super().__init__(**kwargs)
        self.base_connection_id = base_connection_id
        self.table = table
        self.preview_rows = preview_rows

    def execute(self, context: Any) -> Any:
        base_id = require_text("base_connection_id", self.base_connection_id)
        rows = _preview_rows(self.preview_rows)
        if self.table is None:
            tables = self.hook.explore(base_id)
            self.log.info(
                "Base connection %s has %d tables: %s",
                base_id,
                len(tables),
                ", ".join(str(t.get("path")) for t in tables),
            )
            return tables
        table = require_text("table", self.table)
        structure = self.hook.explore(base_id, table, preview=rows > 0)
        columns = table_columns(structure, table)
        data = list(structure.get("data") or [])[:rows]
        self.log.info(
            "Table %r of base connection %s: %d columns (%s)%s",
            table,
            base_id,
            len(columns),
            ", ".join(f"{c.get('name')} {c.get('type')}" for c in columns),
            f", {len(data)} preview rows" if rows else "",
        )
        return {"table": table, "columns": columns, "rows": data}


def _preview_rows(value: Any) -> int:
    try:
        rows = int(value)
    except (TypeError, ValueError):
        rows = -1
    if rows < 0 or isinstance(value, bool):
        raise invalid("preview_rows", value, "must be a whole number >= 0")
    return rows


class AEPCreateFlowOperator(AEPFlowLineageOperator, AEPGetOrCreateOperator):
    """
    Get or create a dataflow (``POST /flows``) from source and target connections.

    ``transformations`` and ``schedule_params`` are checked against the flow spec's own JSON schemas
    before anything is created. ``schedule_params.startTime`` takes epoch seconds, a datetime or an
    ISO string. An existing flow of that name is reused only with the same flow spec, connections,
    mapping and frequency/interval.

    :param if_exists: ``"reuse"`` (default), ``"fail"``, or ``"update"``: an existing flow whose
        transformations (any of their params, a Copy's ``deltaColumn`` too) or schedule (``startTime`` too)
        differ from those asked for is patched to them (``PATCH /flows/{id}`` with its etag); a differing
        flow spec or connection still fails the task.
    :param asset_alias: the ``AssetAlias`` that gets the ``aep`` Asset of the flow's target dataset on success
        (see :class:`~airflow_provider_aep.operators.base.AEPDatasetOutletOperator`). OpenLineage: the
        flow's sources as inputs, its dataset as output with column lineage from the mapping set.
    :return: the flow id; the AEP dataflow page URL is pushed as XCom ``dataflow_url``.
    """

    if_exists_choices = (*AEPGetOrCreateOperator.if_exists_choices, "update")

    template_fields: Sequence[str] = (
        *AEPBaseOperator.template_fields,
        "name",
        "flow_spec_id",
        "source_connection_ids",
        "target_connection_ids",
        "transformations",
        "schedule_params",
        "description",
    )
    template_fields_renderers = {"transformations": "json", "schedule_params": "json"}
    operator_extra_links = (AEPDataflowLink(),)

    def __init__(
        self,
        *,
        name: str,
        flow_spec_id: str,
        source_connection_ids: Sequence[str],
        target_connection_ids: Sequence[str],
        transformations: list[dict[str, Any]],
        schedule_params: Mapping[str, Any],
        description: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.name = name
        self.flow_spec_id = flow_spec_id
        self.source_connection_ids = source_connection_ids
        self.target_connection_ids = target_connection_ids
        self.transformations = transformations
        self.schedule_params = schedule_params
        self.description = description

    def execute(self, context: Any) -> str:
        name = require_text("name", self.name)
        flow_spec_id = require_text("flow_spec_id", self.flow_spec_id)
        sources = require_ids("source_connection_ids", self.source_connection_ids)
        targets = require_ids("target_connection_ids", self.target_connection_ids)
        transformations = normalize_transformations(self.transformations)
        schedule = normalize_schedule(self.schedule_params)
        hook = self.hook
        validate_against_flow_spec(hook.get_flow_spec(flow_spec_id), transformations, schedule)

        def create() -> str:
            payload: dict[str, Any] = {
                "name": name,
                "flowSpec": _spec_ref(flow_spec_id),
                "sourceConnectionIds": sources,
                "targetConnectionIds": targets,
                "transformations": transformations,
                "scheduleParams": schedule,
            }
            if self.description:
                payload["description"] = self.description
            return hook.create_flow(payload)

        def fixed_differences(existing: dict[str, Any]) -> list[str]:
            return (
                differ("flow spec", (existing.get("flowSpec") or {}).get("id"), flow_spec_id)
                + differ("source connections", sorted(existing.get("sourceConnectionIds") or []), sorted(sources))
                + differ("target connections", sorted(existing.get("targetConnectionIds") or []), sorted(targets))
            )

        def reuse_differences(existing: dict[str, Any]) -> list[str]:
            have_schedule = existing.get("scheduleParams") or {}
            return (
                fixed_differences(existing)
                + differ("mapping", _mapping_of(existing.get("transformations")), _mapping_of(transformations))
                + differ("frequency", have_schedule.get("frequency"), schedule["frequency"])
                + differ("interval", _as_int(have_schedule.get("interval")), schedule.get("interval"))
            )

        def transformation_differences(existing: dict[str, Any]) -> list[str]:
            have, want = _params_by_name(existing.get("transformations")), _params_by_name(transformations)
            names = dict.fromkeys([*have, *want])
            return [line for n in names for line in differ(f"transformation {n}", have.get(n), want.get(n))]

        def schedule_differences(existing: dict[str, Any]) -> list[str]:
            have = existing.get("scheduleParams") or {}
            return [
                line
                for key in dict.fromkeys(("startTime", "frequency", "interval", *schedule))
                for line in differ(f"schedule {key}", _schedule_value(key, have.get(key)), schedule.get(key))
            ]

        def update_differences(existing: dict[str, Any]) -> list[str]:
            return fixed_differences(existing) + transformation_differences(existing) + schedule_differences(existing)

        def update(existing: dict[str, Any]) -> None:
            fixed = fixed_differences(existing)
            if fixed:
                raise AEPResourceConflictError(
                    f"dataflow {name!r} already exists ({existing.get('id')}) and differs in what an update cannot "
                    f"change: {'; '.join(fixed)}"
                )
            replaced = (
                ("/scheduleParams", schedule, schedule_differences),
                ("/transformations", transformations, transformation_differences),
            )
            operations = [{"op": "replace", "path": p, "value": v} for p, v, differs in replaced if differs(existing)]
            hook.update_flow(str(existing.get("id")), operations)

        flow_id, _ = self.get_or_create(
            kind="dataflow",
            name=name,
            find=lambda: hook.find_flows_by_name(name),
            create=create,
            differences=update_differences if self.if_exists == "update" else reuse_differences,
            update=update,
        )
        url = hook.dataflow_url(flow_id)
        context["ti"].xcom_push(key=DATAFLOW_URL_KEY, value=url)
        self.log.info("AEP dataflow page: %s", url)
        self.flow_id = flow_id
        if self.emits_dataset_events:
            extra = {"flow_id": flow_id, "dataflow_url": url}
            self.emit_dataset_events(context, self.flow_datasets().dataset_ids, extra)
        return flow_id


class AEPSetFlowStateOperator(AEPBaseOperator):
    """
    Enable or disable a dataflow (``POST /flows/{FLOW_ID}/action?op=ENABLE|DISABLE`` with the flow's etag as
    ``If-Match``). A disabled flow gets no scheduled runs. A flow already in that state is left alone, and
    the log says so: running the task twice is safe.

    :param flow_id: the dataflow.
    :param state: ``"enabled"`` or ``"disabled"``; templated.
    :return: the flow id; the AEP dataflow page URL is pushed as XCom ``dataflow_url``.
    """

    template_fields: Sequence[str] = (*AEPBaseOperator.template_fields, "flow_id", "state")
    operator_extra_links = (AEPDataflowLink(),)

    def __init__(self, *, flow_id: str, state: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.flow_id = flow_id
        self.state = state

    def execute(self, context: Any) -> str:
        flow_id = require_text("flow_id", self.flow_id)
        flow_state_action(self.state)  # validates before any call
        hook = self.hook
        url = hook.dataflow_url(flow_id)
        context["ti"].xcom_push(key=DATAFLOW_URL_KEY, value=url)
        if hook.set_flow_state(flow_id, self.state):
            self.log.info("AEP dataflow %s is now %s: %s", flow_id, self.state, url)
        else:
            self.log.info("AEP dataflow %s was already %s; nothing to do: %s", flow_id, self.state, url)
        return flow_id


def _mapping_of(transformations: Any) -> tuple[Any, Any] | None:
    for t in transformations or []:
        if t.get("name") == "Mapping":
            params = t.get("params") or {}
            version = params.get("mappingVersion")
            return params.get("mappingId"), None if version is None else str(version)
    return None


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _params_by_name(transformations: Any) -> dict[str, dict[str, Any]]:
    """Each transformation's params by its name, in the form they are sent (mappingVersion a string)."""
    return {t["name"]: t["params"] for t in normalize_transformations(transformations or [])}


# A scheduleParams field as AEP returns it, in the form it is sent: AEP's docs write numbers and booleans as
# strings, and startTime may come back in any form the provider accepts.
_SCHEDULE_FORMS: Mapping[str, Any] = {
    "startTime": lambda value: to_epoch_seconds(value, "scheduleParams.startTime"),
    "frequency": lambda value: value.lower() if isinstance(value, str) else value,
    "interval": _as_int,
    "backfill": lambda value: value.lower() == "true" if isinstance(value, str) else value,
}


def _schedule_value(key: str, value: Any) -> Any:
    return None if value is None else _SCHEDULE_FORMS.get(key, lambda same: same)(value)
