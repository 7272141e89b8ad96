"""The hooks' unified audit events over real HTTP against the local Orchestrator."""

from __future__ import annotations

import asyncio

import pytest

from airflow_provider_orchestrator_audit.client.events import CursorRejectedError, EventsQuery
from airflow_provider_orchestrator_audit.client.retry import RetryPolicy
from airflow_provider_orchestrator_audit.event_models import AuditEvent, EventLine
from airflow_provider_orchestrator_audit.exceptions import (
    OrchestratorConfigError,
    OrchestratorRequestError,
    OrchestratorResponseError,
)
from airflow_provider_orchestrator_audit.hooks.orchestrator_audit import (
    OrchestratorAuditAsyncHook,
    OrchestratorAuditHook,
)
from airflow_provider_orchestrator_audit.testing import Fault
from airflow_provider_orchestrator_audit.timestamps import parse_timestamp
from tests.conftest import set_connection

FAST = RetryPolicy(max_attempts=4, backoff_base=0.01, backoff_max=0.05, max_elapsed=30)
START, END = "2026-01-01T00:20:00Z", "2026-01-01T00:40:00Z"


@pytest.fixture
def tenant_conn(orchestrator, monkeypatch) -> str:
    return set_connection(monkeypatch, "events_test", orchestrator.airflow_connection(tenant="Finance"))


@pytest.fixture
def events_hook(tenant_conn):
    made = OrchestratorAuditHook(tenant_conn, retry_policy=FAST)
    yield made
    made.close()


def test_organization_page(events_hook, orchestrator):
    page = events_hook.get_audit_events("organization", from_=START, to=END, max_count=50)
    assert len(page.events) == 50 and page.previous and page.next is None
    event = page.events[0]
    assert isinstance(event, AuditEvent)
    assert event.raw["tenantName"] is None and event.raw["organizationName"] == "acme"
    assert parse_timestamp(START) <= event.created_on_ticks < parse_timestamp(END)
    assert event.to_json().startswith('{"id":"' + event.event_id)


def test_tenant_from_the_connection_or_the_call_and_the_cursor_chain(events_hook, orchestrator):
    first = events_hook.get_audit_events("tenant", from_=START, to=END, max_count=200)
    assert {event.raw["tenantName"] for event in first.events} == {"Finance"}
    ids = [event.event_id for event in first.events]
    page = first
    while page.previous is not None:
        page = events_hook.get_audit_events("tenant", cursor=page.previous)
        ids.extend(event.event_id for event in page.events)
    rows = orchestrator.event_listing.events_between("Finance", parse_timestamp(START), parse_timestamp(END))
    assert ids == [event_id for _, event_id, _ in rows]
    hr = events_hook.get_audit_events("tenant", tenant="HR", max_count=1)
    assert hr.events[0].raw["tenantName"] == "HR"


def test_event_lines_are_the_events_lines_page_by_page(events_hook):
    """The export's reading of a chain (the client's event lines): the same events, links and lines as the hook's."""
    whole = events_hook.get_audit_events("tenant", from_=START, to=END, max_count=200)
    client = events_hook.client
    lines = client.fetch_event_lines(EventsQuery("tenant", "Finance", START, END, max_count=200))
    pages = 0
    while True:
        pages += 1
        # The same links; the local Orchestrator's cursors carry the moment they were given out.
        assert (lines.previous is None, lines.next) == (whole.previous is None, whole.next)
        assert all(type(event) is EventLine for event in lines.events)
        assert [(event.event_id, event.created_on, event.created_on_ticks, event.line) for event in lines.events] == [
            (event.event_id, event.created_on, event.created_on_ticks, event.to_json_bytes()) for event in whole.events
        ]
        if whole.previous is None:
            break
        whole = events_hook.get_audit_events("tenant", cursor=whole.previous)
        lines = client.fetch_event_lines(EventsQuery("tenant", "Finance", cursor=lines.previous))
    assert pages > 1
    with pytest.raises(OrchestratorRequestError, match="'Nope'"):
        client.fetch_event_lines(EventsQuery("tenant", "Nope", max_count=1))


def test_a_tenant_level_read_without_a_tenant_fails_before_any_request(orchestrator, orchestrator_conn):
    made = OrchestratorAuditHook(orchestrator_conn, retry_policy=FAST)
    with pytest.raises(OrchestratorConfigError, match="extra 'tenant'"):
        made.get_audit_events("tenant", max_count=1)
    assert orchestrator.stats.audit_requests == 0
    made.close()


def test_an_unknown_tenant_names_it(events_hook):
    with pytest.raises(OrchestratorRequestError, match="HTTP 404.*tenant \\('Nope'\\)"):
        events_hook.get_audit_events("tenant", tenant="Nope", max_count=1)


def test_a_refused_cursor_is_its_own_error(events_hook, orchestrator):
    orchestrator.event_listing.switches.expire_cursor_every = 1
    orchestrator.event_listing.switches.cursor_expired_status = 410
    page = events_hook.get_audit_events("organization", max_count=5)
    with pytest.raises(CursorRejectedError, match="refused the cursor it gave out, with HTTP 410"):
        events_hook.get_audit_events("organization", cursor=page.previous)


def test_a_cursor_to_another_host_is_not_followed(events_hook, orchestrator):
    with pytest.raises(OrchestratorRequestError, match="another host"):
        events_hook.get_audit_events("organization", cursor="https://elsewhere.example/acme/orgaudit_/api/query/events")
    assert orchestrator.stats.audit_requests == 0


def test_damaged_bodies_are_retried_and_wrong_shapes_fail(events_hook, orchestrator):
    orchestrator.faults.push(Fault.non_utf8())
    orchestrator.faults.push(Fault.throttle(0))
    assert len(events_hook.get_audit_events("organization", max_count=3).events) == 3
    orchestrator.faults.push(Fault.wrong_shape())
    with pytest.raises(OrchestratorResponseError, match="auditEvents: Field required"):
        events_hook.get_audit_events("organization", max_count=3)
    orchestrator.faults.push(Fault.bad_created_on())
    with pytest.raises(OrchestratorResponseError, match="auditEvents.0: createdOn is not a timestamp"):
        events_hook.get_audit_events("organization", max_count=3)


def test_the_async_twin_reads_the_same_page(tenant_conn, orchestrator):
    sync = OrchestratorAuditHook(tenant_conn, retry_policy=FAST)
    expected = [event.event_id for event in sync.get_audit_events("tenant", from_=START, to=END, max_count=20).events]
    sync.close()

    async def read() -> list[str]:
        hook = OrchestratorAuditAsyncHook(tenant_conn, retry_policy=FAST)
        try:
            page = await hook.get_audit_events("tenant", from_=START, to=END, max_count=20)
            following = await hook.get_audit_events("tenant", cursor=page.previous)
            assert following.events
            return [event.event_id for event in page.events]
        finally:
            await hook.aclose()

    assert asyncio.run(read()) == expected
