"""The bases of the AEP tasks: the hook and its retry settings, get-or-create by name, and waiting for a run."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_aep.assets.aep import SCHEME, asset_alias_class, attach_dataset_events, create_asset
from airflow_provider_aep.exceptions import (
    AEPApiError,
    AEPFlowRunFailedError,
    AEPResourceConflictError,
    AEPValidationError,
)
from airflow_provider_aep.links.aep import AEPDataflowLink, AEPFlowRunLink
from airflow_provider_aep.utils.defaults import DEFAULT_CONN_ID
from airflow_provider_aep.utils.diagnostics import DEFAULT_DIAGNOSTICS_ROWS, collect_diagnostics
from airflow_provider_aep.utils.flow_runs import (
    RUN_SUMMARY_KEY,
    FlowRunWatch,
    QualityGate,
    result_of_finished_run,
    run_event_extra,
    summary_of_event,
)
from airflow_provider_aep.utils.lineage import FlowDatasets, operator_lineage, read_flow_datasets
from airflow_provider_aep.utils.resources import oldest_match
from airflow_provider_aep.version_compat import AirflowSensorTimeout, BaseOperator, conf

if TYPE_CHECKING:
    from airflow_provider_aep.hooks.aep import AEPHook

IF_EXISTS_CHOICES = ("reuse", "fail")
# Airflow's own deferral timeout is set this far past the trigger's deadline, so the trigger's `timeout`
# event (with the run's last status and link) wins, while a lost trigger still cannot wait forever.
DEFER_TIMEOUT_BUFFER = 300.0


class AEPBaseOperator(BaseOperator):
    """
    Base of every AEP task: the connection and the hook.

    The retry settings carry an ``aep_`` prefix because ``retries`` and ``retry_delay`` already belong to
    Airflow (they retry the whole task, and ``default_args`` sets them for every task).

    :param aep_conn_id: the ``aep`` connection.
    :param aep_retry_limit: retries of one AEP call on 429, 5xx or network errors; hook default if None.
    :param aep_retry_delay: first backoff delay in seconds between those retries; hook default if None.
    :param aep_retry_args: other :class:`~airflow_provider_aep.utils.client_core.RetryPolicy` fields.
    """

    template_fields: Sequence[str] = ("aep_conn_id",)
    ui_color = "#fa0f00"  # Adobe red
    ui_fgcolor = "#ffffff"

    def __init__(
        self,
        *,
        aep_conn_id: str = DEFAULT_CONN_ID,
        aep_retry_limit: int | None = None,
        aep_retry_delay: float | None = None,
        aep_retry_args: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.aep_conn_id = aep_conn_id
        self.aep_retry_limit = aep_retry_limit
        self.aep_retry_delay = aep_retry_delay
        self.aep_retry_args = aep_retry_args

    @cached_property
    def hook(self) -> AEPHook:
        # Imported on first use: parsing a DAG never loads the client core (bench/RESULTS.md, DAG parse).
        from airflow_provider_aep.hooks.aep import AEPHook

        return AEPHook(
            self.aep_conn_id,
            retry_limit=self.aep_retry_limit,
            retry_delay=self.aep_retry_delay,
            retry_args=self.aep_retry_args,
        )


class AEPDatasetOutletOperator(AEPBaseOperator):
    """
    Base of the tasks whose success is news about AEP datasets (a dataset created, a flow run that wrote
    to one): on success they give Airflow asset events for the ``aep`` Assets of those datasets.

    :param asset_alias: name of an ``AssetAlias`` added to the task's outlets; on success the task adds an
        event of each dataset's ``aep`` Asset to it (the dataset id is often known only then). An ``aep``
        Asset declared in ``outlets`` gets the same ``extra`` when it is one of those datasets.
    """

    template_fields: Sequence[str] = AEPBaseOperator.template_fields

    def __init__(self, *, asset_alias: str | None = None, **kwargs: Any) -> None:
        if asset_alias is not None:
            if not isinstance(asset_alias, str) or not asset_alias.strip():
                raise AEPValidationError(f"asset_alias={asset_alias!r}: must be the name of an asset alias")
            outlets = kwargs.get("outlets")
            outlets = [] if outlets is None else list(outlets) if isinstance(outlets, list | tuple) else [outlets]
            kwargs["outlets"] = [*outlets, asset_alias_class()(name=asset_alias)]
        super().__init__(**kwargs)
        self.asset_alias = asset_alias

    @property
    def emits_dataset_events(self) -> bool:
        """An alias or an ``aep`` Asset among the outlets: only then are the datasets worth a read."""
        alias = asset_alias_class()
        return any(isinstance(o, alias) or str(getattr(o, "uri", "")).startswith(f"{SCHEME}://") for o in self.outlets)

    def emit_dataset_events(self, context: Any, dataset_ids: Sequence[str], extra: Mapping[str, Any]) -> None:
        config = self.hook.config
        assets = [create_asset(org_id=config.org_id, sandbox=config.sandbox, dataset_id=d) for d in dataset_ids]
        given = attach_dataset_events(context, self.outlets, assets, extra)
        if given:
            self.log.info("Asset events for AEP datasets, emitted when this task succeeds: %s", ", ".join(given))


class AEPGetOrCreateOperator(AEPBaseOperator):
    """
    Base of the operators that get or create one AEP resource by name.

    :param if_exists: ``"reuse"`` (default) returns the existing resource of that name when it matches
        what was asked; ``"fail"`` raises naming the existing id.
    """

    if_exists_choices: tuple[str, ...] = IF_EXISTS_CHOICES

    def __init__(self, *, if_exists: str = "reuse", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if if_exists not in self.if_exists_choices:
            raise AEPValidationError(f"if_exists={if_exists!r}: must be one of {', '.join(self.if_exists_choices)}")
        self.if_exists = if_exists

    def get_or_create(
        self,
        *,
        kind: str,
        name: str,
        find: Callable[[], list[dict[str, Any]]],
        create: Callable[[], str],
        differences: Callable[[dict[str, Any]], list[str]],
        update: Callable[[dict[str, Any]], None] | None = None,
        id_key: str = "id",
    ) -> tuple[str, bool]:
        """
        Return ``(id, created)``: the existing ``kind`` named ``name`` when it matches, else a new one. Of
        several with the name, the oldest is used and the others are logged as orphans to clean up. Under
        ``if_exists="update"`` an existing one that differs is brought in line by ``update(existing)``.

        A create refused because the name is taken (XDM-1521-400 or 409: someone created it since our
        lookup) resolves to the existing resource under ``reuse``.
        """
        existing = find()
        if not existing:
            try:
                resource_id = create()
            except AEPApiError as exc:
                if not exc.is_conflict:
                    raise
                existing = find()
                if not existing:
                    raise
                self.log.info(
                    "AEP refused to create %s %r because the name is taken (%s); looking at the existing one",
                    kind,
                    name,
                    exc.code,
                )
            else:
                self.log.info("Created %s %r: %s", kind, name, resource_id)
                return resource_id, True
        resource = oldest_match(existing, kind, name, self.log)
        assert resource is not None
        resource_id = str(resource.get(id_key))
        if self.if_exists == "fail":
            raise AEPResourceConflictError(f"{kind} {name!r} already exists with id {resource_id} and if_exists='fail'")
        diffs = differences(resource)
        if diffs and self.if_exists == "update" and update is not None:
            update(resource)
            self.log.info("Updated %s %r: %s (%s)", kind, name, resource_id, "; ".join(diffs))
            return resource_id, False
        if diffs:
            raise AEPResourceConflictError(
                f"{kind} {name!r} already exists ({resource_id}) but differs from what was asked: {'; '.join(diffs)}"
            )
        self.log.info("Reused %s %r: %s (already exists and matches)", kind, name, resource_id)
        return resource_id, False


def differ(label: str, existing: Any, wanted: Any) -> list[str]:
    """One difference line, or none, for a compared attribute."""
    return [] if existing == wanted else [f"{label} is {existing!r}, asked for {wanted!r}"]


class AEPFlowLineageOperator(AEPDatasetOutletOperator):
    """The datasets of the task's flow (``flow_id``), read once, and its OpenLineage facets."""

    flow_id: str

    def flow_datasets(self, *, with_sources: bool = False) -> FlowDatasets:
        known: FlowDatasets | None = getattr(self, "_flow_datasets", None)
        if known is None or (with_sources and not known.sources):
            known = self.hook.drive(read_flow_datasets(self.hook, self.flow_id, with_sources=with_sources))
            self._flow_datasets = known
        return known

    def lineage_summary(self) -> Mapping[str, Any] | None:
        """The run the lineage is about (None: the flow itself)."""
        return None

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Inputs (the flow's sources), outputs (its ``aep`` datasets with column lineage) and, for a run, its
        output statistics; called by Airflow's OpenLineage provider when the task ends."""
        config = self.hook.config
        return operator_lineage(
            self.flow_datasets(with_sources=True), config.org_id, config.sandbox, self.lineage_summary()
        )


class AEPFlowRunWaitOperator(AEPFlowLineageOperator):
    """
    Base of :class:`~airflow_provider_aep.sensors.flow_run.AEPFlowRunSensor` and the operators that start a
    run (:class:`~airflow_provider_aep.operators.flow_run.AEPRunFlowOperator`,
    :class:`~airflow_provider_aep.operators.flow_run.AEPRetriggerFlowRunOperator`): waiting for a flow run,
    in the worker or deferred to :class:`~airflow_provider_aep.triggers.flow_run.AEPFlowRunTrigger`, and
    judging it the same way after either.

    :param flow_id: the dataflow.
    :param fail_on_partial_success: fail on ``partialSuccess`` instead of succeeding with a warning.
    :param max_failed_records: fail the task when more records than this failed, whatever AEP's status.
    :param max_failed_ratio: fail the task when more than this share (0 to 1) of the input records failed.
    :param diagnostics_rows: row-error samples read from AEP's error diagnostics when a run failed, partly
        succeeded or broke the gate (0: none); they go with the batches' status and counts into the error,
        the warning and the summary (``diagnostics``). A failed run's summary is XCom ``run_summary``.
    :param deferrable: wait in the triggerer; the status is read first, so a finished run never defers.
    :param asset_alias: see :class:`AEPDatasetOutletOperator`: a run that succeeds (and passes the gate)
        gives an asset event of the flow's target dataset with the run id, status, record and byte counts
        and links in its ``extra``.
    """

    template_fields: Sequence[str] = (*AEPBaseOperator.template_fields, "flow_id")
    operator_extra_links = (AEPDataflowLink(), AEPFlowRunLink())

    def __init__(
        self,
        *,
        flow_id: str,
        fail_on_partial_success: bool = False,
        max_failed_records: int | None = None,
        max_failed_ratio: float | None = None,
        diagnostics_rows: int = DEFAULT_DIAGNOSTICS_ROWS,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(diagnostics_rows, bool) or not isinstance(diagnostics_rows, int) or diagnostics_rows < 0:
            raise AEPValidationError(f"diagnostics_rows={diagnostics_rows!r}: must be a whole number >= 0")
        self.flow_id = flow_id
        self.fail_on_partial_success = fail_on_partial_success
        self.max_failed_records = max_failed_records
        self.max_failed_ratio = max_failed_ratio
        self.quality_gate = QualityGate(max_failed_records, max_failed_ratio)  # validates both
        self.diagnostics_rows = diagnostics_rows
        self.deferrable = deferrable

    @property
    def poll_seconds(self) -> float:
        """Seconds between two status reads."""
        raise NotImplementedError

    @property
    def wait_seconds(self) -> float:
        """How long to wait for the run to finish."""
        raise NotImplementedError

    def finish(self, context: Any, summary: Mapping[str, Any]) -> dict[str, Any]:
        """The task's result for a finished run, however it was waited for; a failure's summary goes to XCom.
        A run that counts as a success gives the flow's datasets their asset events."""
        try:
            result = result_of_finished_run(
                summary,
                fail_on_partial_success=self.fail_on_partial_success,
                gate=self.quality_gate,
                diagnose=self.diagnose,
                logger=self.log,
            )
        except AEPFlowRunFailedError as exc:
            context["ti"].xcom_push(key=RUN_SUMMARY_KEY, value=exc.summary)
            raise
        self._run_summary = result
        if self.emits_dataset_events:
            self.emit_dataset_events(context, self.flow_datasets().dataset_ids, run_event_extra(result))
        return result

    def lineage_summary(self) -> Mapping[str, Any] | None:
        return getattr(self, "_run_summary", None)

    def diagnose(self, summary: Mapping[str, Any]) -> dict[str, Any]:
        """AEP's diagnostics of a finished run (see :func:`~airflow_provider_aep.utils.diagnostics.collect_diagnostics`)."""
        return self.hook.drive(collect_diagnostics(self.hook, summary, rows=self.diagnostics_rows, logger=self.log))

    def timeout_error(self, watch: FlowRunWatch, deadline: float) -> AirflowSensorTimeout:
        return AirflowSensorTimeout(watch.timeout_message(deadline, self.hook.dataflow_url(self.flow_id)))

    def defer_watch(self, watch: FlowRunWatch, deadline: float) -> None:
        """Hand the wait to the triggerer; ``execute_complete`` resumes the task."""
        # Imported here, not at module level: DAG files that import these tasks never need the trigger
        # (nor airflow.triggers.base) to parse (bench/RESULTS.md, DAG-parse overhead).
        from airflow_provider_aep.triggers.flow_run import AEPFlowRunTrigger

        self.defer(
            trigger=AEPFlowRunTrigger(
                self.flow_id,
                run_id=watch.run_id,
                created_after_ms=watch.created_after_ms,
                aep_conn_id=self.aep_conn_id,
                poll_interval=self.poll_seconds,
                end_time=deadline,
                retry_args=self.hook.retry_policy.to_dict(),
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=max(0.0, deadline - time.time()) + self.poll_seconds + DEFER_TIMEOUT_BUFFER),
        )

    def summary_of_event(self, context: Any, event: Any) -> dict[str, Any]:
        """The finished run's summary from the trigger's event (timeouts and errors raise as in the worker)."""
        ti = context["ti"]
        return summary_of_event(event, push=lambda key, value: ti.xcom_push(key=key, value=value))

    def execute_complete(self, context: Any, event: Any = None) -> dict[str, Any]:
        """Resume after the trigger: the same value and errors as waiting in the worker."""
        return self.finish(context, self.summary_of_event(context, event))
