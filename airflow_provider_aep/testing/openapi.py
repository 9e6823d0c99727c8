"""Adobe's published OpenAPI specs, as a checker of requests and answers (needs ``openapi-core``).

The spec files are not shipped with this package: point at a directory holding Adobe's files
(``AdobeDocs/experience-platform-apis``, folder ``static/swagger-specs/``) with ``openapi_dir=`` or the
``AEP_OPENAPI_DIR`` environment variable. Each directory's specs are loaded once per process.

A check returns :class:`Problem`\\ s; those a known spec defect explains (:mod:`.defects`) come back as
excused, with the defect, rather than as problems.
"""

from __future__ import annotations

import functools
import json
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_provider_aep.testing.defects import DEFECTS, Defect
from airflow_provider_aep.testing.validation import json_path

OPENAPI_DIR_ENV = "AEP_OPENAPI_DIR"

# Emulator service name -> (Adobe's spec file, base path). Schema Registry's published spec is Swagger 2.0;
# its OpenAPI 3 conversion sits beside it.
SPEC_FILES: dict[str, tuple[str, str]] = {
    "flowservice": ("flow-service.yaml", "/data/foundation/flowservice"),
    "catalog": ("catalog.yaml", "/data/foundation/catalog"),
    "schemaregistry": ("schema-registry.oas3.yaml", "/data/foundation/schemaregistry"),
    "conversion": ("data-prep.yaml", "/data/foundation/conversion"),
}
# Not valid OpenAPI as published (a duplicate parameter, null descriptions): loaded without the spec check.
LENIENT_FILES = frozenset({"catalog.yaml"})
_HOST = "http://aep.emulator"


@dataclass(frozen=True)
class Problem:
    """One way a call departs from the spec.

    ``part``: ``operation`` (no such path or method), ``header``/``query``/``path`` (a parameter), ``body``,
    ``status`` (an answer status the operation does not document) or ``response`` (the answer's body).
    ``field``: the parameter, the JSON path in the body, or the status. ``rule``: the JSON-schema keyword
    broken, or ``required``, ``path``, ``method``, ``undocumented``, ``media-type``.
    """

    part: str
    field: str
    rule: str
    message: str

    def __str__(self) -> str:
        where = f"{self.part} {self.field}".strip()
        return f"{where}: {self.message}"


@dataclass
class Verdict:
    """The operation a call resolved to, its unexcused problems, and the defects that excused others."""

    operation: str | None  # "METHOD /spec/template"; None when the spec has no such operation
    operation_id: str | None = None
    problems: list[Problem] = field(default_factory=list)
    excused: dict[str, list[Problem]] = field(default_factory=dict)  # defect id -> problems it explains

    def add(self, service: str, problems: Iterable[Problem], method: str, path: str, status: int | None = None) -> None:
        for problem in problems:
            defect = excusing_defect(service, self.operation, method, path, problem, status)
            if defect is None:
                self.problems.append(problem)
            else:
                self.excused.setdefault(defect.id, []).append(problem)


def excusing_defect(
    service: str, operation: str | None, method: str, path: str, problem: Problem, status: int | None = None
) -> Defect | None:
    """The known defect explaining ``problem``; ``path`` is the full URL path."""
    relative = path[len(SPEC_FILES[service][1]) :] or "/"
    return next((d for d in DEFECTS if d.excuses(service, operation, method, relative, problem, status)), None)


