"""
The ``aep`` Asset URI scheme: an AEP dataset is ``aep://<IMS org>/<sandbox>/datasets/<dataset id>``, the
org's ``@`` written ``%40`` (``aep://ABC123%40AdobeOrg/prod/datasets/5f1...``): a bare ``@`` would make the
org's first part a user name, which Airflow 2 and 3.0 drop from Asset URIs.

Airflow finds :func:`sanitize_uri` (normalize and validate), :func:`create_asset` (the factory) and
:func:`convert_asset_to_openlineage` through the provider info (``asset-uris``; ``dataset-uris`` on
Airflow 2). The same naming is the OpenLineage dataset of an AEP dataset: namespace ``aep://<IMS org>``,
name ``<sandbox>/datasets/<dataset id>``.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from airflow_provider_aep.version_compat import AIRFLOW_V_3_0_PLUS, AIRFLOW_V_3_1_PLUS

if TYPE_CHECKING:
    from urllib.parse import SplitResult

SCHEME = "aep"
ORG_SUFFIX = "@AdobeOrg"
# Sandbox names: lowercase letters, digits and hyphens (AEP lowercases what it is given).
_SANDBOX = re.compile(r"[a-z0-9][a-z0-9-]*")
_ORG = re.compile(r"[A-Za-z0-9]+")
_FORM = f"{SCHEME}://<IMS org>/<sandbox>/datasets/<dataset id>"


def asset_class() -> type:
    """Airflow's Asset (Airflow 3), or the Dataset it was called before (Airflow 2)."""
    try:
        from airflow.sdk import Asset
    except ImportError:
        from airflow.datasets import Dataset as Asset  # type: ignore[assignment,no-redef]
    return Asset  # type: ignore[no-any-return]


def asset_alias_class() -> type:
    """Airflow's AssetAlias (Airflow 3), or DatasetAlias (Airflow 2)."""
    try:
        from airflow.sdk import AssetAlias
    except ImportError:
        from airflow.datasets import DatasetAlias as AssetAlias  # type: ignore[assignment,no-redef]
    return AssetAlias  # type: ignore[no-any-return]


def dataset_uri(org_id: str, sandbox: str, dataset_id: str) -> str:
    """The ``aep`` URI of a dataset, validated and normalized."""
    raw = f"{SCHEME}://{urllib.parse.quote(org_id, safe='')}/{sandbox}/datasets/{dataset_id}"
    return urllib.parse.urlunsplit(sanitize_uri(urllib.parse.urlsplit(raw)))


def parse_dataset_uri(uri: str) -> tuple[str, str, str]:
    """``(org_id, sandbox, dataset_id)`` of an ``aep`` URI; ``ValueError`` naming the rule it breaks."""
    parsed = sanitize_uri(urllib.parse.urlsplit(uri))
    _, sandbox, _, dataset_id = parsed.path.split("/")
    return urllib.parse.unquote(parsed.netloc), sandbox, dataset_id


def sanitize_uri(uri: SplitResult) -> SplitResult:
    """The handler Airflow calls for every ``aep`` Asset: the org's ``@`` as ``%40``, the sandbox lowercased."""
    org = urllib.parse.unquote(uri.netloc)
    if not org.endswith(ORG_SUFFIX) or not _ORG.fullmatch(org[: -len(ORG_SUFFIX)]):
        raise ValueError(
            f"{urllib.parse.urlunsplit(uri)!r}: the host must be an IMS org id like ABC123{ORG_SUFFIX} "
            f"(written ABC123%40AdobeOrg)"
        )
    parts = uri.path.split("/")
    if len(parts) != 4 or parts[0] or parts[2] != "datasets" or not parts[3]:
        raise ValueError(f"{urllib.parse.urlunsplit(uri)!r}: an AEP dataset URI has the form {_FORM}")
    sandbox = parts[1].lower()
    if not _SANDBOX.fullmatch(sandbox):
        raise ValueError(f"{urllib.parse.urlunsplit(uri)!r}: sandbox {parts[1]!r} must be letters, digits and hyphens")
    if uri.query:
        raise ValueError(f"{urllib.parse.urlunsplit(uri)!r}: an AEP dataset URI takes no query")
    return uri._replace(
        scheme=SCHEME,
        netloc=urllib.parse.quote(org, safe=""),
        path=f"/{sandbox}/datasets/{parts[3]}",
        query="",
        fragment="",
    )


