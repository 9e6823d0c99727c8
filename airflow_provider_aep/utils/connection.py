"""The `aep` Airflow connection: its fields, defaults and validation (shared by the sync hook and the trigger)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_aep.exceptions import AEPConnectionConfigError
from airflow_provider_aep.utils.defaults import (
    DEFAULT_IMS_URL,
    DEFAULT_PLATFORM_URL,
    DEFAULT_SANDBOX,
    DEFAULT_SCOPES,
)

EXTRA_FIELDS = ("org_id", "sandbox", "scopes", "ims_url", "platform_url", "access_token")


@dataclass(frozen=True)
class AEPConnectionConfig:
    """Validated settings of one `aep` connection. Secrets are kept out of ``repr``."""

    conn_id: str
    org_id: str
    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    sandbox: str = DEFAULT_SANDBOX
    scopes: str = DEFAULT_SCOPES
    ims_url: str = DEFAULT_IMS_URL
    platform_url: str = DEFAULT_PLATFORM_URL
    access_token: str | None = field(default=None, repr=False)

    @property
    def uses_client_credentials(self) -> bool:
        return self.access_token is None

    @property
    def token_cache_key(self) -> tuple[str, str, str]:
        return (self.ims_url, self.client_id, self.scopes)

    @classmethod
    def from_connection(cls, conn: Any) -> AEPConnectionConfig:
        """Build from an Airflow Connection (either major version), raising one clear error per bad field."""
        conn_id = conn.conn_id or "<unnamed>"
        extra = _extras(conn, conn_id)

        def fail(field_name: str, rule: str) -> AEPConnectionConfigError:
            return AEPConnectionConfigError(f"Connection {conn_id!r}: field {field_name!r} {rule}")

        def text(name: str) -> str | None:
            value = extra.get(name)
            if value is None or (isinstance(value, str) and not value.strip()):
                return None
            if not isinstance(value, str):
                raise fail(f"extra.{name}", f"must be a string, got {type(value).__name__} {value!r}")
            return value.strip()

        org_id = text("org_id")
        if not org_id:
            raise fail("extra.org_id", "is required: the IMS organization id, e.g. 'ABC123@AdobeOrg'")
        if not org_id.endswith("@AdobeOrg"):
            raise fail("extra.org_id", f"must end with '@AdobeOrg', got {org_id!r}")

        client_id = (conn.login or "").strip()
        client_secret = conn.password or None
        access_token = text("access_token")
        if not client_id:
            raise fail("login", "is required: the OAuth Server-to-Server client ID (also sent as x-api-key)")
        if not client_secret and not access_token:
            raise fail(
                "password",
                "is required: the OAuth Server-to-Server client secret "
                "(or set extra.access_token to a pre-issued bearer token)",
            )

        sandbox = text("sandbox") or DEFAULT_SANDBOX
        if sandbox != sandbox.lower() or " " in sandbox:
            raise fail("extra.sandbox", f"must be the sandbox name in lowercase without spaces, got {sandbox!r}")

        urls = {}
        for name, default in (("ims_url", DEFAULT_IMS_URL), ("platform_url", DEFAULT_PLATFORM_URL)):
            url = (text(name) or default).rstrip("/")
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise fail(f"extra.{name}", f"must be an absolute http(s) URL such as {default!r}, got {url!r}")
            urls[name] = url

        scopes = ",".join(s.strip() for s in (text("scopes") or DEFAULT_SCOPES).split(",") if s.strip())
        return cls(
            conn_id=conn_id,
            org_id=org_id,
            client_id=client_id,
            client_secret=client_secret,
            sandbox=sandbox,
            scopes=scopes,
            ims_url=urls["ims_url"],
            platform_url=urls["platform_url"],
            access_token=access_token,
        )


def _extras(conn: Any, conn_id: str) -> dict[str, Any]:
    raw = conn.extra
    if raw in (None, ""):
        return {}
    if isinstance(raw, dict):
        extra = raw
    else:
        try:
            extra = json.loads(raw)
        except json.JSONDecodeError as err:
            raise AEPConnectionConfigError(
                f"Connection {conn_id!r}: field 'extra' must be a JSON object, but it is not valid JSON ({err.msg} "
                f"at position {err.pos})"
            ) from None
    if not isinstance(extra, dict):
        raise AEPConnectionConfigError(
            f"Connection {conn_id!r}: field 'extra' must be a JSON object, got {type(extra).__name__}"
        )
    # Airflow 2's form stored custom fields as extra__aep__<name>; accept both spellings.
    return {k.removeprefix("extra__aep__"): v for k, v in extra.items()}
