"""What every AEP operator shares: the hook, retry settings, and get-or-create by name."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from typing import Any

from airflow_provider_aep.exceptions import AEPApiError, AEPResourceConflictError, AEPValidationError
from airflow_provider_aep.hooks.aep import AEPHook
from airflow_provider_aep.version_compat import BaseOperator

IF_EXISTS_CHOICES = ("reuse", "fail")


class AEPHookMixin:
    """
    The hook of an AEP task, from its ``aep_conn_id`` and ``aep_retry_*`` attributes.

    The retry settings carry an ``aep_`` prefix because ``retries`` and ``retry_delay`` already belong to
    Airflow (they retry the whole task, and ``default_args`` sets them for every task).
    """

    aep_conn_id: str
    aep_retry_limit: int | None
    aep_retry_delay: float | None
    aep_retry_args: Mapping[str, Any] | None

    @cached_property
    def hook(self) -> AEPHook:
        return AEPHook(
            self.aep_conn_id,
            retry_limit=self.aep_retry_limit,
            retry_delay=self.aep_retry_delay,
            retry_args=self.aep_retry_args,
        )


class AEPBaseOperator(AEPHookMixin, BaseOperator):
    """
    Base of the AEP operators.

    :param aep_conn_id: the ``aep`` connection.
    :param if_exists: ``"reuse"`` (default) returns the existing resource of that name when it matches
        what was asked; ``"fail"`` raises naming the existing id.
    :param aep_retry_limit: retries of one AEP call on 429, 5xx or network errors; hook default if None.
    :param aep_retry_delay: first backoff delay in seconds between those retries; hook default if None.
    :param aep_retry_args: other :class:`~airflow_provider_aep.utils.http.RetryPolicy` fields.
    """

    template_fields: Sequence[str] = ("aep_conn_id",)
    ui_color = "#fa0f00"  # Adobe red
    ui_fgcolor = "#ffffff"

    def __init__(
        self,
        *,
        aep_conn_id: str = AEPHook.default_conn_name,
        if_exists: str = "reuse",
        aep_retry_limit: int | None = None,
        aep_retry_delay: float | None = None,
        aep_retry_args: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if if_exists not in IF_EXISTS_CHOICES:
            raise AEPValidationError(f"if_exists={if_exists!r}: must be one of {', '.join(IF_EXISTS_CHOICES)}")
        self.aep_conn_id = aep_conn_id
        self.if_exists = if_exists
        self.aep_retry_limit = aep_retry_limit
        self.aep_retry_delay = aep_retry_delay
        self.aep_retry_args = aep_retry_args

    def get_or_create(
        self,
        *,
        kind: str,
        name: str,
        find: Callable[[], list[dict[str, Any]]],
        create: Callable[[], str],
        differences: Callable[[dict[str, Any]], list[str]],
        id_key: str = "id",
    ) -> tuple[str, bool]:
        """
        Return ``(id, created)``: the one existing ``kind`` named ``name`` when it matches, else a new one.

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
        if len(existing) > 1:
            ids = ", ".join(str(r.get(id_key)) for r in existing)
            raise AEPResourceConflictError(
                f"{len(existing)} {kind}s named {name!r} exist ({ids}); rename the resource or delete the extra ones"
            )
        resource = existing[0]
        resource_id = str(resource.get(id_key))
        if self.if_exists == "fail":
            raise AEPResourceConflictError(f"{kind} {name!r} already exists with id {resource_id} and if_exists='fail'")
        diffs = differences(resource)
        if diffs:
            raise AEPResourceConflictError(
                f"{kind} {name!r} already exists ({resource_id}) but differs from what was asked: {'; '.join(diffs)}"
            )
        self.log.info("Reused %s %r: %s (already exists and matches)", kind, name, resource_id)
        return resource_id, False


def differ(label: str, existing: Any, wanted: Any) -> list[str]:
    """One difference line, or none, for a compared attribute."""
    return [] if existing == wanted else [f"{label} is {existing!r}, asked for {wanted!r}"]
