"""
When the reader asks for what: pages start as soon as the upper edge is known (the lower edge's search
goes on beside them), the first page goes out with the others, and a server that caps pages below the
size asked for has the pages planned at the larger size dropped and planned again. Exactness is the
stitcher's; these tests check that the scheduling keeps it and saves the round trips it should.
"""

from __future__ import annotations

import threading
from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_orchestrator_audit.export.reader import WindowReader
from airflow_provider_orchestrator_audit.models import AuditLogPage
from airflow_provider_orchestrator_audit.paging import AuditWindow, PagingError
from tests.unit.test_window_reader import BASE, SimulatedLog, gap_lists

SECOND = 10_000_000


def test_pages_are_read_while_the_lower_edge_is_still_being_located():
    # The lower edge's probes wait until a page has been asked for: a reader that waited for both
    # edges before reading pages would stall here (and fail below) instead of finishing.
    log = SimulatedLog([SECOND] * 20_000, shuffle_ties=False)
    window = AuditWindow(log.ticks[5_000], log.ticks[15_000])
    lower_edge = 20_000 - 5_000  # entries at or after window.start, newest first
    page_asked = threading.Event()
    probes_before_pages = Counter()

    def fetch(skip: int, top: int) -> AuditLogPage:
        if top > 1:
            page_asked.set()
        # The lower search closing in (not the probe of the oldest entry, which frames both searches).
        elif skip > lower_edge - 2_000 and skip != 19_999 and not page_asked.wait(timeout=10):
            probes_before_pages["lower"] += 1
        return log.fetch(skip, top)

    reader = WindowReader(fetch, window, page_size=500, max_concurrency=4)
    ids = [entry.raw["id"] for batch in reader for entry in batch]
    assert sorted(ids) == list(range(5_000, 15_000))
    assert not probes_before_pages, "the lower edge's search held back the pages"
    assert reader.stats.upper_probes and reader.stats.lower_probes
    assert reader.stats.probe_requests == reader.stats.upper_probes + reader.stats.lower_probes


def test_the_first_page_goes_out_with_the_planned_pages():
    # The first page is answered only once another page has been asked for: a reader that read it alone
    # (to learn the server's page size first) would leave it waiting.
    log = SimulatedLog([SECOND] * 10_000, shuffle_ties=False)
    window = AuditWindow(log.ticks[1_000], log.ticks[9_000])
    pages_asked = []
    second_page = threading.Event()
    lock = threading.Lock()

    def fetch(skip: int, top: int) -> AuditLogPage:
        if top > 1:
            with lock:
                pages_asked.append(skip)
                first = len(pages_asked) == 1
            if first:
                assert second_page.wait(timeout=10), "the first page was read alone"
            else:
                second_page.set()
        return log.fetch(skip, top)

    reader = WindowReader(fetch, window, page_size=400, max_concurrency=4)
    ids = [entry.raw["id"] for batch in reader for entry in batch]
    assert sorted(ids) == list(range(1_000, 9_000))


def test_a_capped_server_sets_the_page_size_and_the_early_pages_are_planned_again():
    log = SimulatedLog([SECOND] * 3_000, cap=70, shuffle_ties=False)
    window = AuditWindow(log.ticks[100], log.ticks[2_900])
    reader = WindowReader(log.fetch, window, max_concurrency=4)  # asks for 1,000 per page by default
    ids = [entry.raw["id"] for batch in reader for entry in batch]
    assert sorted(ids) == list(range(100, 2_900))
    assert reader.stats.page_size == 70
    # Pages planned at 1,000 entries would each leave a gap of 930 to repair; planned again, almost none.
    assert reader.stats.repair_requests <= 2
    assert reader.stats.page_requests <= 2_800 / 66 + 1 + 4 + 4  # the plan, the first page, a round dropped, slack


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    gaps=gap_lists,
    start_frac=st.floats(min_value=-0.1, max_value=1.1),
    width_frac=st.floats(min_value=0.0, max_value=1.2),
    cap=st.one_of(st.none(), st.integers(min_value=3, max_value=40)),
    arrivals=st.integers(min_value=0, max_value=1),
    removals=st.integers(min_value=0, max_value=2),
    concurrency=st.integers(min_value=1, max_value=6),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_the_default_page_size_adopts_any_cap_exactly(
    gaps, start_frac, width_frac, cap, arrivals, removals, concurrency, seed
):
    """page_size=None: the first page may show a cap; what was planned before it is dropped, nothing is lost."""
    log = SimulatedLog(gaps, arrivals=arrivals, removals=removals, cap=cap, seed=seed)
    span = (log.ticks[-1] - BASE) if log.ticks else SECOND
    start = BASE + int(span * start_frac)
    window = AuditWindow(start, start + int(span * width_frac) + 1)
    initially_visible = log.visible_ids()
    reader = WindowReader(log.fetch, window, max_concurrency=concurrency)
    try:
        ids = [entry.raw["id"] for batch in reader for entry in batch]
    except PagingError as error:  # only a tie group that no capped page can hold may stop the export
        assert cap is not None and "share createdOn" in str(error), error
        assert max(Counter(log.ticks).values()) >= cap - 1
        return
    assert len(ids) == len(set(ids)), "an entry was written twice"
    must = log.window_indices(window, initially_visible) - log.removed
    assert must <= set(ids), f"missing entries: {sorted(must - set(ids))[:10]}"
    assert set(ids) <= log.window_indices(window), "an entry outside the window was written"
