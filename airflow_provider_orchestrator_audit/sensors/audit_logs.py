"""
Wait until an organization's audit log holds new entries: :class:`AuditLogsTotalCountSensor` (the classic
audit log's ``totalCount``, or Orchestrator's ``@odata.count``), :class:`AuditLogsNewEntriesSensor` (any
source's newest entry).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_orchestrator_audit.client.events import TENANT_ADVICE
from airflow_provider_orchestrator_audit.client.odata import ORCHESTRATOR_TENANT_ADVICE
from airflow_provider_orchestrator_audit.compat import (
    AirflowSensorTimeout,
    AirflowSkipException,
    BaseSensorOperator,
    PokeReturnValue,
    conf,
)
from airflow_provider_orchestrator_audit.event_models import SOURCE_LEVELS, SOURCES, AuditEvent
from airflow_provider_orchestrator_audit.exceptions import (
    OrchestratorAuditError,
    OrchestratorAuthError,
    OrchestratorConfigError,
    OrchestratorRequestError,
    OrchestratorResponseError,
)
from airflow_provider_orchestrator_audit.hooks.orchestrator_audit import OrchestratorAuditHook
from airflow_provider_orchestrator_audit.orchestrator_models import ORCHESTRATOR_SOURCE, OrchestratorAuditEntry
from airflow_provider_orchestrator_audit.templating import unset_to_none
from airflow_provider_orchestrator_audit.timestamps import Ticks, TimestampError, format_ticks, to_ticks
from airflow_provider_orchestrator_audit.triggers.audit_logs import (
    COUNTED_SOURCES,
    NEWEST_FIRST,
    NEWEST_PROBE_COUNT,
    AuditLogsNewEntriesTrigger,
    AuditLogsTotalCountTrigger,
    NewEntriesCondition,
    Observation,
    newest_of,
    odata_count,
)

if TYPE_CHECKING:
    from airflow_provider_orchestrator_audit.compat import Context
    from airflow_provider_orchestrator_audit.models import AuditLogEntry, AuditLogPage
    from airflow_provider_orchestrator_audit.orchestrator_models import OrchestratorAuditPage

__all__ = ["AuditLogsNewEntriesSensor", "AuditLogsTotalCountSensor"]

#: Where the first poke's ``totalCount`` is kept (Airflow's task state store, one per DAG run and task).
BASELINE_STATE_KEY = "orchestrator_audit_baseline_count"

# The trigger gives up at the sensor's deadline by itself. The scheduler's own deferral timeout is a
# backstop for a trigger that never runs (no triggerer up); set a little later so that the trigger's
# message, which says what was compared, normally wins.
_DEFERRAL_GRACE = timedelta(minutes=1)

# The error classes a trigger's error event may name; anything else is reported as a request error.
_ERROR_CLASSES: dict[str, type[OrchestratorAuditError]] = {
    cls.__name__: cls
    for cls in (OrchestratorConfigError, OrchestratorAuthError, OrchestratorRequestError, OrchestratorResponseError)
}


class AuditLogsTotalCountSensor(BaseSensorOperator):
    """
    Wait until an organization's audit log holds new entries, for pipelines that export on activity.

    Each poke is one ``top=1`` request (``$top=1&$count=true`` for ``source="orchestrator"``, whose
    ``@odata.count`` stands for ``totalCount``). The sensor succeeds when ``totalCount > baseline_count`` or the
    newest entry's ``createdOn`` is later than ``newer_than`` (full precision), whichever is set; its XCom
    is the ``totalCount`` it saw. With ``deferrable=True`` the wait moves to
    :class:`~airflow_provider_orchestrator_audit.triggers.audit_logs.AuditLogsTotalCountTrigger`. Why
    ``newer_than`` is safer where retention removes entries, and how timeouts and errors end the wait:
    README, "Waiting for new entries".

    Example::

        AuditLogsTotalCountSensor(task_id="wait_for_activity", newer_than="{{ data_interval_start }}",
                                  deferrable=True, poke_interval=300, timeout=3600)

    :param orchestrator_conn_id: the ``orchestrator_audit`` connection.
    :param baseline_count: succeed when ``totalCount`` is greater than this. None (or a template that
        renders as ``None`` or empty): the ``totalCount`` of this run's first poke, unless ``newer_than``
        is set, in which case the count is not looked at. (templated)
    :param newer_than: succeed when the newest entry's ``createdOn`` is later than this ISO-8601 timestamp
        (up to 7 fractional digits, any UTC offset, UTC when it has none) or datetime. None: not checked.
        A value that is not a timestamp fails the task before any request. (templated)
    :param deferrable: wait in the triggerer instead of a worker slot. Default: Airflow's
        ``[operators] default_deferrable``.
    :param poke_interval: seconds between requests (also in the trigger).
    :param timeout: seconds from the sensor's start until it fails with ``AirflowSensorTimeout``.
    :param mode: ``poke`` or ``reschedule`` (ignored when deferrable).
    :param source: ``"classic"`` (default) or ``"orchestrator"`` (Orchestrator's own audit log of a tenant).
    :param tenant: the tenant of ``"orchestrator"``; default: the connection's extra ``tenant``. (templated)
    """

    template_fields: Sequence[str] = ("baseline_count", "newer_than", "tenant")
    ui_color = "#fa4616"

    def __init__(
        self,
        *,
        orchestrator_conn_id: str = OrchestratorAuditHook.default_conn_name,
        baseline_count: int | str | None = None,
        newer_than: str | datetime | date | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        source: str = "classic",
        tenant: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if source not in COUNTED_SOURCES:
            raise ValueError(
                f"{self.task_id}: source must be 'classic' or 'orchestrator' (the sources that report a count), "
                f"got {source!r}; AuditLogsNewEntriesSensor watches every source"
            )
        self.source = source
        self.tenant = tenant
        self.orchestrator_conn_id = orchestrator_conn_id
        self.baseline_count = baseline_count
        self.newer_than = newer_than
        self.deferrable = deferrable
        self._first_count: int | None = None

    @cached_property
    def hook(self) -> OrchestratorAuditHook:
        """The audit-log hook; one HTTP connection is plenty for one request per poke."""
        return OrchestratorAuditHook(self.orchestrator_conn_id, max_connections=1)

    # --- arguments ------------------------------------------------------------------------------------

    def _explicit_baseline(self) -> int | None:
        value = unset_to_none(self.baseline_count)
        if value is None:
            return None
        count: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            count = value
        elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
            count = int(value.strip())  # a rendered template is text
        if count is None or count < 0:
            raise OrchestratorConfigError(
                f"{self.task_id}: baseline_count must be a non-negative integer, or None for the totalCount "
                f"of the first poke; got {value!r}"
            )
        return count

    def _newer_than_ticks(self) -> Ticks | None:
        value = unset_to_none(self.newer_than)
        if value is None:
            return None
        try:
            return to_ticks(value)
        except TimestampError as error:
            raise OrchestratorConfigError(f"{self.task_id}: newer_than: {error}") from None

    def _baseline(
        self, context: Context, explicit: int | None, newer_than: Ticks | None, total_count: int
    ) -> int | None:
        """The count to beat: explicit, this run's first poke, or None when only ``newer_than`` is checked."""
        if explicit is not None:
            return explicit
        if newer_than is not None:
            return None
        if self._first_count is not None:
            return self._first_count
        # Each reschedule and each retry runs in a fresh process: the first poke's count must outlive it.
        store = context.get("task_state_store")
        if store is not None:
            stored = store.get(BASELINE_STATE_KEY)
            if isinstance(stored, int) and not isinstance(stored, bool):
                self.log.info("Baseline: totalCount %d, seen at this run's first poke", stored)
                self._first_count = stored
                return stored
        elif self.reschedule and not self.deferrable:
            raise OrchestratorConfigError(
                f"{self.task_id}: mode='reschedule' with baseline_count=None needs Airflow's task state store "
                "(context['task_state_store'], missing here) to remember the first poke's totalCount; set "
                "baseline_count, or use poke mode or deferrable=True"
            )
        self.log.info("Baseline: totalCount %d at the first poke", total_count)
        self._first_count = total_count
        if store is not None:
            store.set(BASELINE_STATE_KEY, total_count)
        return total_count

    # --- checking ------------------------------------------------------------------------------------

    def _tenant(self) -> str | None:
        return _source_tenant(self.source, self.tenant, self.hook, self.task_id, self.orchestrator_conn_id)

    def _check(self, context: Context) -> tuple[NewEntriesCondition, Observation]:
        explicit, newer_than = self._explicit_baseline(), self._newer_than_ticks()
        page: AuditLogPage | OrchestratorAuditPage
        if self.source == ORCHESTRATOR_SOURCE:
            odata = self.hook.get_orchestrator_audit_logs(self._tenant(), top=1, count=True, orderby=NEWEST_FIRST)
            total, page = odata_count(odata), odata
        else:
            classic = self.hook.get_audit_logs(top=1, sort_by="createdOn", sort_order="desc")
            total, page = classic.total_count, classic
        condition = NewEntriesCondition(self._baseline(context, explicit, newer_than, total), newer_than)
        observation = condition.observe(page)
        if observation.is_met:
            self.log.info("New audit entries: %s", observation.reason)
        else:
            self.log.info("No new audit entries yet: %s", observation.pending)
        return condition, observation

    def poke(self, context: Context) -> PokeReturnValue:
        """One request: done when either condition holds; the XCom value is the ``totalCount`` seen."""
        _, observation = self._check(context)
        return PokeReturnValue(is_done=observation.is_met, xcom_value=observation.total_count)

    def execute(self, context: Context) -> int | None:
        started = time.time()
        self._first_count = None  # this run's, not one left on the object by an earlier run
        # Bad arguments fail here, before any request (and before a worker slot is given up).
        self._explicit_baseline()
        self._newer_than_ticks()
        try:
            tenant = self._tenant()
            if not self.deferrable:
                return super().execute(context)
            condition, observation = self._check(context)
        finally:
            self.hook.close()
        if observation.is_met:
            return observation.total_count
        self.defer(
            trigger=AuditLogsTotalCountTrigger(
                orchestrator_conn_id=self.orchestrator_conn_id,
                baseline_count=condition.baseline_count,
                newer_than=None if condition.newer_than is None else format_ticks(condition.newer_than),
                poke_interval=self.poke_interval,
                # Absolute, so that the wait ends on time however often the trigger is restarted.
                deadline=started + self.timeout,
                source=self.source,
                tenant=tenant,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout) + _DEFERRAL_GRACE,
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> int:
        """
        Resume after the trigger fired: return the ``totalCount``, or raise what went wrong.

        :param event: the trigger's payload, see :class:`AuditLogsTotalCountTrigger`.
        :raises AirflowSensorTimeout: when the deadline passed with nothing new.
        :raises OrchestratorAuditError: the subclass the trigger named, with the hook's message.
        """
        if not isinstance(event, dict) or event.get("status") not in ("success", "timeout", "error"):
            raise OrchestratorRequestError(
                f"{self.task_id}: the trigger fired an event this sensor does not know: {event!r}"
            )
        status, message = event["status"], str(event.get("message") or "")
        if status == "success":
            self.log.info("New audit entries: %s", message)
            return int(event["total_count"])
        if status == "timeout":
            raise AirflowSensorTimeout(message)
        error_class = _ERROR_CLASSES.get(str(event.get("error_type")), OrchestratorRequestError)
        raise error_class(message or f"{self.task_id}: the trigger reported an error without a message")

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        try:
            return super().resume_execution(next_method, next_kwargs, context)
        except AirflowSkipException as skip:
            # BaseSensorOperator skips on any error after a deferral when soft_fail is set, while in poke
            # mode soft_fail only covers timeouts. Keep the poke-mode meaning: a refused secret must fail.
            if self.soft_fail and isinstance(skip.__cause__, OrchestratorAuditError):
                raise skip.__cause__ from None
            raise


class AuditLogsNewEntriesSensor(BaseSensorOperator):
    """
    Wait until a source's newest entry is later than ``newer_than``: the classic audit log, or the unified
    audit events of the organization or of a tenant.

    Each poke is one request: ``top=1`` newest first for ``source="classic"``, the first page of events
    (``maxCount=20``, its newest event whatever the order inside the page) for the event sources. The
    comparison keeps every fractional digit. The XCom return value is the newest entry's ``createdOn``
    text exactly as the server sent it: pass it as the next run's ``newer_than``, or use it as the end
    of the window to export.

    With ``deferrable=True`` the wait moves to
    :class:`~airflow_provider_orchestrator_audit.triggers.audit_logs.AuditLogsNewEntriesTrigger`; errors
    and timeouts end it as for :class:`AuditLogsTotalCountSensor` (README, "Waiting for new entries").

    Example::

        AuditLogsNewEntriesSensor(task_id="wait_for_events", source="tenant_events", tenant="DefaultTenant",
                                  newer_than="{{ data_interval_start }}", deferrable=True)

    :param orchestrator_conn_id: the ``orchestrator_audit`` connection.
    :param source: ``"classic"``, ``"organization_events"``, ``"tenant_events"`` or ``"orchestrator"`` (one
        ``$top=1`` request ordered by ``ExecutionTime`` descending).
    :param tenant: the tenant of ``"tenant_events"`` or ``"orchestrator"``; default: the connection's extra
        ``tenant``. (templated)
    :param newer_than: succeed when the newest ``createdOn`` is later than this ISO-8601 timestamp (any
        fraction length and UTC offset, UTC when it has none) or datetime. Required. (templated)
    :param deferrable: wait in the triggerer instead of a worker slot.
    :param poke_interval: seconds between requests (also in the trigger).
    :param timeout: seconds from the sensor's start until it fails with ``AirflowSensorTimeout``.
    :param mode: ``poke`` or ``reschedule`` (ignored when deferrable).

    .. code-block:: python

        AuditLogsNewEntriesSensor(
            task_id="wait_for_events",
            source="tenant_events",
            tenant="DefaultTenant",
            newer_than="{{ data_interval_end }}",
            deferrable=True,
            poke_interval=300,
            timeout=6 * 3600,
        )
    """

    template_fields: Sequence[str] = ("newer_than", "tenant")
    ui_color = "#fa4616"

    def __init__(
        self,
        *,
        orchestrator_conn_id: str = OrchestratorAuditHook.default_conn_name,
        source: str = "classic",
        tenant: str | None = None,
        newer_than: str | datetime | date | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if source not in SOURCES:
            raise ValueError(f"{self.task_id}: source must be one of {', '.join(map(repr, SOURCES))}, got {source!r}")
        self.orchestrator_conn_id = orchestrator_conn_id
        self.source = source
        self.tenant = tenant
        self.newer_than = newer_than
        self.deferrable = deferrable

    @cached_property
    def hook(self) -> OrchestratorAuditHook:
        """The hook; one HTTP connection is plenty for one request per poke."""
        return OrchestratorAuditHook(self.orchestrator_conn_id, max_connections=1)

    def _newer_than_ticks(self) -> Ticks:
        value = unset_to_none(self.newer_than)
        if value is None:
            raise OrchestratorConfigError(
                f"{self.task_id}: newer_than is required: the moment after which an entry counts as new, "
                "e.g. '{{ data_interval_end }}' or the createdOn this sensor returned last time"
            )
        try:
            return to_ticks(value)
        except TimestampError as error:
            raise OrchestratorConfigError(f"{self.task_id}: newer_than: {error}") from None

    def _tenant(self) -> str | None:
        return _source_tenant(self.source, self.tenant, self.hook, self.task_id, self.orchestrator_conn_id)

    def _newest(self) -> AuditLogEntry | AuditEvent | OrchestratorAuditEntry | None:
        if self.source == "classic":
            return newest_of(self.hook.get_audit_logs(top=1, sort_by="createdOn", sort_order="desc"))
        if self.source == ORCHESTRATOR_SOURCE:
            return newest_of(self.hook.get_orchestrator_audit_logs(self._tenant(), top=1, orderby=NEWEST_FIRST))
        level = SOURCE_LEVELS[self.source]
        return newest_of(self.hook.get_audit_events(level, tenant=self._tenant(), max_count=NEWEST_PROBE_COUNT))

    def _check(self) -> AuditLogEntry | AuditEvent | OrchestratorAuditEntry | None:
        """The newest entry if it is later than ``newer_than``, else None."""
        newer_than = self._newer_than_ticks()
        newest = self._newest()
        limit = format_ticks(newer_than)
        if newest is not None and newest.created_on_ticks > newer_than:
            self.log.info(
                "New entries in %s: newest createdOn %s is later than %s", self.source, newest.created_on, limit
            )
            return newest
        seen = "none" if newest is None else newest.created_on
        self.log.info("No entry of %s newer than %s yet (newest: %s)", self.source, limit, seen)
        return None

    def poke(self, context: Context) -> PokeReturnValue:
        """One request: done when the newest entry is later than ``newer_than``; XCom: its ``createdOn``."""
        newest = self._check()
        return PokeReturnValue(is_done=newest is not None, xcom_value=None if newest is None else newest.created_on)

    def execute(self, context: Context) -> str | None:
        started = time.time()
        # Bad arguments fail here, before any request.
        newer_than = self._newer_than_ticks()
        try:
            tenant = self._tenant()
            if not self.deferrable:
                return super().execute(context)
            newest = self._check()
        finally:
            self.hook.close()
        if newest is not None:
            return newest.created_on
        self.defer(
            trigger=AuditLogsNewEntriesTrigger(
                orchestrator_conn_id=self.orchestrator_conn_id,
                newer_than=format_ticks(newer_than),
                source=self.source,
                tenant=tenant,
                poke_interval=self.poke_interval,
                deadline=started + self.timeout,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout) + _DEFERRAL_GRACE,
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> str:
        """
        Resume after the trigger fired: return the newest ``createdOn``, or raise what went wrong.

        :raises AirflowSensorTimeout: when the deadline passed with nothing new.
        :raises OrchestratorAuditError: the subclass the trigger named, with the hook's message.
        """
        if not isinstance(event, dict) or event.get("status") not in ("success", "timeout", "error"):
            raise OrchestratorRequestError(
                f"{self.task_id}: the trigger fired an event this sensor does not know: {event!r}"
            )
        status, message = event["status"], str(event.get("message") or "")
        if status == "success":
            self.log.info("New entries: %s", message)
            return str(event["newest_created_on"])
        if status == "timeout":
            raise AirflowSensorTimeout(message)
        error_class = _ERROR_CLASSES.get(str(event.get("error_type")), OrchestratorRequestError)
        raise error_class(message or f"{self.task_id}: the trigger reported an error without a message")

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        try:
            return super().resume_execution(next_method, next_kwargs, context)
        except AirflowSkipException as skip:
            # As for AuditLogsTotalCountSensor: soft_fail covers a timeout, never a refused secret.
            if self.soft_fail and isinstance(skip.__cause__, OrchestratorAuditError):
                raise skip.__cause__ from None
            raise


def _source_tenant(
    source: str, tenant: str | None, hook: OrchestratorAuditHook, task_id: str, conn_id: str
) -> str | None:
    """
    The tenant of a tenant-level source: the sensor's, else the connection's extra ``tenant``.

    :raises OrchestratorConfigError: when such a source has none (a standalone Orchestrator needs none).
    """
    if source not in ("tenant_events", ORCHESTRATOR_SOURCE):
        return None
    name = (unset_to_none(tenant) or hook.settings.tenant or "").strip().strip("/")
    if name:
        return name
    if source == ORCHESTRATOR_SOURCE and hook.settings.orchestrator_url:
        return None
    advice = ORCHESTRATOR_TENANT_ADVICE if source == ORCHESTRATOR_SOURCE else TENANT_ADVICE
    raise OrchestratorConfigError(
        f"{task_id}: source={source!r} needs a tenant and neither the sensor nor connection {conn_id!r} names "
        f"one: {advice}"
    )
