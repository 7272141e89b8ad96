"""Typed views of UiPath's unified audit events (``GET .../orgaudit_|tenantaudit_/api/query/events``).

As with the classic entries, an event keeps the server's own JSON text and every field in it, unknown
ones included; it checks only what the export depends on: a non-empty ``id`` and a ``createdOn``
that is a timestamp (any fraction length).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from airflow_provider_orchestrator_audit.timestamps import (
    TICKS_PER_SECOND,
    Ticks,
    TimestampError,
    parse_seven_digit_timestamp,
    parse_timestamp,
)
from airflow_provider_orchestrator_audit.verbatim import VerbatimRecord

__all__ = ["EVENT_LEVELS", "SOURCES", "SOURCE_LEVELS", "AuditEvent", "AuditEventsPage", "EventLevel"]

#: ``organization``: ``{org}/orgaudit_/api/query/events``; ``tenant``: ``{org}/{tenant}/tenantaudit_/...``.
EventLevel = Literal["organization", "tenant"]
EVENT_LEVELS: tuple[EventLevel, ...] = ("organization", "tenant")
#: Every source the operator exports and the sensors watch: the classic audit log, the audit events of the
#: organization or a tenant, and Orchestrator's own audit log of a tenant (``"orchestrator"``).
SOURCES: tuple[str, ...] = ("classic", "organization_events", "tenant_events", "orchestrator")
#: The events level of each event source.
SOURCE_LEVELS: dict[str, EventLevel] = {"organization_events": "organization", "tenant_events": "tenant"}

# The events API's usual shape, ``2026-01-31T13:05:12.345Z``: read through a per-minute cache, a few
# times faster than the general parser, which still takes every other form (and reports errors).
_UTC_TEXT = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d):([0-5]\d)(?:\.(\d{1,7}))?Z\Z")


@lru_cache(maxsize=4096)
def _minute_ticks(minute: str) -> Ticks:
    return parse_timestamp(minute + ":00Z")


def created_on_ticks(text: str) -> Ticks:
    """``createdOn`` in ticks, any fraction length; :class:`TimestampError` when it is not a timestamp."""
    if len(text) == 28 and text[27] == "Z":
        return parse_seven_digit_timestamp(text)  # seven fractional digits: Orchestrator's ExecutionTime
    match = _UTC_TEXT.match(text)
    if match is None:
        return parse_timestamp(text)
    minute, second, fraction = match.groups()
    return _minute_ticks(minute) + int(second) * TICKS_PER_SECOND + int(((fraction or "") + "000000")[:7])


class AuditEvent(VerbatimRecord):
    """
    One audit event, exactly as the server sent it.

    :param raw: the event's JSON object.
    :param source: the exact JSON text it was decoded from, if known: :meth:`to_json` writes it as it is.
    :raises ValueError: when ``id`` or ``createdOn`` is missing or unusable.

    ``event.raw["actorName"]``, ``event.raw.get("clientInfo")`` (absent on events the system generated)
    and every other field are in :attr:`raw`.
    """

    __slots__ = ("_created_on", "_id")

    def __init__(self, raw: dict[str, Any], source: str | None = None) -> None:
        event_id, created_on = raw.get("id"), raw.get("createdOn")
        if not isinstance(event_id, str) or not event_id:
            raise ValueError(f"id must be a non-empty string, got {event_id!r}")
        if not isinstance(created_on, str):
            raise ValueError(f"createdOn must be a timestamp string, got {created_on!r}")
        try:
            self._ticks = created_on_ticks(created_on)
        except TimestampError as exc:
            raise ValueError(f"createdOn is not a timestamp: {exc}") from None
        self._id, self._created_on = event_id, created_on
        self._keep(raw, source)

    @classmethod
    def from_line(cls, text: str, event_id: str, created_on: str) -> AuditEvent:
        """
        An event from its own one-line JSON text (no raw line breaks, no U+2028/U+2029) whose ``id`` and
        ``createdOn`` the caller decoded: the rest is decoded only if asked for.

        :raises ValueError: when ``createdOn`` is not a timestamp.
        """
        event = cls.__new__(cls)
        try:
            event._ticks = created_on_ticks(created_on)
        except TimestampError as exc:
            raise ValueError(f"createdOn is not a timestamp: {exc}") from None
        event._id, event._created_on, event._source, event._raw = event_id, created_on, text, None
        return event

    @property
    def event_id(self) -> str:
        """The event's ``id`` (a GUID)."""
        return self._id

    @property
    def created_on(self) -> str:
        """``createdOn`` exactly as sent, e.g. ``2026-01-31T13:05:12.345Z``."""
        return self._created_on

    @property
    def created_on_ticks(self) -> Ticks:
        """``createdOn`` at full precision: 100 ns ticks since the Unix epoch, UTC."""
        return self._ticks

    def __repr__(self) -> str:
        return f"AuditEvent(id={self._id!r}, createdOn={self._created_on!r})"


@dataclass(frozen=True)
class AuditEventsPage:
    """
    One answer of the events endpoint.

    :param events: the events, in the order the server listed them.
    :param previous: the relative URL of the older events (a cursor), None when there are none.
    :param next: the relative URL of newer events, if the server gave one.
    """

    events: list[AuditEvent]
    previous: str | None = None
    next: str | None = None
