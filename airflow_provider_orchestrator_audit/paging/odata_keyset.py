"""
The pure core of exporting Orchestrator's audit log (``odata/AuditLogs``): time slices read by keyset on ``Id``.

A window is cut into disjoint time slices (:func:`~.event_slices.plan_slices`, shared with the event
sources); each slice is one :class:`KeysetChain`, and the chains run concurrently. A chain asks for
``ExecutionTime ge <from> and ExecutionTime lt <to> and Id gt <last Id>`` ordered by ``Id``, and relies
on as little as possible of what the server might do:

* **Precision, rounding and time zones.** The query asks for whole seconds around the slice, one more
  second on each side, so an ``ExecutionTime`` the server stores at another precision, rounds, or
  writes in another offset is still in the answer; the chain keeps only ``start <= ExecutionTime < end``,
  read from the entry's own text at full 100 ns precision. Slices are disjoint, so each entry belongs to
  exactly one of them.
* **Arrivals.** ``Id`` grows with insertion, not with ``ExecutionTime``: an entry recorded while the
  chain pages gets a larger ``Id`` and is found by a later page if it falls into the slice. Offsets
  (``$skip``) would shift under such inserts; a keyset does not.
* **Short pages.** A page shorter than ``$top`` does not end the slice: the server caps ``$top`` and may
  drop entries the caller may not see after counting them. Only an empty page, or ``@odata.count`` (the
  entries left, this page's included) equal to the page's size, proves the end.
* **Order.** Ids must come ascending and above the last one; a server that ignores ``$orderby`` or the
  ``Id gt`` term would make a keyset skip entries, so the chain stops with a :class:`PagingError` instead.

Example::

    chain = KeysetChain(TimeSlice(start, end))
    request = chain.first_request()          # KeysetRequest(query_from=..., query_to=..., after_id=None)
    step = chain.accept(page.entries, page.count)
    step.released                            # the slice's entries of this page, in Id order
    step.next_request                        # KeysetRequest(..., after_id=<last Id>), or None when done
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Generic, Protocol, TypeVar

from airflow_provider_orchestrator_audit.paging.event_slices import TimeSlice, format_bound
from airflow_provider_orchestrator_audit.paging.stitcher import PagingError
from airflow_provider_orchestrator_audit.timestamps import TICKS_PER_SECOND, Ticks

__all__ = ["KeyedEntry", "KeysetChain", "KeysetRequest", "KeysetStep"]


class KeyedEntry(Protocol):
    """What the core needs of an entry: its ``Id`` and its ``ExecutionTime`` at full precision."""

    @property
    def entry_id(self) -> int: ...

    @property
    def execution_time_ticks(self) -> Ticks: ...


E = TypeVar("E", bound=KeyedEntry)


@dataclass(frozen=True)
class KeysetRequest:
    """
    One request of a chain.

    :param query_from: ``ExecutionTime ge`` this (ticks, a whole second).
    :param query_to: ``ExecutionTime lt`` this (ticks, a whole second).
    :param after_id: ``Id gt`` this; None on the first page.
    """

    query_from: Ticks
    query_to: Ticks
    after_id: int | None = None

    @property
    def time_from(self) -> str:
        """``query_from`` as an OData DateTimeOffset literal, e.g. ``2026-01-31T12:59:59Z``."""
        return format_bound(self.query_from)

    @property
    def time_to(self) -> str:
        """``query_to`` as an OData DateTimeOffset literal."""
        return format_bound(self.query_to)


@dataclass(frozen=True)
class KeysetStep(Generic[E]):
    """What an answer gave: the slice's entries in it (``Id`` order) and the next request (None: done)."""

    released: list[E]
    next_request: KeysetRequest | None


@dataclass
class KeysetChain(Generic[E]):
    """
    Reads one time slice page by page, keyset on ``Id``, and releases each of its entries once.

    Not thread-safe: one driver feeds it the answers of its requests, one at a time.

    :param slice: the slice's bounds.
    """

    slice: TimeSlice
    done: bool = False
    released_count: int = 0
    requests: int = 0
    #: Entries the server sent that lie outside the slice (the query's margins, or a filter it ignored).
    outside: int = 0
    last_id: int | None = None
    _request: KeysetRequest = field(init=False, repr=False)

    def first_request(self) -> KeysetRequest:
        """The slice's whole seconds, one more on each side; no ``Id`` bound yet."""
        self.requests += 1
        low = self.slice.start // TICKS_PER_SECOND * TICKS_PER_SECOND - TICKS_PER_SECOND
        high = -(-self.slice.end // TICKS_PER_SECOND) * TICKS_PER_SECOND + TICKS_PER_SECOND
        self._request = KeysetRequest(low, high)
        return self._request

    def accept(self, entries: Sequence[E], count: int | None) -> KeysetStep[E]:
        """
        Take the answer to the last request and say what to do next.

        :param entries: the page's entries, as listed.
        :param count: the page's ``@odata.count`` (None when absent).
        :raises PagingError: when Ids do not come ascending above the last Id asked after.
        """
        if self.done or not hasattr(self, "_request"):
            raise RuntimeError("the chain takes answers to its requests: call first_request() first, not after done")
        previous = self._request.after_id
        start, end = self.slice.start, self.slice.end
        released: list[E] = []
        append = released.append
        outside = 0
        # Plain loop over locals: it runs for every entry of the window.
        for entry in entries:
            entry_id = entry.entry_id
            if previous is not None and entry_id <= previous:
                raise PagingError(
                    f"the server listed Id {entry_id} after Id {previous} for slice {self.slice} "
                    f"(asked for Id gt {self._request.after_id}, ordered by Id): it ignores $orderby=Id asc or the "
                    "Id filter, and paging by Id would skip entries"
                )
            previous = entry_id
            if start <= entry.execution_time_ticks < end:
                append(entry)
            else:
                outside += 1
        self.outside += outside
        self.released_count += len(released)
        if not entries or (count is not None and count == len(entries)):
            self.done = True
            return KeysetStep(released, None)
        self.last_id = previous
        self.requests += 1
        self._request = replace(self._request, after_id=previous)
        return KeysetStep(released, self._request)