def locate(openapi_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """``openapi_dir``, else ``$AEP_OPENAPI_DIR``; None if neither is set."""
    chosen = openapi_dir if openapi_dir is not None else os.environ.get(OPENAPI_DIR_ENV)
    return Path(chosen).expanduser().resolve() if chosen else None


def load(openapi_dir: str | os.PathLike[str]) -> AdobeSpecs:
    """The specs in ``openapi_dir``, loaded once per process and directory."""
    return _load(Path(openapi_dir).expanduser().resolve())


@functools.cache
def _load(directory: Path) -> AdobeSpecs:
    missing = [name for name, _ in SPEC_FILES.values() if not (directory / name).is_file()]
    if missing:
        raise FileNotFoundError(f"Adobe's OpenAPI specs are not all in {directory}: missing {', '.join(missing)}")
    return AdobeSpecs(directory)


@dataclass(frozen=True)
class _Resolved:
    operation: str | None  # "METHOD /template"
    operation_id: str | None
    canonical_path: str  # the operation's path with every path parameter set to "x"
    alias_defect: str | None
    problem: Problem | None  # why the spec has no such operation (or, with alias_defect, had none before)


_CACHE_SIZE = 8192
_CONSTRAINTS = frozenset({"enum", "pattern", "format", "minLength", "maxLength", "const"})


class AdobeSpecs:
    """One parsed spec per service; thread-safe (the emulator checks from its handler threads).

    Checks are memoised on what can change their outcome: no path parameter of these specs has a constraint
    beyond ``type: string``, so a call is checked on its operation's path with every parameter set to ``x``.
    """

    def __init__(self, directory: Path) -> None:
        try:
            from openapi_core import OpenAPI  # noqa: F401
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "Validating against Adobe's OpenAPI specs needs openapi-core: pip install 'airflow-provider-aep[openapi]'"
            ) from exc
        self.directory = directory
        self._apis = {service: _parse(directory / name, base) for service, (name, base) in SPEC_FILES.items()}
        self._lock = threading.Lock()  # openapi-core builds its validators lazily, not under a lock
        self._resolve = functools.lru_cache(maxsize=_CACHE_SIZE)(self._resolve_uncached)
        self._parameter_problems = functools.lru_cache(maxsize=_CACHE_SIZE)(self._parameter_problems_uncached)
        self._body_problems = functools.lru_cache(maxsize=_CACHE_SIZE)(self._body_problems_uncached)
        self._declared_parameters = functools.lru_cache(maxsize=None)(self._declared_parameters_uncached)
        self._validators = {service: _validators(api) for service, (api, _) in self._apis.items()}
        self._response_problems = functools.lru_cache(maxsize=_CACHE_SIZE)(self._response_problems_uncached)

    def services(self) -> tuple[str, ...]:
        return tuple(self._apis)

    def raw(self, service: str) -> dict[str, Any]:
        """The parsed spec document (a dict) of ``service``."""
        return self._apis[service][1]

    def check_request(
        self, service: str, method: str, path: str, query: Mapping[str, list[str]], headers: Any, body: bytes
    ) -> Verdict:
        """``path`` is the full URL path, still URL-encoded; ``headers`` any mapping (or message) of headers."""
        return self._check(
            service,
            method,
            path,
            None,
            lambda canonical: self._request_problems(
                service, method.upper(), canonical, _query_key(query), tuple(headers.items()), body or b""
            ),
        )

    def check_response(
        self, service: str, method: str, path: str, status: int, headers: Mapping[str, str], body: bytes
    ) -> Verdict:
        """The answer ``status``/``headers``/``body`` to a call of ``method`` ``path``."""
        return self._check(
            service,
            method,
            path,
            status,
            lambda canonical: self._response_problems(
                service, method.upper(), canonical, status, _response_headers_key(headers), body or b""
            ),
        )

    def _check(
        self,
        service: str,
        method: str,
        path: str,
        status: int | None,
        problems_of: Callable[[str], Iterable[Problem]],
    ) -> Verdict:
        method = method.upper()
        resolved = self._resolve(service, method, path)
        verdict = Verdict(resolved.operation, resolved.operation_id)
        if resolved.problem is not None:
            if resolved.alias_defect is not None:
                verdict.excused[resolved.alias_defect] = [resolved.problem]
            else:
                verdict.add(service, [resolved.problem], method, path)
        if resolved.operation is not None:
            verdict.add(service, problems_of(resolved.canonical_path), method, path, status)
        return verdict

    def _resolve_uncached(self, service: str, method: str, path: str) -> _Resolved:
        """The operation the spec has for the call, or the call's path under a known defect's alias."""
        api, _ = self._apis[service]
        base = SPEC_FILES[service][1]
        found = _find(api, base, method, path)
        if isinstance(found, _Resolved):
            return found
        defect = excusing_defect(service, None, method, path, found)
        if defect is not None and defect.alias_suffix:
            aliased = _find(api, base, method, path.rstrip("/") + defect.alias_suffix)
            if isinstance(aliased, _Resolved):
                return _Resolved(aliased.operation, aliased.operation_id, aliased.canonical_path, defect.id, found)
        return _Resolved(None, None, path, None, found)

    def _request_problems(
        self,
        service: str,
        method: str,
        path: str,
        query: tuple[tuple[str, str], ...],
        headers: tuple[tuple[str, str], ...],
        body: bytes,
    ) -> tuple[Problem, ...]:
        operation = self._resolve(service, method, path).operation
        assert operation is not None
        declared = self._declared_parameters(service, operation)
        parameters = (_canonical(query, "query", declared), _canonical(headers, "header", declared))
        return (
            *self._parameter_problems(service, operation, path, *parameters),
            *self._body_problems(service, method, path, _content_type(headers), body),
        )

    def _parameter_problems_uncached(
        self, service: str, operation: str, path: str, query: Iterable[tuple[str, str]], headers: Any
    ) -> tuple[Problem, ...]:
        """``operation`` is ``"METHOD /template"``; ``path`` the canonical path of a call of it."""
        request = _Request(operation.partition(" ")[0], path, query, headers, b"")
        with self._lock:
            errors = list(self._validators[service][0].iter_errors(request))
        problems = _problems(errors)
        return (*problems, *self._defaulted_required(service, operation, request, problems))

    def _body_problems_uncached(
        self, service: str, method: str, path: str, content_type: str, body: bytes
    ) -> tuple[Problem, ...]:
        if body and "json" in content_type.lower():
            try:  # openapi-core would fail on JSON no parser reads (invalid UTF-8, nesting past the stack)
                json.loads(body)
            except (ValueError, RecursionError) as exc:
                return (Problem("body", "(root)", "invalid", f"not readable JSON ({type(exc).__name__})"),)
        request = _Request(method, path, (), (("Content-Type", content_type),) if content_type else (), body)
        with self._lock:
            errors = list(self._validators[service][1].iter_errors(request))
        return tuple(_problems(errors))

    def _declared_parameters_uncached(self, service: str, operation: str) -> dict[tuple[str, str], bool]:
        """(location, lowercase name) -> whether any string value passes the parameter's schema."""
        out = {}
        for parameter in self._operation(service, operation)["parameters"]:
            parameter = self._deref(service, parameter)
            schema = self._deref(service, parameter.get("schema") or {})
            if schema.get("type") == "array":
                schema = self._deref(service, schema.get("items") or {})
            unconstrained = schema.get("type", "string") == "string" and not (_CONSTRAINTS & schema.keys())
            out[(str(parameter.get("in")), str(parameter.get("name")).lower())] = unconstrained
        return out

    def _response_problems_uncached(
        self,
        service: str,
        method: str,
        path: str,
        status: int,
        headers: tuple[tuple[str, str], ...],
        body: bytes,
    ) -> tuple[Problem, ...]:
        api, _ = self._apis[service]
        request = _Request(method, path, (), (), b"")
        with self._lock:
            errors = list(api.iter_response_errors(request, _Response(status, headers, body)))
        problems = _problems(errors, status=status)
        operation = self._resolve(service, method, path).operation
        assert operation is not None
        if not self._declares_body(service, operation, status):
            problems = [p for p in problems if p.part != "response"]  # e.g. ``content: {}`` on a 204
        return tuple(problems)

    def _operation(self, service: str, operation: str) -> dict[str, Any]:
        method, _, template = operation.partition(" ")
        item = self.raw(service)["paths"][template]
        found = dict(item[method.lower()])
        found["parameters"] = [*item.get("parameters", []), *found.get("parameters", [])]
        return found

    def _deref(self, service: str, node: Any) -> Any:
        while isinstance(node, dict) and "$ref" in node:
            target: Any = self.raw(service)
            for key in node["$ref"].lstrip("#/").split("/"):
                target = target[key]
            node = target
        return node

    def _defaulted_required(
        self, service: str, operation: str, request: _Request, found: list[Problem]
    ) -> list[Problem]:
        """Required parameters the request lacks although the spec gives them a default (openapi-core then
        fills the default in: Data Prep's ``start``/``limit``, which its guide says are required)."""
        reported = {(p.part, p.field.lower()) for p in found}
        sources = {"query": request.parameters.query, "header": request.parameters.header}
        out = []
        for parameter in self._operation(service, operation)["parameters"]:
            parameter = self._deref(service, parameter)
            location, name = parameter.get("in"), str(parameter.get("name"))
            if not parameter.get("required") or location not in sources or (location, name.lower()) in reported:
                continue
            if name not in sources[location]:
                out.append(Problem(location, name, "required", "required, but missing"))
        return out

    def _declares_body(self, service: str, operation: str, status: int) -> bool:
        responses = self._operation(service, operation).get("responses", {})
        answer = responses.get(str(status), responses.get(status, responses.get("default")))
        return bool((self._deref(service, answer) or {}).get("content"))


