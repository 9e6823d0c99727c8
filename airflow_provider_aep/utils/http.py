"""
Transport policy shared by the sync hook (requests) and the async trigger (httpx).

Everything here is client-agnostic: header building, retryable statuses, backoff with ``Retry-After``,
error decoding, the IMS token request and the process-wide token cache. Keeping one copy is what makes
poke mode and deferrable mode behave the same.
"""

from __future__ import annotations

import json
import logging
import random
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_aep import __version__
from airflow_provider_aep.exceptions import AEPApiError, AEPTransportError
from airflow_provider_aep.utils.connection import AEPConnectionConfig
from airflow_provider_aep.version_compat import mask_secret

log = logging.getLogger(__name__)

SERVICE_BASE_PATHS = {
    "schemaregistry": "/data/foundation/schemaregistry",
    "catalog": "/data/foundation/catalog",
    "flowservice": "/data/foundation/flowservice",
    "conversion": "/data/foundation/conversion",
}
TOKEN_PATH = "/ims/token/v3"

# Schema Registry: lists refuse a version, lookups require one (aep-api.md §2.5, §2.6).
XED_LIST_ACCEPT = "application/vnd.adobe.xed-id+json"
XED_LOOKUP_ACCEPT = "application/vnd.adobe.xed+json; version=1"

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
# A 429 comes from the gateway before the service acts, so a create that got one did not commit.
UNCOMMITTED_STATUSES = frozenset({429})
# Codes of AEPTransportError, the same for requests (sync hook) and httpx (async hook).
CONNECT_FAILED = "CONNECT_FAILED"  # the request never left: a create may be re-sent
READ_TIMEOUT = "READ_TIMEOUT"
CONNECTION_ERROR = "CONNECTION_ERROR"

# Refresh this long before IMS says the token expires (aepp uses 500 s; Databricks 120 s).
TOKEN_REFRESH_LEAD_SECONDS = 300.0
DEFAULT_TIMEOUT = (10.0, 60.0)
TOKEN_TIMEOUT = (10.0, 30.0)

# Most specific first: where AEP's error bodies put the human-readable reason (aep-api.md §6.1).
_MESSAGE_PATHS: tuple[tuple[str, ...], ...] = (
    ("detail",),
    ("report", "detailed-message"),
    ("errorMessage",),
    ("message",),
    ("error_description",),
    ("title",),
)
_CODE_PATHS: tuple[tuple[str, ...], ...] = (("type",), ("error_code",), ("code",), ("error",))
_REQUEST_ID_PATHS: tuple[tuple[str, ...], ...] = (("report", "request-id"), ("report", "registryRequestId"))


def user_agent() -> str:
    try:
        from airflow import __version__ as airflow_version
    except ImportError:  # pragma: no cover - Airflow is a dependency
        airflow_version = "unknown"
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    return f"airflow-provider-aep/{__version__} apache-airflow/{airflow_version} python/{py}"


def new_request_id() -> str:
    return str(uuid.uuid4())


