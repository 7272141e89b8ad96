"""The keyset core of source="orchestrator": slices paged by Id, each entry once, against the listing itself."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_orchestrator_audit.client.odata import OdataQuery, parse_orchestrator_page
from airflow_provider_orchestrator_audit.paging import PagingError
from airflow_provider_orchestrator_audit.paging.event_slices import TimeSlice, plan_slices
from airflow_provider_orchestrator_audit.paging.odata_keyset import KeysetChain, KeysetRequest
from airflow_provider_orchestrator_audit.paging.window import AuditWindow
from airflow_provider_orchestrator_audit.testing.orchestrator_dataset import (
    OdataListing,
    OdataSwitches,
    OrchestratorDataset,
)
from airflow_provider_orchestrator_audit.timestamps import TICKS_PER_SECOND, parse_timestamp

TENANT = "DefaultTenant"
START = parse_timestamp("2026-01-01T00:00:00Z")


@dataclass(frozen=True)
class Entry:
    entry_id: int
    execution_time_ticks: int


def test_first_request_asks_for_whole_seconds_one_more_on_each_side():
    chain = KeysetChain[Entry](TimeSlice(START + 5, START + 10 * TICKS_PER_SECOND + 1))
    request = chain.first_request()
    assert request == KeysetRequest(START - TICKS_PER_SECOND, START + 12 * TICKS_PER_SECOND)
    assert (request.time_from, request.time_to) == ("2025-12-31T23:59:59Z", "2026-01-01T00:00:12Z")


def test_a_short_page_is_not_the_end_and_the_next_page_starts_after_its_last_id():
    chain = KeysetChain[Entry](TimeSlice(START, START + 100))
    chain.first_request()
    step = chain.accept([Entry(7, START + 1), Entry(9, START - 1), Entry(12, START + 100)], count=None)
    assert [entry.entry_id for entry in step.released] == [7]
    assert step.next_request is not None and step.next_request.after_id == 12
    assert chain.outside == 2 and not chain.done
    assert chain.accept([], count=None).next_request is None and chain.done


def test_the_count_proves_the_end_without_an_empty_page():
    chain = KeysetChain[Entry](TimeSlice(START, START + 100))
    chain.first_request()
    assert chain.accept([Entry(1, START)], count=3).next_request is not None
    step = chain.accept([Entry(2, START + 1), Entry(3, START + 2)], count=2)
    assert step.next_request is None and chain.released_count == 3 and chain.requests == 2


def test_ids_out_of_order_stop_the_chain_instead_of_skipping_entries():
    chain = KeysetChain[Entry](TimeSlice(START, START + 100))
    chain.first_request()
    chain.accept([Entry(5, START)], count=None)
    with pytest.raises(PagingError, match=r"Id 4 after Id 5.*\$orderby=Id asc"):
        chain.accept([Entry(4, START)], count=None)


def _read(listing: OdataListing, window: AuditWindow, slices: int, top: int, on_request=None) -> list[int]:
    ids: list[int] = []
    for piece in plan_slices(window, slices):
        chain = KeysetChain[object](piece)  # type: ignore[type-var]
        request: KeysetRequest | None = chain.first_request()
        serial = 0
        while request is not None:
            serial += 1
            if on_request is not None:
                on_request()
            query = OdataQuery(
                TENANT, request.time_from, request.time_to, request.after_id, top=top, count=serial % 2 == 0
            )
            answer = listing.answer(TENANT, query.params(), serial)
            assert answer.status == 200, answer.body
            page = parse_orchestrator_page(answer.body)
            step = chain.accept(page.entries, page.count)  # type: ignore[arg-type]
            ids.extend(entry.entry_id for entry in step.released)  # type: ignore[attr-defined]
            request = step.next_request
    return ids


def _expected(listing: OdataListing, window: AuditWindow) -> list[int]:
    resolution = listing.switches.resolution
    return sorted(
        entry_id
        for entry_id, ticks in listing.dataset.entries(TENANT)
        if window.start <= ticks // resolution * resolution < window.end
    )


@settings(max_examples=40, deadline=None)
@given(
    start=st.integers(0, 1500 * TICKS_PER_SECOND),
    length=st.integers(1, 900 * TICKS_PER_SECOND),
    slices=st.integers(1, 9),
    top=st.integers(1, 60),
    digits=st.sampled_from([7, 3, 0]),
    offset=st.sampled_from(["Z", "+00:00", "+02:00", "-05:30"]),
    trim=st.booleans(),
    short=st.booleans(),
    late=st.integers(0, 40),
)
def test_every_entry_of_the_window_once_whatever_the_server_does(
    start, length, slices, top, digits, offset, trim, short, late
):
    dataset = OrchestratorDataset(size=2000, seed=3, entries_per_hour=3600, tie_probability=0.3)
    dataset.record_late(TENANT, late, [lag * 37 * TICKS_PER_SECOND for lag in range(late)])
    switches = OdataSwitches(fraction_digits=digits, offset=offset, trim_fraction=trim, short_pages=short)
    listing = OdataListing(dataset, switches)
    window = AuditWindow(START + start, START + start + length)
    ids = _read(listing, window, slices, top)
    assert sorted(ids) == _expected(listing, window)


def test_entries_recorded_while_paging_are_found_and_none_twice():
    dataset = OrchestratorDataset(size=300, seed=5)
    listing = OdataListing(dataset)
    window = AuditWindow(START, START + 7200 * TICKS_PER_SECOND)  # past the newest entry: arrivals land inside
    before = set(_expected(listing, window))
    ids = _read(listing, window, 3, 25, on_request=lambda: dataset.append(TENANT, 2))
    assert len(ids) == len(set(ids))
    assert before < set(ids) <= set(_expected(listing, window))


def test_a_page_keeps_each_entrys_text_and_its_entities():
    listing = OdataListing(OrchestratorDataset(size=50, seed=1))
    query = OdataQuery(TENANT, top=5, count=True, expand_entities=True)
    body = listing.answer(TENANT, query.params()).body
    page = parse_orchestrator_page(body)
    document = json.loads(body)
    assert page.count == 50 and len(page.entries) == 5
    for entry, raw in zip(page.entries, document["value"], strict=True):
        assert json.loads(entry.to_json()) == raw and "\n" not in entry.to_json()
        assert entry.entry_id == raw["Id"] and raw["Entities"][0]["EntityId"] == raw["EntityId"]