def _validators(api: Any) -> tuple[Any, Any]:
    """openapi-core's parameter and body validators of a spec, apart, so that each is memoised on its own input."""
    from openapi_core.validation.request import V30RequestBodyValidator, V30RequestParametersValidator

    return V30RequestParametersValidator(api.spec), V30RequestBodyValidator(api.spec)


def _canonical(
    items: tuple[tuple[str, str], ...], location: str, declared: dict[tuple[str, str], bool]
) -> tuple[tuple[str, str], ...]:
    """What of a query or of headers can change the parameters' check: the parameters the operation declares,
    with the values of those any string satisfies set to ``x``."""
    out = []
    for name, value in items:
        unconstrained = declared.get((location, name.lower()))
        if unconstrained is not None:
            out.append((name, "x" if unconstrained else value))
    return tuple(out)


def _content_type(headers: tuple[tuple[str, str], ...]) -> str:
    return next((v for k, v in headers if k.lower() == "content-type"), "")


def _response_headers_key(headers: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The answer's Content-Type as sent; only Location is declared, as a plain string, so any value will do."""
    return tuple(
        sorted(
            (k, v if k.lower() == "content-type" else "x") for k, v in headers.items() if k.lower() != "x-request-id"
        )
    )


def _query_key(query: Mapping[str, list[str]]) -> tuple[tuple[str, str], ...]:
    return tuple((name, value) for name, values in sorted(query.items()) for value in values)


def _find(api: Any, base: str, method: str, path: str) -> _Resolved | Problem:
    from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound
    from openapi_core.templating.paths.finders import APICallPathFinder

    try:
        found = APICallPathFinder(api.spec).find(method.lower(), _HOST + path)
    except PathNotFound:
        return Problem("operation", path, "path", "the spec has no such path")
    except OperationNotFound:
        return Problem("operation", path, "method", f"the spec has no {method} on this path")
    template = found.path_result.pattern
    operation_id = (found.operation / "operationId").read_str() if "operationId" in found.operation else None
    return _Resolved(f"{method} {template}", operation_id, base + re.sub(r"\{[^}]+\}", "x", template), None, None)


def _parse(path: Path, base_path: str) -> tuple[Any, dict[str, Any]]:
    import yaml
    from openapi_core import Config, OpenAPI

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    document = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
    # Adobe's servers are protocol-relative templates of platform.adobe.io; checks match on the base path.
    document["servers"] = [{"url": base_path}]
    config = Config(spec_validator_cls=None) if path.name in LENIENT_FILES else Config()
    return OpenAPI.from_dict(document, config=config), document


class _Request:
    """The request protocol of openapi-core, from a recorded call."""

    def __init__(
        self,
        method: str,
        path: str,
        query: Iterable[tuple[str, str]],
        headers: Iterable[tuple[str, str]],
        body: bytes,
    ) -> None:
        from openapi_core.datatypes import RequestParameters
        from werkzeug.datastructures import Headers, ImmutableMultiDict

        self.host_url = _HOST
        self.path = path
        self.method = method.lower()
        self.body = body or None
        self._headers = Headers(list(headers))
        self.content_type = (self._headers.get("Content-Type") or "").lower()
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(list(query)),
            header=self._headers,
            cookie=ImmutableMultiDict(),
            path={},
        )

    @property
    def full_url_pattern(self) -> str:
        return _HOST + self.path


