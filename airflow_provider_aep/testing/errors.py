"""Error bodies in the shapes AEP uses (aep-api.md §1.3 and §6.1).

Handlers raise :class:`APIError`; the server turns it into a JSON response.
Each builder matches one layer of AEP:

* gateway (Adobe I/O): ``{"error_code", "message"}``
* Schema Registry: RFC-7807-ish body with type ``.../XDM-<code>-<status>`` and ``report``
* Flow Service: problem body with type ``.../FLOW-<code>-<status>``, ``report`` and ``errorMessage``
* legacy "placeholder" body (Catalog, Data Prep, Content-Type errors)
* IMS: OAuth ``{"error", "error_description"}``
"""

from __future__ import annotations

import time
from typing import Any


class APIError(Exception):
    """An HTTP error answer: status, JSON body and optional extra headers."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body
        self.headers = headers or {}


def gateway_error(status: int, error_code: str, message: str) -> APIError:
    return APIError(status, {"error_code": error_code, "message": message})


def placeholder_error(status: int, title: str, detail: str) -> APIError:
    return APIError(status, {"type": "/placeholder/type/uri", "status": status, "title": title, "detail": detail})


def method_not_allowed(method: str, path: str) -> APIError:
    return placeholder_error(405, "MethodNotAllowed", f"{method} is not allowed on {path}.")


def xdm_error(code: str, status: int, title: str, message: str, request_id: str = "") -> APIError:
    """``code`` is the numeric part, e.g. ``"1521"`` for XDM-1521-400."""
    stamp = time.strftime("%m-%d-%Y %H:%M:%S", time.gmtime())
    return APIError(
        status,
        {
            "type": f"http://ns.adobe.com/aep/errors/XDM-{code}-{status}",
            "title": title,
            "status": status,
            "report": {
                "registryRequestId": request_id,
                "timestamp": stamp,
                "detailed-message": message,
                "sub-errors": [],
            },
            "detail": message,
        },
    )


def flow_error(
    code: str,
    status: int,
    title: str,
    message: str,
    *,
    request_id: str = "",
    resource_id: str | None = None,
    resource_type: str | None = None,
    headers: dict[str, str] | None = None,
) -> APIError:
    """``code`` is the numeric part, e.g. ``"1439"`` for FLOW-1439-404 (catalogue: flow-service-errors.md)."""
    report: dict[str, Any] = {"detailed-message": message, "request-id": request_id}
    if resource_id is not None:
        report["id"] = resource_id
    if resource_type is not None:
        report["type"] = resource_type
    return APIError(
        status,
        {
            "type": f"https://ns.adobe.com/aep/errors/FLOW-{code}-{status}",
            "title": title,
            "status": status,
            "report": report,
            "errorMessage": message,
            "errorDetails": title,
        },
        headers,
    )


def ims_error(status: int, error: str, description: str) -> APIError:
    return APIError(status, {"error": error, "error_description": description})
