"""The generated audit log: determinism, time stamps, tie groups, visibility and pages."""

from __future__ import annotations

import json
import random
import re
import time
from collections import Counter
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_orchestrator_audit.testing import DOCUMENTED_FIELDS, AuditDataset, SortTooLargeError
from airflow_provider_orchestrator_audit.timestamps import format_ticks, parse_timestamp

CREATED_ON = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{7}\+00:00$")


def group_sizes(dataset: AuditDataset, low: int, high: int) -> list[int]:
    return [len(group) for group in dataset.tie_groups(range(low, high))]


def test_entries_are_deterministic() -> None:
    first, second = AuditDataset(seed=7), AuditDataset(seed=7)
    for i in [0, 1, 2, 999, 123_456, 1_999_999]:
        assert first.entry(i) == second.entry(i) == first.entry(i)
        assert first.entry_json(i) == second.entry_json(i)
        assert first.ticks(i) == second.ticks(i)
    other = AuditDataset(seed=8)
    assert [first.entry(i) for i in range(50)] != [other.entry(i) for i in range(50)]


def test_entry_is_a_fresh_dict() -> None:
    dataset = AuditDataset()
    item = dataset.entry(3)
    item["createdOn"] = "changed"
    assert dataset.entry(3)["createdOn"] != "changed"


def test_entry_layout_and_json() -> None:
    dataset = AuditDataset()
    for i in range(500):
        item = dataset.entry(i)
        assert tuple(item)[: len(DOCUMENTED_FIELDS)] == DOCUMENTED_FIELDS
        assert len(item) <= len(DOCUMENTED_FIELDS) + 1
        assert item["detailsVersion"] == "1.0"
        assert CREATED_ON.match(item["createdOn"]), item["createdOn"]
        assert parse_timestamp(item["createdOn"]) == dataset.ticks(i)
        assert item["createdOn"] == format_ticks(dataset.ticks(i))
        details = item["auditLogDetails"]
        assert details.startswith("{\r\n ") and details.endswith("\r\n}")
        assert isinstance(json.loads(details), dict)
        serialised = json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        assert dataset.entry_json(i) == serialised


def test_content_exercises_encodings_and_unknown_fields() -> None:
    dataset = AuditDataset()
    entries = [dataset.entry(i) for i in range(5000)]
    names = {item["userName"] for item in entries}
    assert {"Zoë Ångström", "山田 太郎", "Μαρία Παπαδοπούλου", "José Núñez"} <= names
    assert any(any(ord(char) > 0xFFFF for char in name) for name in names)  # an emoji
    assert any(item["email"] == "" for item in entries)
    special = [item for item in entries if "\u2028" in item["message"]]
    assert 50 <= len(special) <= 200  # about 1 in 50
    assert all('"' in item["message"] and "\\" in item["message"] and "\n" in item["message"] for item in special)
    extra = [item for item in entries if len(item) > len(DOCUMENTED_FIELDS)]
    assert 150 <= len(extra) <= 400  # about 1 in 20
    assert {next(reversed(item)) for item in extra} == {"tenantName", "clientIp"}
    assert len({(item["category"], item["action"]) for item in entries}) >= 12
    assert {"Cis", "Orchestrator", "IdentityServer", "AutomationHub"} <= {item["source"] for item in entries}


def test_ticks_are_nondecreasing_with_seven_digits() -> None:
    dataset = AuditDataset(size=20_000)
    ticks = [dataset.ticks(i) for i in range(20_000)]
    assert all(a <= b for a, b in pairwise(ticks))
    assert sum(1 for t in ticks if t % 10) > len(ticks) * 0.8  # the 7th digit is used, not always 0
    assert ticks[0] >= dataset.start
    hours = (ticks[-1] - ticks[0]) / (3600 * 10_000_000)
    assert 5.0 < hours < 6.0  # 20,000 entries at 3,600 an hour


def test_tie_groups_small_and_bursts() -> None:
    dataset = AuditDataset(size=20_000)
    sizes = group_sizes(dataset, 0, 20_000)
    tied = sum(size - 1 for size in sizes)
    assert 0.12 < tied / 20_000 < 0.25
    assert any(2 <= size <= 5 for size in sizes)
    assert any(20 <= size <= 70 for size in sizes)  # a burst
    for group in dataset.tie_groups(range(20_000)):
        assert len({dataset.ticks(i) for i in group}) == 1
    # Members of different groups never share a time stamp.
    anchors = [group[0] for group in dataset.tie_groups(range(20_000))]
    assert len({dataset.ticks(i) for i in anchors}) == len(anchors)