class _Response:
    def __init__(self, status: int, headers: Iterable[tuple[str, str]], body: bytes) -> None:
        from werkzeug.datastructures import Headers

        self.status_code = status
        self.headers = Headers(list(headers))
        self.data = body or None
        self.content_type = (self.headers.get("Content-Type") or "").lower()


def _problems(errors: Iterable[Exception], status: int | None = None) -> list[Problem]:
    """openapi-core's errors as Problems: one per parameter, one per JSON-schema error in a body."""
    from openapi_core.templating.media_types.exceptions import MediaTypeNotFound
    from openapi_core.templating.responses.exceptions import ResponseNotFound
    from openapi_core.validation.request.exceptions import (
        MissingRequestBody,
        MissingRequiredParameter,
        MissingRequiredRequestBody,
        ParameterValidationError,
    )
    from openapi_core.validation.response.exceptions import DataValidationError, HeaderValidationError

    out: list[Problem] = []
    for error in errors:
        cause = error.__cause__
        schema_errors = list(getattr(cause, "schema_errors", None) or ())
        if isinstance(error, ResponseNotFound):
            out.append(Problem("status", str(status), "undocumented", f"the spec documents no {status} answer"))
        elif isinstance(error, MissingRequiredParameter):
            out.append(Problem(error.location, error.name, "required", "required, but missing"))
        elif isinstance(error, ParameterValidationError):
            out.extend(
                _schema_problems(error.location, schema_errors, prefix=error.name)
                or [Problem(error.location, error.name, "invalid", str(cause or error))]
            )
        elif isinstance(error, MissingRequiredRequestBody):
            out.append(Problem("body", "(root)", "required", "a body is required"))
        elif isinstance(error, MissingRequestBody):
            continue  # an optional body, not sent
        elif isinstance(error, DataValidationError) and isinstance(cause, MediaTypeNotFound):
            if cause.availableMimetypes:  # an answer with a body the spec describes in another media type
                out.append(Problem("response", "(root)", "media-type", str(cause)))
            # no media type at all: the spec describes no body for this status, so there is nothing to check
        elif isinstance(cause, MediaTypeNotFound):
            out.append(Problem("header", "Content-Type", "media-type", str(cause)))
        elif isinstance(error, HeaderValidationError):
            out.append(Problem("response", getattr(error, "name", ""), "header", str(error)))
        else:
            part = "response" if status is not None else "body"
            out.extend(_schema_problems(part, schema_errors) or [Problem(part, "(root)", "invalid", str(error))])
    return out


