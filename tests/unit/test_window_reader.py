"""
The paging core and its reader against a simulated listing: random data sets, windows, page caps,
tie groups listed in a new order on every request, entries arriving at the head and retention
removing at the tail while the reader pages. Pure Python, no sockets: hundreds of cases per second.
"""

from __future__ import annotations

import random
import threading
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_orchestrator_audit.export.reader import WindowReader
from airflow_provider_orchestrator_audit.models import AuditLogEntry, AuditLogPage
from airflow_provider_orchestrator_audit.paging import AuditWindow, EdgeSearch, PagingError, Probe
from airflow_provider_orchestrator_audit.timestamps import format_ticks

BASE = 1_767_225_600 * 10_000_000  # 2026-01-01T00:00:00Z in ticks


class SimulatedLog:
    """A newest-first listing with no ids, unstable tie order, drift and an optional page cap."""

    def __init__(self, gaps: list[int], *, arrivals=0, removals=0, cap=None, seed=0, shuffle_ties=True):
        self.ticks: list[int] = []
        now = BASE
        for gap in gaps:
            now += gap
            self.ticks.append(now)
        self.low, self.high = 0, len(self.ticks)
        self.arrivals, self.removals, self.cap = arrivals, removals, cap
        self.rng = random.Random(seed)
        self.shuffle_ties = shuffle_ties
        self.lock = threading.Lock()
        self.removed: set[int] = set()
        self.calls = 0

    def _grow(self) -> None:
        for _ in range(self.arrivals):
            if self.high == len(self.ticks):
                gap = self.rng.choice([0, 0, 1, 5_000_000])
                self.ticks.append(self.ticks[-1] + gap if self.ticks else BASE)
            self.high += 1
        for _ in range(min(self.removals, self.high - self.low)):
            self.removed.add(self.low)
            self.low += 1

    def entry(self, index: int) -> AuditLogEntry:
        return AuditLogEntry({"createdOn": format_ticks(self.ticks[index]), "id": index})

    def fetch(self, skip: int, top: int) -> AuditLogPage:
        with self.lock:
            self.calls += 1
            self._grow()
            order = list(range(self.high - 1, self.low - 1, -1))  # newest first
            if self.shuffle_ties:
                # Every request lists each tie group in a fresh random order.
                groups: dict[int, list[int]] = {}
                for index in order:
                    groups.setdefault(self.ticks[index], []).append(index)
                order = []
                for tick in sorted(groups, reverse=True):
                    members = groups[tick]
                    self.rng.shuffle(members)
                    order.extend(members)
            if self.cap is not None:
                top = min(top, self.cap)
            chosen = order[skip : skip + top]
            return AuditLogPage(total_count=self.high - self.low, results=[self.entry(i) for i in chosen])

    def window_indices(self, window: AuditWindow, upto: int | None = None) -> set[int]:
        upto = len(self.ticks) if upto is None else upto
        return {i for i in range(upto) if window.contains(self.ticks[i])}


gap_lists = st.lists(st.one_of(st.just(0), st.integers(min_value=1, max_value=30_000_000)), min_size=0, max_size=400)


