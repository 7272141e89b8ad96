"""The events page parser and request building, without I/O."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from airflow_provider_orchestrator_audit.client.events import (
    EventsQuery,
    fetch_events_page,
    parse_events_page,
    request_url,
)
from airflow_provider_orchestrator_audit.client.exchanges import NeedToken, Send
from airflow_provider_orchestrator_audit.client.page_parser import PageFormatError
from airflow_provider_orchestrator_audit.client.retry import RetryPolicy
from airflow_provider_orchestrator_audit.client.settings import ConnectionSettings
from airflow_provider_orchestrator_audit.exceptions import OrchestratorConfigError

SETTINGS = ConnectionSettings("c", "https://cloud.example", "acme", client_id="id", client_secret="s")
EVENT = '{"id":"e1","createdOn":"2026-01-31T13:05:12.3Z","eventSummary":"a \\"quote\\" \\u2028 é","x":[1,{"y":null}]}'


def test_each_event_keeps_its_own_text() -> None:
    page = parse_events_page(
        f'{{"auditEvents": [ {EVENT} , {EVENT.replace("e1", "e2")}], "next": null, "previous": "/p"}}'.encode()
    )
    assert [event.to_json() for event in page.events] == [EVENT, EVENT.replace("e1", "e2")]
    assert page.previous == "/p" and page.next is None
    assert page.events[0].created_on == "2026-01-31T13:05:12.3Z"
    assert page.events[0].raw["x"] == [1, {"y": None}]


def test_a_pretty_printed_event_is_written_on_one_line() -> None:
    page = parse_events_page(b'{"auditEvents": [{\n "id": "e1",\n "createdOn": "2026-01-31T13:05:12Z"\n}]}')
    assert page.events[0].to_json() == '{"id":"e1","createdOn":"2026-01-31T13:05:12Z"}' and page.previous is None
    # A raw U+2028 is valid JSON, but line readers split there: it is escaped, the rest kept as sent.
    raw = '{"auditEvents": [{"id": "e1", "createdOn": "2026-01-31T13:05:12Z",  "s": "a\u2028b"}]}'
    assert parse_events_page(raw.encode()).events[0].to_json().endswith('12Z",  "s": "a\\u2028b"}')


@pytest.mark.parametrize(
    ("body", "message", "damaged"),
    [
        (b'{"items": []}', "auditEvents: Field required", False),
        (b'{"auditEvents": {}}', "auditEvents: must be a list", False),
        (b'{"auditEvents": [], "previous": 3}', "previous: must be a URL string", False),
        (b'{"auditEvents": [{"createdOn": "2026-01-31T13:05:12Z"}]}', "auditEvents.0: id must be", False),
        (b'{"auditEvents": [{"id": "a", "createdOn": "soon"}]}', "auditEvents.0: createdOn is not a timestamp", False),
        (b'{"auditEvents": [{"id": "a", "createdOn": "2026-01-31T13:05:12Z"}', "not valid JSON", True),
        (b'{"auditEvents": ["\xff"]}', "not UTF-8", True),
    ],
)
def test_bad_bodies_say_what_is_wrong(body: bytes, message: str, damaged: bool) -> None:
    with pytest.raises(PageFormatError, match=message) as raised:
        parse_events_page(body)
    assert raised.value.damaged is damaged


def test_urls_of_both_levels_and_cursors() -> None:
    query = EventsQuery("tenant", "Default Tenant", datetime(2026, 1, 31, 13, tzinfo=UTC), "2026-01-31T14:00:00Z", 200)
    assert str(request_url(SETTINGS, query)) == (
        "https://cloud.example/acme/Default%20Tenant/tenantaudit_/api/query/events"
        "?from=2026-01-31T13%3A00%3A00Z&to=2026-01-31T14%3A00%3A00Z&maxCount=200"
    )
    cursor = EventsQuery("organization", cursor="/acme/orgaudit_/api/query/events?before=x&qw=abc")
    assert str(request_url(SETTINGS, cursor)) == "https://cloud.example/acme/orgaudit_/api/query/events?before=x&qw=abc"
    with pytest.raises(OrchestratorConfigError, match="need a tenant"):
        EventsQuery("tenant")
    with pytest.raises(OrchestratorConfigError, match="max_count"):
        EventsQuery("organization", max_count=0)


def test_the_exchange_step_by_step() -> None:
    exchange = fetch_events_page(SETTINGS, RetryPolicy(), EventsQuery("organization", max_count=2))
    assert next(exchange) == NeedToken(None)
    step = exchange.send("token")
    assert isinstance(step, Send) and step.request.headers["Authorization"] == "Bearer token"
    with pytest.raises(StopIteration) as done:
        exchange.send(httpx.Response(200, content=f'{{"auditEvents":[{EVENT}],"previous":null}}'.encode()))
    assert done.value.value.events[0].event_id == "e1"


@pytest.mark.parametrize(
    "body",
    [
        f'{{"auditEvents":[{EVENT}],"next":null,"previous":"/p"}}',
        '{"previous": null, "auditEvents": [{"id": "a", "createdOn": "2026-01-31T13:05:12Z", "s": "x\u2028y"}]}',
        '{"auditEvents": [{\n "id": "a",\n "createdOn": "2026-01-31T13:05:12.1234567+00:00", "n": 1.10}]}',
        '{"auditEvents": [], "extra": {"deep": [1, 2]}}',
    ],
)
def test_the_fast_reading_and_the_scanner_agree(body: str) -> None:
    from airflow_provider_orchestrator_audit.client.events import _read_event_lines, _read_events, _scan_events_page

    fast, reference = _read_events(body.encode()), _scan_events_page(body.encode())
    assert fast is not None
    assert [event.to_json() for event in fast.events] == [event.to_json() for event in reference.events]
    assert [event.created_on_ticks for event in fast.events] == [event.created_on_ticks for event in reference.events]
    assert (fast.previous, fast.next) == (reference.previous, reference.next)
    lines = _read_event_lines(body.encode())
    assert lines is not None
    assert [event.line for event in lines.events] == [event.to_json_bytes() for event in reference.events]
    assert [(event.event_id, event.created_on_ticks) for event in lines.events] == [
        (event.event_id, event.created_on_ticks) for event in reference.events
    ]
