"""
Read one window of unified audit events: disjoint time slices, their cursor chains fetched concurrently.

The I/O driver of :mod:`airflow_provider_orchestrator_audit.paging.event_slices`: it owns a thread pool
and calls a page-fetching function (normally the hook's ``get_audit_events``, whose client is
thread-safe and retries 429/5xx itself). Every decision comes from the pure core; only this loop
touches threads. Up to ``max_concurrency`` chains are read at once, one request in flight each, and a
finished chain hands its worker to the next slice; pages are released in the order they arrive, each
event exactly once, so memory stays at ``max_concurrency`` pages whatever the window.
"""

from __future__ import annotations

import logging
import queue
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from airflow_provider_orchestrator_audit.client.events import CursorRejectedError
from airflow_provider_orchestrator_audit.event_models import AuditEvent, AuditEventsPage
from airflow_provider_orchestrator_audit.paging.event_slices import EventsRequest, SliceChain, plan_slices
from airflow_provider_orchestrator_audit.paging.window import AuditWindow
from airflow_provider_orchestrator_audit.validation import checked_int

__all__ = ["SLICES_PER_WORKER", "EventFetcher", "EventReadStats", "EventWindowReader"]

log = logging.getLogger(__name__)

#: ``fetch(request)`` returns the page a first query or a cursor asks for.
EventFetcher = Callable[[EventsRequest], AuditEventsPage]


class _Log(Protocol):
    """What the reader logs through: a :class:`logging.Logger`, an adapter, or a task's logger."""

    def info(self, message: Any, /, *args: Any) -> Any: ...

    def warning(self, message: Any, /, *args: Any) -> Any: ...


#: Slices per concurrent chain: more, shorter slices even out windows whose events bunch up in time.
SLICES_PER_WORKER = 4


@dataclass
class EventReadStats:
    """What reading one window of events cost and saw."""

    slices: int = 0
    requests: int = 0
    reanchors: int = 0
    repeated: int = 0
    passed: int = 0
    records: int = 0
    seconds: float = 0.0
    #: The events API reports no total; kept for the operator's result, always None here.
    total_count: int | None = None


class EventWindowReader:
    """
    Yields the events of ``window`` in batches (one per page, newest first inside it), each exactly once.

    :param fetch: the page source, ``fetch(EventsRequest) -> AuditEventsPage``.
    :param window: the window ``[start, end)``.
    :param max_concurrency: chains (requests) in flight at once.
    :param slices: how many time slices to cut the window into; default ``SLICES_PER_WORKER x max_concurrency``.
    :param progress_interval: seconds between progress lines in the log.
    """

    def __init__(
        self,
        fetch: EventFetcher,
        window: AuditWindow,
        *,
        max_concurrency: int = 8,
        slices: int | None = None,
        progress_interval: float = 30.0,
        logger: _Log | None = None,
    ) -> None:
        checked_int("max_concurrency", max_concurrency)
        if slices is not None:
            checked_int("slices", slices)
        self._fetch = fetch
        self.window = window
        self.max_concurrency = max_concurrency
        self.slice_count = slices or SLICES_PER_WORKER * max_concurrency
        self.progress_interval = progress_interval
        self.log: _Log = logger or log
        self.stats = EventReadStats()

    def __iter__(self) -> Iterator[list[AuditEvent]]:
        started = time.monotonic()
        try:
            yield from self._read(started)
        finally:
            self.stats.seconds = time.monotonic() - started

    def _read(self, started: float) -> Iterator[list[AuditEvent]]:
        chains = [SliceChain[AuditEvent](piece) for piece in plan_slices(self.window, self.slice_count)]
        self.stats.slices = len(chains)
        waiting = deque(range(len(chains)))
        in_flight: dict[Future[AuditEventsPage], int] = {}
        # Each request, once answered, puts itself here: one blocking get per answer, where waiting on the
        # set of requests in flight (concurrent.futures.wait) hooks into and out of every one of them each time.
        answered: queue.SimpleQueue[Future[AuditEventsPage]] = queue.SimpleQueue()
        next_progress = started + self.progress_interval
        with ThreadPoolExecutor(max_workers=self.max_concurrency, thread_name_prefix="audit-events") as pool:

            def send(index: int, request: EventsRequest) -> None:
                self.stats.requests += 1
                future = pool.submit(self._fetch, request)
                in_flight[future] = index
                future.add_done_callback(answered.put)

            def start_next() -> None:
                if waiting:
                    index = waiting.popleft()
                    send(index, chains[index].first_request())

            try:
                while waiting and len(in_flight) < self.max_concurrency:
                    start_next()
                while in_flight:
                    future = answered.get()
                    index = in_flight.pop(future)
                    chain = chains[index]
                    try:
                        page = future.result()
                    except CursorRejectedError as error:
                        # Everything newer than the chain's watermark is read: ask again from there.
                        self.log.warning("%s; reading slice %s again from its last event", error, chain.slice)
                        self.stats.reanchors += 1
                        send(index, chain.cursor_rejected(str(error)))
                        continue
                    step = chain.accept(page.events, page.previous)
                    self.stats.repeated += step.repeated
                    self.stats.passed += step.passed
                    if step.released:
                        self.stats.records += len(step.released)
                        yield step.released
                    if step.next_request is not None:
                        send(index, step.next_request)
                    else:
                        start_next()
                    if time.monotonic() >= next_progress:
                        next_progress = time.monotonic() + self.progress_interval
                        finished = sum(chain.done for chain in chains)
                        self.log.info(
                            "Read %d events in %d requests; %d of %d slices done",
                            self.stats.records,
                            self.stats.requests,
                            finished,
                            len(chains),
                        )
            finally:
                for future in in_flight:
                    future.cancel()
