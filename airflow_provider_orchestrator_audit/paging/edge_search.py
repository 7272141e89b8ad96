"""
Locate a window's edge in a newest-first listing without a date filter.

In ``createdOn`` descending order the entries older than a bound form a suffix of the listing. The
search finds where that suffix starts with one-entry probes (``top=1``): an interpolation step on the
timestamps (audit logs are spread fairly evenly over time, so this usually lands within a few
probes), safeguarded by bisection so the worst case stays O(log N).

What the answer is worth while entries arrive: in descending order an entry recorded anywhere
pushes every older position up by one, and retention removes only at the old end, so the count of
entries at or after the bound never shrinks. A position *seen* holding such an entry
(:attr:`EdgeSearch.proven_newer_end`) therefore still holds one later: reading from there is safe.
The search itself also credits ``totalCount`` growth to its earlier evidence, which is exact when
entries arrive at the newest end only and too much when some were recorded late, below the bound:
:attr:`EdgeSearch.result` is an estimate that the reader checks by the content of what it reads.
"""

from __future__ import annotations

from dataclasses import dataclass

from airflow_provider_orchestrator_audit.timestamps import Ticks

__all__ = ["EdgeSearch", "Probe"]


@dataclass(frozen=True)
class Probe:
    """What one probe at ``position`` saw: the entry's ticks (None past the end) and ``totalCount``."""

    position: int
    ticks: Ticks | None
    total_count: int
    received_at: int = 0


