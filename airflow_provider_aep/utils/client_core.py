"""
The client core: every AEP call written once, as a *flow*, with no I/O of its own.

A flow is a generator that yields *effects* and receives their results; a driver performs them. ``AEPHook``
drives flows with ``requests``, ``AEPAsyncHook`` with ``httpx``, so both get the same tokens, headers,
401 refresh, retries, lost-response recovery, pagination and errors (the model is httpx's ``Auth.auth_flow``).

The effects, and what a driver answers:

- :class:`Send` an :class:`HttpRequest`: the :class:`HttpResponse`, or the network failure thrown back
  into the flow as :class:`~airflow_provider_aep.exceptions.AEPTransportError`;
- :class:`Sleep`: None, after the wait;
- :class:`Mask` a secret: None, once Airflow's secret masker knows it;
- :class:`Exclusive` a flow: that flow's result, driven while holding the process's token lock and, where
  the token store can have one, the host's lock for that token, so that many callers (threads, event
  loops, task processes) finding the token cache empty make one IMS call;
- :class:`LoadToken`, :class:`SaveToken`, :class:`DropToken`: the on-disk token store's answer (a
  :class:`StoredToken` or None; None), which the drivers read and write with
  :mod:`~airflow_provider_aep.utils.token_store`.

An exception raised while performing an effect is thrown into the flow, which decides what it means.
"""

from __future__ import annotations

import json
import logging
import random
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import asdict, dataclass, field
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload
from urllib.parse import parse_qsl, urlsplit

from airflow_provider_aep import __version__
from airflow_provider_aep.exceptions import AEPApiError, AEPTransportError, is_retryable
from airflow_provider_aep.utils.connection import AEPConnectionConfig
from airflow_provider_aep.utils.resources import dig

log = logging.getLogger(__name__)

T = TypeVar("T")
P = ParamSpec("P")
Timeout = float | tuple[float, float]
QueryParams = Mapping[str, Any] | list[tuple[str, Any]] | None

SERVICE_BASE_PATHS = {
    "schemaregistry": "/data/foundation/schemaregistry",
    "catalog": "/data/foundation/catalog",
    "flowservice": "/data/foundation/flowservice",
    "conversion": "/data/foundation/conversion",
    "export": "/data/foundation/export",  # Data Access: a batch's files and error diagnostics
}
TOKEN_PATH = "/ims/token/v3"

# Schema Registry: lists refuse a version, lookups require one (aep-api.md §2.5, §2.6).
XED_LIST_ACCEPT = "application/vnd.adobe.xed-id+json"
XED_LOOKUP_ACCEPT = "application/vnd.adobe.xed+json; version=1"

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
# A 429 comes from the gateway before the service acts, so a create that got one did not commit.
UNCOMMITTED_STATUSES = frozenset({429})
# Codes of AEPTransportError, the same for requests (sync hook) and httpx (async hook).
CONNECT_FAILED = "CONNECT_FAILED"  # the request never left: a create may be re-sent
READ_TIMEOUT = "READ_TIMEOUT"
CONNECTION_ERROR = "CONNECTION_ERROR"

# Refresh this long before IMS says the token expires (aepp uses 500 s; Databricks 120 s), or at half its
# lifetime when that is shorter: a token living under 600 s would otherwise be fetched for every call.
TOKEN_REFRESH_LEAD_SECONDS = 300.0
DEFAULT_TIMEOUT = (10.0, 60.0)
TOKEN_TIMEOUT = (10.0, 30.0)
CATALOG_PAGE_LIMIT = 100  # Catalog's maximum (aep-api.md §3.2)
CONVERSION_PAGE_LIMIT = 100

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
# What an error without a JSON body (a gateway's or proxy's HTML page) says, by status; others use the
# HTTP reason phrase. The page itself is never the message.
STATUS_REASONS: Mapping[int, str] = {
    400: "bad request",
    401: "unauthorized: the access token was refused",
    403: "forbidden: the credentials lack a permission or product profile",
    404: "not found",
    405: "method not allowed",
    408: "request timeout",
    413: "request body too large",
    414: "request URI too long — the name is too long",
    429: "too many requests",
    431: "request headers too large",
    500: "internal server error",
    502: "bad gateway",
    503: "service unavailable",
    504: "gateway timeout",
}


