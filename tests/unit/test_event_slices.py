"""
The events core against the local Orchestrator's listing, called directly (no sockets): random data
sets, windows and slice counts, and every answer to the API's unknowns (``to``/``from`` inclusive or
not, overlapping pages, oldest-first pages, page caps, fraction lengths, cursors that drop ``from`` or
expire), chains interleaved in random order, events arriving and recorded late while they page.
"""

from __future__ import annotations

import itertools
import json
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_orchestrator_audit.paging import AuditWindow, PagingError
from airflow_provider_orchestrator_audit.paging.event_slices import (
    EventsRequest,
    SliceChain,
    TimeSlice,
    created_on_unit,
    format_bound,
    plan_slices,
)
from airflow_provider_orchestrator_audit.testing.events_dataset import EventListing, EventsDataset, ListingSwitches
from airflow_provider_orchestrator_audit.timestamps import TICKS_PER_SECOND, parse_timestamp

BASE = parse_timestamp("2026-01-01T00:00:00Z")
STREAM = "DefaultTenant"


@dataclass(frozen=True)
class Event:
    event_id: str
    created_on_ticks: int
    created_on: str = "2026-01-01T00:00:00.000Z"


def params_of(request: EventsRequest, max_count: int) -> dict[str, str]:
    if request.cursor is not None:
        return {name.lower(): value for name, value in parse_qsl(urlsplit(request.cursor).query)}
    assert request.query_from is not None and request.query_to is not None
    return {
        "from": request.bound_text(request.query_from),
        "to": request.bound_text(request.query_to),
        "maxcount": str(max_count),
    }


def read_window(
    listing: EventListing,
    window: AuditWindow,
    slices: int,
    max_count: int,
    order: random.Random,
    *,
    between_requests: object = None,
) -> tuple[list[str], int]:
    """Run every slice's chain, interleaved in a random order; the released ids and the requests made."""
    chains = [SliceChain[Event](piece) for piece in plan_slices(window, slices)]
    pending = {index: chain.first_request() for index, chain in enumerate(chains)}
    released: list[str] = []
    requests = 0
    while pending:
        index = order.choice(sorted(pending))
        chain, request = chains[index], pending.pop(index)
        if callable(between_requests):
            between_requests()
        answer = listing.answer(STREAM, params_of(request, max_count), now=float(requests))
        requests += 1
        if answer.status != 200:
            assert request.cursor is not None, answer.body
            pending[index] = chain.cursor_rejected(answer.body.decode())
            continue
        document = json.loads(answer.body)
        events = [
            Event(item["id"], parse_timestamp(item["createdOn"]), item["createdOn"]) for item in document["auditEvents"]
        ]
        step = chain.accept(events, document["previous"])
        for event in step.released:
            assert window.contains(event.created_on_ticks)
        released.extend(event.event_id for event in step.released)
        if step.next_request is not None:
            pending[index] = step.next_request
    return released, requests


def expected(listing: EventListing, window: AuditWindow) -> set[str]:
    return {event_id for _, event_id, _ in listing.events_between(STREAM, window.start, window.end)}


switches_strategy = st.builds(
    ListingSwitches,
    to_inclusive=st.booleans(),
    from_inclusive=st.booleans(),
    page_overlap=st.integers(0, 5),
    page_order=st.sampled_from(["newest_first", "oldest_first"]),
    page_size_cap=st.one_of(st.none(), st.integers(1, 250)),
    cursor_keeps_from=st.booleans(),
    empty_last_page=st.booleans(),
)


@st.composite
def cases(draw: st.DrawFn) -> tuple[EventListing, AuditWindow, int, int]:
    dataset = EventsDataset(
        size={STREAM: draw(st.integers(0, 2500))},
        seed=draw(st.integers(0, 2**32)),
        tie_probability=draw(st.sampled_from([0.0, 0.2, 0.6])),
        burst_probability=draw(st.sampled_from([0.0, 0.0, 0.05])),
        fraction_digits=draw(st.integers(0, 7)),
        trim_fraction=draw(st.booleans()),
        events_per_hour=draw(st.sampled_from([600, 3600, 36_000])),
    )
    start = BASE + draw(st.integers(-60, 3 * 3600)) * TICKS_PER_SECOND + draw(st.integers(0, TICKS_PER_SECOND - 1))
    end = start + draw(st.integers(0, 3600 * TICKS_PER_SECOND))
    listing = EventListing(dataset, draw(switches_strategy))
    return listing, AuditWindow(start, end), draw(st.integers(1, 12)), draw(st.integers(1, 300))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(), st.randoms(use_true_random=False))
def test_every_event_of_the_window_exactly_once(
    case: tuple[EventListing, AuditWindow, int, int], order: random.Random
) -> None:
    listing, window, slices, max_count = case
    released, _ = read_window(listing, window, slices, max_count, order)
    assert not [event_id for event_id, count in Counter(released).items() if count > 1]
    assert set(released) == expected(listing, window)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(), st.integers(2, 6), st.randoms(use_true_random=False))
