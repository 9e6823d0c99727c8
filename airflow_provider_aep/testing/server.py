"""The emulator: one threaded HTTP/1.1 server on 127.0.0.1 serving IMS and Platform.

Request pipeline (Platform calls); each stage may answer instead of the next::

    latency -> fault (injected 429/5xx) -> gateway (token, x-api-key, org, sandbox)
            -> route (404 unknown path, 405 method the path lacks)
            -> validation (Content-Type; strict mode: testing/validation.py rules, Adobe's specs if given)
            -> handler under the state lock (``~`` patterns matched outside it) -> drop_after_commit?

IMS calls get only the latency and the route. Every call lands in :attr:`AEPEmulator.request_log` with
its request, its answer and the stage that produced the answer, and is passed to the listeners of
:meth:`AEPEmulator.add_listener`.
"""

from __future__ import annotations

import collections
import copy
import json
import os
import secrets
import socket
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from airflow_provider_aep.testing import openapi, source_catalog, validation
from airflow_provider_aep.testing import runs as run_engine
from airflow_provider_aep.testing.errors import (
    APIError,
    flow_error,
    gateway_error,
    method_not_allowed,
    placeholder_error,
)
from airflow_provider_aep.testing.faults import FaultConfig, FaultInjector
from airflow_provider_aep.testing.query import answering_pattern_tests, deferring_pattern_tests, settle
from airflow_provider_aep.testing.routing import Request, Response, Service
from airflow_provider_aep.testing.runs import RunOutcome
from airflow_provider_aep.testing.services import catalog, conversion, data_access, flow_service, ims, schema_registry
from airflow_provider_aep.testing.source_catalog import SourceTable
from airflow_provider_aep.testing.state import KINDS, Store

SERVICES: tuple[Service, ...] = (
    ims.SERVICE,
    schema_registry.SERVICE,
    catalog.SERVICE,
    flow_service.SERVICE,
    conversion.SERVICE,
    data_access.SERVICE,
)

# How the undocumented DELETE /mappingSets/{id} is answered (Adobe's spec has only GET and PUT there).
MAPPING_SET_DELETE_ANSWERS = ("405", "404", "delete")
_REDACTED = "<redacted>"


@dataclass(frozen=True)
class RequestRecord:
    """One line of the request log: the call, its answer, and the pipeline stage that answered.

    ``stage``: ``fault``, ``gateway``, ``route``, ``validation``, ``handler`` or ``error`` (an emulator bug).
    The bearer token is redacted from ``headers``; IMS bodies (credentials, tokens) are not kept.
    """

    method: str
    path: str
    query: dict[str, list[str]]
    status: int  # for a dropped create: the status the handler produced but never sent
    fault: str | None  # None, "429", "500", "502", "503", "504" or "drop_after_commit"
    sandbox: str | None
    timestamp: float
    service: str | None
    request_id: str
    credentials_in_query: bool = False  # IMS only: client_secret/client_id sent in the query string
    stage: str = "handler"
    # Left out of the repr: bodies can be large, and a base connection's carries its auth params.
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    body: bytes = field(default=b"", repr=False)
    response_headers: dict[str, str] = field(default_factory=dict, repr=False)
    response_body: bytes = field(default=b"", repr=False)  # as sent (a dropped create's: as it would have been)

    def json(self) -> Any:
        """The request body, parsed (None if empty)."""
        return json.loads(self.body) if self.body.strip() else None

    def response_json(self) -> Any:
        return json.loads(self.response_body) if self.response_body.strip() else None


Listener = Callable[["AEPEmulator", RequestRecord], None]
_listeners: list[Listener] = []
_listeners_lock = threading.Lock()


@dataclass
class _Token:
    client_id: str
    expires_at: float


