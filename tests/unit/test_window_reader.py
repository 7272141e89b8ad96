"""
The paging core and its reader against a simulated listing: random data sets, windows, page caps,
tie groups listed in a new order on every request, entries arriving at the head and retention
removing at the tail while the reader pages. Pure Python, no sockets: hundreds of cases per second.
"""

from __future__ import annotations

import bisect
import json
import random
import threading
from collections import Counter

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from airflow_provider_orchestrator_audit.export.reader import WindowReader
from airflow_provider_orchestrator_audit.models import AuditLogEntry, AuditLogPage
from airflow_provider_orchestrator_audit.paging import AuditWindow, EdgeSearch, PagingError, Probe
from airflow_provider_orchestrator_audit.timestamps import format_ticks

BASE = 1_767_225_600 * 10_000_000  # 2026-01-01T00:00:00Z in ticks


class SimulatedLog:
    """
    A newest-first listing with no ids, unstable tie order, drift and an optional page cap.

    Before each request: ``arrivals`` entries are recorded at the newest end, ``late`` entries are
    recorded *late*, at a random ``createdOn`` up to ``late_lag`` ticks below the newest entry (so
    anywhere in the listing, moving only what is older), every ``burst_every``-th request records
    ``burst`` more late entries at once, and retention removes the ``removals`` oldest. Each entry
    carries its creation number as ``id``, for the test's eyes only.

    More than ``max_calls`` requests fail the test: a reader that stops making progress (a livelock)
    shows up as a failing example instead of a run that never ends.
    """

    def __init__(
        self,
        gaps: list[int],
        *,
        arrivals=0,
        removals=0,
        late=0,
        late_lag=0,
        burst=0,
        burst_every=0,
        cap=None,
        seed=0,
        shuffle_ties=True,
        max_calls=2_000,
    ):
        #: ``createdOn`` of every entry ever recorded, by creation number (not sorted once entries come late)
        self.ticks: list[int] = []
        now = BASE
        for gap in gaps:
            now += gap
            self.ticks.append(now)
        self.visible: list[tuple[int, int]] = [(t, i) for i, t in enumerate(self.ticks)]  # sorted by (ticks, id)
        self.arrivals, self.removals, self.cap = arrivals, removals, cap
        self.late, self.late_lag, self.burst, self.burst_every = late, late_lag, burst, burst_every
        self.rng = random.Random(seed)
        self.shuffle_ties = shuffle_ties
        self.lock = threading.Lock()
        self.removed: set[int] = set()
        self.calls = 0
        self.max_calls = max_calls

    def _record(self, ticks: int) -> None:
        self.ticks.append(ticks)
        bisect.insort(self.visible, (ticks, len(self.ticks) - 1))

    def _drift(self) -> None:
        for _ in range(self.arrivals):
            newest = self.visible[-1][0] if self.visible else BASE
            self._record(newest + self.rng.choice([0, 0, 1, 5_000_000]))
        late = self.late
        if self.burst_every and self.calls % self.burst_every == 0:
            late += self.burst
        for _ in range(late):
            if self.visible:
                # Sometimes exactly on an existing createdOn: late entries join tie groups too.
                newest = self.visible[-1][0]
                ticks = newest - self.rng.randint(0, self.late_lag)
                if self.rng.random() < 0.2:
                    ticks = self.visible[bisect.bisect_left(self.visible, (ticks, -1)) - 1][0]
                self._record(max(ticks, self.visible[0][0]))
        for _ in range(min(self.removals, len(self.visible))):
            self.removed.add(self.visible.pop(0)[1])

    def entry(self, index: int) -> AuditLogEntry:
        return AuditLogEntry({"createdOn": format_ticks(self.ticks[index]), "id": index})

    def visible_ids(self) -> set[int]:
        return {i for _, i in self.visible}

    def fetch(self, skip: int, top: int) -> AuditLogPage:
        with self.lock:
            self.calls += 1
            assert self.calls <= self.max_calls, (
                f"more than {self.max_calls} requests for a log of {len(self.visible)} entries: the reader is not "
                "making progress"
            )
            self._drift()
            order = [i for _, i in reversed(self.visible)]  # newest first
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
            return AuditLogPage(total_count=len(order), results=[self.entry(i) for i in chosen])

    def window_indices(self, window: AuditWindow, among: set[int] | None = None) -> set[int]:
        among = set(range(len(self.ticks))) if among is None else among
        return {i for i in among if window.contains(self.ticks[i])}


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
    cap=st.one_of(st.none(), st.integers(min_value=3, max_value=40)),
    arrivals=st.integers(min_value=0, max_value=8),
    removals=st.integers(min_value=0, max_value=2),
    concurrency=st.integers(min_value=1, max_value=6),
    seed=st.integers(min_value=0, max_value=2**32),
)
# A tie group at the head that a capped page holds only when no entry arrives in front of it meanwhile: it
# takes more than a few tries, and it must not be given up on as if it could never fit.
@example(
    gaps=[0, 1, 0, 0, 0, 0, 0],
    start_frac=0.0,
    width_frac=1.0,
    page_size=3,
    cap=9,
    arrivals=1,
    removals=0,
    concurrency=1,
    seed=1,
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
    initially_visible = log.visible_ids()
    try:
        ids, _reader = read_all(log, window, page_size=page_size, max_concurrency=concurrency)
    except PagingError as error:
        # Only allowed when a tie group fills a whole capped page but the entry repeated from the page
        # before (its end cannot be seen): it must say so.
        # Entries that arrive in front of the group between two requests take room in the page too.
        assert cap is not None and "share createdOn" in str(error)
        biggest_group = max(Counter(log.ticks).values())
        assert biggest_group + arrivals * concurrency + 1 >= cap
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
    with pytest.raises(PagingError, match="at least 9 entries share createdOn 2026-01-01T00:00:00.0000001"):
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


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    gaps=gap_lists,
    start_frac=st.floats(min_value=-0.1, max_value=1.1),
    width_frac=st.floats(min_value=0.0, max_value=1.2),
    page_size=st.integers(min_value=2, max_value=60),
    cap=st.one_of(st.none(), st.integers(min_value=3, max_value=40)),
    arrivals=st.integers(min_value=0, max_value=3),
    late=st.integers(min_value=0, max_value=5),
    lag_frac=st.floats(min_value=0.0, max_value=1.5),
    burst=st.integers(min_value=0, max_value=80),
    burst_every=st.integers(min_value=0, max_value=7),
    removals=st.integers(min_value=0, max_value=2),
    concurrency=st.integers(min_value=1, max_value=6),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_entries_recorded_late_anywhere_never_cost_a_preexisting_entry(
    gaps,
    start_frac,
    width_frac,
    page_size,
    cap,
    arrivals,
    late,
    lag_frac,
    burst,
    burst_every,
    removals,
    concurrency,
    seed,
):
    # Entries recorded late land anywhere between the newest entry and lag_frac of the log's span below
    # it (inside, above and below the window), with bursts, ties, retention and capped pages.
    # As in life, entries are recorded slower than pages are read: a reader that new entries push back
    # faster than it reads can only fail (clearly), not finish. A page advances by at most per_page - 2,
    # and here every request records entries, the concurrent ones too: the budget is per request.
    per_page = min(page_size, cap or page_size)
    budget = max(0, (per_page - 2) // (2 * concurrency))
    arrivals = min(arrivals, budget)
    late = min(late, budget - arrivals)
    if burst_every < 2:
        burst_every = 0
    burst = min(burst, (budget - arrivals - late) * burst_every) if burst_every else 0
    span = (BASE + sum(gaps) - BASE) if gaps else 10_000_000
    log = SimulatedLog(
        gaps,
        arrivals=arrivals,
        removals=removals,
        late=late,
        late_lag=int(span * lag_frac),
        burst=burst,
        burst_every=burst_every,
        cap=cap,
        seed=seed,
    )
    start = BASE + int(span * start_frac)
    window = AuditWindow(start, start + int(span * width_frac) + 1)
    before = log.visible_ids()
    try:
        ids, _reader = read_all(log, window, page_size=page_size, max_concurrency=concurrency)
    except PagingError as error:
        # A tie group that, with the entries recorded in front of it between two requests and the one
        # repeated entry, does not fit in a capped page: the only failure allowed, and it says so.
        assert cap is not None and "share createdOn" in str(error)
        recorded_meanwhile = (arrivals + late + burst) * concurrency
        assert max(Counter(log.ticks).values()) + recorded_meanwhile + 1 >= cap
        return
    counts = Counter(ids)
    assert all(n == 1 for n in counts.values()), "an entry was written twice"
    written = set(ids)
    must = log.window_indices(window, before) - log.removed
    assert must <= written, f"missing entries that existed before the export: {sorted(must - written)[:10]}"
    assert written <= log.window_indices(window), "an entry outside the window was written"
    assert [log.ticks[i] for i in ids] == sorted((log.ticks[i] for i in ids), reverse=True)


def test_a_tie_group_too_large_for_capped_pages_fails_even_while_late_entries_make_pages_stale():
    # Found by the property above: every entry but a few shares one createdOn inside the window, pages are
    # capped at 19, and late entries land in front of that group (bursts of 25 every 5th request). Each
    # capped retry of the group was cut short by a page the late entries made stale, and the count of
    # retries started again with every page: the reader retried for ever instead of saying why it cannot.
    log = SimulatedLog(
        [15_527_389], arrivals=1, late=2, late_lag=11_381_631, burst=25, burst_every=5, cap=19, seed=4789
    )
    window = AuditWindow(BASE + 14_551_235, BASE + 32_456_371)
    with pytest.raises(PagingError, match="share createdOn 2026-01-01T00:00:01.5527389"):
        read_all(log, window, page_size=19, max_concurrency=1)
    assert log.calls < 400


def test_a_late_insert_below_the_read_position_is_not_taken_for_drift():
    # The case that lost entries when totalCount growth was credited as movement: every request
    # records entries far below the head (inside the window, under the pages being read), so
    # totalCount grows while nothing the reader stands on moves.
    log = SimulatedLog([10_000_000] * 3_000, late=5, late_lag=3_000 * 10_000_000 // 2, seed=7, shuffle_ties=False)
    window = AuditWindow(log.ticks[1_000], log.ticks[2_000])
    before = log.visible_ids()
    ids, reader = read_all(log, window, page_size=20, max_concurrency=4)
    assert len(ids) == len(set(ids))
    assert log.window_indices(window, before) <= set(ids)
    assert set(ids) <= log.window_indices(window)
    # The case was the hard one: entries were recorded into the window, under the pages, while it was read.
    assert len(log.window_indices(window)) > len(log.window_indices(window, before))
    assert reader.stats.requests > 10


def test_entries_removed_above_the_read_position_step_the_reader_back():
    # Not retention (that removes the oldest): a listing that loses newer entries between requests
    # moves everything up, so a page read at a proven position can still miss; the reader steps back.
    log = SimulatedLog([10_000_000] * 400, shuffle_ties=False)
    window = AuditWindow(log.ticks[0], log.ticks[200])
    calls = {"n": 0}
    original = log.fetch

    def fetch(skip: int, top: int) -> AuditLogPage:
        calls["n"] += 1
        if calls["n"] % 3 == 0 and len(log.visible) > 300:
            with log.lock:  # remove 7 of the newest entries (not in the window)
                for _ in range(7):
                    log.visible.pop()
        return original(skip, top)

    ids, _ = read_all_with(fetch, window, page_size=25, max_concurrency=2)
    assert sorted(ids) == list(range(200))


@pytest.mark.parametrize("cap", [1, 2])
def test_a_server_that_gives_under_three_entries_per_page_fails_clearly(cap):
    log = SimulatedLog([10_000_000] * 50, cap=cap, shuffle_ties=False)
    window = AuditWindow(log.ticks[0], log.ticks[30])
    with pytest.raises(PagingError, match=f"with {cap} of 50 entries: pages of at least 3 are needed"):
        read_all(log, window, page_size=10)


def read_all_with(fetch, window: AuditWindow, **kwargs) -> tuple[list[int], WindowReader]:
    reader = WindowReader(fetch, window, **kwargs)
    return [entry.raw["id"] for batch in reader for entry in batch], reader


def canonical(line: str | bytes) -> str:
    # Compared as JSON values: the export writes the server's text with U+2028 and U+2029 escaped.
    return json.dumps(json.loads(line), sort_keys=True, ensure_ascii=False)


class DatasetListing:
    """The local Orchestrator's own data set as a listing, with its late-entry switch, without sockets."""

    def __init__(self, dataset, *, arrivals, removals, late, max_lag, burst, burst_every, cap, seed):
        self.dataset = dataset
        self.arrivals, self.removals, self.late, self.max_lag = arrivals, removals, late, max_lag
        self.burst, self.burst_every, self.cap = burst, burst_every, cap
        self.rng = random.Random(seed)
        self.calls = 0
        self.lock = threading.Lock()
        #: the indices of every entry recorded late, retention's victims included
        self.recorded_late: list[int] = []

    def fetch(self, skip: int, top: int) -> AuditLogPage:
        with self.lock:
            self.calls += 1
            self.dataset.append(self.arrivals)
            late = self.late + (self.burst if self.burst_every and self.calls % self.burst_every == 0 else 0)
            self.recorded_late += self.dataset.record_late(late, max_lag_ticks=self.max_lag, rng=self.rng)
            self.dataset.expire(self.removals)
            view = self.dataset.view()
            count = min(top, self.cap) if self.cap else top
            lines = self.dataset.page_json(skip, count, True, self.rng, view=view)
            texts = [line.decode("utf-8") for line in lines]
            return AuditLogPage(total_count=view.total, results=[AuditLogEntry(json.loads(t), t) for t in texts])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(min_value=0, max_value=2**16),
    start_minute=st.integers(min_value=-5, max_value=90),
    minutes=st.integers(min_value=0, max_value=60),
    page_size=st.integers(min_value=20, max_value=300),
    cap=st.one_of(st.none(), st.integers(min_value=70, max_value=200)),
    arrivals=st.integers(min_value=0, max_value=3),
    late=st.integers(min_value=0, max_value=6),
    lag_minutes=st.integers(min_value=0, max_value=90),
    burst=st.integers(min_value=0, max_value=60),
    burst_every=st.sampled_from([0, 3, 7]),
    removals=st.integers(min_value=0, max_value=2),
    concurrency=st.integers(min_value=1, max_value=6),
)
@example(
    seed=1467,
    start_minute=-1,
    minutes=27,
    page_size=20,
    cap=76,
    arrivals=0,
    late=1,
    lag_minutes=82,
    burst=49,
    burst_every=3,
    removals=2,
    concurrency=5,
)
@example(
    seed=20,
    start_minute=0,
    minutes=1,
    page_size=20,
    cap=76,
    arrivals=2,
    late=5,
    lag_minutes=27,
    burst=49,
    burst_every=3,
    removals=0,
    concurrency=1,
)
def test_the_local_orchestrators_late_entries_never_cost_a_preexisting_entry(
    seed, start_minute, minutes, page_size, cap, arrivals, late, lag_minutes, burst, burst_every, removals, concurrency
):
    from airflow_provider_orchestrator_audit.testing import AuditDataset

    # Entries are recorded slower than pages are read (see the property above): a reader that new entries
    # push back faster than it reads can only fail, after thousands of requests.
    per_page = min(page_size, cap or page_size)
    budget = max(0, (per_page - 2) // (2 * concurrency))
    arrivals = min(arrivals, budget)
    late = min(late, budget - arrivals)
    burst = min(burst, (budget - arrivals - late) * burst_every) if burst_every else 0
    # 2,000 entries from 2026-01-01T00:00Z, about one every 1.8 s, ties and bursts of 20-60 included.
    dataset = AuditDataset(size=2_000, seed=seed, entries_per_hour=2_000)
    minute = 60 * 10_000_000
    window = AuditWindow(BASE + start_minute * minute, BASE + (start_minute + minutes) * minute + 1)
    listing = DatasetListing(
        dataset,
        arrivals=arrivals,
        removals=removals,
        late=late,
        max_lag=lag_minutes * minute,
        burst=burst,
        burst_every=burst_every,
        cap=cap,
        seed=seed,
    )

    def window_lines() -> Counter[str]:
        view = dataset.view()
        return Counter(
            canonical(dataset.entry_json(i))
            for i, ticks in dataset.page_items(0, view.total, view=view)
            if window.contains(ticks)
        )

    before = window_lines()
    reader = WindowReader(listing.fetch, window, page_size=page_size, max_concurrency=concurrency)
    try:
        written = Counter(canonical(entry.to_json()) for batch in reader for entry in batch)
    except PagingError as error:
        # Bursts of 60 tie members can exceed a capped page: the only failure allowed, and it says so.
        assert "share createdOn" in str(error)
        return
    after = window_lines()
    # Retention takes the oldest entries, and late entries recorded below every remaining one with them.
    expired = {canonical(dataset.entry_json(i)) for i in range(dataset.visible_range()[0])}
    late_still_visible = {index for _, index, _ in dataset.view().late}
    expired |= {canonical(dataset.entry_json(i)) for i in listing.recorded_late if i not in late_still_visible}
    missing = before - written
    assert not [line for line in missing if line not in expired], "an entry that existed before was lost"
    # Compared as multisets (the data set has a few entries that are equal in every field): more copies of
    # a line than the window holds would be an entry written twice, or one from outside the window.
    extra = written - after
    assert not [line for line in extra if line not in expired], "an entry was written twice or outside the window"
