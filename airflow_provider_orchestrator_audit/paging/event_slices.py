"""
The pure core of exporting unified audit events: time slices, cursor chains, exactly once. No I/O.

The events API filters by ``from``/``to`` and pages by cursor: each answer's ``previous`` leads to
older events. One cursor chain is sequential, so a window is cut into disjoint time slices
(:func:`plan_slices`), each read as its own chain, and the chains run concurrently. A
:class:`SliceChain` decides, for one slice, what to ask next and which events of each answer to
release. It relies on as little as possible of what the documentation leaves open:

* **Bounds.** Whether ``to`` (or ``from``) is inclusive, and at what precision the server reads them,
  is unknown: the query asks for whole seconds that contain the slice (``from`` one second early) and
  the chain keeps only ``start <= createdOn < end``, compared at full 100 ns precision. Slices are
  disjoint, so each event belongs to exactly one of them.
* **Cursors.** They are opaque and followed as given until ``previous`` is null, or until a page holds
  an event older than the slice (a cursor that dropped ``from`` runs on past it).
* **Overlapping, repeating and reordered pages.** A page is taken as a set. An event is released when
  it is older than everything released so far (the *watermark*), shares the watermark's ``createdOn``
  with an id not yet released (a tie group split across pages), or lies between the watermark and the
  watermark of a few pages ago with an id not among those pages' (an event recorded late that the
  chain shows now). Ids are remembered only for those few pages and the tie group at the watermark,
  so memory does not grow with the window.
* **A cursor the server no longer accepts.** Everything newer than the watermark has been read, so the
  chain asks again with ``to`` just above the watermark (a *re-anchor*) and carries on; the same rules
  drop what it already released.

Example::

    chain = SliceChain(TimeSlice(start, end))
    request = chain.first_request()          # EventsRequest(query_from=..., query_to=..., cursor=None)
    step = chain.accept(page_events, page_previous)
    step.released                            # the slice's new events, newest first
    step.next_request                        # the cursor to follow, or None when the slice is done
"""

from __future__ import annotations

import itertools
import operator
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from airflow_provider_orchestrator_audit.paging.stitcher import PagingError
from airflow_provider_orchestrator_audit.paging.window import AuditWindow
from airflow_provider_orchestrator_audit.timestamps import TICKS_PER_SECOND, Ticks, format_ticks
from airflow_provider_orchestrator_audit.validation import checked_int

__all__ = [
    "EventLike",
    "EventsRequest",
    "SliceChain",
    "SliceStep",
    "TimeSlice",
    "created_on_unit",
    "format_bound",
    "plan_slices",
]

#: Pages whose ids a chain remembers (besides the tie group at the watermark).
REMEMBERED_PAGES = 8
#: Answers in a row that bring nothing new before a chain gives up: the cursor does not advance.
MAX_IDLE_PAGES = 3
#: Refused cursors in a row, with no progress in between, before a chain gives up.
MAX_REJECTED_CURSORS = 3


class EventLike(Protocol):
    """What the core needs of an event: its id, its ``createdOn`` text and that instant at full precision."""

    @property
    def event_id(self) -> str: ...

    @property
    def created_on(self) -> str: ...

    @property
    def created_on_ticks(self) -> Ticks: ...


E = TypeVar("E", bound=EventLike)


@dataclass(frozen=True)
class TimeSlice:
    """The events of one chain: ``start <= createdOn < end``, in ticks."""

    start: Ticks
    end: Ticks

    def __str__(self) -> str:
        return f"[{format_ticks(self.start)}, {format_ticks(self.end)})"


