"""
The loop the time-sliced readers share: a window cut into slices, each slice read through its own chain of
requests (one in flight per chain), the chains fetched concurrently on a thread pool.

Up to ``max_concurrency`` chains are read at once; a finished chain hands its worker to the next slice. Pages
are released in the order they arrive, so memory stays at ``max_concurrency`` pages whatever the window. The
decisions (what to ask next, what a page releases) are the chains' own, in the pure paging core; a reader
says how an answer feeds its chain (:meth:`SlicedWindowReader._answer`) and nothing else.
"""

from __future__ import annotations

import logging
import queue
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from airflow_provider_orchestrator_audit.paging.window import AuditWindow
from airflow_provider_orchestrator_audit.validation import checked_int

__all__ = ["SLICES_PER_WORKER", "ReadStats", "SlicedWindowReader"]

log = logging.getLogger(__name__)

#: Slices per concurrent chain: more, shorter slices even out windows whose records bunch up in time.
SLICES_PER_WORKER = 4

Request = TypeVar("Request")
Page = TypeVar("Page")
Record = TypeVar("Record")
Request_co = TypeVar("Request_co", covariant=True)


class ReaderLog(Protocol):
    """What a reader logs through: a :class:`logging.Logger`, an adapter, or a task's logger."""

    def info(self, message: Any, /, *args: Any) -> Any: ...

    def warning(self, message: Any, /, *args: Any) -> Any: ...


class ReadStats(Protocol):
    """The counts every reader keeps (each reader's stats add their own)."""

    slices: int
    requests: int
    records: int
    seconds: float


class Chain(Protocol[Request_co]):
    """A slice's chain of requests, as the loop drives it."""

    @property
    def done(self) -> bool: ...

    def first_request(self) -> Request_co: ...


ChainT = TypeVar("ChainT", bound=Chain[Any])


class SlicedWindowReader(ABC, Generic[ChainT, Request, Page, Record]):
    """
    Yields the records of ``window`` in batches (one per page), each exactly once.

    :param fetch: the page source, ``fetch(request) -> page`` (called on the pool's threads).
    :param window: the window ``[start, end)``.
    :param max_concurrency: chains (requests) in flight at once.
    :param slices: how many time slices to cut the window into; default ``SLICES_PER_WORKER x max_concurrency``.
    :param progress_interval: seconds between progress lines in the log.
    """

    #: The names of the pool's threads start with this.
    thread_name_prefix: ClassVar[str]
    #: What the progress line calls the records, e.g. ``"events"``.
    records_name: ClassVar[str]
    stats: ReadStats

    def __init__(
        self,
        fetch: Callable[[Request], Page],
        window: AuditWindow,
        *,
        max_concurrency: int = 8,
        slices: int | None = None,
        progress_interval: float = 30.0,
        logger: ReaderLog | None = None,
    ) -> None:
        checked_int("max_concurrency", max_concurrency)
        if slices is not None:
            checked_int("slices", slices)
        self._fetch = fetch
        self.window = window
        self.max_concurrency = max_concurrency
        self.slice_count = slices or SLICES_PER_WORKER * max_concurrency
        self.progress_interval = progress_interval
        self.log: ReaderLog = logger or log
        self.stats = self._new_stats()

    @abstractmethod
    def _new_stats(self) -> ReadStats:
        """The reader's counts, all zero."""

    @abstractmethod
    def _chains(self) -> list[ChainT]:
        """One chain per slice of the window."""

    @abstractmethod
    def _answer(self, chain: ChainT, answer: Future[Page]) -> tuple[list[Record], Request | None]:
        """
        Feed a request's answer to its chain: the records it releases, and the chain's next request (None: the
        chain is done). Raises what ends the read.
        """

    def __iter__(self) -> Iterator[list[Record]]:
        started = time.monotonic()
        try:
            yield from self._read(started)
        finally:
            self.stats.seconds = time.monotonic() - started

    def _read(self, started: float) -> Iterator[list[Record]]:
        chains = self._chains()
        self.stats.slices = len(chains)
        waiting = deque(range(len(chains)))
        in_flight: dict[Future[Page], int] = {}
        # Each request, once answered, puts itself here: one blocking get per answer, where waiting on the
        # set of requests in flight (concurrent.futures.wait) hooks into and out of every one of them each time.
        answered: queue.SimpleQueue[Future[Page]] = queue.SimpleQueue()
        next_progress = started + self.progress_interval
        with ThreadPoolExecutor(max_workers=self.max_concurrency, thread_name_prefix=self.thread_name_prefix) as pool:

            def send(index: int, request: Request) -> None:
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
                    released, next_request = self._answer(chains[index], future)
                    if released:
                        self.stats.records += len(released)
                        yield released
                    if next_request is not None:
                        send(index, next_request)
                    else:
                        start_next()
                    if time.monotonic() >= next_progress:
                        next_progress = time.monotonic() + self.progress_interval
                        self.log.info(
                            "Read %d %s in %d requests; %d of %d slices done",
                            self.stats.records,
                            self.records_name,
                            self.stats.requests,
                            sum(chain.done for chain in chains),
                            len(chains),
                        )
            finally:
                for future in in_flight:
                    future.cancel()
