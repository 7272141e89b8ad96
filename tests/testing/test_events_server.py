"""The local Orchestrator's unified audit events: the data set, the listing's switches, over real sockets."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from airflow_provider_orchestrator_audit.testing import LocalOrchestratorServer
from airflow_provider_orchestrator_audit.testing.events_dataset import EventsDataset, ListingSwitches
from airflow_provider_orchestrator_audit.timestamps import TICKS_PER_SECOND, parse_timestamp

GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-a[0-9a-f]{3}-[0-9a-f]{12}$")
FORM = {"grant_type": "client_credentials", "client_id": "local-client", "client_secret": "local-secret"}
START = "2026-01-01T00:10:00Z"
END = "2026-01-01T00:20:00Z"


@pytest.fixture
def server() -> Iterator[LocalOrchestratorServer]:
    events = EventsDataset(size=5000, seed=3, tie_probability=0.3, burst_probability=0.02)
    with LocalOrchestratorServer(events=events, seed=3) as running:
        yield running


@pytest.fixture
def client(server: LocalOrchestratorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=5) as http:
        token = http.post("/identity_/connect/token", data=FORM).json()["access_token"]
        http.headers["Authorization"] = f"Bearer {token}"
        yield http


def chain(client: httpx.Client, first: str, **params: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Follow ``previous`` from a first query until null: every event in order, and every page."""
    events: list[dict[str, Any]] = []
    pages: list[dict[str, Any]] = []
    reply = client.get(first, params=params)
    while True:
        assert reply.status_code == 200, reply.text
        page = reply.json()
        pages.append(page)
        events.extend(page["auditEvents"])
        if page["previous"] is None:
            return events, pages
        reply = client.get(page["previous"])


def expected_ids(server: LocalOrchestratorServer, tenant: str, start: str, end: str) -> set[str]:
    rows = server.event_listing.events_between(tenant, parse_timestamp(start), parse_timestamp(end))
    return {event_id for _, event_id, _ in rows}


def test_organization_and_tenant_events_differ_in_their_tenant_fields(
    server: LocalOrchestratorServer, client: httpx.Client
) -> None:
    org = client.get(server.events_url(), params={"maxCount": 200}).json()["auditEvents"]
    tenant = client.get(server.events_url("Finance"), params={"maxCount": 200}).json()["auditEvents"]
    assert len(org) == len(tenant) == 200
    assert all(event["tenantId"] is None and event["tenantName"] is None for event in org)
    assert all(event["tenantName"] == "Finance" and GUID.match(event["tenantId"]) for event in tenant)
    assert all(GUID.match(event["id"]) for event in org + tenant)
    assert not {event["id"] for event in org} & {event["id"] for event in tenant}
    system = [event for event in org + tenant if event["actorName"] == "System"]
    assert system and all("clientInfo" not in event for event in system)
    assert all("clientInfo" in event for event in org + tenant if event["actorName"] != "System")
    assert all(json.loads(event["eventDetails"]) for event in org)  # JSON inside a string


def test_the_data_set_is_deterministic() -> None:
    first, second = EventsDataset(size=100, seed=9), EventsDataset(size=100, seed=9)
    assert [first.event_json("HR", i) for i in range(100)] == [second.event_json("HR", i) for i in range(100)]
    assert first.event_json("HR", 5) != EventsDataset(size=100, seed=10).event_json("HR", 5)


def test_pages_hold_at_most_200_events_and_the_chain_is_the_window(
    server: LocalOrchestratorServer, client: httpx.Client
) -> None:
    events, pages = chain(client, server.events_url("DefaultTenant"), **{"from": START, "to": END, "maxCount": 1000})
    assert all(len(page["auditEvents"]) <= 200 for page in pages) and len(pages) > 2
    ids = [event["id"] for event in events]
    assert len(ids) == len(set(ids))
    assert set(ids) == expected_ids(server, "DefaultTenant", START, END)
    ticks = [parse_timestamp(event["createdOn"]) for event in events]
    assert ticks == sorted(ticks, reverse=True)
    assert pages[0]["next"] is None
    cursor = pages[0]["previous"]
    assert cursor.startswith("/acme/DefaultTenant/tenantaudit_/api/query/events?") and "beforeId=" in cursor


def test_to_inclusive_or_exclusive(server: LocalOrchestratorServer, client: httpx.Client) -> None:
    newest = client.get(server.events_url(), params={"maxCount": 1}).json()["auditEvents"][0]
    at = newest["createdOn"]
    exclusive = client.get(server.events_url(), params={"to": at, "maxCount": 5}).json()["auditEvents"]
    assert all(event["createdOn"] < at for event in exclusive)
    server.event_listing.switches.to_inclusive = True
    inclusive = client.get(server.events_url(), params={"to": at, "maxCount": 5}).json()["auditEvents"]
    assert inclusive[0]["createdOn"] == at