def platform_headers(
    config: AEPConnectionConfig,
    token: str,
    *,
    request_id: str,
    accept: str | None = None,
    has_body: bool = False,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The header set every Platform call carries (aep-api.md §1.3)."""
    headers = {
        "Authorization": f"Bearer {token}",
        "x-api-key": config.client_id,
        "x-gw-ims-org-id": config.org_id,
        "x-sandbox-name": config.sandbox,
        "Accept": accept or "application/json",
        "User-Agent": user_agent(),
        "x-request-id": request_id,
    }
    if has_body:
        headers["Content-Type"] = "application/json"
    if extra:
        headers.update(extra)
    return headers


def platform_url(config: AEPConnectionConfig, service: str, path: str) -> str:
    return f"{config.platform_url}{SERVICE_BASE_PATHS[service]}/{path.lstrip('/')}"


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date); None if absent or unusable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _dig(body: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(body, Mapping):
            return None
        body = body.get(key)
    return body


def _first(body: Any, paths: tuple[tuple[str, ...], ...]) -> str | None:
    for path in paths:
        value = _dig(body, path)
        if value not in (None, "", [], {}):
            return value if isinstance(value, str) else json.dumps(value)
    return None


def decode_error(
    status: int,
    headers: Mapping[str, str],
    text: str,
    *,
    method: str,
    url: str,
    request_id: str | None,
) -> AEPApiError:
    """Turn any AEP error response (gateway, XDM, FLOW, Catalog, IMS, or not JSON at all) into one AEPApiError."""
    try:
        body: Any = json.loads(text) if text else None
    except ValueError:
        body = None
    if isinstance(body, list) and body and isinstance(body[0], Mapping):
        body = body[0]
    code = _first(body, _CODE_PATHS)
    if code and "/" in code:  # RFC 7807 `type` URIs end with the code: .../errors/XDM-1521-400
        code = code.rstrip("/").rsplit("/", 1)[-1]
    message = _first(body, _MESSAGE_PATHS)
    if message is None:
        snippet = " ".join(text.split())[:300] if text else ""
        message = snippet or "empty response body"
    title = _dig(body, ("title",)) if isinstance(_dig(body, ("title",)), str) else None
    lowered = {k.lower(): v for k, v in headers.items()}
    return AEPApiError(
        message,
        status=status,
        code=code,
        title=title,
        request_id=lowered.get("x-request-id") or _first(body, _REQUEST_ID_PATHS) or request_id,
        method=method,
        url=url,
        retry_after=parse_retry_after(lowered.get("retry-after")),
        body=body,
    )


def first_item(body: Any) -> Any:
    """Flow Service answers GET-by-id with the list envelope ``{"items": [obj]}``; unwrap it."""
    items = body.get("items") if isinstance(body, Mapping) else None
    return items[0] if items else body


def safe_to_resend(exc: BaseException) -> bool:
    """True when a failed create certainly did not commit, so sending it again cannot duplicate it."""
    if isinstance(exc, AEPTransportError):
        return exc.code == CONNECT_FAILED
    return isinstance(exc, AEPApiError) and exc.status in UNCOMMITTED_STATUSES


def token_rejected(status: int, auth_attempt: int, config: AEPConnectionConfig) -> bool:
    """A 401 on the first try with a token we can renew: drop it, fetch a new one and send once more."""
    if status == 401 and auth_attempt == 1 and config.uses_client_credentials:
        log.info("AEP rejected the access token (HTTP 401); fetching a new one and retrying once")
        return True
    return False


def log_exchange(method: str, url: str, status: int, started: float, request_id: str) -> None:
    """One debug line per call; headers are never logged (they carry the token)."""
    log.debug(
        "AEP %s %s -> %s in %.0f ms (x-request-id %s)",
        method,
        urlsplit(url).path,
        status,
        (time.monotonic() - started) * 1000,
        request_id,
    )


def response_body(status: int, headers: Mapping[str, str], text: str, *, method: str, url: str, request_id: str) -> Any:
    """The decoded body of a Platform answer (None when empty, text when not JSON), or its AEPApiError."""
    if status >= 400:
        error = decode_error(status, headers, text, method=method, url=url, request_id=request_id)
        log.debug("AEP error: %s", error)
        raise error
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, AEPTransportError):
        return True
    return isinstance(exc, AEPApiError) and exc.status in RETRYABLE_STATUSES


@dataclass(frozen=True)
class RetryPolicy:
    """
    How often and how long to retry a failed AEP call; serializable so a trigger gets the same policy.

    ``retry_limit`` counts retries after the first attempt. Waits grow exponentially from ``retry_delay``
    up to ``max_delay`` with jitter; a ``Retry-After`` header wins, capped at ``retry_after_cap``.
    """

    retry_limit: int = 5
    retry_delay: float = 1.0
    max_delay: float = 60.0
    retry_after_cap: float = 300.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if self.retry_limit < 0:
            raise ValueError(f"retry_limit must be >= 0, got {self.retry_limit!r}")
        if self.retry_delay < 0 or self.max_delay < 0 or self.retry_after_cap < 0:
            raise ValueError("retry_delay, max_delay and retry_after_cap must be >= 0")

    @classmethod
    def coerce(cls, value: RetryPolicy | Mapping[str, Any] | None) -> RetryPolicy:
        if value is None:
            return cls()
        if isinstance(value, RetryPolicy):
            return value
        return cls(**dict(value))

    @classmethod
    def from_hook_args(
        cls, retry_limit: int | None, retry_delay: float | None, retry_args: Mapping[str, Any] | None
    ) -> RetryPolicy:
        """The policy a hook's ``retry_limit``/``retry_delay``/``retry_args`` arguments describe."""
        policy = dict(retry_args or {})
        if retry_limit is not None:
            policy["retry_limit"] = retry_limit
        if retry_delay is not None:
            policy["retry_delay"] = retry_delay
        return cls.coerce(policy)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def wait_seconds(self, attempt: int, exc: BaseException | None) -> float:
        """Delay before retry number ``attempt`` (1-based) after ``exc``."""
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return min(float(retry_after), self.retry_after_cap)
        delay = min(self.retry_delay * (2 ** (attempt - 1)), self.max_delay)
        if self.jitter:
            delay = random.uniform(delay / 2, delay)
        return delay

    def tenacity_kwargs(
        self, describe: Callable[[], str], *, retry: Callable[[BaseException], bool] = is_retryable
    ) -> dict[str, Any]:
        """Arguments for ``tenacity.Retrying`` or ``tenacity.AsyncRetrying`` implementing this policy."""
        import tenacity

        def wait(state: tenacity.RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            return self.wait_seconds(state.attempt_number, exc)

        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            sleep = state.next_action.sleep if state.next_action else 0.0
            log.warning(
                "%s failed (attempt %d of %d): %s; retrying in %.1f s",
                describe(),
                state.attempt_number,
                self.retry_limit + 1,
                exc,
                sleep,
            )

        return {
            "stop": tenacity.stop_after_attempt(self.retry_limit + 1),
            "wait": wait,
            "retry": tenacity.retry_if_exception(retry),
            "before_sleep": before_sleep,
            "reraise": True,
        }


def token_form(config: AEPConnectionConfig) -> dict[str, str]:
    """The client-credentials form body for IMS. It goes in the body, never the query string (it could be logged)."""
    return {
        "grant_type": "client_credentials",
        "client_id": config.client_id,
        "client_secret": config.client_secret or "",
        "scope": config.scopes,
    }


def token_url(config: AEPConnectionConfig) -> str:
    return f"{config.ims_url}{TOKEN_PATH}"


def parse_token_response(
    status: int, headers: Mapping[str, str], text: str, *, url: str, request_id: str
) -> tuple[str, float]:
    """Return (access_token, expires_in seconds) or raise an AEPApiError that carries no secret."""
    if status >= 400:
        raise decode_error(status, headers, text, method="POST", url=url, request_id=request_id)
    try:
        body = json.loads(text)
        token = body["access_token"]
        expires_in = float(body.get("expires_in", 86399))
    except (ValueError, KeyError, TypeError):
        raise AEPApiError(
            "IMS answered without an access_token", status=status, method="POST", url=url, request_id=request_id
        ) from None
    token_type = str(body.get("token_type", "bearer")).lower()
    if token_type != "bearer":
        raise AEPApiError(
            f"IMS returned token_type {token_type!r}, expected 'bearer'", status=status, method="POST", url=url
        )
    return token, expires_in


class TokenCache:
    """Process-wide IMS tokens keyed by (ims_url, client id, scopes), refreshed ahead of expiry."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._tokens: dict[tuple[str, str, str], tuple[str, float]] = {}
        self._lock = threading.Lock()
        self.clock = clock

    def get(self, key: tuple[str, str, str]) -> str | None:
        with self._lock:
            entry = self._tokens.get(key)
        if entry and self.clock() < entry[1] - TOKEN_REFRESH_LEAD_SECONDS:
            return entry[0]
        return None

    def put(self, key: tuple[str, str, str], token: str, expires_in: float) -> None:
        with self._lock:
            self._tokens[key] = (token, self.clock() + expires_in)

    def invalidate(self, key: tuple[str, str, str], token: str | None = None) -> None:
        """Drop the cached token, unless another caller already replaced the one we saw fail."""
        with self._lock:
            entry = self._tokens.get(key)
            if entry and (token is None or entry[0] == token):
                del self._tokens[key]

    def clear(self) -> None:
        with self._lock:
            self._tokens.clear()


TOKEN_CACHE = TokenCache()


def transport_failure(
    exc: BaseException, *, connect_failed: bool, timed_out: bool, method: str, url: str, request_id: str
) -> AEPTransportError:
    """Wrap a client library's network exception; the caller says which kind it was, this picks the code."""
    code = CONNECT_FAILED if connect_failed else READ_TIMEOUT if timed_out else CONNECTION_ERROR
    return AEPTransportError(f"{type(exc).__name__}: {exc}", code=code, method=method, url=url, request_id=request_id)


async def amask_secret(value: str | None) -> None:
    """Async :func:`mask_secret`: on Airflow 3 it tells the supervisor without blocking the event loop."""
    if not value:
        return
    try:
        from airflow.sdk.log import amask_secret as _amask
    except ImportError:  # Airflow 2, or a Task SDK without it: the local masker does no I/O
        mask_secret(value)
        return
    await _amask(value)
