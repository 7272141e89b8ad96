"""
Everything that differs between the Airflow lines this provider supports (2.11 and 3.x), in one place.

The rest of the provider, and its example DAGs, import these names from here and nowhere else.

Most names come from ``apache-airflow-providers-common-compat``'s ``sdk`` module, which the Airflow
project maintains for its own providers: it tries each name's Airflow 3 home first and falls back to
its Airflow 2 home, so a class that moves in a later Airflow release is followed by upgrading that
package instead of this one. What it does not cover is decided here by Airflow's version, never by
guessing from an ``ImportError``: a broken install then fails loudly instead of silently taking the
other branch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow import __version__ as AIRFLOW_VERSION
from airflow.providers.common.compat.lineage.hook import get_hook_lineage_collector
from airflow.providers.common.compat.sdk import (
    DAG,
    AirflowException,
    AirflowNotFoundException,
    AirflowSensorTimeout,
    AirflowSkipException,
    BaseHook,
    BaseOperator,
    BaseSensorOperator,
    Context,
    HookLineageReader,
    Param,
    PokeReturnValue,
    conf,
    task,
)
from airflow.triggers.base import BaseTrigger, TriggerEvent
from packaging.version import Version

__all__ = [
    "AIRFLOW_V_3_0_PLUS",
    "AIRFLOW_V_3_1_PLUS",
    "AIRFLOW_V_3_2_PLUS",
    "AIRFLOW_V_3_3_PLUS",
    "DAG",
    "AirflowException",
    "AirflowNotFoundException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "BaseHook",
    "BaseOperator",
    "BaseSensorOperator",
    "BaseTrigger",
    "Context",
    "CronDataIntervalTimetable",
    "CronTriggerTimetable",
    "HookLineageReader",
    "Param",
    "PokeReturnValue",
    "TriggerEvent",
    "aget_connection",
    "amask_secret",
    "conf",
    "connection_form_widgets",
    "datetime_trigger",
    "exponential_backoff",
    "get_hook_lineage_collector",
    "mask_secret",
    "task",
]

_BASE_VERSION = Version(Version(AIRFLOW_VERSION).base_version)
AIRFLOW_V_3_0_PLUS = _BASE_VERSION >= Version("3.0.0")
AIRFLOW_V_3_1_PLUS = _BASE_VERSION >= Version("3.1.0")
AIRFLOW_V_3_2_PLUS = _BASE_VERSION >= Version("3.2.0")
AIRFLOW_V_3_3_PLUS = _BASE_VERSION >= Version("3.3.0")
# From 3.3.2 a hook reads its connection on the event loop without a blocking call to the supervisor.
_ASYNC_CONNECTIONS = _BASE_VERSION >= Version("3.3.2")

# Timetables joined the Task SDK in 3.2; before that DAG files imported them from core.
if AIRFLOW_V_3_2_PLUS:
    from airflow.sdk import CronDataIntervalTimetable, CronTriggerTimetable
else:
    from airflow.timetables.interval import CronDataIntervalTimetable
    from airflow.timetables.trigger import CronTriggerTimetable

# Secret masking: the Task SDK's log module from 3.1 (and its async twin, for triggers, from 3.3);
# 3.0 kept it in the execution-time masker, 2.11 in core's log utilities.
if AIRFLOW_V_3_3_PLUS:
    from airflow.sdk.log import amask_secret, mask_secret
else:
    if AIRFLOW_V_3_1_PLUS:
        from airflow.sdk.log import mask_secret
    elif AIRFLOW_V_3_0_PLUS:
        from airflow.sdk.execution_time.secrets_masker import mask_secret
    else:
        from airflow.utils.log.secrets_masker import mask_secret

    async def amask_secret(secret: str) -> None:
        """Before 3.3 masking never talks to another process: the synchronous call does not block."""
        mask_secret(secret)


async def aget_connection(hook: Any, conn_id: str) -> Any:
    """
    ``hook``'s connection ``conn_id``, read without blocking the event loop (for triggers).

    ``BaseHook.aget_connection`` came in 3.1, and until 3.3.2 it masked the secrets with a blocking call
    to the supervisor; there the synchronous lookup runs in a worker thread instead.
    """
    if _ASYNC_CONNECTIONS:
        return await hook.aget_connection(conn_id)
    from asgiref.sync import sync_to_async

    return await sync_to_async(hook.get_connection)(conn_id)


def datetime_trigger(moment: Any) -> Any:
    """
    A trigger that fires at ``moment`` (an aware datetime), for a task that waits in the triggerer.

    Core's ``DateTimeTrigger`` in 2.11; the standard provider's from 3.0 (imported only when needed).
    """
    if AIRFLOW_V_3_0_PLUS:
        from airflow.providers.standard.triggers.temporal import DateTimeTrigger
    else:
        from airflow.triggers.temporal import DateTimeTrigger
    return DateTimeTrigger(moment=moment)


def exponential_backoff(multiplier: float) -> float | bool:
    """
    ``retry_exponential_backoff`` for a delay that grows ``multiplier`` times per try.

    Airflow 3.3 takes the multiplier; older lines take a flag and always double.
    """
    return multiplier if AIRFLOW_V_3_3_PLUS else True


def connection_form_widgets(fields: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """
    The hook's ``get_connection_form_widgets()`` answer, built from the declarative ``conn-fields``.

    Airflow 3.2 and later read ``conn-fields`` from the provider info and never call the hook. Airflow
    2.11's web UI renders these WTForms fields with Flask-AppBuilder's widgets; Airflow 3.0 and 3.1's API
    server calls the hook with the WTForms classes replaced by stand-ins that turn each field into a
    JSON schema for the React form, so plain fields (label, description, default; a password field for a
    secret) are all that is passed there.
    """
    from wtforms import PasswordField, StringField

    widgets: dict[str, Any] = {}
    for name, field in fields.items():
        secret = field["schema"].get("format") == "password"
        default = field["schema"].get("default")
        kwargs: dict[str, Any] = {"description": field.get("description", "")}
        if default is not None:
            kwargs["default"] = str(default)
        if not AIRFLOW_V_3_0_PLUS:
            from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget

            kwargs["widget"] = BS3PasswordFieldWidget() if secret else BS3TextFieldWidget()
        widgets[name] = (PasswordField if secret else StringField)(field["label"], **kwargs)
    return widgets
