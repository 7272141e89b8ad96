"""EventWindowReader against the local listing called in-process (threads, no sockets)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from urllib.parse import parse_qsl, urlsplit

import pytest

from airflow_provider_orchestrator_audit.client.events import CursorRejectedError, parse_event_lines
from airflow_provider_orchestrator_audit.event_models import EventLinesPage
from airflow_provider_orchestrator_audit.export.events_reader import EventWindowReader
from airflow_provider_orchestrator_audit.paging import AuditWindow, PagingError
from airflow_provider_orchestrator_audit.paging.event_slices import EventsRequest
from airflow_provider_orchestrator_audit.testing import EventListing, EventsDataset, ListingSwitches
from airflow_provider_orchestrator_audit.timestamps import parse_timestamp

STREAM = "Finance"
WINDOW = AuditWindow(parse_timestamp("2026-01-01T00:10:00Z"), parse_timestamp("2026-01-01T01:10:00Z"))


class Fetcher:
    """The listing behind a thread-safe fetch function that counts concurrent calls."""

    def __init__(self, listing: EventListing, delay: float = 0.0) -> None:
        self.listing, self.delay = listing, delay
        self.active = self.most_active = 0
        self.lock = threading.Lock()

    def __call__(self, request: EventsRequest) -> EventLinesPage:
        with self.lock:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        try:
            time.sleep(self.delay)
            if request.cursor is not None:
                params = {key.lower(): value for key, value in parse_qsl(urlsplit(request.cursor).query)}
            else:
                assert request.query_from is not None and request.query_to is not None
                params = {"from": request.bound_text(request.query_from), "to": request.bound_text(request.query_to)}
                params["maxcount"] = "200"
            answer = self.listing.answer(STREAM, params, time.monotonic())
            if answer.status != 200:
                raise CursorRejectedError(answer.body.decode())
            return parse_event_lines(answer.body)  # what the export reads
        finally:
            with self.lock:
                self.active -= 1


def expected(listing: EventListing) -> Counter[str]:
    return Counter(event_id for _, event_id, _ in listing.events_between(STREAM, WINDOW.start, WINDOW.end))


@pytest.mark.parametrize(
    "switches",
    [
        ListingSwitches(),
        ListingSwitches(to_inclusive=True, page_overlap=2, page_order="oldest_first", page_size_cap=37),
        ListingSwitches(expire_cursor_every=3, cursor_keeps_from=False, empty_last_page=True),
    ],
)
def test_the_window_exactly_once_with_bounded_concurrency(switches: ListingSwitches) -> None:
    listing = EventListing(EventsDataset(size=6000, seed=4, tie_probability=0.3, fraction_digits=2), switches)
    fetch = Fetcher(listing, delay=0.002)
    reader = EventWindowReader(fetch, WINDOW, max_concurrency=4)
    batches = list(reader)
    released = Counter(event.event_id for batch in batches for event in batch)
    assert released == expected(listing)
    assert 1 < fetch.most_active <= 4
    assert reader.stats.records == sum(released.values()) and reader.stats.slices == 16
    assert (reader.stats.reanchors > 0) == (switches.expire_cursor_every is not None)


def test_an_empty_window_reads_nothing() -> None:
    listing = EventListing(EventsDataset(size=10))
    reader = EventWindowReader(Fetcher(listing), AuditWindow(WINDOW.start, WINDOW.start))
    assert list(reader) == [] and reader.stats.requests == 0


def test_a_failing_request_ends_the_read() -> None:
    def fetch(request: EventsRequest) -> EventLinesPage:
        raise PagingError("broken")

    with pytest.raises(PagingError, match="broken"):
        list(EventWindowReader(fetch, WINDOW, max_concurrency=2))
