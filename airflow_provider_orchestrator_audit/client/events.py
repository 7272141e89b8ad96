"""
The unified audit events' request/response exchange, free of I/O (the drivers in :mod:`.drivers` run it).

``GET {host}/{org}/orgaudit_/api/query/events`` (organization level) and
``GET {host}/{org}/{tenant}/tenantaudit_/api/query/events`` (tenant level) take ``from``, ``to`` and
``maxCount`` and answer ``{"auditEvents": [...], "next": ..., "previous": ...}``, where ``previous`` is a
relative URL to the older events. Tokens, retries (429, 5xx, transport errors, damaged bodies) and the
errors they end in are those of the classic audit log (:mod:`.exchanges`).

Driving it by hand::

    exchange = fetch_events_page(settings, RetryPolicy(), EventsQuery("tenant", tenant="DefaultTenant", max_count=200))
    next(exchange)                       # NeedToken(rejected=None)
    exchange.send("a-token")             # Send(request=<Request('GET', '.../tenantaudit_/api/query/events?maxCount=200')>)
    exchange.send(httpx.Response(200, content=b'{"auditEvents": [], "previous": null}'))
    # raises StopIteration; its value is the AuditEventsPage
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from airflow_provider_orchestrator_audit.client.exchanges import Exchange, get_with_token, status_failure
from airflow_provider_orchestrator_audit.client.page_parser import (
    JSON_DECODER,
    PageFormatError,
    expect_char,
    read_json_text,
    scan_records,
    skip_whitespace,
)
from airflow_provider_orchestrator_audit.client.redaction import excerpt
from airflow_provider_orchestrator_audit.client.retry import RetryPolicy
from airflow_provider_orchestrator_audit.client.settings import ConnectionSettings
from airflow_provider_orchestrator_audit.event_models import (
    EVENT_LEVELS,
    AuditEvent,
    AuditEventsPage,
    EventLevel,
    EventLine,
    EventLinesPage,
)
from airflow_provider_orchestrator_audit.exceptions import OrchestratorConfigError, OrchestratorRequestError
from airflow_provider_orchestrator_audit.timestamps import Ticks, parse_utc_timestamps
from airflow_provider_orchestrator_audit.validation import INT32_MAX, checked_int
from airflow_provider_orchestrator_audit.verbatim import one_line_json, utf8_line

__all__ = [
    "CursorRejectedError",
    "EventsQuery",
    "events_url",
    "fetch_event_lines_page",
    "fetch_events_page",
    "parse_event_lines",
    "parse_events_page",
]

Page = TypeVar("Page", AuditEventsPage, EventLinesPage)

#: Statuses with which a server may refuse a cursor it no longer accepts (expired, or unknown to it).
CURSOR_REFUSALS: frozenset[int] = frozenset({400, 404, 410, 422})


class _EventHead(msgspec.Struct, gc=False):
    """
    Of an event, only ``id`` and ``createdOn`` are decoded; msgspec checks the rest while skipping it.
    (Not tracked by the garbage collector: a page makes hundreds of them, and nothing in them can form a cycle.)
    """

    id: Any = None
    createdOn: Any = None  # the API's name


class _Envelope(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """The documented page, each event as its raw span; a page with other members is read by :data:`_FIELDS`."""

    auditEvents: list[msgspec.Raw]  # the API's names
    previous: str | None = None
    next: str | None = None


class _HeadsEnvelope(msgspec.Struct, gc=False):
    auditEvents: list[_EventHead]


_ENVELOPE = msgspec.json.Decoder(_Envelope)
_HEADS_ENVELOPE = msgspec.json.Decoder(_HeadsEnvelope)
_FIELDS = msgspec.json.Decoder(dict[str, msgspec.Raw])
_SPANS = msgspec.json.Decoder(list[msgspec.Raw])
_VALUE = msgspec.json.Decoder()
_HEADS = msgspec.json.Decoder(list[_EventHead])

TENANT_ADVICE = (
    "set tenant='<tenant name>' on the operator (templated) or the connection's extra 'tenant', e.g. "
    '{"organization": "acme", "tenant": "DefaultTenant"}: the name that follows the organization in your '
    "Orchestrator URL"
)


class CursorRejectedError(OrchestratorRequestError):
    """The server refused a ``previous`` cursor it handed out (expired or no longer known)."""


@dataclass(frozen=True)
class EventsQuery:
    """
    One ``GET .../query/events`` call: a first query by bounds, or a cursor to follow.

    :param level: ``"organization"`` or ``"tenant"``.
    :param tenant: the tenant's name (as in the URL) for the tenant level.
    :param from_: the ``from`` bound: ISO-8601 text sent as it is, or an aware datetime.
    :param to: the ``to`` bound, likewise.
    :param max_count: ``maxCount``, events asked for (the server may cap it).
    :param cursor: a ``previous`` (or ``next``) URL from an earlier answer, sent as it is; the bounds
        and ``max_count`` are then not sent (the cursor carries the server's own).
    """

    level: EventLevel
    tenant: str | None = None
    from_: str | datetime | None = None
    to: str | datetime | None = None
    max_count: int | None = None
    cursor: str | None = None

    def __post_init__(self) -> None:
        if self.level not in EVENT_LEVELS:
            raise OrchestratorConfigError(f"level must be 'organization' or 'tenant', got {self.level!r}")
        if self.level == "tenant" and not (self.tenant or "").strip():
            raise OrchestratorConfigError(f"tenant-level audit events need a tenant: {TENANT_ADVICE}")
        if self.max_count is not None:
            checked_int("max_count", self.max_count, minimum=1, maximum=INT32_MAX, error=OrchestratorConfigError)

    def params(self) -> dict[str, str]:
        """The query string of a first query, in the documented parameter names."""
        pairs = {"from": _bound(self.from_), "to": _bound(self.to), "maxCount": _count(self.max_count)}
        return {key: value for key, value in pairs.items() if value is not None}


def _bound(value: str | datetime | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    moment = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{moment.microsecond:06d}" if moment.microsecond else "") + "Z"


def _count(value: int | None) -> str | None:
    return None if value is None else str(value)


def events_url(settings: ConnectionSettings, level: EventLevel, tenant: str | None = None) -> str:
    """The events endpoint of the organization, or of one of its tenants."""
    organization = quote(settings.organization, safe="")
    if level == "organization":
        return f"{settings.base_url}/{organization}/orgaudit_/api/query/events"
    return f"{settings.base_url}/{organization}/{quote((tenant or '').strip(), safe='')}/tenantaudit_/api/query/events"


def request_url(settings: ConnectionSettings, query: EventsQuery) -> httpx.URL:
    """
    The URL ``query`` asks for.

    :raises OrchestratorRequestError: when a cursor points at another host (the bearer token is not sent there).
    """
    if query.cursor is None:
        return httpx.URL(events_url(settings, query.level, query.tenant), params=query.params())
    cursor = query.cursor
    path, mark, params = cursor.partition("?")
    if _PLAIN_PATH.fullmatch(path) and "#" not in cursor and (params or not mark):
        # The usual cursor, a plain path on the server's own host (nothing that joining normalises: dot
        # segments, escapes, parameters, an empty query, a fragment): joining it puts the base URL's origin
        # in front of it, and parsing one URL costs half of what joining two does.
        return httpx.URL(_origin(settings.base_url) + cursor)
    base = httpx.URL(settings.base_url + "/")
    url = base.join(cursor)
    if (url.scheme, url.host, url.port) != (base.scheme, base.host, base.port):
        raise OrchestratorRequestError(
            f"Connection {settings.conn_id!r}: the server's cursor {cursor!r} points at another host than "
            f"{settings.base_url}; the access token is not sent there"
        )
    return url


_PLAIN_PATH = re.compile(r"(?:/[A-Za-z0-9_~-]+)+/?")


@lru_cache(maxsize=16)
def _origin(base_url: str) -> str:
    """``scheme://host[:port]`` of a base URL, as :meth:`httpx.URL.join` keeps it for a path that starts with ``/``."""
    return str(httpx.URL(base_url + "/").copy_with(path="/", query=None, fragment=None))[:-1]


def fetch_events_page(
    settings: ConnectionSettings, policy: RetryPolicy, query: EventsQuery
) -> Exchange[AuditEventsPage]:
    """``GET .../query/events``: one page, retried as the policy allows."""
    return _fetch(settings, policy, query, parse_events_page)


def fetch_event_lines_page(
    settings: ConnectionSettings, policy: RetryPolicy, query: EventsQuery
) -> Exchange[EventLinesPage]:
    """:func:`fetch_events_page`, each event as the :class:`EventLine` an export writes."""
    return _fetch(settings, policy, query, parse_event_lines)


def _fetch(
    settings: ConnectionSettings, policy: RetryPolicy, query: EventsQuery, parse: Callable[[bytes], Page]
) -> Exchange[Page]:

    def failed(where: str, reply: httpx.Response, sent: tuple[str, ...]) -> Exception:
        status = reply.status_code
        body = excerpt(reply.content, (*settings.secrets, *sent))
        if query.cursor is not None and status in CURSOR_REFUSALS:
            return CursorRejectedError(
                f"Connection {settings.conn_id!r}: {where} refused the cursor it gave out, with HTTP {status}: {body}"
            )
        advice = ""
        if status == 404:
            advice = (
                f" Check the connection's extra 'organization' ({settings.organization!r})"
                + (f" and the tenant ({query.tenant!r})" if query.level == "tenant" else "")
                + ": the names that follow the host in your Orchestrator URL."
            )
        return status_failure(settings, where, status, body, advice)

    return (
        yield from get_with_token(
            settings,
            policy,
            request_url(settings, query),
            parse,
            failed=failed,
        )
    )


# --- the body: each event's own text kept ---------------------------------------------------------


def parse_events_page(body: bytes) -> AuditEventsPage:
    """
    Parse ``{"auditEvents": [...], "next": ..., "previous": ...}``, keeping each event's exact text.

    Ordinary pages are read with msgspec (each event as its raw span, only ``id`` and ``createdOn``
    decoded); anything else is read again by a scanner on Python's :mod:`json`, which decides what is
    an error and says what is wrong and where.

    :raises PageFormatError: e.g. ``auditEvents: Field required``.
    """
    page = _read_events(body)
    return page if page is not None else _scan_events_page(body)


def parse_event_lines(body: bytes) -> EventLinesPage:
    """
    :func:`parse_events_page` for an export: each event as an :class:`EventLine` (its id, its ``createdOn`` and
    the line written), the same lines, read and checked the same way, at a fraction of the cost.

    :raises PageFormatError: as :func:`parse_events_page` does.
    """
    page = _read_event_lines(body)
    if page is not None:
        return page
    scanned = _scan_events_page(body)
    return EventLinesPage(list(map(EventLine.of, scanned.events)), previous=scanned.previous, next=scanned.next)


def _read_events(body: bytes) -> AuditEventsPage | None:
    """The page as :func:`_scan_events_page` reads it, or None for anything but an ordinary, valid page."""
    columns = _read_columns(body)
    if columns is None:
        return None
    return AuditEventsPage(_audit_events(columns), previous=columns.previous, next=columns.next)


def _read_event_lines(body: bytes) -> EventLinesPage | None:
    """:func:`_read_events`, each event as an :class:`EventLine`."""
    columns = _read_columns(body)
    if columns is None:
        return None
    return EventLinesPage(_event_lines(columns), previous=columns.previous, next=columns.next)


@dataclass
class _Columns:
    """A page read by msgspec: its events' lines, ids, ``createdOn`` texts and ticks, in the server's order."""

    lines: list[bytes]
    event_ids: list[str]
    created_ons: list[str]
    ticks: list[Ticks]
    previous: str | None
    next: str | None


def _read_columns(body: bytes) -> _Columns | None:
    """The columns of an ordinary, valid page (as :func:`_scan_events_page` reads it), or None for any other."""
    try:
        # Two passes in C over the body, one for the events' spans (and the links, checked and decoded) and
        # one for their id and createdOn (an event that is not an object fails there), cost less than a
        # decoder call per event. A page with members besides the documented three takes the longer way.
        try:
            envelope = _ENVELOPE.decode(body)
        except msgspec.ValidationError:
            return _read_other_columns(body)
        heads = _HEADS_ENVELOPE.decode(body).auditEvents
        return _columns(envelope.auditEvents, heads, body, envelope.previous or None, envelope.next or None)
    except (msgspec.MsgspecError, ValueError, RecursionError):
        return None


def _read_other_columns(body: bytes) -> _Columns | None:
    """:func:`_read_columns` of a page with members it does not know, or with a link that is not a string."""
    fields = _FIELDS.decode(body)
    events_span = fields.get("auditEvents")
    if events_span is None:
        return None
    links: dict[str, str | None] = {}
    for name, span in fields.items():
        if name != "auditEvents":
            str(span, "utf-8")  # msgspec skips other values without checking their UTF-8
    for name in ("previous", "next"):
        link = fields.get(name)
        value = None if link is None else _VALUE.decode(link)
        if value is not None and type(value) is not str:
            return None
        links[name] = value or None
    spans, heads = _SPANS.decode(events_span), _HEADS.decode(events_span)
    return _columns(spans, heads, bytes(events_span), links["previous"], links["next"])


def _columns(
    spans: list[msgspec.Raw], heads: list[_EventHead], around: bytes, previous: str | None, next: str | None
) -> _Columns | None:
    """
    The columns of the events' spans and decoded heads, or None if one has no usable ``id`` or ``createdOn``.

    :param around: bytes that hold all the spans (the body, or the array): looked at once for what is rare.
    :raises ValueError: when an event is not UTF-8 or its ``createdOn`` is not a timestamp.
    """
    if len(spans) != len(heads):  # the two passes read different arrays: left to the scanner
        return None
    event_ids = [head.id for head in heads]
    created_ons = [head.createdOn for head in heads]
    # Every id a non-empty string and every createdOn a string, checked over the page at once; the createdOn
    # of the page parsed together (a TimestampError is a ValueError).
    if heads and (set(map(type, event_ids)) != {str} or not all(event_ids) or set(map(type, created_ons)) != {str}):
        return None
    ticks = parse_utc_timestamps(created_ons)
    # The events keep the server's UTF-8 bytes, written out as they came: no text object per event.
    lines = list(map(bytes, spans))
    # Raw line breaks (only possible between tokens) are looked for in all the bytes at once: compact bodies
    # hold none. All-ASCII bytes are valid UTF-8 and hold no U+2028/U+2029; otherwise each event that is not
    # ASCII is checked on its own (decoding all at once builds a wide string: twice the work of their checks).
    breaks = b"\n" in around or b"\r" in around
    ascii_only = around.isascii()
    if breaks or not ascii_only:
        for position, line in enumerate(lines):
            if breaks and (b"\n" in line or b"\r" in line):
                lines[position] = _one_line(line)
            elif not ascii_only and not line.isascii():
                lines[position] = utf8_line(line)  # raises on bytes that are not UTF-8; escapes U+2028/U+2029
    return _Columns(lines, event_ids, created_ons, ticks, previous, next)


def _audit_events(columns: _Columns) -> list[AuditEvent]:
    return AuditEvent.from_lines(columns.lines, columns.event_ids, columns.created_ons, columns.ticks)


def _event_lines(columns: _Columns) -> list[EventLine]:
    return list(map(EventLine, columns.event_ids, columns.created_ons, columns.ticks, columns.lines))


def _one_line(line: bytes) -> bytes:
    """
    An event sent pretty-printed, decoded and written again on one line, as the scanner writes it.

    :raises ValueError: when it is not UTF-8.
    """
    return one_line_json(json.loads(str(line, "utf-8"))).encode("utf-8")


def _scan_events_page(body: bytes) -> AuditEventsPage:
    """The reference reading of a page, on Python's json; raises :class:`PageFormatError` saying what is wrong."""
    fields, events = read_json_text(body, _scan)
    if events is None:
        raise PageFormatError("auditEvents: Field required")
    links: dict[str, str | None] = {}
    for name in ("previous", "next"):
        value = fields.get(name)
        if value is not None and not isinstance(value, str):
            raise PageFormatError(f"{name}: must be a URL string or null, got {value!r}")
        links[name] = value or None
    return AuditEventsPage(events, previous=links["previous"], next=links["next"])


def _scan(text: str) -> tuple[dict[str, Any], list[AuditEvent] | None]:
    index = skip_whitespace(text, expect_char(text, skip_whitespace(text, 0), "{"))
    fields: dict[str, Any] = {}
    events: list[AuditEvent] | None = None
    if text[index : index + 1] == "}":
        index += 1
    else:
        while True:
            key, index = JSON_DECODER.raw_decode(text, index)
            if not isinstance(key, str):
                raise json.JSONDecodeError("Expecting property name", text, index)
            index = skip_whitespace(text, expect_char(text, skip_whitespace(text, index), ":"))
            if key == "auditEvents" and text[index : index + 1] == "[":
                events, index = scan_records(text, index, "auditEvents", AuditEvent)
            else:
                fields[key], index = JSON_DECODER.raw_decode(text, index)
                if key == "auditEvents":
                    raise PageFormatError(f"auditEvents: must be a list, got {fields[key]!r}"[:200])
            index = skip_whitespace(text, index)
            if text[index : index + 1] == ",":
                index = skip_whitespace(text, index + 1)
                continue
            index = expect_char(text, index, "}")
            break
    if skip_whitespace(text, index) != len(text):
        raise json.JSONDecodeError("Extra data", text, index)
    return fields, events
