"""Adobe IMS: OAuth Server-to-Server token endpoint (aep-api.md §1.1).

``POST /ims/token/v3`` with a form body ``grant_type=client_credentials``,
``client_id``, ``client_secret``, ``scope``. Fields may also come in the query string
(IMS accepts it; the request log flags it because query strings get logged).
"""

from __future__ import annotations

from urllib.parse import parse_qs

from airflow_provider_aep.testing.errors import ims_error
from airflow_provider_aep.testing.routing import Request, Response, Service, route


def create_token(req: Request) -> Response:
    emulator = req.emulator
    fields: dict[str, list[str]] = dict(req.query)
    if req.body:
        media = (req.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if media != "application/x-www-form-urlencoded":
            raise ims_error(400, "invalid_request", "Content-Type must be application/x-www-form-urlencoded")
        fields.update(parse_qs(req.body.decode("utf-8", "replace"), keep_blank_values=True))

    def field(name: str) -> str | None:
        values = fields.get(name)
        return values[0] if values else None

    grant_type = field("grant_type")
    if grant_type is None:
        raise ims_error(400, "invalid_request", "missing grant_type parameter")
    if grant_type != "client_credentials":
        raise ims_error(400, "unsupported_grant_type", f"grant_type {grant_type} is not supported")
    client_id = field("client_id")
    if not client_id:
        raise ims_error(400, "invalid_request", "missing client_id parameter")
    if client_id != emulator.client_id:
        raise ims_error(400, "invalid_client", "invalid client_id parameter")
    if field("client_secret") != emulator.client_secret:
        raise ims_error(401, "invalid_client", "invalid client_secret parameter")
    ttl = emulator.token_ttl
    token = emulator.issue_token(ttl)
    return Response(200, {"access_token": token, "token_type": "bearer", "expires_in": int(ttl)})


SERVICE = Service(
    name="ims",
    prefix="/ims",
    routes=[route("POST", "/token/v3", create_token)],
    platform=False,
)
