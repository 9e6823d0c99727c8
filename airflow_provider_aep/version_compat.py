"""
One place for what moved between Airflow 2.11 and Airflow 3: each Task SDK name with its Airflow 2 home
as the fallback. Names resolve on first use (PEP 562), so a module pays only for what it imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from airflow import __version__ as AIRFLOW_VERSION
from packaging.version import Version

# The release without pre/post/dev parts, so that 3.1.0rc1 counts as 3.1.
AIRFLOW_BASE_VERSION = Version(Version(AIRFLOW_VERSION).base_version)
AIRFLOW_V_3_0_PLUS = Version("3.0.0") <= AIRFLOW_BASE_VERSION
AIRFLOW_V_3_1_PLUS = Version("3.1.0") <= AIRFLOW_BASE_VERSION

# name -> (its Task SDK home, its older home). Airflow 3.0 still kept some (exceptions, BaseHook, conf)
# in the older home, so each name is looked up where it lives rather than by version number.
_HOMES: dict[str, tuple[str, str]] = {
    "AirflowException": ("airflow.sdk.exceptions", "airflow.exceptions"),
    "AirflowFailException": ("airflow.sdk.exceptions", "airflow.exceptions"),
    "AirflowSensorTimeout": ("airflow.sdk.exceptions", "airflow.exceptions"),
    "AirflowSkipException": ("airflow.sdk.exceptions", "airflow.exceptions"),
    "TaskDeferred": ("airflow.sdk.exceptions", "airflow.exceptions"),
    "DAG": ("airflow.sdk", "airflow.models.dag"),
    "dag": ("airflow.sdk", "airflow.decorators"),
    "task_group": ("airflow.sdk", "airflow.decorators"),
    "BaseHook": ("airflow.sdk", "airflow.hooks.base"),
    "BaseOperator": ("airflow.sdk", "airflow.models.baseoperator"),
    "BaseOperatorLink": ("airflow.sdk", "airflow.models.baseoperatorlink"),
    "BaseSensorOperator": ("airflow.sdk", "airflow.sensors.base"),
    "PokeReturnValue": ("airflow.sdk", "airflow.sensors.base"),
    "Param": ("airflow.sdk", "airflow.models.param"),
    "ParamsDict": ("airflow.sdk.definitions.param", "airflow.models.param"),
    "XCom": ("airflow.sdk.execution_time.xcom", "airflow.models.xcom"),
    "conf": ("airflow.sdk", "airflow.configuration"),
    "task": ("airflow.sdk", "airflow.decorators"),
}

if TYPE_CHECKING:  # type-check against the Task SDK's names (Airflow 3); at run time __getattr__ finds them
    from airflow.sdk import BaseHook as BaseHook


def __getattr__(name: str) -> Any:
    try:
        homes = _HOMES[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    for home in homes:
        try:
            value = getattr(importlib.import_module(home), name)
        except (ImportError, AttributeError):
            continue
        globals()[name] = value
        return value
    raise ImportError(f"{name} is in none of {homes} in this Airflow ({AIRFLOW_VERSION})")


def mask_secret(value: str | None) -> None:
    """Register a secret with Airflow's masker so it is redacted from task logs."""
    if not value:
        return
    if AIRFLOW_V_3_0_PLUS:
        from airflow.sdk.log import mask_secret as _mask
    else:
        from airflow.utils.log.secrets_masker import mask_secret as _mask  # type: ignore[no-redef]
    _mask(value)


__all__ = ["AIRFLOW_BASE_VERSION", "AIRFLOW_V_3_0_PLUS", "AIRFLOW_V_3_1_PLUS", "mask_secret", *_HOMES]
