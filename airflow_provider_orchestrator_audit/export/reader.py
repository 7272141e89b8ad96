"""
Read one window of the audit log: locate it, fetch its pages concurrently, release each entry once.

This is the I/O driver of :mod:`airflow_provider_orchestrator_audit.paging`: it owns a thread pool
and calls a page-fetching function (normally :meth:`OrchestratorAuditHook.get_audit_logs`, whose
client is thread-safe and retries 429/5xx itself). All decisions come from the pure core.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_orchestrator_audit.models import AuditLogEntry, AuditLogPage
from airflow_provider_orchestrator_audit.paging import (
    AuditWindow,
    EdgeSearch,
    FetchedPage,
    PagingError,
    Probe,
    Verdict,
    WindowStitcher,
    default_overlap,
)
from airflow_provider_orchestrator_audit.timestamps import Ticks, format_ticks
from airflow_provider_orchestrator_audit.validation import checked_int

__all__ = ["DEFAULT_PAGE_SIZE", "PageFetcher", "ReadStats", "WindowReader"]

log = logging.getLogger(__name__)

#: ``fetch(skip, top)`` returns one newest-first page.
PageFetcher = Callable[[int, int], AuditLogPage]

#: Entries asked for per page unless told otherwise; a server that gives fewer sets the size instead.
DEFAULT_PAGE_SIZE = 1000
#: The smallest page that can make progress (see WindowReader.__init__).
_MIN_PAGE = 3
#: The largest page asked for when a tie group must be read whole.
_MAX_WIDENED_PAGE = 100_000
#: Reads of a tie group that a capped page cannot hold, before giving up.
_MAX_CAPPED_TIE_TRIES = 3
#: Repairs are rare (drift larger than the overlap); thousands mean the listing misbehaves.
_MAX_REPAIRS = 10_000
#: Pages that only held already-passed entries; a steady stream means the reader cannot catch up.
_MAX_STALE_PAGES = 10_000


@dataclass
class ReadStats:
    """What reading one window cost and saw."""

    probe_requests: int = 0
    page_requests: int = 0
    repair_requests: int = 0
    stale_pages: int = 0
    #: probes of each edge's search; the upper one's run before any page is read, the lower one's beside pages
    upper_probes: int = 0
    lower_probes: int = 0
    records: int = 0
    total_count: int = 0
    page_size: int = 0
    ended_before_start: bool = False
    oldest_available: Ticks | None = None
    seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def requests(self) -> int:
        """All requests to the audit endpoint (token requests not included)."""
        return self.probe_requests + self.page_requests + self.repair_requests


class WindowReader:
    """
    Yields the entries of ``window``, newest first, in batches, each entry exactly once.

    :param fetch: the page source, ``fetch(skip, top) -> AuditLogPage`` sorted by createdOn descending.
    :param window: the window ``[start, end)``.
    :param page_size: entries per request; None asks for :data:`DEFAULT_PAGE_SIZE` and adopts a
        smaller size if the server caps pages.
    :param max_concurrency: pages fetched at the same time.
    :param progress_interval: seconds between progress lines in the log.
    """

    def __init__(
        self,
        fetch: PageFetcher,
        window: AuditWindow,
        *,
        page_size: int | None = None,
        max_concurrency: int = 8,
        progress_interval: float = 30.0,
        logger: Any = None,
    ) -> None:
        if page_size is not None:
            checked_int("page_size", page_size)
        checked_int("max_concurrency", max_concurrency)
        self._fetch = fetch
        self.window = window
        # At least 3: a page repeats one entry of the page before it (the proof that they meet) and
        # holds back its oldest group for the next page, so only a third entry can be new and complete.
        self.page_size = max(_MIN_PAGE, page_size or DEFAULT_PAGE_SIZE)
        self._page_size_fixed = page_size is not None
        self.max_concurrency = max_concurrency
        self.progress_interval = progress_interval
        self.log = logger or log
        self.stats = ReadStats()
        self._expected_records: int | None = None
        #: capped reads of the tie group below ``upper`` (the key), counted across pages: a page that
        #: entries recorded in front of the group made stale must not start the count again, or a
        #: group that never fits is retried for ever
        self._capped_tries: tuple[Ticks, int] | None = None

    def __iter__(self) -> Iterator[list[AuditLogEntry]]:
        started = time.monotonic()
        try:
            yield from self._read()
        finally:
            self.stats.seconds = time.monotonic() - started

    def _read(self) -> Iterator[list[AuditLogEntry]]:
        window = self.window
        if window.is_empty:
            return
        with ThreadPoolExecutor(max_workers=self.max_concurrency, thread_name_prefix="audit-page") as pool:
            # Both edges at once: each search is sequential, but they are independent. Pages need only the
            # upper edge, so they are read while the lower search may still be running.
            lower_future = pool.submit(self._search, window.start)
            seen: list[tuple[int, Ticks]] = []
            upper = self._search(window.end, seen)
            self.stats.upper_probes = upper.probes
            # Read first where the search puts the last entry at or after window_end (an estimate);
            # repairs start where a probe actually saw one.
            stitcher: WindowStitcher[AuditLogEntry] = WindowStitcher(
                window,
                anchor_offset=upper.newer_end,
                proven_offset=upper.proven_newer_end,
                anchor_total=upper.newer_total,
                proven_seen_at=upper.proven_newer_at,
            )
            plan = _Plan(stitcher.anchor_offset, self.page_size, self._expected_stop(upper, seen))
            lower: EdgeSearch | None = None
            first = True
            in_flight: deque[Future[FetchedPage[AuditLogEntry]]] = deque()
            progress = _Progress(self, time.monotonic())
            try:
                while not stitcher.done:
                    if lower is None and lower_future.done():
                        lower = self._located(lower_future.result(), upper, plan)
                    # Half a round queued behind the busy workers keeps them fed while the stitcher catches
                    # up; pages held are bounded by 1.5 x max_concurrency whatever the window. Until the
                    # lower edge is known the plan has no end, so no more than a round is asked for.
                    room = self.max_concurrency + (self.max_concurrency + 1) // 2 if lower else self.max_concurrency
                    while len(in_flight) < room and (offset := plan.next()) is not None:
                        in_flight.append(pool.submit(self._get, offset, self.page_size, "page"))
                    if in_flight:
                        page = in_flight.popleft().result()
                    else:  # the plan ran out (entries arrived meanwhile): carry on one page at a time
                        page = self._get(stitcher.next_offset(self.stats.total_count), self.page_size, "page")
                    replan = first and self._adopt_page_size(page)
                    first = False
                    if replan:
                        # The pages asked for at the larger size would leave gaps: drop them, plan again.
                        for future in in_flight:
                            future.cancel()
                        in_flight.clear()
                    yield from self._consume(page, stitcher)
                    if lower is None:
                        plan.stop = self._likely_stop(page, plan.stop)
                    if replan:
                        plan = _Plan(stitcher.anchor_offset, self.page_size, plan.stop)
                    progress.maybe_log()
            finally:
                for future in in_flight:
                    future.cancel()
            if lower is None:  # a window read before its lower edge was known; a failed search still fails
                self._located(lower_future.result(), upper, plan)
        self.stats.ended_before_start = stitcher.ended_before_start
        self.stats.oldest_available = stitcher.oldest_seen
        if stitcher.ended_before_start:
            self.log.warning(
                "The audit log ends before window_start %s: entries older than %s are no longer available "
                "(removed by retention?); the export holds every entry that still exists in the window",
                format_ticks(window.start),
                format_ticks(stitcher.oldest_seen) if stitcher.oldest_seen is not None else "any",
            )

    def _located(self, lower: EdgeSearch, upper: EdgeSearch, plan: _Plan) -> EdgeSearch:
        """Take the lower edge into account: the plan ends there, and progress lines know the window's size."""
        self.stats.lower_probes = lower.probes
        self._expected_records = max(0, lower.result - upper.result)
        plan.stop = lower.result + 1
        self.log.info(
            "Window %s is at positions %d..%d of %d (about %d entries), found with %d probes",
            self.window,
            upper.result,
            lower.result,
            lower.total_count or 0,
            self._expected_records,
            upper.probes + lower.probes,
        )
        return lower

    def _expected_stop(self, upper: EdgeSearch, seen: list[tuple[int, Ticks]]) -> int | None:
        """
        Before any page: where the window probably ends, from the rate of entries between the upper search's
        farthest probes, with a quarter to spare (see :meth:`_likely_stop`); None without two probes
        that give a rate.
        """
        if len(seen) < 2:
            return None
        (newest_at, newest), (oldest_at, oldest) = min(seen), max(seen)
        if oldest_at <= newest_at or newest <= oldest:
            return None
        expected = (self.window.end - self.window.start) * (oldest_at - newest_at) // (newest - oldest)
        return upper.result + expected + expected // 4 + 1

    def _likely_stop(self, page: FetchedPage[AuditLogEntry], stop: int | None) -> int | None:
        """
        Until the lower edge is located: where the window probably ends, so that a slow lower search (a retried
        probe, say) does not send pages far past it. A page that reaches before window_start ends it; otherwise
        the rate of entries on the page read last extrapolates to window_start, with a quarter to spare. Too
        short an estimate only costs time: the reader then goes on one page at a time until the search ends.
        """
        entries = page.entries
        if len(entries) < 2:
            return stop
        newest, oldest = entries[0].created_on_ticks, entries[-1].created_on_ticks
        end = page.offset + len(entries)
        if oldest < self.window.start:
            return end
        if newest <= oldest:  # one createdOn: no rate to go by
            return stop
        remaining = (oldest - self.window.start) * (len(entries) - 1) // (newest - oldest)
        return end + remaining + remaining // 4

    def _adopt_page_size(self, first: FetchedPage[AuditLogEntry]) -> bool:
        """
        Whether the first page shows that the server gives fewer entries per page than asked for, in which
        case that becomes the page size (unless the size was set explicitly).
        """
        adopt = not self._page_size_fixed and not first.reaches_end and len(first.entries) < self.page_size
        if adopt:
            self.page_size = max(_MIN_PAGE, len(first.entries))
        self.stats.page_size = self.page_size
        return adopt

    def _consume(
        self, page: FetchedPage[AuditLogEntry], stitcher: WindowStitcher[AuditLogEntry]
    ) -> Iterator[list[AuditLogEntry]]:
        """Stitch ``page``, first fetching what it depends on if it cannot be placed yet."""
        pending = [page]
        while pending and not stitcher.done:
            current = pending[-1]
            if len(current.entries) < min(_MIN_PAGE, current.requested) and not current.reaches_end:
                raise PagingError(
                    f"the server answered skip={current.offset}&top={current.requested} with "
                    f"{len(current.entries)} of {current.total_count} entries: pages of at least {_MIN_PAGE} are "
                    "needed (each repeats an entry of the page before, the only proof without ids that no "
                    "entry was skipped, and holds back its oldest createdOn group); check the server's page limit"
                )
            result = stitcher.accept(current)
            if result.verdict is Verdict.ACCEPTED:
                pending.pop()
                if result.entries:
                    self.stats.records += len(result.entries)
                    yield result.entries
            elif result.verdict is Verdict.STALE:
                pending.pop()
                self.stats.stale_pages += 1
                if self.stats.stale_pages > _MAX_STALE_PAGES:
                    raise PagingError(
                        f"{self.stats.stale_pages} pages held only entries newer than the window: entries "
                        f"arrive faster than pages of {self.page_size} can be read; raise page_size"
                    )
            elif result.verdict is Verdict.GAP:
                # The page does not reach back to what was read before (entries recorded in front of it,
                # or an estimate that went too far): read from a proven position, then judge it again.
                pending.append(self._get(stitcher.repair_offset(current), self.page_size, "repair"))
            else:  # TOO_SMALL: one tie group fills the page; read it whole from where it starts
                capped = len(current.entries) < current.requested and not current.reaches_end
                if capped:
                    # The server gives no more per page. Entries arriving in front of the group can push
                    # part of it out of a page that would otherwise hold it: retry a few times first.
                    upper, tries = self._capped_tries or (stitcher.upper, 0)
                    tries = tries + 1 if upper == stitcher.upper else 1
                    self._capped_tries = (stitcher.upper, tries)
                    if tries > _MAX_CAPPED_TIE_TRIES:
                        raise PagingError(stitcher.describe_tie_overflow(current))
                    top = current.requested
                else:
                    top = current.requested * 2
                    if top > _MAX_WIDENED_PAGE:
                        raise PagingError(stitcher.describe_tie_overflow(current))
                pending.pop()
                pending.append(self._get(stitcher.anchor_offset, top, "repair"))
            repairs = self.stats.repair_requests
            if repairs > _MAX_REPAIRS:
                raise PagingError(
                    f"gave up after {repairs} repair requests: the listing keeps shifting in ways the export "
                    "cannot follow (entries removed from the middle?); retry the task later"
                )

    def _get(self, offset: int, top: int, kind: str) -> FetchedPage[AuditLogEntry]:
        sent_at = time.monotonic_ns()
        page = self._fetch(offset, top)
        received_at = time.monotonic_ns()
        with self.stats._lock:
            if kind == "page":
                self.stats.page_requests += 1
            elif kind == "repair":
                self.stats.repair_requests += 1
            else:
                self.stats.probe_requests += 1
            self.stats.total_count = page.total_count
        return FetchedPage(offset, top, page.results, page.total_count, sent_at, received_at)

    def _search(self, bound: Ticks, seen: list[tuple[int, Ticks]] | None = None) -> EdgeSearch:
        """Locate ``bound``; ``seen`` collects each probe's position and ticks."""
        search = EdgeSearch(bound, tolerance=max(1, self.page_size // 20))
        while (position := search.next_position()) is not None:
            page = self._get(position, 1, "probe")
            ticks = page.entries[0].created_on_ticks if page.entries else None
            if seen is not None and ticks is not None:
                seen.append((position, ticks))
            search.observe(Probe(position, ticks, page.total_count, page.received_at))
        return search


class _Plan:
    """
    The offsets :func:`plan_offsets` gives, one at a time, while ``stop`` may still be unknown (None).

    :param first: the first position to read.
    :param page_size: entries per page.
    :param stop: the position after the last one expected to be needed, once known.
    """

    def __init__(self, first: int, page_size: int, stop: int | None = None) -> None:
        self._first = self._next = first
        self._step = page_size - default_overlap(page_size)
        self.stop = stop

    def next(self) -> int | None:
        """The next offset to read, or None when the plan reached ``stop``."""
        offset = self._next
        if self.stop is not None and offset >= max(self.stop, self._first + 1):
            return None
        self._next += self._step
        return offset


class _Progress:
    """Progress lines for long windows: pages, records, rate and time left."""

    def __init__(self, reader: WindowReader, started: float) -> None:
        self.reader = reader
        self.started = started
        self.next_at = started + reader.progress_interval

    def maybe_log(self) -> None:
        now = time.monotonic()
        if now < self.next_at:
            return
        self.next_at = now + self.reader.progress_interval
        stats = self.reader.stats
        elapsed = now - self.started
        rate = stats.records / elapsed if elapsed > 0 else 0.0
        expected = self.reader._expected_records or 0
        remaining = max(0, expected - stats.records)
        eta = f"{remaining / rate:.0f}s" if rate > 0 else "unknown"
        self.reader.log.info(
            "Read %d of about %d entries in %d pages (%d requests): %.0f entries/s, about %s left",
            stats.records,
            expected,
            stats.page_requests + stats.repair_requests,
            stats.requests,
            rate,
            eta,
        )
