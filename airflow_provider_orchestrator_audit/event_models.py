"""Typed views of UiPath's unified audit events (``GET .../orgaudit_|tenantaudit_/api/query/events``).

As with the classic entries, an event keeps the server's own JSON text and every field in it, unknown
ones included; it checks only what the export depends on: a non-empty ``id`` and a ``createdOn``
that is a timestamp (any fraction length).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import msgspec

from airflow_provider_orchestrator_audit.timestamps import Ticks, TimestampError, parse_utc_timestamp
from airflow_provider_orchestrator_audit.verbatim import VerbatimRecord

__all__ = [
    "EVENT_LEVELS",
    "SOURCES",
    "SOURCE_LEVELS",
    "AuditEvent",
    "AuditEventsPage",
    "EventLevel",
    "EventLine",
    "EventLinesPage",
]

#: ``organization``: ``{org}/orgaudit_/api/query/events``; ``tenant``: ``{org}/{tenant}/tenantaudit_/...``.
EventLevel = Literal["organization", "tenant"]
EVENT_LEVELS: tuple[EventLevel, ...] = ("organization", "tenant")
#: Every source the operator exports and the sensors watch: the classic audit log, the audit events of the
#: organization or a tenant, and Orchestrator's own audit log of a tenant (``"orchestrator"``).
SOURCES: tuple[str, ...] = ("classic", "organization_events", "tenant_events", "orchestrator")
#: The events level of each event source.
SOURCE_LEVELS: dict[str, EventLevel] = {"organization_events": "organization", "tenant_events": "tenant"}

#: ``createdOn`` in ticks, any fraction length (the events' UTC shape read through a per-minute cache);
#: :class:`TimestampError` when it is not a timestamp.
created_on_ticks = parse_utc_timestamp


#: The event type of a page.
PageEvent = TypeVar("PageEvent")


class AuditEvent(VerbatimRecord):
    """
    One audit event, exactly as the server sent it.

    :param raw: the event's JSON object.
    :param source: the exact JSON text it was decoded from, if known: :meth:`to_json` writes it as it is.
    :raises ValueError: when ``id`` or ``createdOn`` is missing or unusable.

    ``event.raw["actorName"]``, ``event.raw.get("clientInfo")`` (absent on events the system generated)
    and every other field are in :attr:`raw`.
    """

    # Plain slots rather than properties: the export reads them several times per event, and a slot is
    # read at a fraction of a property's cost.
    __slots__ = ("created_on", "created_on_ticks", "event_id")

    #: The event's ``id`` (a GUID).
    event_id: str
    #: ``createdOn`` exactly as sent, e.g. ``2026-01-31T13:05:12.345Z``.
    created_on: str
    #: ``createdOn`` at full precision: 100 ns ticks since the Unix epoch, UTC.
    created_on_ticks: Ticks

    def __init__(self, raw: dict[str, Any], source: str | None = None) -> None:
        event_id, created_on = raw.get("id"), raw.get("createdOn")
        if not isinstance(event_id, str) or not event_id:
            raise ValueError(f"id must be a non-empty string, got {event_id!r}")
        if not isinstance(created_on, str):
            raise ValueError(f"createdOn must be a timestamp string, got {created_on!r}")
        try:
            self._ticks = self.created_on_ticks = created_on_ticks(created_on)
        except TimestampError as exc:
            raise ValueError(f"createdOn is not a timestamp: {exc}") from None
        self.event_id, self.created_on = event_id, created_on
        self._keep(raw, source)

    @classmethod
    def from_lines(
        cls, lines: list[bytes], event_ids: list[str], created_ons: list[str], ticks: list[Ticks]
    ) -> list[AuditEvent]:
        """
        A page's events from their own one-line JSON texts, whose ``id`` and ``createdOn`` the caller decoded and
        parsed: the rest is decoded only if asked for.

        :param lines: the events' UTF-8 texts (checked by the caller), each holding none of ``\\n``, ``\\r``,
            U+2028 and U+2029: written out as they are.
        :param event_ids: their ``id``s, in the same order.
        :param created_ons: their ``createdOn`` texts.
        :param ticks: those ``createdOn``, parsed.
        """
        new = cls.__new__
        events: list[AuditEvent] = []
        append = events.append
        for line, event_id, created_on, event_ticks in zip(lines, event_ids, created_ons, ticks, strict=True):
            event = new(cls)
            event._ticks = event.created_on_ticks = event_ticks
            event.event_id, event.created_on, event._source, event._raw = event_id, created_on, line, None
            append(event)
        return events

    def __repr__(self) -> str:
        return f"AuditEvent(id={self.event_id!r}, createdOn={self.created_on!r})"


@dataclass(frozen=True)
class _EventsPage(Generic[PageEvent]):
    """
    One answer of the events endpoint.

    :param events: the events, in the order the server listed them.
    :param previous: the relative URL of the older events (a cursor), None when there are none.
    :param next: the relative URL of newer events, if the server gave one.
    """

    events: list[PageEvent]
    previous: str | None = None
    next: str | None = None


@dataclass(frozen=True)
class AuditEventsPage(_EventsPage[AuditEvent]):
    """
    One answer of the events endpoint, each event a whole :class:`AuditEvent`.

    :param events: the events, in the order the server listed them.
    :param previous: the relative URL of the older events (a cursor), None when there are none.
    :param next: the relative URL of newer events, if the server gave one.
    """

    events: list[AuditEvent]  # the type, for whatever reads the class's hints (the field stays first)


class EventLine(msgspec.Struct, frozen=True, gc=False):
    """
    One audit event as an export writes it: its ``id``, its ``createdOn`` (as sent and in ticks) and its own
    one-line JSON text, as UTF-8 bytes. The other fields are not decoded: :class:`AuditEvent` is the event to
    read them from.

    A page's worth of these costs half of what as many :class:`AuditEvent` do to make, and none is tracked
    by the garbage collector (nothing in one can form a cycle).
    """

    #: The event's ``id``.
    event_id: str
    #: ``createdOn`` exactly as sent.
    created_on: str
    #: ``createdOn`` at full precision: 100 ns ticks since the Unix epoch, UTC.
    created_on_ticks: Ticks
    #: The event's JSON text, UTF-8, on one line (no ``\n``, ``\r``, raw U+2028 or U+2029).
    line: bytes

    def to_json_bytes(self) -> bytes:
        """The line the export writes: :attr:`line`."""
        return self.line

    def to_json(self) -> str:
        """:attr:`line` as text."""
        return self.line.decode("utf-8")

    def __repr__(self) -> str:  # not the line: a repr in a log shows no event's content
        return f"EventLine(id={self.event_id!r}, createdOn={self.created_on!r})"

    @classmethod
    def of(cls, event: AuditEvent) -> EventLine:
        """The line of an :class:`AuditEvent` (one read by the reference parser, or built by hand)."""
        return cls(event.event_id, event.created_on, event.created_on_ticks, event.to_json_bytes())


@dataclass(frozen=True)
class EventLinesPage(_EventsPage[EventLine]):
    """
    One answer of the events endpoint, each event as an :class:`EventLine`: what an export reads.

    :param events: the events, in the order the server listed them.
    :param previous: the relative URL of the older events (a cursor), None when there are none.
    :param next: the relative URL of newer events, if the server gave one.
    """

    events: list[EventLine]
