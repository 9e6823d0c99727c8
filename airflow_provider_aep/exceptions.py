"""Exceptions raised by the AEP provider."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_provider_aep.version_compat import AirflowException, AirflowFailException


class AEPConnectionConfigError(AirflowException):
    """The `aep` connection is missing a field or has a malformed one."""


class AEPApiError(AirflowException):
    """
    An AEP call failed, with everything AEP told us about why.

    ``status`` is None when no HTTP response came back (connection error, timeout).
    ``code`` is AEP's error code (``XDM-1521-400``, ``401013``, ``FLOW-1439-404`` …).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        title: str | None = None,
        request_id: str | None = None,
        method: str | None = None,
        url: str | None = None,
        retry_after: float | None = None,
        body: Any = None,
    ) -> None:
        self.message = message
        self.status = status
        self.code = code
        self.title = title
        self.request_id = request_id
        self.method = method
        self.url = url
        self.retry_after = retry_after
        self.body = body
        super().__init__(self._one_line())

    def _one_line(self) -> str:
        where = f"{self.method} {self.url}" if self.method else "AEP call"
        status = f"HTTP {self.status}:" if self.status is not None else "no response:"
        parts = [f"{where} failed: {status}"]
        if self.code:
            parts.append(f"[{self.code}]")
        if self.title and self.title not in self.message:
            parts.append(f"{self.title}:")
        parts.append(self.message)
        if self.request_id:
            parts.append(f"(x-request-id {self.request_id})")
        return " ".join(parts)

    def __reduce__(self):  # keyword-only __init__ needs help to pickle across processes
        return (_rebuild_api_error, (type(self), self.message, self.__dict__.copy()))

    @property
    def is_conflict(self) -> bool:
        """True when AEP refused a create because the name or title is already taken."""
        return self.status == 409 or (self.status == 400 and (self.code or "").endswith("XDM-1521-400"))

    @property
    def is_not_found(self) -> bool:
        return self.status == 404


def _rebuild_api_error(cls: type[AEPApiError], message: str, state: dict[str, Any]) -> AEPApiError:
    fields = {
        k: state.get(k) for k in ("status", "code", "title", "request_id", "method", "url", "retry_after", "body")
    }
    return cls(message, **fields)


class AEPTransportError(AEPApiError):
    """No usable HTTP response: connection refused or dropped, or a timeout."""


RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


def is_retryable(exc: BaseException) -> bool:
    """True for what a retry may cure: no answer at all, a throttle (429) or a 5xx of AEP's gateway."""
    if isinstance(exc, AEPTransportError):
        return True
    return isinstance(exc, AEPApiError) and exc.status in RETRYABLE_STATUSES


class AEPResourceConflictError(AirflowException):
    """A resource with the requested name exists but differs from what was asked."""


class AEPDuplicateResourceError(AEPResourceConflictError):
    """A lookup by name found several resources where there must be at most one."""

    def __init__(self, kind: str, name: str, ids: list[str], where: str = "") -> None:
        self.kind, self.name, self.ids, self.where = kind, name, list(ids), where
        super().__init__(
            f"{len(self.ids)} {kind}s named {name!r}{where} exist ({', '.join(self.ids)}); "
            "delete the extra ones or rename them, then run again"
        )

    def __reduce__(self):  # the constructor's arguments, not the message
        return (type(self), (self.kind, self.name, self.ids, self.where))


class AEPResourceNotFoundError(AirflowException):
    """A resource the task needs does not exist."""


class AEPFlowRunFailedError(AirflowException):
    """The watched flow run ended ``failed`` (or ``partialSuccess`` with ``fail_on_partial_success``)."""

    def __init__(self, message: str, summary: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.summary = dict(summary or {})

    def __reduce__(self):  # the summary must survive the trip from the triggerer
        return (type(self), (str(self), self.summary))


class AEPQualityGateError(AEPFlowRunFailedError, AirflowFailException):
    """
    A finished run rejected more records than the quality gate allows. Airflow does not retry it: a retry
    would follow the same run (it is not ``failed``) and judge it the same way.
    """


class AEPRetriggerRefusedError(AirflowException):
    """AEP would not re-trigger a flow run (e.g. the run is not finished, or its source is not a batch source)."""


class AEPValidationError(AirflowException, ValueError):
    """Operator input that AEP would reject; raised before any create call."""