def test_overlapping_pages_and_oldest_first_order(server: LocalOrchestratorServer, client: httpx.Client) -> None:
    server.event_listing.switches.page_overlap = 3
    server.event_listing.switches.page_order = "oldest_first"
    events, pages = chain(client, server.events_url("HR"), **{"from": START, "to": END, "maxCount": 100})
    first = [parse_timestamp(event["createdOn"]) for event in pages[0]["auditEvents"]]
    assert first == sorted(first)
    assert len(pages) > 2
    oldest_of_first = {event["id"] for event in pages[0]["auditEvents"][:3]}
    assert oldest_of_first == {event["id"] for event in pages[1]["auditEvents"][-3:]}
    repeated = len(events) - len({event["id"] for event in events})
    assert repeated == 3 * (len(pages) - 1)
    assert {event["id"] for event in events} == expected_ids(server, "HR", START, END)


def test_cursors_that_drop_from_run_past_it(server: LocalOrchestratorServer, client: httpx.Client) -> None:
    server.event_listing.switches.cursor_keeps_from = False
    events, _ = chain(client, server.events_url("HR"), **{"from": START, "to": END, "maxCount": 200})
    assert min(parse_timestamp(event["createdOn"]) for event in events) == server.events.ticks(0)


def test_expired_cursors_are_refused(server: LocalOrchestratorServer, client: httpx.Client) -> None:
    server.event_listing.switches.expire_cursor_every = 2
    server.event_listing.switches.cursor_expired_status = 410
    first = client.get(server.events_url(), params={"maxCount": 10}).json()
    second = client.get(first["previous"])
    assert second.status_code == 200
    refused = client.get(second.json()["previous"])
    assert refused.status_code == 410 and "expired" in refused.text
    assert client.get(server.events_url(), params={"qw": "garbage"}).status_code == 400


def test_cursor_ttl(server: LocalOrchestratorServer, client: httpx.Client) -> None:
    server.event_listing.switches.cursor_ttl_seconds = 0.0
    first = client.get(server.events_url(), params={"maxCount": 10}).json()
    assert client.get(first["previous"]).status_code == 400


@pytest.mark.parametrize(("digits", "trim"), [(0, False), (3, True), (7, False)])
def test_created_on_fraction_length(digits: int, trim: bool) -> None:
    events = EventsDataset(size=500, fraction_digits=digits, trim_fraction=trim)
    texts = [json.loads(events.event_json("", i))["createdOn"] for i in range(500)]
    fractions = [text[20:-1] for text in texts]
    if trim:
        assert any(len(fraction) < digits for fraction in fractions)
    else:
        assert all(len(fraction) == digits for fraction in fractions)
    assert all(parse_timestamp(text) % (10 ** (7 - digits)) == 0 for text in texts)


def test_arrivals_and_late_events_while_paging(server: LocalOrchestratorServer, client: httpx.Client) -> None:
    stream = server.events.stream("HR")
    high = stream.high
    server.event_arrivals_per_request = 2
    server.event_late_per_request = 1
    server.event_late_max_lag_seconds = 600
    chain(client, server.events_url("HR"), maxCount=200)
    assert stream.high > high
    late = server.events.late_events("HR")
    assert late
    oldest_newest, newest = server.events.ticks(high - 1), server.events.ticks(stream.high - 1)
    assert all(oldest_newest - 600 * TICKS_PER_SECOND - 10_000 <= ticks <= newest for ticks, _, _ in late)
    server.event_arrivals_per_request = server.event_late_per_request = 0
    events, _ = chain(client, server.events_url("HR"), maxCount=200)
    assert {event_id for _, event_id, _ in late} <= {event["id"] for event in events}
    assert len(events) == stream.high - stream.low + len(late)


def test_errors(server: LocalOrchestratorServer, client: httpx.Client) -> None:
    assert client.get(server.url + "/acme/Nope/tenantaudit_/api/query/events").status_code == 404
    assert client.get(server.url + "/other/orgaudit_/api/query/events").status_code == 404
    assert client.get(server.events_url(), params={"from": "yesterday"}).status_code == 400
    assert client.get(server.events_url(), params={"maxCount": "0"}).status_code == 400
    assert httpx.get(server.events_url()).status_code == 401
    assert client.post(server.events_url()).status_code == 405


def test_switches_default_to_the_reported_behaviour() -> None:
    switches = ListingSwitches()
    assert switches.page_size_cap == 200 and not switches.to_inclusive and switches.page_order == "newest_first"
