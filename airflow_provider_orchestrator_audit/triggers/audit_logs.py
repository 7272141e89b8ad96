"""
Wait in Airflow's triggerer until an organization's audit log holds new entries.

The API has no change feed and no ids, so "new" is read off one ``top=1`` request sorted by
``createdOn`` descending: its ``totalCount``, and the ``createdOn`` of the newest entry. Two conditions
are offered, and either one that is set suffices:

* **growth**: ``totalCount > baseline_count``. Cheap and exact while nothing expires, but retention
  removes old entries as new ones arrive, so the count can stand still or shrink while new activity
  is logged.
* **newer entry**: the newest ``createdOn`` is later than ``newer_than``, compared at full 100 ns
  precision. Immune to retention; it needs a reference time, such as the end of the last export.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from airflow_provider_orchestrator_audit.compat import AirflowNotFoundException, BaseTrigger, TriggerEvent
from airflow_provider_orchestrator_audit.event_models import SOURCE_LEVELS, AuditEvent, AuditEventsPage
from airflow_provider_orchestrator_audit.exceptions import (
    OrchestratorAuditError,
    OrchestratorConfigError,
    OrchestratorRequestError,
    OrchestratorResponseError,
)
from airflow_provider_orchestrator_audit.hooks.orchestrator_audit import OrchestratorAuditAsyncHook
from airflow_provider_orchestrator_audit.models import AuditLogEntry, AuditLogPage
from airflow_provider_orchestrator_audit.orchestrator_models import (
    ORCHESTRATOR_SOURCE,
    OrchestratorAuditEntry,
    OrchestratorAuditPage,
)
from airflow_provider_orchestrator_audit.timestamps import Ticks, TimestampError, format_ticks, parse_timestamp
from airflow_provider_orchestrator_audit.validation import checked_int

__all__ = [
    "COUNTED_SOURCES",
    "AuditLogsNewEntriesTrigger",
    "AuditLogsTotalCountTrigger",
    "NewEntriesCondition",
    "Observation",
    "newest_of",
]


#: The sources that report how many entries they hold: ``totalCount``, and Orchestrator's ``@odata.count``.
COUNTED_SOURCES: tuple[str, ...] = ("classic", ORCHESTRATOR_SOURCE)
#: The newest first, for one-entry probes of Orchestrator's audit log.
NEWEST_FIRST = "ExecutionTime desc,Id desc"


def odata_count(page: OrchestratorAuditPage) -> int:
    """
    The ``@odata.count`` of a page asked for with ``$count=true``.

    :raises OrchestratorResponseError: when the page has none.
    """
    if page.count is None:
        raise OrchestratorResponseError(
            "Orchestrator's audit log answered $count=true without @odata.count: the count cannot be watched; "
            "use AuditLogsNewEntriesSensor(source='orchestrator') instead"
        )
    return page.count


async def probe_newest(
    hook: OrchestratorAuditAsyncHook, source: str, tenant: str | None, *, count: bool = False
) -> AuditLogPage | AuditEventsPage | OrchestratorAuditPage:
    """The first page of a source, newest first: what the triggers look at each interval."""
    if source == "classic":
        return await hook.get_audit_logs(top=1, sort_by="createdOn", sort_order="desc")
    if source == ORCHESTRATOR_SOURCE:
        return await hook.get_orchestrator_audit_logs(tenant, top=1, count=count, orderby=NEWEST_FIRST)
    return await hook.get_audit_events(SOURCE_LEVELS[source], tenant=tenant, max_count=NEWEST_PROBE_COUNT)


@dataclass(frozen=True)
class Observation:
    """
    What one ``top=1`` request saw, and whether it means "new entries".

    :param total_count: the ``totalCount`` of the response.
    :param newest_created_on: the newest entry's ``createdOn`` as sent, or None when the log is empty.
    :param reason: why the condition holds, or None when it does not.
    :param pending: what was compared when it does not hold, for the log.
    """

    total_count: int
    newest_created_on: str | None
    reason: str | None
    pending: str

    @property
    def is_met(self) -> bool:
        """True when the audit log has new entries."""
        return self.reason is not None


@dataclass(frozen=True)
class NewEntriesCondition:
    """
    When the audit log counts as having new entries; either condition that is set suffices.

    :param baseline_count: met when ``totalCount`` is greater than this.
    :param newer_than: met when the newest entry's ``createdOn`` is later than this (100 ns ticks).
    :raises OrchestratorConfigError: when neither is set, or ``baseline_count`` is negative.
    """

    baseline_count: int | None = None
    newer_than: Ticks | None = None

    def __post_init__(self) -> None:
        if self.baseline_count is None and self.newer_than is None:
            raise OrchestratorConfigError("set baseline_count, newer_than or both: there is nothing to wait for")
        if self.baseline_count is not None:
            checked_int("baseline_count", self.baseline_count, minimum=0, error=OrchestratorConfigError)

    def observe(self, page: AuditLogPage | OrchestratorAuditPage) -> Observation:
        """
        Judge one response of ``get_audit_logs(top=1)`` sorted by ``createdOn`` descending, or of
        ``get_orchestrator_audit_logs(top=1, count=True)`` sorted by ``ExecutionTime`` descending.

        :param page: the response; its first entry, if any, is the newest.
        """
        newest: AuditLogEntry | OrchestratorAuditEntry | None
        if isinstance(page, OrchestratorAuditPage):
            total = odata_count(page)
            newest = page.entries[0] if page.entries else None
        else:
            total = page.total_count
            newest = page.results[0] if page.results else None
        met: list[str] = []
        pending: list[str] = []
        if self.baseline_count is not None:
            comparison = f"totalCount {total} vs baseline {self.baseline_count}"
            (met if total > self.baseline_count else pending).append(comparison)
        if self.newer_than is not None:
            limit = format_ticks(self.newer_than)
            if newest is None:
                pending.append(f"the log is empty, nothing is newer than {limit}")
            else:
                # Ticks, not datetimes: two entries 100 ns apart are distinct, and datetime keeps only 6 digits.
                comparison = f"newest createdOn {newest.created_on} vs {limit}"
                (met if newest.created_on_ticks > self.newer_than else pending).append(comparison)
        return Observation(
            total_count=total,
            newest_created_on=newest.created_on if newest is not None else None,
            reason="; ".join(met) or None,
            pending="; ".join(pending),
        )

    def describe(self) -> str:
        """The condition in words, for logs and error messages."""
        parts = []
        if self.baseline_count is not None:
            parts.append(f"totalCount > {self.baseline_count}")
        if self.newer_than is not None:
            parts.append(f"newest createdOn > {format_ticks(self.newer_than)}")
        return " or ".join(parts)


def _error_payload(error: Exception, conn_id: str) -> dict[str, Any]:
    """An error as an event payload: the provider's error class by name, and its message."""
    if isinstance(error, OrchestratorAuditError):
        return {"status": "error", "error_type": type(error).__name__, "message": str(error)}
    if isinstance(error, AirflowNotFoundException):
        # The async connection lookup raises this for an unknown conn_id; it is a configuration mistake.
        return {
            "status": "error",
            "error_type": OrchestratorConfigError.__name__,
            "message": f"connection {conn_id!r} could not be read: {error}",
        }
    return {
        "status": "error",
        "error_type": OrchestratorRequestError.__name__,
        "message": f"{type(error).__name__}: {error}",
    }


