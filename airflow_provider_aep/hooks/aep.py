"""AEPHook: the client core driven with ``requests``, plus the ``aep`` connection form."""

from __future__ import annotations

import threading
import time
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_provider_aep.hooks.operations import AEPOperations
from airflow_provider_aep.utils import client_core as core
from airflow_provider_aep.utils import token_store
from airflow_provider_aep.utils.connection import (
    DEFAULT_IMS_URL,
    DEFAULT_PLATFORM_URL,
    DEFAULT_SANDBOX,
    DEFAULT_SCOPES,
    AEPConnectionConfig,
)
from airflow_provider_aep.utils.defaults import DEFAULT_CONN_ID
from airflow_provider_aep.version_compat import BaseHook, mask_secret

if TYPE_CHECKING:  # requests is imported where it is used: off every DAG parse (bench/RESULTS.md)
    import requests

T = TypeVar("T")

# One IMS call per process even when many threads find the token cache empty together (and the host lock
# of the token store makes it one per host).
_TOKEN_LOCK = threading.Lock()


def _caused_by(exc: BaseException, types: tuple[type[BaseException], ...]) -> bool:
    """Walk requests' and urllib3's wrapping (args[0], .reason, __cause__, __context__) looking for ``types``."""
    pending: list[Any] = [exc]
    seen: set[int] = set()
    while pending:
        item = pending.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        if isinstance(item, types):
            return True
        seen.add(id(item))
        pending.extend([getattr(item, "reason", None), item.__cause__, item.__context__, *item.args[:1]])
    return False


class AEPHook(AEPOperations, core.SyncDriver, BaseHook):
    """
    Talks to Adobe Experience Platform with an ``aep`` connection.

    Tokens come from Adobe IMS (OAuth Server-to-Server) and are cached per process; every call gets AEP's
    required headers, a timeout, retries with backoff (``Retry-After`` honoured) and one error type,
    :class:`~airflow_provider_aep.exceptions.AEPApiError`. Create methods never blindly re-send a POST:
    after a lost response they look the resource up by name first. The calls themselves are the client
    core's (:mod:`~airflow_provider_aep.hooks.operations`); this hook drives them with ``requests``.

    :param aep_conn_id: the ``aep`` connection to use.
    :param retry_limit: retries after the first attempt for retryable failures (429, 5xx, network).
    :param retry_delay: first backoff delay in seconds; it doubles per retry.
    :param retry_args: any other :class:`~airflow_provider_aep.utils.client_core.RetryPolicy` field (``max_delay``, ``retry_after_cap``, ``jitter``).
    :param timeout: seconds, or (connect, read), applied to every call unless the call overrides it.
    """

    conn_name_attr = "aep_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "aep"
    hook_name = "Adobe Experience Platform"

    # ------------------------------------------------------------------ connection form
    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Extra fields of the connection form (Airflow 2 and Airflow 3 before YAML form metadata)."""
        from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget
        from flask_babel import lazy_gettext
        from wtforms import PasswordField, StringField

        return {
            "org_id": StringField(lazy_gettext("IMS Org ID"), widget=BS3TextFieldWidget()),
            "sandbox": StringField(lazy_gettext("Sandbox name"), widget=BS3TextFieldWidget()),
            "scopes": StringField(lazy_gettext("Scopes"), widget=BS3TextFieldWidget()),
            "ims_url": StringField(lazy_gettext("IMS URL"), widget=BS3TextFieldWidget()),
            "platform_url": StringField(lazy_gettext("Platform URL"), widget=BS3TextFieldWidget()),
            "access_token": PasswordField(lazy_gettext("Access token (optional)"), widget=BS3PasswordFieldWidget()),
        }

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["host", "schema", "port", "extra"],
            "relabeling": {"login": "Client ID", "password": "Client secret"},
            "placeholders": {
                "login": "OAuth Server-to-Server client ID (API key) from Adobe Developer Console",
                "password": "OAuth Server-to-Server client secret",
                "org_id": "ABCDEF1234567890@AdobeOrg",
                "sandbox": DEFAULT_SANDBOX,
                "scopes": DEFAULT_SCOPES,
                "ims_url": DEFAULT_IMS_URL,
                "platform_url": DEFAULT_PLATFORM_URL,
                "access_token": "leave empty to use client credentials",
            },
        }

    def test_connection(self) -> tuple[bool, str]:
        """Get a token and make one cheap authenticated Platform call."""
        try:
            stats = self.get_stats()
        except Exception as err:
            return False, str(err)
        cfg = self.config
        return True, (f"Connected to AEP org {cfg.org_id}, sandbox {cfg.sandbox!r}, tenant {stats.get('tenantId')!r}")

    @cached_property
    def config(self) -> AEPConnectionConfig:  # type: ignore[override]
        config = AEPConnectionConfig.from_connection(self.get_connection(self.aep_conn_id))
        mask_secret(config.client_secret)
        mask_secret(config.access_token)
        return config

    @cached_property
    def session(self) -> requests.Session:
        """One keep-alive session per hook."""
        import requests

        session = requests.Session()
        session.headers["User-Agent"] = core.user_agent()
        return session

    def get_conn(self) -> requests.Session:
        return self.session

    def close(self) -> None:
        if "session" in self.__dict__:
            self.session.close()
            del self.__dict__["session"]

    # ------------------------------------------------------------------ the driver
    def drive(self, flow: core.Flow[T]) -> T:
        """Run a flow of the client core to its end: send with requests, sleep in this thread."""
        run = core.FlowRun(flow)
        while run.effect is not None:
            run.perform(self._perform)
        return run.result

    def _perform(self, effect: core.Effect) -> Any:
        match effect:
            case core.Send(request):
                return self._send(request)
            case core.Sleep(seconds):
                return self.sleep(seconds)
            case core.Mask(secret):
                return mask_secret(secret)
            case core.Exclusive(flow, key):
                with _TOKEN_LOCK, token_store.host_lock(key):
                    return self.drive(flow)
            case core.LoadToken() | core.SaveToken() | core.DropToken():
                return token_store.perform(effect)

    def _send(self, request: core.HttpRequest) -> core.HttpResponse:
        import requests
        from urllib3.exceptions import NewConnectionError

        try:
            response = self.session.request(
                request.method, request.url, timeout=request.timeout, **request.library_kwargs()
            )
        except requests.RequestException as exc:
            raise core.transport_failure(
                exc,
                connect_failed=isinstance(exc, requests.ConnectTimeout)
                or _caused_by(exc, (NewConnectionError, ConnectionRefusedError)),
                timed_out=isinstance(exc, requests.Timeout),
                request=request,
            ) from None
        return core.HttpResponse(response.status_code, response.headers, response.text)

    @staticmethod
    def sleep(seconds: float) -> None:
        """Every wait of the hook (retry backoff) goes through here, so tests can record it."""
        time.sleep(seconds)