# ---------------------------------------------------------------------------------------------- effects
@dataclass(frozen=True, slots=True)
class HttpRequest:
    """What a driver sends. Headers and form carry the token and the client secret: kept out of ``repr``."""

    method: str
    url: str
    headers: Mapping[str, str] = field(repr=False)
    timeout: tuple[float, float]
    params: list[tuple[str, Any]] | None = None
    json: Any = None
    form: Mapping[str, str] | None = field(default=None, repr=False)

    def library_kwargs(self) -> dict[str, Any]:
        """What ``requests`` and ``httpx`` both take as keyword arguments of ``request(method, url, ...)``."""
        return {"params": self.params, "json": self.json, "data": self.form, "headers": dict(self.headers)}


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]  # case-insensitive, as both client libraries give them
    text: str


@dataclass(frozen=True, slots=True)
class Send:
    request: HttpRequest


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class Mask:
    secret: str = field(repr=False)


TokenKey = tuple[str, str, str]  # (ims_url, client id, scopes)


@dataclass(frozen=True, slots=True)
class Exclusive:
    flow: Flow[Any]
    key: TokenKey


@dataclass(frozen=True, slots=True)
class StoredToken:
    """A token as the token store keeps it, with when it expires and when to renew it (epoch seconds)."""

    token: str = field(repr=False)
    expires_at: float
    refresh_at: float  # when to fetch the next one: refresh_lead() before it expires


@dataclass(frozen=True, slots=True)
class LoadToken:
    key: TokenKey


@dataclass(frozen=True, slots=True)
class SaveToken:
    key: TokenKey
    stored: StoredToken


@dataclass(frozen=True, slots=True)
class DropToken:
    """Drop the stored token of ``key`` if it is still ``token`` (AEP rejected it)."""

    key: TokenKey
    token: str = field(repr=False)


TokenEffect = LoadToken | SaveToken | DropToken
Effect = Send | Sleep | Mask | Exclusive | LoadToken | SaveToken | DropToken
Flow = Generator[Effect, Any, T]


class FlowRun(Generic[T]):
    __slots__ = ("_flow", "effect", "result")

    """
    Steps one flow for a driver: :attr:`effect` is what the flow asks for next, None once it has returned
    :attr:`result`. The driver answers each effect through :meth:`perform` (or :meth:`aperform`).
    """

    def __init__(self, flow: Flow[T]) -> None:
        self._flow = flow
        self.effect: Effect | None = None
        self._resume(flow.__next__)

    def perform(self, perform: Callable[[Effect], Any]) -> None:
        """Answer the current effect with what ``perform(effect)`` returns, or throw in what it raised."""
        try:
            value = perform(self.effect)  # type: ignore[arg-type]
        except Exception as exc:
            self._throw(exc)
        else:
            self._reply(value)

    async def aperform(self, perform: Callable[[Effect], Awaitable[Any]]) -> None:
        """:meth:`perform` for a driver whose ``perform`` is a coroutine."""
        try:
            value = await perform(self.effect)  # type: ignore[arg-type]
        except Exception as exc:
            self._throw(exc)
        else:
            self._reply(value)

    def _reply(self, value: Any) -> None:
        self._resume(lambda: self._flow.send(value))

    def _throw(self, error: Exception) -> None:
        self._resume(lambda: self._flow.throw(error))

    def _resume(self, step: Callable[[], Effect]) -> None:
        try:
            self.effect = step()
        except StopIteration as done:
            self.effect = None
            self.result: T = done.value


# ---------------------------------------------------------------------------------------------- operations
class SyncDriver:
    """Base of a hook whose :meth:`drive` runs a flow to its end and returns the result."""

    def drive(self, flow: Flow[T]) -> T:
        raise NotImplementedError


class AsyncDriver:
    """Base of a hook whose :meth:`drive` is a coroutine."""

    async def drive(self, flow: Flow[T]) -> T:
        raise NotImplementedError