@dataclass
class _Outcome:
    """Outcomes queued for a flow, the last one repeating forever, and the failed rows of each."""

    queue: collections.deque[str] = field(default_factory=collections.deque)
    failed_records: int | float | None = None

    def next(self) -> tuple[str, int | float | None]:
        return (self.queue.popleft() if len(self.queue) > 1 else self.queue[0]), self.failed_records


MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_LINE = 65_537  # http.server's own limit for a request or header line


class _Unreadable(Exception):
    """A request whose body cannot be framed (a bad Content-Length or chunk size)."""


def _whole_number(raw: bytes, base: int) -> int | None:
    digits = "0123456789abcdef"[:base]
    text = raw.decode("latin-1").lower()
    if not text or len(text) > 16 or any(c not in digits for c in text):
        return None
    return int(text, base)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # keep-alive handler threads must not block stop()
    request_queue_size = 4096  # ~1,000 clients connecting at once
    allow_reuse_address = True
    emulator: AEPEmulator


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server_version = "AEPEmulator/1.0"
    sys_version = ""
    timeout = 600  # idle keep-alive connections are closed after 10 minutes
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        # Small request/response pairs on keep-alive sockets stall 40 ms on Nagle + delayed ACK.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.emulator._connection_opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.emulator._connection_closed(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request log replaces stderr access logs

    def parse_request(self) -> bool:
        raw: bytes = self.raw_requestline  # type: ignore[attr-defined]  # http.server internals
        self.requestline = str(raw, "iso-8859-1").rstrip("\r\n")
        if len(self.requestline.split()) == 2:  # HTTP/0.9: no version, no headers; nothing AEP's gateway serves
            self.command, self.request_version = "", "HTTP/1.0"  # so that the refusal has a status line
            self._refuse("HTTP/0.9 requests are not supported; send HTTP/1.1.")
            return False
        return super().parse_request()

    def _read_body(self) -> bytes:
        """The request body, or :class:`_Unreadable` when the framing cannot be trusted to find its end."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks, total = [], 0
            while True:
                size = _whole_number(self.rfile.readline(MAX_LINE).split(b";")[0].strip() or b"0", 16)
                if size is None or total + size > MAX_BODY_BYTES:
                    raise _Unreadable("The chunk size is not a hexadecimal number of bytes within the body limit.")
                if size == 0:
                    while self.rfile.readline(MAX_LINE) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                total += size
                self.rfile.readline(MAX_LINE)
            return b"".join(chunks)
        raw = self.headers.get("Content-Length") or "0"
        length = _whole_number(raw.strip().encode("utf-8", "replace"), 10)
        if length is None or length > MAX_BODY_BYTES:
            raise _Unreadable(f"Content-Length must be a number of bytes up to {MAX_BODY_BYTES}, got {raw[:40]!r}.")
        return self.rfile.read(length) if length > 0 else b""

    def _refuse(self, message: str) -> None:
        """A 400 in AEP's shape, then the connection closes: the rest of the stream cannot be read reliably."""
        self.close_connection = True
        body = json.dumps(placeholder_error(400, "BadRequestError", message).body).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _dispatch(self) -> None:
        try:
            body = self._read_body()
        except _Unreadable as exc:
            self._refuse(str(exc))
            return
        response = self.server.emulator._handle(self.command, self.path, self.headers, body)
        if response is None:  # drop_after_commit: committed, but no answer at all
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        payload = response.payload
        self.send_response(response.status)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        # Headers and body leave in one write (end_headers() would flush the headers alone).
        buffer: list[bytes] = self._headers_buffer  # type: ignore[attr-defined]  # http.server internals
        buffer.append(b"\r\n" + payload)
        self.wfile.write(b"".join(buffer))
        buffer.clear()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch


