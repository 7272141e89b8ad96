"""
Read one window of unified audit events: disjoint time slices, their cursor chains fetched concurrently.

The I/O driver of :mod:`airflow_provider_orchestrator_audit.paging.event_slices`, on the loop of
:mod:`~airflow_provider_orchestrator_audit.export.sliced_reader`: it calls a page-fetching function (normally
the hook's ``get_audit_events``, whose client is thread-safe and retries 429/5xx itself), feeds each answer to
its slice's chain, and asks a chain whose cursor the server refused again from its last event. Each event is
released exactly once.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

from airflow_provider_orchestrator_audit.client.events import CursorRejectedError
from airflow_provider_orchestrator_audit.event_models import AuditEvent, AuditEventsPage, EventLine, EventLinesPage
from airflow_provider_orchestrator_audit.export.sliced_reader import SLICES_PER_WORKER, SlicedWindowReader
from airflow_provider_orchestrator_audit.paging.event_slices import EventsRequest, SliceChain, plan_slices

__all__ = ["SLICES_PER_WORKER", "EventFetcher", "EventReadStats", "EventWindowReader"]

#: An event as a page gives it: the export's :class:`EventLine`, or a whole :class:`AuditEvent`.
Event = AuditEvent | EventLine
#: ``fetch(request)`` returns the page a first query or a cursor asks for.
EventFetcher = Callable[[EventsRequest], AuditEventsPage | EventLinesPage]


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


class EventWindowReader(SlicedWindowReader[SliceChain[Event], EventsRequest, AuditEventsPage | EventLinesPage, Event]):
    """
    Yields the events of ``window`` in batches (one per page, newest first inside it), each exactly once.

    :param fetch: the page source, ``fetch(EventsRequest) -> EventLinesPage`` (or ``AuditEventsPage``).
    :param window: the window ``[start, end)``.
    :param max_concurrency: chains (requests) in flight at once.
    :param slices: how many time slices to cut the window into; default ``SLICES_PER_WORKER x max_concurrency``.
    :param progress_interval: seconds between progress lines in the log.
    """

    thread_name_prefix = "audit-events"
    records_name = "events"
    stats: EventReadStats

    def _new_stats(self) -> EventReadStats:
        return EventReadStats()

    def _chains(self) -> list[SliceChain[Event]]:
        return [SliceChain[Event](piece) for piece in plan_slices(self.window, self.slice_count)]

    def _answer(
        self, chain: SliceChain[Event], answer: Future[AuditEventsPage | EventLinesPage]
    ) -> tuple[list[Event], EventsRequest | None]:
        try:
            page = answer.result()
        except CursorRejectedError as error:
            # Everything newer than the chain's watermark is read: ask again from there.
            self.log.warning("%s; reading slice %s again from its last event", error, chain.slice)
            self.stats.reanchors += 1
            return [], chain.cursor_rejected(str(error))
        step = chain.accept(page.events, page.previous)
        self.stats.repeated += step.repeated
        self.stats.passed += step.passed
        return step.released, step.next_request