class BoundOperation(Generic[P, T]):
    """An operation of one hook; :meth:`flow` is its flow, for ``yield from`` inside another flow."""

    __slots__ = ("_function", "_hook")

    def __init__(self, function: Callable[..., Flow[T]], hook: Any) -> None:
        self._function = function
        self._hook = hook

    def flow(self, *args: P.args, **kwargs: P.kwargs) -> Flow[T]:
        return self._function(self._hook, *args, **kwargs)


class SyncOperation(BoundOperation[P, T]):
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._hook.drive(self._function(self._hook, *args, **kwargs))


class AsyncOperation(BoundOperation[P, T]):
    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._hook.drive(self._function(self._hook, *args, **kwargs))


class operation(Generic[P, T]):
    """
    An AEP call written once, as a flow method. Read from a hook, it is a method of that hook driven by its
    driver: ``hook.get_run(run_id)`` returns the run on :class:`AEPHook` and a coroutine of it on
    :class:`AEPAsyncHook`. Inside another flow, ``yield from self.get_run.flow(run_id)`` composes it.
    """

    def __init__(self, function: Callable[Concatenate[Any, P], Flow[T]]) -> None:
        self._function = function
        self.__doc__ = function.__doc__
        self.__name__ = function.__name__

    @overload
    def __get__(self, hook: None, owner: type) -> operation[P, T]: ...
    @overload
    def __get__(self, hook: AsyncDriver, owner: type) -> AsyncOperation[P, T]: ...
    @overload
    def __get__(self, hook: SyncDriver, owner: type) -> SyncOperation[P, T]: ...
    @overload
    def __get__(self, hook: object, owner: type) -> BoundOperation[P, T]: ...
    def __get__(self, hook: object, owner: type) -> Any:
        if hook is None:
            return self
        if isinstance(hook, AsyncDriver):
            return AsyncOperation(self._function, hook)
        if isinstance(hook, SyncDriver):
            return SyncOperation(self._function, hook)
        return BoundOperation(self._function, hook)


# ---------------------------------------------------------------------------------------------- policy
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

    def wait_seconds(self, retry: int, exc: BaseException | None) -> float:
        """Delay before retry number ``retry`` (1-based) after ``exc``."""
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return min(float(retry_after), self.retry_after_cap)
        delay = min(self.retry_delay * (2 ** (retry - 1)), self.max_delay)
        if self.jitter:
            delay = random.uniform(delay / 2, delay)
        return delay


def surely_not_committed(exc: BaseException) -> bool:
    """True when a failed create certainly did not commit, so sending it again cannot duplicate it."""
    if isinstance(exc, AEPTransportError):
        return exc.code == CONNECT_FAILED
    return isinstance(exc, AEPApiError) and exc.status in UNCOMMITTED_STATUSES


