"""
Read one window of Orchestrator's audit log: disjoint time slices, each paged by ``Id``, fetched concurrently.

The I/O driver of :mod:`airflow_provider_orchestrator_audit.paging.odata_keyset`: it owns a thread pool and
calls a page-fetching function (normally the hook's ``get_orchestrator_audit_logs``, whose client is
thread-safe and retries 429/5xx itself). Up to ``max_concurrency`` slices are read at once, one request in
flight each; a finished slice hands its worker to the next one. Pages are released as they arrive, so
memory stays at ``max_concurrency`` pages whatever the window.
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

from airflow_provider_orchestrator_audit.orchestrator_models import OrchestratorAuditEntry, OrchestratorAuditPage
from airflow_provider_orchestrator_audit.paging.event_slices import plan_slices
from airflow_provider_orchestrator_audit.paging.odata_keyset import KeysetChain, KeysetRequest
from airflow_provider_orchestrator_audit.paging.window import AuditWindow
from airflow_provider_orchestrator_audit.validation import checked_int

__all__ = ["SLICES_PER_WORKER", "OrchestratorFetcher", "OrchestratorReadStats", "OrchestratorWindowReader"]

log = logging.getLogger(__name__)

#: ``fetch(request)`` returns the page a keyset request asks for.
OrchestratorFetcher = Callable[[KeysetRequest], OrchestratorAuditPage]
#: Slices per concurrent chain: more, shorter slices even out windows whose entries bunch up in time.
SLICES_PER_WORKER = 4


class _Log(Protocol):
    def info(self, message: Any, /, *args: Any) -> Any: ...


@dataclass
class OrchestratorReadStats:
    """What reading one window cost and saw."""

    slices: int = 0
    requests: int = 0
    #: Entries the server sent that lie outside their slice (the query's one-second margins).
    outside: int = 0
    records: int = 0
    seconds: float = 0.0
    #: Kept for the operator's result; the slices' counts overlap at their margins, so None here.
    total_count: int | None = None


class OrchestratorWindowReader:
    """
    Yields the entries of ``window`` in batches (one per page, ``Id`` order inside it), each exactly once.

    :param fetch: the page source, ``fetch(KeysetRequest) -> OrchestratorAuditPage``.
    :param window: the window ``[start, end)``.
    :param max_concurrency: slices (requests) in flight at once.
    :param slices: how many time slices to cut the window into; default ``SLICES_PER_WORKER x max_concurrency``.
    :param progress_interval: seconds between progress lines in the log.
    """

    def __init__(
        self,
        fetch: OrchestratorFetcher,
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
        self.stats = OrchestratorReadStats()

    def __iter__(self) -> Iterator[list[OrchestratorAuditEntry]]:
        started = time.monotonic()
        try:
            yield from self._read(started)
        finally:
            self.stats.seconds = time.monotonic() - started

    def _read(self, started: float) -> Iterator[list[OrchestratorAuditEntry]]:
        chains = [KeysetChain[OrchestratorAuditEntry](piece) for piece in plan_slices(self.window, self.slice_count)]
        self.stats.slices = len(chains)
        waiting = deque(range(len(chains)))
        in_flight: dict[Future[OrchestratorAuditPage], int] = {}
        # Each request, once answered, puts itself here: one blocking get per answer, where waiting on the
        # set of requests in flight (concurrent.futures.wait) hooks into and out of every one of them each time.
        answered: queue.SimpleQueue[Future[OrchestratorAuditPage]] = queue.SimpleQueue()
        next_progress = started + self.progress_interval
        with ThreadPoolExecutor(max_workers=self.max_concurrency, thread_name_prefix="orchestrator-audit") as pool:

            def send(index: int, request: KeysetRequest) -> None:
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
                    page = future.result()
                    outside = chain.outside
                    step = chain.accept(page.entries, page.count)
                    self.stats.outside += chain.outside - outside
                    if step.released:
                        self.stats.records += len(step.released)
                        yield step.released
                    if step.next_request is not None:
                        send(index, step.next_request)
                    else:
                        start_next()
                    if time.monotonic() >= next_progress:
                        next_progress = time.monotonic() + self.progress_interval
                        self.log.info(
                            "Read %d entries in %d requests; %d of %d slices done",
                            self.stats.records,
                            self.stats.requests,
                            sum(chain.done for chain in chains),
                            len(chains),
                        )
            finally:
                for future in in_flight:
                    future.cancel()
