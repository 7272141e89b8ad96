"""
Turn newest-first pages, fetched at shifting offsets and in any order, into a window's entries,
each exactly once.

The invariant: every window entry with ``createdOn >= upper`` has been emitted, none below it.
A page may advance ``upper`` only if it is *anchored*: it starts at or before the first entry below
``upper``. Then, inside that page's single snapshot, every tie group (entries sharing a
``createdOn``) strictly between ``upper`` and the page's oldest ``createdOn`` is complete, whatever
order the server listed its members in; the oldest group may continue on the next page, so it waits.
Emitting whole groups by ``createdOn`` range means no entry can be emitted twice or skipped, with no
ids and no content hashing.

A page is anchored when any of these holds:

- it starts at offset 0;
- it holds an entry at or after ``upper`` (content evidence, independent of timing);
- it was requested after the page that set ``anchor_offset`` was answered, and starts at or before
  ``anchor_offset`` plus the growth of ``totalCount`` between the two answers: positions only grow
  while entries arrive (newest first), by at least that growth, so the first entry below ``upper``
  can only have moved that far down or further.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from airflow_provider_orchestrator_audit.paging.window import AuditWindow
from airflow_provider_orchestrator_audit.timestamps import Ticks, format_ticks

__all__ = ["FetchedPage", "PagingError", "StitchResult", "Verdict", "WindowStitcher"]


class HasTicks(Protocol):
    """Anything with a full-precision ``createdOn``."""

    @property
    def created_on_ticks(self) -> Ticks: ...


E = TypeVar("E", bound=HasTicks)


class PagingError(RuntimeError):
    """The server's listing cannot be paged exactly (e.g. it is not sorted, or a tie group will not fit)."""


@dataclass(frozen=True)
class FetchedPage(Generic[E]):
    """
    One answer of ``GET auditlogs?sortBy=createdOn&sortOrder=desc&skip=offset&top=requested``.

    :param sent_at: a monotonic clock reading taken before the request was sent (first attempt).
    :param received_at: a monotonic clock reading taken after the answer arrived.
    """

    offset: int
    requested: int
    entries: Sequence[E]
    total_count: int
    sent_at: int
    received_at: int

    @property
    def reaches_end(self) -> bool:
        """True when this page holds the oldest entry of its listing."""
        return self.offset + len(self.entries) >= self.total_count


class Verdict(enum.Enum):
    """What the stitcher made of a page."""

    ACCEPTED = "accepted"  #: it advanced the window
    STALE = "stale"  #: everything in it was emitted already (entries arrived and pushed it up)
    GAP = "gap"  #: it may start after unseen entries: fetch from ``anchor_offset`` first
    TOO_SMALL = "too_small"  #: one tie group fills it: fetch from ``anchor_offset`` with a larger ``top``


@dataclass
class StitchResult(Generic[E]):
    """The verdict on one page and the entries it releases, newest first."""

    verdict: Verdict
    entries: list[E] = field(default_factory=list)