class AEPEmulator:
    """A stateful, in-memory Adobe Experience Platform on ``http://127.0.0.1:<port>``.

    IMS (``/ims/token/v3``) and Platform (``/data/foundation/...``) share ``base_url``.
    Time: timestamps are real epoch milliseconds; ``time_scale`` only compresses
    schedule intervals and run phases (60.0: one emulated minute per real second).
    ``run_start_delay`` and ``run_duration`` are emulated seconds; a run always stays
    ``inProgress`` for at least ``min_run_seconds`` real seconds so pollers can see it.

    Strict mode (default) answers what AEP rejects as AEP does: 404 for an unknown route, 405 for a method
    the path lacks, 400 naming the field for a missing required header or parameter or a body of the wrong
    type (rules in :mod:`~airflow_provider_aep.testing.validation`), and enforces the documented rules that
    used to be let through (a string ``mappingVersion``, ``deltaColumn`` on a flow's first on-demand run).
    With Adobe's spec files (``openapi_dir`` or ``$AEP_OPENAPI_DIR``; needs ``openapi-core``) requests are
    also validated against them. ``strict=False`` restores the old leniency.

    ``mapping_set_delete``: the answer to ``DELETE /mappingSets/{id}``, a call Adobe does not document:
    ``"405"`` (strict default: as the spec has it), ``"404"``, or ``"delete"`` (lenient default: 204).

    ``source_tables``: what a Generic OData base connection explores (default: Northwind-like ``Orders``,
    ``Customers``, ``Employees``; :mod:`~airflow_provider_aep.testing.source_catalog`). A run of a flow reading
    one of them counts its rows.

    Use as a context manager, or call :meth:`start` / :meth:`stop`.
    """

    def __init__(
        self,
        port: int = 0,
        *,
        client_id: str = "emulator-client-id",
        client_secret: str = "emulator-client-secret",
        org_id: str = "EMULATOR00000000000000000@AdobeOrg",
        tenant_id: str = "emulatortenant",
        sandboxes: Sequence[str] = ("prod",),
        token_ttl: float = 86399,
        time_scale: float = 60.0,
        faults: FaultConfig | None = None,
        latency: float = 0.0,
        page_size: int = 100,
        seed: int | None = None,
        run_duration: float = 120.0,
        run_start_delay: float = 30.0,
        min_run_seconds: float = 1.0,
        default_outcome: str = RunOutcome.SUCCESS,
        clock: Callable[[], float] | None = None,
        strict: bool = True,
        openapi_dir: str | os.PathLike[str] | None = None,
        mapping_set_delete: str | None = None,
        source_tables: Iterable[SourceTable] | None = None,
    ) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be > 0")
        if not sandboxes:
            raise ValueError("at least one sandbox is needed")
        self._check_outcome(default_outcome)
        if mapping_set_delete is None:
            mapping_set_delete = "405" if strict else "delete"
        if mapping_set_delete not in MAPPING_SET_DELETE_ANSWERS:
            raise ValueError(
                f"mapping_set_delete={mapping_set_delete!r}: expected one of {', '.join(MAPPING_SET_DELETE_ANSWERS)}"
            )
        self.strict = strict
        self.mapping_set_delete = mapping_set_delete
        spec_dir = openapi.locate(openapi_dir) if strict else None
        self.openapi_specs = openapi.load(spec_dir) if spec_dir is not None else None
        self.port = port
        self.client_id = client_id
        self.client_secret = client_secret
        self.org_id = org_id
        self.tenant_id = tenant_id
        self.sandboxes = tuple(sandboxes)
        self.token_ttl = token_ttl
        self.time_scale = float(time_scale)
        self.latency = latency
        self.page_size = page_size
        self.max_page_size = max(page_size, 1000)
        self.seed = seed
        self.run_duration = run_duration
        self.run_start_delay = run_start_delay
        self.min_run_seconds = min_run_seconds
        self.default_outcome = default_outcome
        self.user_id = f"{client_id}@techacct.adobe.com"
        self.store = Store(self.sandboxes, clock or time.time)
        # What a protocols base connection explores; a run of a flow reading one of them counts its rows.
        self.source_tables = source_catalog.northwind() if source_tables is None else {t.path: t for t in source_tables}
        self._faults = FaultInjector(faults or FaultConfig(), seed=seed)
        self._tokens: dict[str, _Token] = {}
        self._issued_tokens: list[str] = []
        self._outcomes: dict[str, _Outcome] = {}
        self._log: list[RequestRecord] = []
        self._meta_lock = threading.Lock()  # log, tokens, connection bookkeeping
        self._open_sockets: set[socket.socket] = set()
        self._connection_count = 0
        self._server: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> AEPEmulator:
        if self._server is not None:
            return self
        server = _HTTPServer(("127.0.0.1", self.port), _Handler)
        server.emulator = self
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"aep-emulator-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        # Keep-alive connections would otherwise keep their handler threads blocked on read.
        with self._meta_lock:
            sockets = list(self._open_sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> AEPEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        return f"http://127.0.0.1:{self.port}"

    def __repr__(self) -> str:
        where = self.base_url if self.running else "stopped"
        return f"<AEPEmulator {where} sandboxes={list(self.sandboxes)}>"

    # ------------------------------------------------------------------ Airflow connection helpers

    def connection_extra(self, sandbox: str = "prod") -> dict[str, str]:
        """Extras of an ``aep`` Airflow connection pointing at this emulator."""
        return {"org_id": self.org_id, "sandbox": sandbox, "ims_url": self.base_url, "platform_url": self.base_url}

    def connection_json(self, sandbox: str = "prod") -> str:
        """A JSON value for ``AIRFLOW_CONN_AEP_DEFAULT``."""
        return json.dumps(
            {
                "conn_type": "aep",
                "login": self.client_id,
                "password": self.client_secret,
                "extra": self.connection_extra(sandbox),
            }
        )

    def connection_uri(self, sandbox: str = "prod") -> str:
        """A URI value for ``AIRFLOW_CONN_AEP_DEFAULT`` (extras as query parameters)."""
        login = quote(self.client_id, safe="")
        password = quote(self.client_secret, safe="")
        return f"aep://{login}:{password}@/?{urlencode(self.connection_extra(sandbox))}"

    # ------------------------------------------------------------------ knobs

    @property
    def faults(self) -> FaultConfig:
        return self._faults.config

    @faults.setter
    def faults(self, config: FaultConfig | None) -> None:
        self._faults.configure(config)

    def issue_token(self, ttl: float | None = None, client_id: str | None = None) -> str:
        """A bearer token as IMS would issue it; ``ttl`` seconds (default ``token_ttl``)."""
        token = "eyJ" + secrets.token_urlsafe(48)
        expires = self.store.now() + (self.token_ttl if ttl is None else ttl)
        with self._meta_lock:
            self._tokens[token] = _Token(client_id or self.client_id, expires)
            self._issued_tokens.append(token)
        return token

    @property
    def issued_tokens(self) -> list[str]:
        """Every token issued so far, revoked or expired ones included (to search logs for leaks)."""
        with self._meta_lock:
            return list(self._issued_tokens)

    def revoke_tokens(self) -> None:
        """Invalidate every token issued so far (clients must fetch a new one)."""
        with self._meta_lock:
            self._tokens.clear()

    def headers(self, sandbox: str = "prod", token: str | None = None) -> dict[str, str]:
        """Convenience: the Platform headers a client would send."""
        return {
            "Authorization": f"Bearer {token or self.issue_token()}",
            "x-api-key": self.client_id,
            "x-gw-ims-org-id": self.org_id,
            "x-sandbox-name": sandbox,
        }

    @staticmethod
    def _check_outcome(outcome: str) -> None:
        if outcome not in RunOutcome.ALL:
            raise ValueError(f"unknown run outcome {outcome!r}; expected one of {RunOutcome.ALL}")

    def set_flow_outcome(
        self, flow_id_or_name: str, outcome: str | Iterable[str], *, failed_records: int | float | None = None
    ) -> None:
        """Outcome of the flow's runs that have not completed yet.

        ``outcome`` is one status, or a sequence consumed one per completing run with the
        last one repeating (e.g. ``["failed", "success"]`` to exercise a retry).

        ``failed_records`` is how many of a run's rows are rejected: a count (int) or a share of its
        input rows (float, 0 to 1). Each gets a row error in the batch's diagnostics (Data Access), and
        the counts show in the run and its batch (Catalog). With ``"success"`` the run still reports
        success, as AEP does under a flow's partial-ingestion threshold; with ``"failed"`` the copy
        succeeds and the batch fails at promotion. Left out: none for success, 1-5% for partialSuccess,
        and a failure copying from the source (no batch) for failed.
        """
        outcomes = [outcome] if isinstance(outcome, str) else list(outcome)
        if not outcomes:
            raise ValueError("at least one outcome is needed")
        for value in outcomes:
            self._check_outcome(value)
        if failed_records is not None and (
            isinstance(failed_records, bool)
            or failed_records < 0
            or (isinstance(failed_records, float) and failed_records > 1)
        ):
            raise ValueError(f"failed_records={failed_records!r}: a count (int >= 0) or a share (float 0 to 1)")
        with self.store.lock:
            self._outcomes[flow_id_or_name] = _Outcome(collections.deque(outcomes), failed_records)

    def set_default_outcome(self, outcome: str) -> None:
        self._check_outcome(outcome)
        self.default_outcome = outcome

    def _next_outcome(self, flow_id: str, flow_name: str | None) -> tuple[str, int | float | None]:
        for key in (flow_id, flow_name):
            if key is not None and key in self._outcomes:
                return self._outcomes[key].next()
        return self.default_outcome, None

    # ------------------------------------------------------------------ observation

    @staticmethod
    def add_listener(listener: Listener) -> None:
        """Call ``listener(emulator, record)`` for every call answered by any emulator of this process.

        Listeners run on the emulator's handler threads just before the answer is sent, so keep them quick;
        what they raise is printed to stderr and otherwise ignored.
        """
        with _listeners_lock:
            _listeners.append(listener)

    @staticmethod
    def remove_listener(listener: Listener) -> None:
        with _listeners_lock:
            if listener in _listeners:
                _listeners.remove(listener)

    @property
    def request_log(self) -> list[RequestRecord]:
        with self._meta_lock:
            return list(self._log)

    def reset_log(self) -> None:
        with self._meta_lock:
            self._log.clear()

    @property
    def connection_count(self) -> int:
        """TCP connections accepted since start (keep-alive clients reuse theirs)."""
        return self._connection_count

    @property
    def open_connections(self) -> int:
        with self._meta_lock:
            return len(self._open_sockets)

    def snapshot(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Deep copy of the state: ``{sandbox: {kind: {id: resource}}}`` (kinds in :data:`KINDS`).

        Flows and runs are rendered as a GET would return them; mapping sets at their latest version.
        """
        out: dict[str, dict[str, dict[str, Any]]] = {}
        with self.store.lock:
            for sb in self.store.sandboxes():
                run_engine.materialise_all(self, sb)
                kinds: dict[str, dict[str, Any]] = {k: {} for k in KINDS}
                for kind in (
                    "classes",
                    "schemas",
                    "fieldgroups",
                    "connections",
                    "sourceConnections",
                    "targetConnections",
                ):
                    kinds[kind] = copy.deepcopy(getattr(sb, kind))
                kinds["datasets"] = copy.deepcopy(sb.datasets)
                kinds["mappingSets"] = {mid: copy.deepcopy(v[-1]) for mid, v in sb.mappingSets.items()}
                kinds["flows"] = {fid: flow_service.render_flow(self, sb, f) for fid, f in sb.flows.items()}
                kinds["runs"] = {rid: run_engine.render_run(self, sb, r) for rid, r in sb.run_records.items()}
                out[sb.name] = kinds
        return out

    # ------------------------------------------------------------------ connection bookkeeping

    def _connection_opened(self, sock: socket.socket) -> None:
        with self._meta_lock:
            self._connection_count += 1
            self._open_sockets.add(sock)

    def _connection_closed(self, sock: socket.socket) -> None:
        with self._meta_lock:
            self._open_sockets.discard(sock)

    # ------------------------------------------------------------------ request pipeline

    def _handle(self, method: str, target: str, headers: Any, body: bytes) -> Response | None:
        split = urlsplit(target)
        path = split.path
        query = parse_qs(split.query, keep_blank_values=True)
        request_id = headers.get("x-request-id") or str(uuid.uuid4())
        service = next((s for s in SERVICES if path == s.prefix or path.startswith(s.prefix + "/")), None)
        fault: str | None = None
        stage = "route"
        req: Request | None = None

        if self.latency > 0:
            time.sleep(self.latency)

        response: Response
        try:
            if service is None:
                raise placeholder_error(404, "NotFoundError", f"No AEP API is served at {path}.")
            stage = "fault"
            injected = self._faults.draw_status() if service.platform else None
            if injected is not None:
                fault = str(injected)
                raise self._fault_error(service, injected, request_id)
            req = Request(
                method=method,
                path=path[len(service.prefix) :] or "/",
                query=query,
                headers=headers,
                body=body,
                emulator=self,
                request_id=request_id,
            )
            if service.platform:
                stage = "gateway"
                self._gateway(req, service)
            stage = "route"
            matched, params, path_known = service.match(method, req.path)
            if matched is None:
                if path_known:
                    raise method_not_allowed(method, path)
                if service.not_found is not None:
                    raise service.not_found(req)
                raise placeholder_error(404, "NotFoundError", f"No route for {method} {path}.")
            if service.platform:
                stage = "validation"
                self._validate(req, service, matched)
            stage = "handler"
            drop = matched.creates and self._faults.draw_drop()
            response = self._run_handler(matched.handler, req, params)
            response.headers.setdefault("x-request-id", request_id)
            if drop and 200 <= response.status < 300:
                self._record(method, path, query, headers, body, response, "drop_after_commit", stage, service, req)
                return None
        except APIError as exc:
            response = Response(exc.status, exc.body, dict(exc.headers))
        except Exception:  # a bug in the emulator must not kill the connection silently
            traceback.print_exc(file=sys.stderr)
            stage = "error"
            response = Response(
                500,
                {
                    "type": "/placeholder/type/uri",
                    "status": 500,
                    "title": "InternalServerError",
                    "detail": "Emulator error",
                },
            )
        response.headers.setdefault("x-request-id", request_id)
        self._record(method, path, query, headers, body, response, fault, stage, service, req)
        return response

    def _run_handler(self, handler: Callable[..., Response], req: Request, params: dict[str, str]) -> Response:
        """
        The handler under the state lock. A GET whose ``~`` filters the handler tested is run again: the patterns
        are matched between the two runs, outside the lock, against the texts the first run tested them on, so a
        costly pattern delays no other client, and the second run answers from one state like any other call.
        """
        if req.method != "GET":  # only reads are safe to run twice
            with self.store.lock:
                return handler(req, **params)
        with self.store.lock, deferring_pattern_tests() as tests:
            response = handler(req, **params)
        if not tests:
            return response
        answers = settle(tests)
        with self.store.lock, answering_pattern_tests(answers):
            return handler(req, **params)

    def _validate(self, req: Request, service: Service, route: Any) -> None:
        """The validation stage: JSON bodies always; strict mode: the route's rule, then Adobe's specs."""
        validation.check_content_type(req)
        if not self.strict:
            return
        validation.check_request(req, service, route)
        if self.openapi_specs is not None:
            openapi.enforce(self.openapi_specs, req, service)

    def _record(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: Any,
        body: bytes,
        response: Response,
        fault: str | None,
        stage: str,
        service: Service | None,
        req: Request | None,
    ) -> None:
        keep = service is not ims.SERVICE  # IMS bodies carry the client secret and the tokens
        credentials_in_query = service is ims.SERVICE and bool({"client_secret", "client_id"} & query.keys())
        record = RequestRecord(
            method=method,
            path=path,
            query=query,
            status=response.status,
            fault=fault,
            sandbox=req.sandbox if req is not None else None,
            timestamp=time.time(),
            service=service.name if service else None,
            request_id=response.headers.get("x-request-id", ""),
            credentials_in_query=credentials_in_query,
            stage=stage,
            headers={k: _REDACTED if k.lower() == "authorization" else v for k, v in headers.items()},
            body=body if keep else b"",
            response_headers=dict(response.headers),
            response_body=response.payload if keep else b"",
        )
        with self._meta_lock:
            self._log.append(record)
        with _listeners_lock:
            listeners = list(_listeners)
        for listener in listeners:
            try:
                listener(self, record)
            except Exception:  # a listener's bug must not break the emulator
                traceback.print_exc(file=sys.stderr)

    def _fault_error(self, service: Service, status: int, request_id: str) -> APIError:
        if status == 429:
            return APIError(
                429,
                {"error_code": "429050", "message": "Too many requests"},
                {"Retry-After": str(self._faults.config.retry_after)},
            )
        if service is flow_service.SERVICE and status in (500, 503, 504):
            code, title = {
                500: ("1102", "Internal Error"),
                503: ("1103", "Service Unavailable"),
                504: ("1104", "Gateway Timeout"),
            }[status]
            return flow_error(
                code,
                status,
                title,
                f"{title}. Please try again. If the problem persists, please contact customer support.",
                request_id=request_id,
            )
        if status == 502:
            return gateway_error(502, "502000", "Bad Gateway")
        titles = {500: "InternalServerError", 503: "ServiceUnavailable", 504: "GatewayTimeout"}
        return placeholder_error(status, titles[status], "A temporary error occurred. Please retry.")

    def _gateway(self, req: Request, service: Service) -> None:
        """Adobe I/O gateway and sandbox checks, in the order AEP applies them (aep-api.md §1.3)."""
        auth = req.headers.get("Authorization")
        if not auth:
            raise gateway_error(403, "403010", "Oauth token is missing.")
        scheme, _, token = auth.strip().partition(" ")
        with self._meta_lock:
            info = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if info is None or info.expires_at <= self.store.now():
            raise gateway_error(401, "401013", "Oauth token is not valid")
        api_key = req.headers.get("x-api-key")
        if not api_key:
            raise gateway_error(403, "403000", "Api Key is required")
        if api_key != info.client_id:
            raise gateway_error(403, "403003", "Api Key is invalid")
        org = req.headers.get("x-gw-ims-org-id")
        if not org:
            raise gateway_error(400, "400003", "Missing header")
        if org != self.org_id:
            raise gateway_error(403, "403025", "Profile is not valid")
        req.client_id = info.client_id
        sandbox = req.headers.get("x-sandbox-name")
        if not sandbox:
            if service.requires_sandbox_header:
                raise flow_error(
                    "2105",
                    400,
                    "Header is missing",
                    "The header x-sandbox-name is missing in the request. Please add the header in the request and try again.",
                    request_id=req.request_id,
                )
            sandbox = "prod"  # the other services fall back to the default sandbox
        if not self.store.has_sandbox(sandbox):
            message = f"The sandbox with the name '{sandbox}' could not be found. Please ensure that the sandbox name is correct and try again."
            if service is flow_service.SERVICE:
                raise flow_error("2100", 404, "Sandbox not found", message, request_id=req.request_id)
            raise placeholder_error(404, "SandboxNotFound", message)
        req.sandbox = sandbox
