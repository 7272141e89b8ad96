"""
Turn newest-first pages, fetched at shifting offsets and in any order, into a window's entries,
each exactly once.

The invariant: every window entry with ``createdOn >= upper`` has been emitted, none below it.
A page may advance ``upper`` only if it is *anchored*: it starts at offset 0, or its first entry has
``createdOn >= upper``. Then, inside that page's single snapshot, every tie group (entries sharing a
``createdOn``) strictly between ``upper`` and the page's oldest ``createdOn`` is complete, whatever
order the server listed its members in and wherever entries were inserted or removed before the
page was answered; the oldest group may continue on the next page, so it waits. Emitting whole
groups by ``createdOn`` range means no entry can be emitted twice or skipped, with no ids and no
content hashing.

Only the content of a page anchors it. Offsets and ``totalCount`` are estimates: an entry recorded
late (its ``createdOn`` below the newest entries) grows ``totalCount`` without moving anything newer
than itself, so growth says nothing about how far a given entry moved. They choose where to read;
they never prove that a page meets the one before it.

Where to read again when a page does not meet: a position at which an accepted page held an entry
at or after ``upper`` (:attr:`WindowStitcher.proven_offset`). Inserts anywhere and retention at the
old end can only keep such an entry there or put a newer one in its place (the count of entries at
or after ``upper`` never shrinks), so a page read there later is anchored. Should it not be (entries
removed above it), the reader steps back from there, doubling the step, down to offset 0.
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
    GAP = "gap"  #: it may start after unseen entries: fetch from ``repair_offset(page)`` first
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
    :param anchor_offset: where to read first: the last position believed to hold an entry at or after
        ``window.end``, e.g. from an :class:`~.edge_search.EdgeSearch` (an estimate, checked by content).
    :param proven_offset: a position an answer showed holding such an entry, or 0 (where repairs start).
    :param anchor_total: ``totalCount`` when ``anchor_offset`` was estimated.
    :param proven_seen_at: when the answer behind ``proven_offset`` arrived (monotonic clock).
    """

    def __init__(
        self,
        window: AuditWindow,
        anchor_offset: int = 0,
        proven_offset: int | None = None,
        anchor_total: int | None = None,
        proven_seen_at: int = 0,
    ) -> None:
        self.window = window
        self.upper: Ticks = window.end
        #: where to read next: the last position known to hold an entry at or after ``upper`` (an
        #: estimate when it came from an edge search that credited ``totalCount`` growth)
        self.anchor_offset = max(0, anchor_offset)
        #: a position where an answered page held an entry at or after ``upper``, or 0: a page read
        #: there is anchored (see the module docstring); where repairs start
        self.proven_offset = 0 if proven_offset is None else max(0, min(proven_offset, self.anchor_offset))
        #: when the answer that proved ``proven_offset`` arrived (a monotonic clock reading)
        self.proven_seen_at = proven_seen_at
        #: ``totalCount`` when the anchor was seen (None: unknown), for :meth:`next_offset`'s guess
        self.anchor_total = anchor_total
        self._step_back = 0
        self.done = window.is_empty
        self.emitted = 0
        #: True when the listing ended before an entry older than the window start was seen.
        self.ended_before_start = False
        self.oldest_seen: Ticks | None = None

    def is_anchored(self, page: FetchedPage[E]) -> bool:
        """Whether ``page`` starts at or before the first entry not yet accounted for, by its content."""
        if page.offset == 0:
            return True
        return bool(page.entries) and page.entries[0].created_on_ticks >= self.upper

    def next_offset(self, total_count: int | None = None) -> int:
        """
        A guess of where to read next: the anchor moved by the growth of ``totalCount`` since it was seen.

        Right when entries arrive at the newest end only (the usual case); too far when some were
        recorded below the anchor, and then the page read there is not anchored and gets repaired from
        :meth:`repair_offset`. Never a proof.

        :param total_count: the latest ``totalCount`` known.
        """
        if total_count is None or self.anchor_total is None:
            return self.anchor_offset
        return self.anchor_offset + max(0, total_count - self.anchor_total)

    def repair_offset(self, page: FetchedPage[E]) -> int:
        """
        Where to read so that ``page``, which is not anchored, can be judged after that read.

        The proven position first. Only a page requested there (or before it) *after* the proof arrived
        and still not reaching ``upper`` shows that entries were removed above it: then step back,
        doubling the step, down to offset 0. (A page requested earlier may simply predate entries
        that arrived in front of it since.)
        """
        if page.offset > self.proven_offset or page.sent_at <= self.proven_seen_at:
            return self.proven_offset
        self._step_back = max(1, self._step_back * 2)
        self.proven_offset = max(0, min(self.proven_offset, page.offset) - self._step_back)
        self.anchor_offset = min(self.anchor_offset, self.proven_offset)
        return self.proven_offset

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
            # Every entry is at or after ``upper``: the last one is a proven place to read on from.
            if page.offset + len(entries) - 1 > self.proven_offset:
                self._move_anchor(page, page.offset + len(entries) - 1)
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
            # Only the (possibly incomplete) oldest group is new: a longer page must take it whole,
            # read from the entry before it (proven at or after ``upper``), or from offset 0.
            self._move_anchor(page, max(0, page.offset + first_new - 1))
            return StitchResult(Verdict.TOO_SMALL)
        released = list(entries[first_new:oldest_group_start])
        self.upper = oldest + 1
        # The entry just before the oldest group is at or after the new ``upper``: read on from it.
        self._move_anchor(page, page.offset + oldest_group_start - 1)
        self.emitted += len(released)
        return StitchResult(Verdict.ACCEPTED, released)

    def _move_anchor(self, page: FetchedPage[E], offset: int) -> None:
        self.anchor_offset = self.proven_offset = offset
        self.proven_seen_at = page.received_at
        self.anchor_total = page.total_count
        self._step_back = 0

    def _finish(self, *, ended_early: bool) -> None:
        self.done = True
        self.ended_before_start = ended_early

    def describe_tie_overflow(self, page: FetchedPage[E]) -> str:
        """The error text for a tie group that does not fit in the largest page the server gives."""
        ticks = page.entries[-1].created_on_ticks if page.entries else self.upper
        size = len(page.entries)
        group = size - _first_below(page.entries, ticks + 1)
        ahead = size - group
        if ahead > 1:
            # Beyond the one entry each page repeats, entries recorded in front of the group meanwhile.
            ahead_text = f" together with the {ahead} entries listed ahead of it (recorded in front of it meanwhile)"
        elif ahead:
            ahead_text = " together with the entry each page repeats from the one before"
        else:
            ahead_text = ""
        return (
            f"at least {group} entries share createdOn {format_ticks(ticks)} and{ahead_text} fill a whole page of "
            f"{size}, the most the server returns per request, so that group cannot be read in one consistent page "
            "(entries with one createdOn have no stable order across requests); raise page_size if the server "
            "allows it"
        )


def _check_sorted(page: FetchedPage[E]) -> None:
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