def test_no_ties_when_disabled() -> None:
    dataset = AuditDataset(size=5000, tie_probability=0.0, burst_probability=0.0)
    ticks = [dataset.ticks(i) for i in range(5000)]
    assert all(a < b for a, b in pairwise(ticks))


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 3),
    start_offset=st.integers(-2_000_000, 2_600_000_000),
    length=st.integers(-1_000_000, 800_000_000),
)
def test_index_range_matches_brute_force(seed: int, start_offset: int, length: int) -> None:
    dataset, all_ticks = _dense(seed)
    start = dataset.start + start_offset
    end = start + length
    a, b = dataset.index_range(start, end)
    expected = [i for i, t in enumerate(all_ticks) if start <= t < end]
    if expected:
        assert (a, b) == (expected[0], expected[-1] + 1)
    else:
        assert a == b
    # Bounds that fall exactly on entries, so a bound cuts through a tie group.
    i, j = sorted((start_offset % 3000, length % 3000))
    a, b = dataset.index_range(dataset.ticks(i), dataset.ticks(j))
    expected = [k for k, t in enumerate(all_ticks) if all_ticks[i] <= t < all_ticks[j]]
    assert (a, b) == ((expected[0], expected[-1] + 1) if expected else (a, a))
    assert a == dataset.anchor(i)


_DENSE_N = 3500
_DENSE: dict[int, tuple[AuditDataset, list[int]]] = {}


def _dense(seed: int) -> tuple[AuditDataset, list[int]]:
    # 36,000 an hour: 0.1 s apart, many ties and bursts, so ranges cut through tie groups.
    if seed not in _DENSE:
        dataset = AuditDataset(
            size=_DENSE_N, seed=seed, entries_per_hour=36_000, tie_probability=0.3, burst_probability=0.2
        )
        _DENSE[seed] = (dataset, [dataset.ticks(i) for i in range(_DENSE_N)])
    return _DENSE[seed]


def test_index_range_far_out() -> None:
    dataset = AuditDataset(size=10)
    a, b = dataset.index_range(dataset.ticks(1_500_000), dataset.ticks(1_500_100))
    assert a == dataset.anchor(1_500_000)
    assert dataset.ticks(b) >= dataset.ticks(1_500_100) > dataset.ticks(b - 1)
    assert dataset.index_range(0, dataset.start) == (0, 0)


def test_entries_between_only_visible() -> None:
    dataset = AuditDataset(size=1000, shuffle_ties=False)
    start, end = dataset.ticks(100), dataset.ticks(900)
    a, b = dataset.index_range(start, end)
    assert [item["createdOn"] for item in dataset.entries_between(start, end)] == [
        dataset.entry(i)["createdOn"] for i in range(a, b)
    ]
    dataset.expire(500)
    visible = dataset.entries_between(start, end)
    assert len(visible) == b - 500
    assert visible[0] == dataset.entry(500)
    assert dataset.entries_between(dataset.ticks(2000), dataset.ticks(3000)) == []


def test_append_and_expire() -> None:
    dataset = AuditDataset(size=100, shuffle_ties=False)
    assert dataset.visible_range() == (0, 100)
    assert dataset.total_count == 100
    dataset.append(5)
    assert dataset.visible_range() == (0, 105)
    assert dataset.page_indices(0, 1) == [104]  # the newest arrival is position 0 when descending
    dataset.expire(10)
    assert dataset.visible_range() == (10, 105)
    assert dataset.page_indices(0, 1, descending=False) == [10]
    assert dataset.total_count == 95
    dataset.expire(1000)
    assert dataset.visible_range() == (105, 105)
    assert dataset.page_indices(0, 10) == []
    with pytest.raises(ValueError):
        dataset.append(-1)
    dataset.set_visible_range(0, 100)
    assert dataset.visible_range() == (0, 100)