class EdgeSearch:
    """
    Find the first position (newest first) whose ``createdOn`` is before ``bound``.

    Use: while ``next_position()`` is not None, fetch one entry there and pass it to ``observe``.

    :param bound: the edge, in ticks; entries with ``createdOn < bound`` are "older".
    :param tolerance: how precisely to pin the edge down, in positions.
    :param max_probes: probes at most; then the evidence at hand gives the (still safe) answer.
    """

    def __init__(self, bound: Ticks, *, tolerance: int = 1, max_probes: int = 96) -> None:
        self.bound = bound
        #: stop once the edge is known within this many positions: the reader starts at the safe end,
        #: and a few already-passed entries at the top of its first page cost nothing
        self.tolerance = max(1, tolerance)
        #: probes before settling for the evidence at hand; the answer stays safe, only less tight
        self.max_probes = max_probes
        #: the largest position seen holding an entry at/after the bound (-1: none yet)
        self.newer_end = -1
        self.newer_ticks: Ticks | None = None
        #: when the probe that set ``newer_end`` was answered (a monotonic clock reading), and its totalCount
        self.newer_seen_at = 0
        self.newer_total: int | None = None
        #: the largest position an answer showed holding an entry at/after the bound, never shifted by
        #: ``totalCount`` growth (-1: none), and when that answer arrived
        self.proven_newer_end = -1
        self.proven_newer_at = 0
        #: the smallest position seen holding an older entry, or past the end
        self.older_start: int | None = None
        self.older_ticks: Ticks | None = None
        self._older_total = 0
        self.total_count: int | None = None
        self.probes = 0
        self._bisect_next = False
        self._last_span: int | None = None
        self._gallop = 0
        self._probe_kind: str | None = None
        self._step = 0
        self._step_up = True

    @property
    def done(self) -> bool:
        """True once the older suffix's start is pinned down (or the probe budget is spent)."""
        if self.probes >= self.max_probes:
            return True
        return self.older_start is not None and self.older_start <= self.newer_end + self.tolerance

    @property
    def result(self) -> int:
        """The first position of the older suffix, estimated (see the module docstring)."""
        return self.newer_end + 1

    def next_position(self) -> int | None:
        """The position to probe next, or None when done."""
        if self.done:
            return None
        if self.total_count is None:
            return 0  # the newest entry and totalCount frame the search
        if self.older_start is None:
            if self._gallop:  # the edge slipped past the older evidence: look a growing step further
                return min(self.newer_end + self._gallop, max(self.total_count - 1, self.newer_end + 1))
            return max(self.total_count - 1, self.newer_end + 1)  # the oldest entry closes the bracket
        low, high = self.newer_end, self.older_start  # low holds a newer entry, high an older one
        span = high - low
        if self._step and not self._bisect_next:
            # Right after an interpolation: step across the estimate so the next bracket is tight,
            # even when the estimate is slightly off or entries arrived meanwhile.
            guess = low + self._step if self._step_up else high - self._step
            self._probe_kind = "step"
        elif self._bisect_next or self.newer_ticks is None or self.older_ticks is None:
            guess = low + span // 2
            self._probe_kind = "bisect"
        else:
            guess = self._interpolate(low, high)
            self._probe_kind = "interpolate"
        # Bisect next if the bracket did not at least halve, so the worst case stays logarithmic.
        self._bisect_next = self._last_span is not None and span > self._last_span // 2 and self._probe_kind != "bisect"
        self._last_span = span
        return min(max(guess, low + 1), high - 1)

    def _interpolate(self, low: int, high: int) -> int:
        assert self.newer_ticks is not None and self.older_ticks is not None
        drop = self.newer_ticks - self.older_ticks
        if drop <= 0:
            return low + (high - low) // 2
        fraction = (self.newer_ticks - self.bound) / drop
        return low + 1 + int(fraction * (high - low - 1))

    def observe(self, probe: Probe) -> None:
        """Record what a probe saw."""
        self.probes += 1
        self.total_count = probe.total_count
        self._advance_frame(probe)
        newer = probe.ticks is not None and probe.ticks >= self.bound
        self._update_step(newer)
        if newer:
            if probe.position > self.proven_newer_end:
                self.proven_newer_end = probe.position
                self.proven_newer_at = probe.received_at
            if probe.position > self.newer_end:
                self.newer_end = probe.position
                self.newer_ticks = probe.ticks
                self.newer_seen_at = probe.received_at
                self.newer_total = probe.total_count
            if self.older_start is not None and self.older_start <= self.newer_end:
                # Entries arrived faster than totalCount grew (retention removed some meanwhile), so the
                # edge slipped past the older evidence: gallop from here instead of starting over.
                self.older_start, self.older_ticks = None, None
                self._gallop = 2
            elif self.older_start is None and self._gallop:
                self._gallop *= 2
            return
        older_start = probe.position if probe.ticks is not None else min(probe.position, probe.total_count)
        if probe.ticks is None and older_start <= self.newer_end:
            older_start = self.newer_end + 1  # past the end, right after the newest evidence
        if self.older_start is None or older_start < self.older_start:
            self.older_start = older_start
            self.older_ticks = probe.ticks
            self._older_total = probe.total_count

    def _update_step(self, newer: bool) -> None:
        kind, self._probe_kind = self._probe_kind, None
        if kind == "interpolate":
            self._step, self._step_up = self.tolerance, newer
        elif kind == "step" and newer == self._step_up:
            self._step *= 2  # still on the same side: a longer step
        else:
            self._step = 0  # crossed (or not stepping): back to interpolation

    def _advance_frame(self, probe: Probe) -> None:
        """
        Move earlier evidence to this probe's listing, as an estimate.

        Between two answers at least ``totalCount`` growth entries were recorded. If they all arrived at
        the head, every earlier position moved down by that much; entries recorded late, below a
        position, do not move it. So shifted evidence is a guess (right in the usual case), and the
        unshifted :attr:`proven_newer_end` is kept beside it.
        """
        total = probe.total_count
        if self.newer_total is not None and total > self.newer_total:
            self.newer_end += total - self.newer_total
            self.newer_total = total
            self.newer_seen_at = probe.received_at
        if self.older_start is not None and total > self._older_total:
            self.older_start += total - self._older_total
            self._older_total = total