class AuditLogsTotalCountTrigger(BaseTrigger):
    """
    Poll the audit log with one ``top=1`` request per interval until it holds new entries.

    It fires exactly one event, whose payload ``status`` is

    * ``"success"``, with ``total_count`` (int), ``newest_created_on`` and ``message`` (what held);
    * ``"timeout"``, once ``deadline`` has passed, with the last ``total_count`` seen and ``message``;
    * ``"error"``, with ``error_type`` (the name of the
      :class:`~airflow_provider_orchestrator_audit.exceptions.OrchestratorAuditError` subclass to raise) and
      ``message``, as soon as a request fails for good. Transient failures
      (429, 5xx, resets) are retried inside the hook first, within its retry policy, so an outage
      never turns into a loop of failing polls.

    Everything it needs to resume is in :meth:`serialize`: the baseline is fixed when the task defers,
    and the deadline is an absolute time, so a triggerer restart neither re-baselines nor extends the
    timeout. It reads the connection with the async hook (``aget_connection``), never blocking the event
    loop, and closes its HTTP connections before firing.

    :param orchestrator_conn_id: the ``orchestrator_audit`` connection.
    :param baseline_count: fire when ``totalCount`` is greater than this; None to ignore the count.
    :param newer_than: fire when the newest ``createdOn`` is later than this ISO-8601 timestamp (7 fractional
        digits are kept); None to ignore timestamps.
    :param poke_interval: seconds between requests.
    :param deadline: POSIX time (seconds) after which the trigger fires ``"timeout"``; None to wait forever.
    :param source: ``"classic"`` (``totalCount``) or ``"orchestrator"`` (``@odata.count`` of a tenant's log).
    :param tenant: the tenant of ``"orchestrator"`` (resolved by the sensor before it defers; None for a
        standalone Orchestrator).
    :raises OrchestratorConfigError: when neither condition is set or ``newer_than`` is not a timestamp.
    """

    def __init__(
        self,
        *,
        orchestrator_conn_id: str,
        baseline_count: int | None = None,
        newer_than: str | None = None,
        poke_interval: float = 60.0,
        deadline: float | None = None,
        source: str = "classic",
        tenant: str | None = None,
    ) -> None:
        super().__init__()
        if source not in COUNTED_SOURCES:
            raise OrchestratorConfigError(f"source must be 'classic' or 'orchestrator', got {source!r}")
        self.source = source
        self.tenant = tenant
        try:
            newer_than_ticks = None if newer_than is None else parse_timestamp(newer_than)
        except TimestampError as error:
            raise OrchestratorConfigError(f"newer_than: {error}") from None
        if poke_interval < 0:
            raise OrchestratorConfigError(f"poke_interval must be >= 0 seconds, got {poke_interval}")
        self.condition = NewEntriesCondition(baseline_count, newer_than_ticks)
        self.orchestrator_conn_id = orchestrator_conn_id
        self.poke_interval = float(poke_interval)
        self.deadline = deadline

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """The class path and the keyword arguments that recreate this trigger in the triggerer."""
        newer_than = self.condition.newer_than
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "orchestrator_conn_id": self.orchestrator_conn_id,
                "baseline_count": self.condition.baseline_count,
                # Orchestrator's own 7-digit form: exact, and readable in the UI.
                "newer_than": None if newer_than is None else format_ticks(newer_than),
                "poke_interval": self.poke_interval,
                "deadline": self.deadline,
                # The classic source's triggers keep the form they always had (rows already in the database).
                **({} if self.source == "classic" else {"source": self.source, "tenant": self.tenant}),
            },
        )

    @cached_property
    def hook(self) -> OrchestratorAuditAsyncHook:
        """The async hook; one HTTP connection is plenty for one request per interval."""
        return OrchestratorAuditAsyncHook(self.orchestrator_conn_id, max_connections=1)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until the condition holds, the deadline passes or a request fails; then fire once."""
        try:
            payload = await self._poll()
        finally:
            # Closed before the event goes out: the triggerer may never resume this generator.
            await self.hook.aclose()
        yield TriggerEvent(payload)

    async def _poll(self) -> dict[str, Any]:
        condition = self.condition
        self.log.info(
            "Waiting for new audit entries in %r: %s, polling every %ss",
            self.orchestrator_conn_id,
            condition.describe(),
            self.poke_interval,
        )
        while True:
            try:
                page = await probe_newest(self.hook, self.source, self.tenant, count=True)
                assert not isinstance(page, AuditEventsPage)  # COUNTED_SOURCES only
                observation = condition.observe(page)
            except Exception as error:  # every failure becomes one error event, not a crash loop
                if not isinstance(error, (OrchestratorAuditError, AirflowNotFoundException)):
                    self.log.exception("Unexpected error while polling the audit log")
                return _error_payload(error, self.orchestrator_conn_id)
            if observation.is_met:
                self.log.info("New audit entries: %s", observation.reason)
                return {
                    "status": "success",
                    "total_count": observation.total_count,
                    "newest_created_on": observation.newest_created_on,
                    "message": observation.reason,
                }
            now = time.time()
            if self.deadline is not None and now >= self.deadline:
                deadline = datetime.fromtimestamp(self.deadline, UTC).isoformat()
                return {
                    "status": "timeout",
                    "total_count": observation.total_count,
                    "newest_created_on": observation.newest_created_on,
                    "message": (
                        f"Sensor has timed out: no new audit entries in {self.orchestrator_conn_id!r} by {deadline} "
                        f"({observation.pending})"
                    ),
                }
            self.log.info("No new audit entries yet: %s", observation.pending)
            wait = self.poke_interval
            if self.deadline is not None:
                # Wake up at the deadline rather than a whole interval past it: one last look, then give up.
                wait = min(wait, max(0.0, self.deadline - now))
            await asyncio.sleep(wait)


#: Events asked for when looking for the newest one: a page may list its events in either order.
NEWEST_PROBE_COUNT = 20


def newest_of(
    page: AuditLogPage | AuditEventsPage | OrchestratorAuditPage,
) -> AuditLogEntry | AuditEvent | OrchestratorAuditEntry | None:
    """
    The newest entry of the first page of a source: a classic ``top=1`` page sorted newest first, an
    Orchestrator ``$top=1`` page sorted by ``ExecutionTime`` descending, or the first page of events (the
    newest ones, in whatever order the server lists them).
    """
    if isinstance(page, AuditLogPage):
        return page.results[0] if page.results else None
    if isinstance(page, OrchestratorAuditPage):
        return max(page.entries, key=lambda entry: (entry.execution_time_ticks, entry.entry_id), default=None)
    return max(page.events, key=lambda event: (event.created_on_ticks, event.event_id), default=None)


class AuditLogsNewEntriesTrigger(BaseTrigger):
    """
    Poll any source until its newest entry is later than ``newer_than`` (full 100 ns precision).

    One request per interval: ``top=1`` newest first for the classic audit log, the first page of
    events (``maxCount`` :data:`NEWEST_PROBE_COUNT`) for the event sources. It fires one event whose
    payload ``status`` is ``"success"`` (with ``newest_created_on``, the newest entry's ``createdOn`` as
    sent, and ``message``), ``"timeout"`` once ``deadline`` has passed, or ``"error"`` (``error_type``
    and ``message``) as soon as a request fails for good, like :class:`AuditLogsTotalCountTrigger`.

    :param orchestrator_conn_id: the ``orchestrator_audit`` connection.
    :param source: ``"classic"``, ``"organization_events"``, ``"tenant_events"`` or ``"orchestrator"``.
    :param tenant: the tenant of ``"tenant_events"`` or ``"orchestrator"`` (resolved by the sensor before
        it defers; None for a standalone Orchestrator).
    :param newer_than: fire when the newest ``createdOn`` is later than this ISO-8601 timestamp.
    :param poke_interval: seconds between requests.
    :param deadline: POSIX time (seconds) after which the trigger fires ``"timeout"``; None to wait forever.
    :raises OrchestratorConfigError: for an unknown source, a tenant source without a tenant, or a
        ``newer_than`` that is not a timestamp.
    """

    def __init__(
        self,
        *,
        orchestrator_conn_id: str,
        newer_than: str,
        source: str = "classic",
        tenant: str | None = None,
        poke_interval: float = 60.0,
        deadline: float | None = None,
    ) -> None:
        super().__init__()
        if source not in ("classic", ORCHESTRATOR_SOURCE) and source not in SOURCE_LEVELS:
            raise OrchestratorConfigError(
                f"source must be 'classic', 'organization_events', 'tenant_events' or 'orchestrator', got {source!r}"
            )
        if source == "tenant_events" and not tenant:
            raise OrchestratorConfigError("source='tenant_events' needs a tenant")
        try:
            self.newer_than = parse_timestamp(newer_than)
        except TimestampError as error:
            raise OrchestratorConfigError(f"newer_than: {error}") from None
        self.orchestrator_conn_id = orchestrator_conn_id
        self.source = source
        self.tenant = tenant
        self.poke_interval = float(poke_interval)
        self.deadline = deadline

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """The class path and the keyword arguments that recreate this trigger in the triggerer."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "orchestrator_conn_id": self.orchestrator_conn_id,
                "newer_than": format_ticks(self.newer_than),
                "source": self.source,
                "tenant": self.tenant,
                "poke_interval": self.poke_interval,
                "deadline": self.deadline,
            },
        )

    @cached_property
    def hook(self) -> OrchestratorAuditAsyncHook:
        """The async hook; one HTTP connection is plenty for one request per interval."""
        return OrchestratorAuditAsyncHook(self.orchestrator_conn_id, max_connections=1)

    async def newest(self) -> AuditLogEntry | AuditEvent | OrchestratorAuditEntry | None:
        """The source's newest entry now, or None when it holds none."""
        return newest_of(await probe_newest(self.hook, self.source, self.tenant))

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until the newest entry is new, the deadline passes or a request fails; then fire once."""
        try:
            payload = await self._poll()
        finally:
            await self.hook.aclose()  # before the event goes out: the triggerer may never resume us
        yield TriggerEvent(payload)

    async def _poll(self) -> dict[str, Any]:
        limit = format_ticks(self.newer_than)
        where = self.source + (f" of tenant {self.tenant!r}" if self.tenant else "")
        self.log.info("Waiting for an entry of %s newer than %s, polling every %ss", where, limit, self.poke_interval)
        while True:
            try:
                newest = await self.newest()
            except Exception as error:  # every failure becomes one error event, not a crash loop
                if not isinstance(error, (OrchestratorAuditError, AirflowNotFoundException)):
                    self.log.exception("Unexpected error while polling the audit log")
                return _error_payload(error, self.orchestrator_conn_id)
            seen = "nothing" if newest is None else newest.created_on
            if newest is not None and newest.created_on_ticks > self.newer_than:
                message = f"newest createdOn {newest.created_on} of {where} is later than {limit}"
                self.log.info("New entries: %s", message)
                return {"status": "success", "newest_created_on": newest.created_on, "message": message}
            now = time.time()
            if self.deadline is not None and now >= self.deadline:
                deadline = datetime.fromtimestamp(self.deadline, UTC).isoformat()
                return {
                    "status": "timeout",
                    "newest_created_on": None if newest is None else newest.created_on,
                    "message": f"Sensor has timed out: no entry of {where} newer than {limit} by {deadline} "
                    f"(newest: {seen})",
                }
            self.log.info("No entry newer than %s yet (newest: %s)", limit, seen)
            wait = self.poke_interval
            if self.deadline is not None:
                wait = min(wait, max(0.0, self.deadline - now))
            await asyncio.sleep(wait)