def test_expiring_cursors_are_recovered_or_fail_clearly(
    case: tuple[EventListing, AuditWindow, int, int], every: int, order: random.Random
) -> None:
    listing, window, slices, max_count = case
    listing.switches.expire_cursor_every = every
    try:
        released, _ = read_window(listing, window, slices, max_count, order)
    except PagingError as error:
        # Only when a page of events shares the second just above the last event read, and the
        # cursors through it keep being refused: asking again from that second cannot get past them.
        assert "refused" in str(error)
        return
    assert Counter(released) == Counter(expected(listing, window))


def test_every_cursor_refused_is_still_exact_on_sparse_data() -> None:
    listing = EventListing(
        EventsDataset(size={STREAM: 3000}, tie_probability=0.2), ListingSwitches(expire_cursor_every=1)
    )
    window = AuditWindow(BASE + 600 * TICKS_PER_SECOND, BASE + 2400 * TICKS_PER_SECOND)
    released, requests = read_window(listing, window, 3, 100, random.Random(1))
    assert Counter(released) == Counter(expected(listing, window))
    assert requests > 2 * len(released) // 100


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(), st.integers(1, 3), st.integers(0, 3), st.randoms(use_true_random=False))
def test_arrivals_and_late_events_while_paging(
    case: tuple[EventListing, AuditWindow, int, int], arrivals: int, late: int, order: random.Random
) -> None:
    listing, window, slices, max_count = case
    dataset = listing.dataset
    before = expected(listing, window)
    rng = random.Random(7)

    def move() -> None:
        dataset.append(STREAM, arrivals)
        dataset.record_late(STREAM, late, min_lag=0, max_lag=3600 * TICKS_PER_SECOND, rng=rng)

    released, _ = read_window(listing, window, slices, max_count, order, between_requests=move)
    assert not [event_id for event_id, count in Counter(released).items() if count > 1]
    # Everything there when the export began, once; a late event at most once (min_age covers the rest).
    assert before <= set(released) <= expected(listing, window)


def test_plan_slices_cover_the_window_disjointly_on_whole_seconds() -> None:
    window = AuditWindow(BASE + 5, BASE + 3600 * TICKS_PER_SECOND + 7)
    slices = plan_slices(window, 8)
    assert len(slices) == 8
    ordered = sorted(slices, key=lambda piece: piece.start)
    assert ordered[0].start == window.start and ordered[-1].end == window.end
    assert all(a.end == b.start for a, b in itertools.pairwise(ordered))
    assert all(piece.start % TICKS_PER_SECOND == 0 for piece in ordered[1:])
    assert slices == sorted(slices, key=lambda piece: -piece.start)  # newest first
    assert plan_slices(AuditWindow(BASE, BASE + 3), 8) == [TimeSlice(BASE, BASE + 3)]
    assert plan_slices(AuditWindow(BASE, BASE), 8) == []
    with pytest.raises(ValueError, match="at least 1"):
        plan_slices(window, 0)


def test_a_cursor_that_does_not_advance_fails_clearly() -> None:
    chain = SliceChain[Event](TimeSlice(BASE, BASE + 100 * TICKS_PER_SECOND))
    chain.first_request()
    page = [Event("a", BASE + 50 * TICKS_PER_SECOND), Event("b", BASE + 40 * TICKS_PER_SECOND)]
    chain.accept(page, "/acme/orgaudit_/api/query/events?qw=1")
    with pytest.raises(PagingError, match="does not advance"):
        for _ in range(5):
            chain.accept(page, "/acme/orgaudit_/api/query/events?qw=1")


def test_a_page_with_an_event_older_than_the_slice_ends_the_chain() -> None:
    chain = SliceChain[Event](TimeSlice(BASE + 10, BASE + 20))
    step = chain.accept([Event("a", BASE + 15), Event("b", BASE + 9), Event("c", BASE + 20)], "/next")
    assert [event.event_id for event in step.released] == ["a"]
    assert step.next_request is None and chain.done


def test_asking_again_after_a_refused_cursor_skips_what_was_read_pages_ago() -> None:
    # Ten events a second and two a page: asking again from the last second read returns events
    # released more pages ago than the chain remembers ids for; they must not come out twice.
    # createdOn in whole seconds, 30 events in each, and an inclusive ``to``: asking again lists the
    # 30 events of the second above the last one read, read 30 to 60 pages ago.
    listing = EventListing(
        EventsDataset(size={STREAM: 3000}, events_per_hour=108_000, tie_probability=0.0, fraction_digits=0),
        ListingSwitches(page_size_cap=1, expire_cursor_every=80, to_inclusive=True),
    )
    window = AuditWindow(BASE + 10 * TICKS_PER_SECOND, BASE + 35 * TICKS_PER_SECOND)
    released, _ = read_window(listing, window, 1, 1, random.Random(3))
    assert Counter(released) == Counter(expected(listing, window))


def test_a_tie_group_larger_than_many_pages_after_a_refused_cursor() -> None:
    # 256 events share each createdOn; asking again lists the group from its start, most of it read
    # more pages ago than the chain remembers pages for.
    listing = EventListing(
        EventsDataset(size={STREAM: 3000}, burst_probability=1.0),
        ListingSwitches(page_size_cap=10, expire_cursor_every=40),
    )
    window = AuditWindow(BASE, BASE + 3600 * TICKS_PER_SECOND)
    released, _ = read_window(listing, window, 1, 10, random.Random(3))
    assert Counter(released) == Counter(expected(listing, window))