def _schema_problems(part: str, schema_errors: list[Any], prefix: str | None = None) -> list[Problem]:
    out = []
    for error in schema_errors:
        where = json_path(error.absolute_path)
        if prefix is not None:
            where = prefix if where == "(root)" else f"{prefix}.{where}"
        if error.validator == "required":
            missing = next((n for n in error.validator_value if n not in (error.instance or {})), "")
            where = f"{where}.{missing}" if where != "(root)" else missing
        out.append(Problem(part, where, str(error.validator), error.message))
    return out


def enforce(specs: AdobeSpecs, req: Any, service: Any) -> None:
    """The emulator's spec stage: raise the answer AEP gives to a call its spec rejects (known defects aside)."""
    from airflow_provider_aep.testing.errors import method_not_allowed

    if service.name not in SPEC_FILES:
        return
    path = service.prefix + req.path
    verdict = specs.check_request(service.name, req.method, path, req.query, req.headers, req.body)
    if not verdict.problems:
        return
    problem = verdict.problems[0]
    if problem.part == "operation":
        if problem.rule == "method":
            raise method_not_allowed(req.method, path)
        raise service.not_found(req) if service.not_found else service.bad_request(req, str(problem))
    label = {"header": "header", "query": "query parameter", "path": "path parameter"}.get(problem.part)
    if label is not None and problem.rule == "required":
        raise service.bad_request(req, f"The {label} '{problem.field}' is required.")
    raise service.bad_request(req, f"Invalid request ({problem}), as Adobe's API spec has it.")