def create_asset(*, org_id: str, sandbox: str, dataset_id: str, extra: Mapping[str, Any] | None = None) -> Any:
    """The factory: the Asset of an AEP dataset, named by its URI."""
    uri = dataset_uri(org_id, sandbox, dataset_id)
    return asset_class()(uri=uri, extra=dict(extra or {}))


def openlineage_naming(uri: str) -> tuple[str, str]:
    """``(namespace, name)`` of an AEP dataset in OpenLineage: ``aep://<org>`` and ``<sandbox>/datasets/<id>``,
    which joined by ``/`` are its URI."""
    parsed = sanitize_uri(urllib.parse.urlsplit(uri))
    return f"{SCHEME}://{parsed.netloc}", parsed.path.lstrip("/")


def convert_asset_to_openlineage(asset: Any, lineage_context: Any) -> Any:
    """The OpenLineage dataset of an ``aep`` Asset (Airflow's OpenLineage provider calls it)."""
    from airflow.providers.common.compat.openlineage.facet import Dataset

    namespace, name = openlineage_naming(asset.uri)
    return Dataset(namespace=namespace, name=name)


class _HashableJSONObject(dict):  # type: ignore[type-arg]
    """A JSON object that hashes, for Airflow 2 (see :func:`alias_event_extra`)."""

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))


def _hashable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return _HashableJSONObject((key, _hashable(item)) for key, item in value.items())
    if isinstance(value, list | tuple):
        return tuple(_hashable(item) for item in value)
    return value


def alias_event_extra(extra: Mapping[str, Any]) -> dict[str, Any]:
    """
    ``extra`` as an asset alias event can carry it on this Airflow. Airflow 2.11 and 3.0 freeze an alias
    event's extra (``frozenset(extra.items())``), which a nested object or array fails: Airflow 2 does it in
    the task's process, so its objects and arrays go as hashable forms that are stored as the same JSON;
    Airflow 3.0 does it on the API server, after JSON, so they go as JSON text (``json.loads`` reads them).
    Airflow 3.1 and later take any JSON.
    """
    if AIRFLOW_V_3_1_PLUS:
        return dict(extra)
    if AIRFLOW_V_3_0_PLUS:
        return {key: json.dumps(v) if isinstance(v, Mapping | list | tuple) else v for key, v in extra.items()}
    return _hashable(extra)  # type: ignore[no-any-return]


def attach_dataset_events(
    context: Mapping[str, Any],
    outlets: Iterable[Any],
    assets: Iterable[Any],
    extra: Mapping[str, Any],
) -> list[str]:
    """
    Give the task's asset events on success what it knows: every AssetAlias among ``outlets`` gets an
    event for each of ``assets`` (Airflow emits them when the task succeeds), and an outlet Asset that is
    one of ``assets`` gets ``extra``. Returns the URIs given events.
    """
    alias_class = asset_alias_class()
    events = context.get("outlet_events")
    if events is None:  # outside a task run (no outlet events to fill)
        return []
    wanted = {asset.uri: asset for asset in assets}
    done: list[str] = []
    for outlet in outlets or ():
        if isinstance(outlet, alias_class):
            for asset in wanted.values():
                events[outlet].add(asset, extra=alias_event_extra(extra))
                done.append(asset.uri)
        elif getattr(outlet, "uri", None) in wanted:
            events[outlet].extra.update(extra)
            done.append(outlet.uri)
    return sorted(set(done))