def test_bounds_are_written_at_the_precision_of_the_event_they_follow() -> None:
    ticks = parse_timestamp("2026-01-31T13:05:12.3456789Z")
    assert format_bound(ticks) == "2026-01-31T13:05:12Z"
    assert format_bound(ticks, 3) == "2026-01-31T13:05:12.345Z"
    assert format_bound(ticks, 7) == "2026-01-31T13:05:12.3456789Z"
    assert created_on_unit("2026-01-31T13:05:12Z") == TICKS_PER_SECOND
    assert created_on_unit("2026-01-31T13:05:12.345Z") == 10_000
    assert created_on_unit("2026-01-31T13:05:12.5Z") == 1_000_000
    assert created_on_unit("2026-01-31T13:05:12.1234567+00:00") == 1


class _CountingChain(SliceChain[Event]):
    """A chain that counts the pages its fast path takes."""

    fast_pages = 0

    def _take_unseen(self, *args: Any) -> Any:
        taken = super()._take_unseen(*args)
        self.fast_pages += taken is not None
        return taken


class _EveryPageTheLongWay(SliceChain[Event]):
    """A chain without the fast path for the usual page: what the fast path must match, step by step."""

    def _take_unseen(self, *args: Any) -> None:
        return None


def _same_failure(error: PagingError, call: Callable[[], object]) -> None:
    with pytest.raises(PagingError) as other:
        call()
    assert str(other.value) == str(error)


def fast_path_steps_match(
    listing: EventListing, window: AuditWindow, slices: int, max_count: int, order: random.Random
) -> int:
    """Feed each slice's answers to a chain and its twin without the fast path: every step alike. Fast pages."""
    pairs = [(_CountingChain(piece), _EveryPageTheLongWay(piece)) for piece in plan_slices(window, slices)]
    pending = {index: (chain.first_request(), twin.first_request()) for index, (chain, twin) in enumerate(pairs)}
    requests = 0
    while pending:
        index = order.choice(sorted(pending))
        (chain, twin), (request, twin_request) = pairs[index], pending.pop(index)
        assert request == twin_request
        answer = listing.answer(STREAM, params_of(request, max_count), now=float(requests))
        requests += 1
        if answer.status != 200:
            reason = answer.body.decode()
            try:
                request = chain.cursor_rejected(reason)
            except PagingError as error:
                _same_failure(error, lambda: twin.cursor_rejected(reason))  # noqa: B023  # called at once
                continue
            pending[index] = (request, twin.cursor_rejected(reason))
            continue
        document = json.loads(answer.body)
        events = [
            Event(item["id"], parse_timestamp(item["createdOn"]), item["createdOn"]) for item in document["auditEvents"]
        ]
        try:
            step = chain.accept(events, document["previous"])
        except PagingError as error:
            _same_failure(error, lambda: twin.accept(events, document["previous"]))  # noqa: B023  # called at once
            continue
        twin_step = twin.accept(events, document["previous"])
        assert [event.event_id for event in step.released] == [event.event_id for event in twin_step.released]
        assert (step.next_request, step.repeated, step.passed) == (
            twin_step.next_request,
            twin_step.repeated,
            twin_step.passed,
        )
        assert (chain.watermark, chain._ids_at_watermark, chain._recent_ids, chain._watermark_unit) == (
            twin.watermark,
            twin._ids_at_watermark,
            twin._recent_ids,
            twin._watermark_unit,
        )
        if step.next_request is not None:
            assert twin_step.next_request is not None
            pending[index] = (step.next_request, twin_step.next_request)
    return sum(chain.fast_pages for chain, _ in pairs)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(), st.integers(0, 6), st.integers(0, 2), st.randoms(use_true_random=False))
def test_the_fast_path_takes_a_page_as_the_long_way_does(
    case: tuple[EventListing, AuditWindow, int, int], expire_every: int, late: int, order: random.Random
) -> None:
    """Step by step, with every answer of the listing, refused cursors, arrivals and late events."""
    listing, window, slices, max_count = case
    listing.switches.expire_cursor_every = expire_every or None
    rng = random.Random(5)
    listing.dataset.record_late(STREAM, late, min_lag=0, max_lag=3600 * TICKS_PER_SECOND, rng=rng)
    fast_path_steps_match(listing, window, slices, max_count, order)


def test_the_usual_pages_take_the_fast_path() -> None:
    listing = EventListing(EventsDataset(size={STREAM: 3000}, tie_probability=0.3), ListingSwitches(page_size_cap=50))
    window = AuditWindow(BASE + 600 * TICKS_PER_SECOND, BASE + 2400 * TICKS_PER_SECOND)
    fast = fast_path_steps_match(listing, window, 4, 50, random.Random(2))
    assert fast >= 1800 // 50 - 4  # all but (at most) the last page of each slice, which reaches below it