class WindowStitcher(Generic[E]):
    """
    Accepts pages of a newest-first listing and releases the window's entries exactly once.

    :param window: the window ``[start, end)``.
    :param anchor_offset: a position known to be at or before the window's first entry, e.g. the
        result of an :class:`~.edge_search.EdgeSearch` for ``window.end``.
    :param anchor_seen_at: when the evidence for ``anchor_offset`` was received (monotonic clock).
    :param anchor_total: ``totalCount`` in that same answer.
    """

    def __init__(
        self, window: AuditWindow, anchor_offset: int = 0, anchor_seen_at: int = 0, anchor_total: int | None = None
    ) -> None:
        self.window = window
        self.upper: Ticks = window.end
        self.anchor_offset = anchor_offset
        self.anchor_seen_at = anchor_seen_at
        #: ``totalCount`` when the anchor was seen (None: unknown, no growth credited)
        self.anchor_total = anchor_total
        self.done = window.is_empty
        self.emitted = 0
        #: True when the listing ended before an entry older than the window start was seen.
        self.ended_before_start = False
        self.oldest_seen: Ticks | None = None

    def is_anchored(self, page: FetchedPage[E]) -> bool:
        """Whether ``page`` starts at or before the first entry not yet accounted for."""
        if page.offset == 0:
            return True
        if page.entries and page.entries[0].created_on_ticks >= self.upper:
            return True
        return page.offset <= self.next_offset(page.total_count) and page.sent_at > self.anchor_seen_at

    def next_offset(self, total_count: int | None = None) -> int:
        """
        Where to request next so as to start at or before the first entry not yet accounted for.

        :param total_count: the latest ``totalCount`` known; its growth since the anchor was seen is a
            lower bound of the entries that arrived since, and so of how far everything moved down.
        """
        if total_count is None or self.anchor_total is None:
            return self.anchor_offset
        return self.anchor_offset + max(0, total_count - self.anchor_total)

    def accept(self, page: FetchedPage[E]) -> StitchResult[E]:
        """
        Judge ``page`` and release what it completes.

        :raises PagingError: when the page is not sorted newest first.
        """
        if self.done:
            return StitchResult(Verdict.STALE)
        entries = page.entries
        _check_sorted(page)
        if not self.is_anchored(page):
            return StitchResult(Verdict.GAP)
        upper = self.upper
        first_new = _first_below(entries, upper)
        if entries:
            oldest = entries[-1].created_on_ticks
            self.oldest_seen = oldest if self.oldest_seen is None else min(self.oldest_seen, oldest)
        if first_new == len(entries):
            self._move_anchor(page, page.offset + len(entries))
            if page.reaches_end:
                self._finish(ended_early=True)
                return StitchResult(Verdict.ACCEPTED)
            return StitchResult(Verdict.STALE)
        start = self.window.start
        reaches_start = entries[-1].created_on_ticks < start
        if reaches_start or page.reaches_end:
            released = [entry for entry in entries[first_new:] if entry.created_on_ticks >= start]
            self._finish(ended_early=not reaches_start)
            self.emitted += len(released)
            return StitchResult(Verdict.ACCEPTED, released)
        oldest = entries[-1].created_on_ticks
        oldest_group_start = _first_at_or_below(entries, oldest, first_new)
        if oldest_group_start == first_new:
            # Only the (possibly incomplete) oldest group is new: a longer page must take it whole.
            self._move_anchor(page, page.offset + first_new)
            return StitchResult(Verdict.TOO_SMALL)
        released = list(entries[first_new:oldest_group_start])
        self.upper = oldest + 1
        self._move_anchor(page, page.offset + oldest_group_start)
        self.emitted += len(released)
        return StitchResult(Verdict.ACCEPTED, released)

    def _move_anchor(self, page: FetchedPage[E], offset: int) -> None:
        self.anchor_offset = offset
        self.anchor_seen_at = page.received_at
        self.anchor_total = page.total_count

    def _finish(self, *, ended_early: bool) -> None:
        self.done = True
        self.ended_before_start = ended_early

    def describe_tie_overflow(self, page: FetchedPage[E]) -> str:
        """The error text for a tie group that does not fit in the largest page the server gives."""
        ticks = page.entries[-1].created_on_ticks if page.entries else self.upper
        size = len(page.entries)
        return (
            f"at least {size} entries share createdOn {format_ticks(ticks)} and fill a whole page of {size}, the "
            "most the server returns per request, so that group cannot be read in one consistent page (entries "
            "with one createdOn have no stable order across requests); raise page_size if the server allows it"
        )


def _check_sorted(page: FetchedPage[HasTicks]) -> None:
    previous: Ticks | None = None
    for index, entry in enumerate(page.entries):
        ticks = entry.created_on_ticks
        if previous is not None and ticks > previous:
            raise PagingError(
                f"the page at skip={page.offset} is not sorted by createdOn descending (entry {index} is newer "
                "than the one before it); the export needs sortBy=createdOn&sortOrder=desc to be honoured"
            )
        previous = ticks


def _first_below(entries: Sequence[HasTicks], ticks: Ticks) -> int:
    """Index of the first entry with ``createdOn < ticks`` (entries are newest first)."""
    low, high = 0, len(entries)
    while low < high:
        middle = (low + high) // 2
        if entries[middle].created_on_ticks >= ticks:
            low = middle + 1
        else:
            high = middle
    return low


def _first_at_or_below(entries: Sequence[HasTicks], ticks: Ticks, low: int) -> int:
    """Index of the first entry, from ``low`` on, with ``createdOn <= ticks``."""
    return max(low, _first_below(entries, ticks + 1))