def plan_slices(window: AuditWindow, count: int) -> list[TimeSlice]:
    """
    Cut ``window`` into at most ``count`` disjoint slices of about equal length, newest first.

    Inner boundaries fall on whole seconds (each slice's query then asks exactly for its own seconds);
    a window shorter than ``count`` seconds gets fewer slices. An empty window has none.
    """
    checked_int("count", count)
    if window.is_empty:
        return []
    first_second = -(-window.start // TICKS_PER_SECOND)
    last_second = window.end // TICKS_PER_SECOND
    inner_seconds = max(0, last_second - first_second)
    parts = max(1, min(count, inner_seconds))
    bounds = [window.start]
    for part in range(1, parts):
        second = first_second + inner_seconds * part // parts
        ticks = second * TICKS_PER_SECOND
        if bounds[-1] < ticks < window.end:
            bounds.append(ticks)
    bounds.append(window.end)
    slices = [TimeSlice(low, high) for low, high in itertools.pairwise(bounds)]
    return slices[::-1]


@dataclass(frozen=True)
class EventsRequest:
    """
    One request of a chain: a first query by bounds, or a cursor to follow.

    :param query_from: the ``from`` to send, with ``query_to``; None with a cursor.
    :param query_to: the ``to`` to send.
    :param cursor: the server's ``previous`` URL, sent as it is.
    :param fraction_digits: the bounds' fractional digits as sent: 0 (whole seconds) unless the bound
        is one unit above an event's ``createdOn``, written at that event's own precision.
    """

    query_from: Ticks | None = None
    query_to: Ticks | None = None
    cursor: str | None = None
    fraction_digits: int = 0

    def bound_text(self, ticks: Ticks) -> str:
        """A bound as sent: ``2026-01-31T13:00:00Z`` or ``2026-01-31T13:05:12.346Z``."""
        return format_bound(ticks, self.fraction_digits)


def format_bound(ticks: Ticks, fraction_digits: int = 0) -> str:
    """ISO-8601 in UTC with ``Z`` and ``fraction_digits`` digits (truncated), as the API's examples write bounds."""
    text = format_ticks(ticks)  # 2026-01-31T13:05:12.3456789+00:00
    fraction = text[19:27][: fraction_digits + 1] if fraction_digits else ""
    return text[:19] + fraction + "Z"


def created_on_unit(text: str) -> Ticks:
    """The precision of a ``createdOn`` text, in ticks: 1 s without a fraction, 1 ms for ``.345Z``..."""
    dot = text.find(".", 19)
    if dot < 0:
        return TICKS_PER_SECOND
    digits = 0
    while dot + 1 + digits < len(text) and text[dot + 1 + digits].isdigit():
        digits += 1
    return 10 ** (7 - min(7, digits)) if digits else TICKS_PER_SECOND


@dataclass(frozen=True)
class SliceStep(Generic[E]):
    """What an answer gave: the events to release (newest first) and the next request (None: done)."""

    released: list[E]
    next_request: EventsRequest | None
    repeated: int = 0
    passed: int = 0


def _floor_second(ticks: Ticks) -> Ticks:
    return ticks // TICKS_PER_SECOND * TICKS_PER_SECOND


def _ceil_second(ticks: Ticks) -> Ticks:
    return -(-ticks // TICKS_PER_SECOND) * TICKS_PER_SECOND


@dataclass
class SliceChain(Generic[E]):
    """
    Reads one time slice through its cursor chain and releases each of its events once.

    Not thread-safe: one driver feeds it the answers of its requests, one at a time.

    :param slice: the slice's bounds.
    :param remembered_pages: how many pages' ids are kept to recognise repeats.
    """

    slice: TimeSlice
    remembered_pages: int = REMEMBERED_PAGES
    done: bool = False
    released_count: int = 0
    requests: int = 0
    reanchors: int = 0
    #: The oldest ``createdOn`` seen on the chain (None before the first event).
    watermark: Ticks | None = None
    _ids_at_watermark: set[str] = field(default_factory=set, repr=False)
    _recent_pages: deque[list[str]] = field(default_factory=deque, repr=False)
    _recent_ids: dict[str, int] = field(default_factory=dict, repr=False)
    _past_watermarks: deque[Ticks | None] = field(default_factory=deque, repr=False)
    _idle_pages: int = 0
    _last_page_key: frozenset[str] | None = None
    _watermark_unit: Ticks = TICKS_PER_SECOND
    _last_refusal: str = ""
    _rejected_in_a_row: int = 0

    def first_request(self) -> EventsRequest:
        """The query that starts the chain: whole seconds around the slice (``from`` one second early)."""
        self.requests += 1
        return EventsRequest(
            query_from=_floor_second(self.slice.start) - TICKS_PER_SECOND, query_to=_ceil_second(self.slice.end)
        )

    def accept(self, events: Sequence[E], previous: str | None) -> SliceStep[E]:
        """
        Take one answer of the chain (in any order inside the page) and say what to do next.

        :param events: the page's events.
        :param previous: the page's ``previous`` cursor, None when the server has no older events.
        :raises PagingError: when the server's cursor stops advancing.
        """
        if self.done:
            raise RuntimeError("the chain is done; it takes no more answers")
        ticks = [event.created_on_ticks for event in events]
        ids = [event.event_id for event in events]
        page_key = frozenset(ids)
        taken = self._take_unseen(events, ticks, ids, page_key)
        if taken is None:
            taken = self._take(events, ticks, ids)
        self._remember(taken)
        # The same page again (or nothing at all) while a cursor says there is more: the cursor is
        # not advancing. Pages of known events are fine otherwise: after a re-anchor the chain walks
        # through what it already read.
        self._idle_pages = self._idle_pages + 1 if not taken.new and page_key == self._last_page_key else 0
        self._last_page_key = page_key
        if taken.new:
            self._rejected_in_a_row = 0
        if self._idle_pages >= MAX_IDLE_PAGES and previous is not None:
            if self._rejected_in_a_row:
                raise self._refusals_error(self._last_refusal)
            raise PagingError(
                f"the events cursor does not advance: {self._idle_pages + 1} answers in a row for slice {self.slice} "
                f"held the same events (last cursor {previous!r}); the server repeats its pages"
            )
        released = _newest_first(taken.released)
        self.released_count += len(released)
        if taken.reached_start or previous is None:
            self.done = True
            return SliceStep(released, None, taken.repeated, taken.passed)
        self.requests += 1
        return SliceStep(released, EventsRequest(cursor=previous), taken.repeated, taken.passed)

    def _take_unseen(
        self, events: Sequence[E], ticks: list[Ticks], ids: list[str], page_key: frozenset[str]
    ) -> _Taken[E] | None:
        """
        :meth:`_take` of the usual page, in a few passes in C: every event inside the slice (or above it), none
        newer than the watermark, each id once and none seen before. None for any other page.
        """
        if not ids or len(page_key) != len(ids):
            return None
        watermark, lowest, highest = self.watermark, min(ticks), max(ticks)
        if lowest < self.slice.start or (watermark is not None and highest > watermark):
            return None
        if not self._recent_ids.keys().isdisjoint(page_key) or not page_key.isdisjoint(self._ids_at_watermark):
            return None
        self._recent_ids.update(dict.fromkeys(ids, 1))
        end = self.slice.end
        released = list(events) if highest < end else [event for event in events if event.created_on_ticks < end]
        oldest = lowest if watermark is None or lowest < watermark else watermark
        return _Taken(released, events, ids, ticks, oldest)

    def _take(self, events: Sequence[E], ticks: list[Ticks], ids: list[str]) -> _Taken[E]:
        """Which of a page's events are new to the chain, and which of those the slice releases."""
        watermark = self.watermark
        horizon = self._past_watermarks[0] if len(self._past_watermarks) >= self.remembered_pages else None
        start, end = self.slice.start, self.slice.end
        recent_ids, ids_at_watermark = self._recent_ids, self._ids_at_watermark
        released: list[E] = []
        new: list[E] = []
        new_ids: list[str] = []
        new_ticks: list[Ticks] = []
        repeated = passed = 0
        reached_start = False
        oldest = watermark
        for event, event_ticks, event_id in zip(events, ticks, ids, strict=True):
            if oldest is None or event_ticks < oldest:
                oldest = event_ticks
            if event_ticks < start:
                reached_start = True
                continue
            if event_id in recent_ids or event_id in ids_at_watermark:
                repeated += 1
                continue
            if watermark is None or event_ticks <= watermark or horizon is None or event_ticks < horizon:
                # New to this chain. Events above the slice are tracked like the others (the chain may
                # have to walk through a tie group above it) but released by the slice above.
                new.append(event)
                new_ids.append(event_id)
                new_ticks.append(event_ticks)
                recent_ids[event_id] = recent_ids.get(event_id, 0) + 1
                if event_ticks < end:
                    released.append(event)
            else:
                passed += 1  # newer than a watermark several pages back: the chain went past it long ago
        return _Taken(released, new, new_ids, new_ticks, oldest, repeated, passed, reached_start)

    def cursor_rejected(self, reason: str) -> EventsRequest:
        """
        The server refused the chain's cursor (expired, or no longer known): ask again from the watermark.

        :param reason: what the server answered, for the error when re-anchoring does not help.
        :raises PagingError: after :data:`MAX_REJECTED_CURSORS` refusals in a row with no progress.
        """
        self._rejected_in_a_row += 1
        self._last_refusal = reason
        if self._rejected_in_a_row > MAX_REJECTED_CURSORS:
            raise self._refusals_error(reason)
        self.reanchors += 1
        self.requests += 1
        query_from = _floor_second(self.slice.start) - TICKS_PER_SECOND
        if self.watermark is None or self.watermark + self._watermark_unit >= self.slice.end:
            return EventsRequest(query_from=query_from, query_to=_ceil_second(self.slice.end))
        # One unit of the server's own precision above the watermark: whether ``to`` is inclusive or
        # not, the answer holds the watermark's whole tie group; what lies above it was read already
        # and is recognised and dropped.
        unit = self._watermark_unit
        digits = 7 - len(str(unit)) + 1
        return EventsRequest(query_from=query_from, query_to=self.watermark + unit, fraction_digits=digits)

    def _refusals_error(self, reason: str) -> PagingError:
        return PagingError(
            f"the server refused {self._rejected_in_a_row} cursors in a row for slice {self.slice}, and asking "
            "again from the last event read brought nothing new: more events share its createdOn than a page "
            f"holds, and the cursors through them expire first. Raise page_size if the server allows, or retry "
            f"later ({reason})"
        )

    def _remember(self, taken: _Taken[E]) -> None:
        previous_watermark = self.watermark
        self._past_watermarks.append(previous_watermark)
        if len(self._past_watermarks) > self.remembered_pages:
            self._past_watermarks.popleft()
        self._recent_pages.append(taken.new_ids)
        if len(self._recent_pages) > self.remembered_pages:
            forgotten = self._recent_pages.popleft()
            counts = list(map(self._recent_ids.pop, forgotten, itertools.repeat(1)))
            if counts and max(counts) > 1:  # an id on several of the remembered pages stays, one page fewer
                for event_id, count in zip(forgotten, counts, strict=True):
                    if count > 1:
                        self._recent_ids[event_id] = count - 1
        oldest = taken.oldest
        if oldest is None:
            return
        watermark = previous_watermark
        if watermark is None or oldest < watermark:
            self.watermark = watermark = oldest
            self._ids_at_watermark = set()
        # The new events at the watermark join its tie group; the last of them gives the server's precision.
        new_ticks = taken.new_ticks
        index = -1
        for _ in range(new_ticks.count(watermark)):
            index = new_ticks.index(watermark, index + 1)
            self._ids_at_watermark.add(taken.new_ids[index])
        if index >= 0:
            self._watermark_unit = created_on_unit(taken.new[index].created_on)


@dataclass
class _Taken(Generic[E]):
    """What a chain takes of one page: its new events (with their ids and ticks) and those it releases."""

    released: list[E]
    new: Sequence[E]
    new_ids: list[str]
    new_ticks: list[Ticks]
    #: The oldest ``createdOn`` of the page and the watermark before it.
    oldest: Ticks | None
    repeated: int = 0
    passed: int = 0
    reached_start: bool = False


def _newest_first(events: list[E]) -> list[E]:
    """``events`` newest first, ties by id, sorted in C (a key function costs a Python call per event)."""
    newest = map(operator.neg, [event.created_on_ticks for event in events])
    # The position breaks every tie before the events themselves could be compared.
    keyed = sorted(zip(newest, [event.event_id for event in events], itertools.count(), events))
    return list(map(_LAST, keyed))


_LAST = operator.itemgetter(-1)