def read_all(log: SimulatedLog, window: AuditWindow, **kwargs) -> tuple[list[int], WindowReader]:
    reader = WindowReader(log.fetch, window, **kwargs)
    ids = [entry.raw["id"] for batch in reader for entry in batch]
    return ids, reader


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    gaps=gap_lists,
    start_frac=st.floats(min_value=-0.1, max_value=1.1),
    width_frac=st.floats(min_value=0.0, max_value=1.2),
    page_size=st.integers(min_value=1, max_value=60),
    cap=st.one_of(st.none(), st.integers(min_value=2, max_value=40)),
    arrivals=st.integers(min_value=0, max_value=8),
    removals=st.integers(min_value=0, max_value=2),
    concurrency=st.integers(min_value=1, max_value=6),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_every_window_entry_exactly_once(
    gaps, start_frac, width_frac, page_size, cap, arrivals, removals, concurrency, seed
):
    # Entries arrive slower than pages are read (as in life: a few per request against hundreds per page).
    arrivals = min(arrivals, max(0, (min(page_size, cap or page_size) - 1) // 2))
    log = SimulatedLog(gaps, arrivals=arrivals, removals=removals, cap=cap, seed=seed)
    span = (log.ticks[-1] - BASE) if log.ticks else 10_000_000
    start = BASE + int(span * start_frac)
    window = AuditWindow(start, start + int(span * width_frac) + 1)
    initially_visible = log.high
    try:
        ids, _reader = read_all(log, window, page_size=page_size, max_concurrency=concurrency)
    except PagingError as error:
        # Only allowed when a tie group fills a whole capped page (its end cannot be seen): it must say so.
        assert cap is not None and "share createdOn" in str(error)
        biggest_group = max(Counter(log.ticks).values())
        assert biggest_group >= cap
        return
    counts = Counter(ids)
    assert all(n == 1 for n in counts.values()), "an entry was written twice"
    written = set(ids)
    must = log.window_indices(window, initially_visible) - log.removed
    may = log.window_indices(window)
    assert must <= written, f"missing entries: {sorted(must - written)[:10]}"
    assert written <= may, "an entry outside the window was written"
    assert [log.ticks[i] for i in ids] == sorted((log.ticks[i] for i in ids), reverse=True)


def test_ties_larger_than_the_server_page_fail_clearly():
    log = SimulatedLog([1] + [0] * 30 + [10], cap=10)
    window = AuditWindow(BASE, BASE + 100)
    with pytest.raises(PagingError, match="at least 10 entries share createdOn 2026-01-01T00:00:00.0000001"):
        read_all(log, window, page_size=10)


def test_ties_larger_than_the_page_are_read_with_a_wider_page():
    log = SimulatedLog([5] * 3 + [1] + [0] * 50 + [7] * 3)
    window = AuditWindow(BASE, BASE + 10**9)
    ids, reader = read_all(log, window, page_size=8, max_concurrency=3)
    assert sorted(ids) == list(range(len(log.ticks)))
    assert reader.stats.repair_requests >= 1


def test_half_open_bounds_at_full_precision():
    # Entries one tick apart: the window [t1, t3) holds exactly t1 and t2.
    log = SimulatedLog([1, 1, 1, 1], shuffle_ties=False)
    window = AuditWindow(log.ticks[1], log.ticks[3])
    ids, _ = read_all(log, window, page_size=1)
    assert sorted(ids) == [1, 2]


def test_empty_window_and_empty_log():
    assert read_all(SimulatedLog([]), AuditWindow(BASE, BASE + 10))[0] == []
    log = SimulatedLog([10, 10])
    assert read_all(log, AuditWindow(BASE + 15, BASE + 15))[0] == []
    assert log.calls == 0


def test_locating_costs_logarithmic_probes():
    # 200,000 entries, one per second: a 2-hour window in the middle.
    log = SimulatedLog([10_000_000] * 200_000, shuffle_ties=False)
    middle = log.ticks[100_000]
    window = AuditWindow(middle, middle + 2 * 3600 * 10_000_000)
    for bound in (window.start, window.end):
        search = EdgeSearch(bound)
        while (position := search.next_position()) is not None:
            page = log.fetch(position, 1)
            search.observe(
                Probe(position, page.results[0].created_on_ticks if page.results else None, page.total_count)
            )
        assert search.probes <= 8
        expected = sum(1 for t in log.ticks if t >= bound)
        assert search.result == expected


def test_edge_search_worst_case_stays_logarithmic():
    # Uneven spacing defeats interpolation; bisection keeps the probes near log2(N).
    gaps = [1] * 50_000 + [10**12] + [1] * 50_000
    log = SimulatedLog(gaps, shuffle_ties=False)
    search = EdgeSearch(log.ticks[25_000])
    while (position := search.next_position()) is not None:
        page = log.fetch(position, 1)
        search.observe(Probe(position, page.results[0].created_on_ticks if page.results else None, page.total_count))
    assert search.result == sum(1 for t in log.ticks if t >= log.ticks[25_000])
    assert search.probes <= 2 * 17 + 2


def test_locating_while_entries_arrive_and_expire_stays_cheap():
    log = SimulatedLog([10_000_000] * 100_000, arrivals=3, removals=1, shuffle_ties=False)
    window = AuditWindow(log.ticks[50_000], log.ticks[53_600])
    ids, reader = read_all(log, window, page_size=1000, max_concurrency=4)
    assert sorted(ids) == list(range(50_000, 53_600))
    assert reader.stats.probe_requests <= 16
    assert reader.stats.requests <= 30


def test_long_windows_log_progress(caplog):
    import logging

    caplog.set_level(logging.INFO, logger="airflow_provider_orchestrator_audit.export.reader")
    log = SimulatedLog([10_000_000] * 5_000, shuffle_ties=False)
    window = AuditWindow(log.ticks[0], log.ticks[-1] + 1)
    ids, _ = read_all(log, window, page_size=200, progress_interval=0.0)
    assert len(ids) == 5_000
    progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Read ")]
    assert progress, "no progress line"
    assert all("entries/s" in line and "left" in line and " pages (" in line for line in progress)


def test_a_window_past_the_oldest_entry_is_reported_even_when_one_page_holds_it():
    log = SimulatedLog([10_000_000] * 50, shuffle_ties=False)
    window = AuditWindow(BASE - 10**9, log.ticks[-1] + 1)  # starts before the oldest retained entry
    ids, reader = read_all(log, window, page_size=1000)
    assert sorted(ids) == list(range(50))
    assert reader.stats.ended_before_start and reader.stats.oldest_available == log.ticks[0]