# ---------------------------------------------------------------------------------------------- tokens
class TokenCache:
    """
    Process-wide IMS tokens keyed by (ims_url, client id, scopes), refreshed ahead of expiry. The flows
    back it with the host's token store (:mod:`~airflow_provider_aep.utils.token_store`) through effects.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._tokens: dict[TokenKey, tuple[str, float]] = {}
        self._lock = threading.Lock()
        self.clock = clock

    def fresh(self, stored: StoredToken) -> bool:
        """Whether a stored token is still worth using (its refresh time has not come)."""
        return self.clock() < stored.refresh_at

    def get(self, key: TokenKey) -> str | None:
        with self._lock:
            entry = self._tokens.get(key)
        return entry[0] if entry and self.clock() < entry[1] else None

    def put(self, key: TokenKey, token: str, expires_in: float) -> StoredToken:
        """Keep a token IMS just issued, valid for ``expires_in`` seconds; returns it as the store keeps it."""
        now = self.clock()
        stored = StoredToken(token, now + expires_in, now + expires_in - refresh_lead(expires_in))
        self.adopt(key, stored)
        return stored

    def adopt(self, key: TokenKey, stored: StoredToken) -> None:
        with self._lock:
            self._tokens[key] = (stored.token, stored.refresh_at)

    def invalidate(self, key: TokenKey, token: str | None = None) -> None:
        """Drop the cached token, unless another caller already replaced the one we saw fail."""
        with self._lock:
            entry = self._tokens.get(key)
            if entry and (token is None or entry[0] == token):
                del self._tokens[key]

    def clear(self) -> None:
        with self._lock:
            self._tokens.clear()


TOKEN_CACHE = TokenCache()


def refresh_lead(lifetime: float) -> float:
    """How long before a token of ``lifetime`` seconds expires to fetch the next one."""
    return min(TOKEN_REFRESH_LEAD_SECONDS, max(0.0, lifetime) / 2)


def token_form(config: AEPConnectionConfig) -> dict[str, str]:
    """The client-credentials form body for IMS. It goes in the body, never the query string (it could be logged)."""
    return {
        "grant_type": "client_credentials",
        "client_id": config.client_id,
        "client_secret": config.client_secret or "",
        "scope": config.scopes,
    }


def parse_token_response(response: HttpResponse, request: HttpRequest) -> tuple[str, float]:
    """Return (access_token, expires_in seconds) or raise an AEPApiError that carries no secret."""
    if response.status >= 400:
        raise decode_error(response, request)
    failed = AEPApiError("IMS answered without an access_token", status=response.status, method="POST", url=request.url)
    try:
        body = json.loads(response.text)
        token = body["access_token"]
        expires_in = float(body.get("expires_in", 86399))
    except (ValueError, KeyError, TypeError):
        raise failed from None
    if not isinstance(token, str) or not token:
        raise failed
    token_type = str(body.get("token_type", "bearer")).lower()
    if token_type != "bearer":
        raise AEPApiError(
            f"IMS returned token_type {token_type!r}, expected 'bearer'",
            status=response.status,
            method="POST",
            url=request.url,
        )
    return token, expires_in


# ---------------------------------------------------------------------------------------------- decoding
def user_agent() -> str:
    try:
        from airflow import __version__ as airflow_version
    except ImportError:  # pragma: no cover - Airflow is a dependency
        airflow_version = "unknown"
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    return f"airflow-provider-aep/{__version__} apache-airflow/{airflow_version} python/{py}"


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


def _first_text(body: Any, paths: tuple[tuple[str, ...], ...]) -> str | None:
    for path in paths:
        value = dig(body, *path)
        if value not in (None, "", [], {}):
            return value if isinstance(value, str) else json.dumps(value)
    return None


def status_reason(status: int) -> str:
    """A short reason for an HTTP status, for answers whose body says nothing readable."""
    if status in STATUS_REASONS:
        return STATUS_REASONS[status]
    try:
        return HTTPStatus(status).phrase.lower()
    except ValueError:
        return "unexpected status"


def decode_error(response: HttpResponse, request: HttpRequest) -> AEPApiError:
    """Turn any AEP error response (gateway, XDM, FLOW, Catalog, IMS, or not JSON at all) into one AEPApiError."""
    text = response.text
    try:
        body: Any = json.loads(text) if text else None
    except ValueError:
        body = None
    if isinstance(body, list) and body and isinstance(body[0], Mapping):
        body = body[0]
    code = _first_text(body, _CODE_PATHS)
    if code and "/" in code:  # RFC 7807 `type` URIs end with the code: .../errors/XDM-1521-400
        code = code.rstrip("/").rsplit("/", 1)[-1]
    message = _first_text(body, _MESSAGE_PATHS)
    if message is None:
        message = status_reason(response.status) + ("" if text.strip() else " (empty response body)")
    title = dig(body, "title")
    return AEPApiError(
        message,
        status=response.status,
        code=code,
        title=title if isinstance(title, str) else None,
        request_id=response.headers.get("x-request-id")
        or _first_text(body, _REQUEST_ID_PATHS)
        or request.headers.get("x-request-id"),
        method=request.method,
        url=request.url,
        retry_after=parse_retry_after(response.headers.get("retry-after")),
        body=body,
    )


def decoded_body(response: HttpResponse, request: HttpRequest, decode: Callable[[str], Any]) -> Any:
    """The body of a Platform answer as ``decode`` reads it (see ``request``), or its AEPApiError."""
    if response.status >= 400:
        error = decode_error(response, request)
        log.debug("AEP error: %s", error)
        raise error
    if not response.text:
        return None
    try:
        return decode(response.text)
    except ValueError:
        return response.text


def transport_failure(
    exc: BaseException, *, connect_failed: bool, timed_out: bool, request: HttpRequest
) -> AEPTransportError:
    """A client library's network exception as an AEPTransportError; the driver says which kind it was."""
    code = CONNECT_FAILED if connect_failed else READ_TIMEOUT if timed_out else CONNECTION_ERROR
    return AEPTransportError(
        f"{type(exc).__name__}: {exc}",
        code=code,
        method=request.method,
        url=request.url,
        request_id=request.headers.get("x-request-id"),
    )