def test_page_positions_without_shuffle() -> None:
    dataset = AuditDataset(size=50, shuffle_ties=False)
    assert dataset.page_indices(0, 3) == [49, 48, 47]
    assert dataset.page_indices(48, 10) == [1, 0]
    assert dataset.page_indices(0, 3, descending=False) == [0, 1, 2]
    assert dataset.page_indices(50, 3) == []
    assert dataset.page(2, 2) == [dataset.entry(47), dataset.entry(46)]


def _burst(dataset: AuditDataset, limit: int) -> list[int]:
    return next(group for group in dataset.tie_groups(range(limit)) if len(group) >= 20)


def test_tie_shuffling_changes_order_but_not_contents() -> None:
    dataset = AuditDataset(size=20_000)
    high = dataset.visible_range()[1]
    group = _burst(dataset, 20_000)
    group_start = high - 1 - group[-1]  # position of the group's newest index, descending
    orders = set()
    for seed in range(10):
        rng = random.Random(seed)
        page = dataset.page_indices(group_start - 5, len(group) + 10, True, rng)
        assert sorted(page) == list(range(group[0] - 5, group[-1] + 6))
        orders.add(tuple(page))
        ticks = [dataset.ticks(i) for i in page]
        assert ticks == sorted(ticks, reverse=True)
    assert len(orders) > 1


def test_page_boundary_inside_a_tie_group_can_hide_and_repeat() -> None:
    dataset = AuditDataset(size=20_000)
    group = _burst(dataset, 20_000)
    high = dataset.visible_range()[1]
    middle = high - 1 - group[-1] + len(group) // 2
    outcomes = []
    for seed in range(20):
        first = dataset.page_indices(middle - 10, 10, True, random.Random(2 * seed))
        second = dataset.page_indices(middle, 10, True, random.Random(2 * seed + 1))
        seen = Counter(first + second)
        outcomes.append((any(count > 1 for count in seen.values()), len(seen)))
    assert any(repeated for repeated, _ in outcomes)
    assert any(distinct < 20 for _, distinct in outcomes)


def test_shuffled_pages_keep_positions_ticks() -> None:
    dataset = AuditDataset(size=5000)
    plain = AuditDataset(size=5000, shuffle_ties=False)
    rng = random.Random(1)
    for _ in range(100):
        skip, top, descending = rng.randrange(0, 5100), rng.randrange(0, 300), rng.random() < 0.5
        shuffled = dataset.page_items(skip, top, descending, random.Random(rng.random()))
        expected = plain.page_indices(skip, top, descending)
        assert [t for _, t in shuffled] == [plain.ticks(i) for i in expected]
        assert all(t == dataset.ticks(i) for i, t in shuffled)
    # One page holding everything lists every entry exactly once.
    everything = dataset.page_indices(0, 5000, True, random.Random(3))
    assert sorted(everything) == list(range(5000))


def test_page_json_matches_entries() -> None:
    dataset = AuditDataset(size=3000)
    rng_a, rng_b = random.Random(5), random.Random(5)
    fragments = dataset.page_json(100, 200, True, rng_a)
    entries = dataset.page(100, 200, True, rng_b)
    assert [json.loads(fragment) for fragment in fragments] == entries


def test_sorted_indices() -> None:
    dataset = AuditDataset(size=2000)
    order = dataset.sorted_indices("category", descending=False)
    categories = [dataset.entry(i)["category"] for i in order]
    assert categories == sorted(categories)
    assert sorted(order) == list(range(2000))
    down = dataset.sorted_indices("email", descending=True)
    emails = [dataset.entry(i)["email"] for i in down]
    assert emails == sorted(emails, reverse=True)
    dataset.max_sort_entries = 1000
    with pytest.raises(SortTooLargeError):
        dataset.sorted_indices("category", descending=False)


def test_a_large_page_is_cheap() -> None:
    dataset = AuditDataset(size=2_000_000)
    started = time.perf_counter()
    fragments = dataset.page_json(1_234_567, 1000, True, random.Random(0))
    elapsed = time.perf_counter() - started
    assert len(fragments) == 1000
    assert elapsed < 0.5  # typically ~10 ms; generous for slow CI machines


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        AuditDataset(entries_per_hour=0)
    with pytest.raises(ValueError):
        AuditDataset(tie_probability=1.0)
    with pytest.raises(IndexError):
        AuditDataset().entry(-1)
    with pytest.raises(ValueError):
        AuditDataset().page_indices(-1, 5)