def query_pairs(params: QueryParams) -> list[tuple[str, Any]]:
    items = params.items() if isinstance(params, Mapping) else (params or [])
    return [(k, v) for k, v in items if v is not None]


def _timeout_pair(timeout: Timeout) -> tuple[float, float]:
    return (float(timeout[0]), float(timeout[1])) if isinstance(timeout, tuple) else (float(timeout), float(timeout))


@dataclass(slots=True)
class PlatformCall:
    """One Platform call in progress: what to send, and whether an ambiguous failure may have committed it."""

    method: str
    url: str
    params: list[tuple[str, Any]] | None
    json: Any
    accept: str | None
    headers: Mapping[str, str] | None
    timeout: tuple[float, float]
    resendable: bool
    recover: Callable[[], Flow[Any]] | None
    decode: Callable[[str], Any]
    may_have_committed: bool = False

    def may_resend(self, exc: AEPApiError) -> bool:
        return self.resendable or self.recover is not None or surely_not_committed(exc)

    def __str__(self) -> str:
        return f"AEP {self.method} {urlsplit(self.url).path}"


@dataclass(frozen=True)
class FoundAfterLostResponse:
    """What a create's lookup found after an ambiguous failure: the earlier attempt did commit."""

    resource: Any


# ---------------------------------------------------------------------------------------------- the core
class ClientCore:
    """
    The request flow and the four list styles, for a hook that provides ``config``.

    :param aep_conn_id: the ``aep`` connection to use.
    :param retry_limit: retries after the first attempt for retryable failures (429, 5xx, network).
    :param retry_delay: first backoff delay in seconds; it doubles per retry.
    :param retry_args: any other :class:`RetryPolicy` field (``max_delay``, ``retry_after_cap``, ``jitter``).
    :param timeout: seconds, or (connect, read), applied to every call unless the call overrides it.
    :param token_cache: where tokens are kept; the process-wide cache by default.
    """

    config: AEPConnectionConfig

    def __init__(
        self,
        aep_conn_id: str = "aep_default",
        *,
        retry_limit: int | None = None,
        retry_delay: float | None = None,
        retry_args: Mapping[str, Any] | None = None,
        timeout: Timeout = DEFAULT_TIMEOUT,
        token_cache: TokenCache = TOKEN_CACHE,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.aep_conn_id = aep_conn_id
        self.retry_policy = RetryPolicy.from_hook_args(retry_limit, retry_delay, retry_args)
        self.timeout = timeout
        self.token_cache = token_cache

    # ------------------------------------------------------------------ tokens
    def access_token(self, *, rejected: str | None = None) -> Flow[str]:
        """
        A bearer token: the connection's fixed one, the cached one, or a fresh one from IMS. ``rejected`` is
        a token AEP just refused: it is dropped, and a caller that refreshed meanwhile is not refreshed again.
        """
        config = self.config
        if config.access_token:
            return config.access_token
        key = config.token_cache_key
        if rejected is not None:
            self.token_cache.invalidate(key, rejected)
        token = self.token_cache.get(key)
        if token is None:
            token = yield Exclusive(self._token_while_exclusive(key, rejected), key)
        return token

    def _token_while_exclusive(self, key: TokenKey, rejected: str | None) -> Flow[str]:
        """The token of another caller that fetched it while this one waited, the host's, or a new one."""
        token = self.token_cache.get(key)
        if token is not None:
            return token
        stored: StoredToken | None = yield LoadToken(key)
        if stored is not None and stored.token == rejected:
            yield DropToken(key, rejected)
        elif stored is not None and self.token_cache.fresh(stored):
            yield Mask(stored.token)
            self.token_cache.adopt(key, stored)
            log.info(
                "Reusing the AEP access token of this host's token cache, valid for %d s more",
                stored.expires_at - self.token_cache.clock(),
            )
            return stored.token
        token, expires_in = yield from self.retrying("IMS token request", self._fetch_token)
        yield Mask(token)
        yield SaveToken(key, self.token_cache.put(key, token, expires_in))
        log.info("Obtained an AEP access token from IMS, valid for %d s", expires_in)
        return token

    def _fetch_token(self) -> Flow[tuple[str, float]]:
        request = HttpRequest(
            "POST",
            f"{self.config.ims_url}{TOKEN_PATH}",
            headers={"x-request-id": str(uuid.uuid4()), "Accept": "application/json", "User-Agent": user_agent()},
            timeout=TOKEN_TIMEOUT,
            form=token_form(self.config),
        )
        response = yield Send(request)
        return parse_token_response(response, request)

    # ------------------------------------------------------------------ requests
    def retrying(self, what: Any, attempt: Callable[..., Flow[T]], *args: Any) -> Flow[T]:
        """
        Run ``attempt(*args)`` until it succeeds, its error is not retryable, ``what.may_resend(error)`` (when
        ``what`` has it) says no, or the policy's retries are spent. ``str(what)`` names the call in logs.
        """
        policy = self.retry_policy
        may_resend = getattr(what, "may_resend", None)
        retry = 0
        while True:
            try:
                return (yield from attempt(*args))
            except AEPApiError as exc:
                retry += 1
                if retry > policy.retry_limit or not is_retryable(exc) or (may_resend and not may_resend(exc)):
                    raise
                delay = policy.wait_seconds(retry, exc)
                log.warning(
                    "%s failed (attempt %d of %d): %s; retrying in %.1f s",
                    what,
                    retry,
                    policy.retry_limit + 1,
                    exc,
                    delay,
                )
                yield Sleep(delay)

    @operation
    def request(
        self,
        method: str,
        service: str,
        path: str,
        *,
        params: QueryParams = None,
        json: Any = None,
        accept: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: Timeout | None = None,
        idempotent: bool | None = None,
        recover: Callable[[], Flow[Any]] | None = None,
        decode: Callable[[str], Any] = json.loads,
    ) -> Flow[Any]:
        """
        Call a Platform service and return its body as ``decode`` reads it: JSON by default, None when empty,
        the text when ``decode`` raises ValueError.

        Idempotent calls are retried per the retry policy. A non-idempotent call is re-sent only when it
        surely did not commit (429, connection refused), unless ``recover`` is given: then after an
        ambiguous failure the ``recover()`` flow runs first and, if it finds the resource, its result is
        returned wrapped in :class:`FoundAfterLostResponse` instead of sending again.
        """
        method = method.upper()
        call = PlatformCall(
            method,
            platform_url(self.config, service, path),
            query_pairs(params) or None,
            json,
            accept,
            headers,
            _timeout_pair(timeout or self.timeout),
            resendable=method in IDEMPOTENT_METHODS if idempotent is None else idempotent,
            recover=recover,
            decode=decode,
        )
        return (yield from self.retrying(call, self._attempt, call))

    def _attempt(self, call: PlatformCall) -> Flow[Any]:
        if call.may_have_committed and call.recover is not None:
            found = yield from call.recover()
            if found is not None:
                return FoundAfterLostResponse(found)
        try:
            return (yield from self._authorized(call))
        except AEPApiError as exc:
            call.may_have_committed = call.may_have_committed or not surely_not_committed(exc)
            raise

    def _authorized(self, call: PlatformCall) -> Flow[Any]:
        """One send with a token; a 401 on a token we can renew drops it, and the call is sent once more."""
        started = time.monotonic()
        token = yield from self.access_token()
        request = self._platform_request(call, token)
        response = yield Send(request)
        if response.status == 401 and self.config.uses_client_credentials:
            log.info("AEP rejected the access token (HTTP 401); fetching a new one and sending once more")
            token = yield from self.access_token(rejected=token)
            request = self._platform_request(call, token)
            response = yield Send(request)
        if log.isEnabledFor(logging.DEBUG):  # one line per call; headers are never logged (they carry the token)
            log.debug(
                "%s -> %s in %.0f ms (x-request-id %s)",
                call,
                response.status,
                (time.monotonic() - started) * 1000,
                request.headers["x-request-id"],
            )
        return decoded_body(response, request, call.decode)

    def _platform_request(self, call: PlatformCall, token: str) -> HttpRequest:
        """The request for ``call`` with AEP's header set (aep-api.md §1.3)."""
        config = self.config
        headers = {
            "Authorization": f"Bearer {token}",
            "x-api-key": config.client_id,
            "x-gw-ims-org-id": config.org_id,
            "x-sandbox-name": config.sandbox,
            "Accept": call.accept or "application/json",
            "User-Agent": user_agent(),
            "x-request-id": str(uuid.uuid4()),
        }
        if call.json is not None:
            headers["Content-Type"] = "application/json"
        headers.update(call.headers or {})
        return HttpRequest(
            call.method, call.url, headers=headers, timeout=call.timeout, params=call.params, json=call.json
        )

    # ------------------------------------------------------------------ the four list styles
    @operation
    def paginate_flow_service(self, path: str, params: QueryParams = None) -> Flow[list[dict[str, Any]]]:
        """Flow Service lists: ``items`` plus ``_links.next.href`` carrying a continuationToken."""
        base = query_pairs(params)
        query = base
        items: list[dict[str, Any]] = []
        while True:
            page = (yield from self.request.flow("GET", "flowservice", path, params=query)) or {}
            items.extend(page.get("items", []))
            href = dig(page, "_links", "next", "href")
            token = dict(parse_qsl(urlsplit(href).query)).get("continuationToken") if isinstance(href, str) else None
            if not token:
                return items
            query = [*base, ("continuationToken", token)]

    @operation
    def paginate_schema_registry(
        self, path: str, params: QueryParams = None, *, accept: str = XED_LIST_ACCEPT
    ) -> Flow[list[dict[str, Any]]]:
        """Schema Registry lists: ``results`` plus ``_page.next``, sent back as ``start`` (needs ``orderby``)."""
        base = query_pairs(params)
        if not any(k == "orderby" for k, _ in base):
            base = [("orderby", "title"), *base]
        query = base
        results: list[dict[str, Any]] = []
        while True:
            page = (yield from self.request.flow("GET", "schemaregistry", path, params=query, accept=accept)) or {}
            results.extend(page.get("results", []))
            nxt = dig(page, "_page", "next")
            if nxt in (None, ""):
                return results
            query = [*base, ("start", nxt)]

    @operation
    def paginate_catalog(self, path: str, params: Mapping[str, Any] | None = None) -> Flow[list[dict[str, Any]]]:
        """Catalog lists: an object keyed by id, paged with ``start``/``limit`` until a short page."""
        objects: list[dict[str, Any]] = []
        for page in (yield from self._paginate_offset("catalog", path, params, CATALOG_PAGE_LIMIT)):
            objects.extend({"id": k, **v} if isinstance(v, dict) else {"id": k, "value": v} for k, v in page.items())
        return objects

    @operation
    def paginate_conversion(self, path: str, params: Mapping[str, Any] | None = None) -> Flow[list[dict[str, Any]]]:
        """Conversion (Data Prep) lists: ``data`` plus ``_page``, paged with ``start``/``limit``."""
        data: list[dict[str, Any]] = []
        for page in (yield from self._paginate_offset("conversion", path, params, CONVERSION_PAGE_LIMIT, "data")):
            data.extend(page)
        return data

    def _paginate_offset(
        self, service: str, path: str, params: Mapping[str, Any] | None, page_limit: int, key: str | None = None
    ) -> Flow[list[Any]]:
        """Pages of a ``start``/``limit`` list (the whole body, or its ``key``) until one is short."""
        query: dict[str, Any] = {"limit": page_limit, **(params or {})}
        limit, start = int(query["limit"]), int(query.get("start", 0))
        pages: list[Any] = []
        while True:
            query["start"] = start
            body = (yield from self.request.flow("GET", service, path, params=query)) or {}
            page = body.get(key, []) if key else body
            pages.append(page)
            if len(page) < limit:
                return pages
            start += limit
