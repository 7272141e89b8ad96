"""split_window: sub-windows that cover a window exactly, at full 100 ns precision."""

from __future__ import annotations

from datetime import timedelta
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_orchestrator_audit.paging.window import AuditWindow, WindowError, split_window
from airflow_provider_orchestrator_audit.timestamps import TICKS_PER_SECOND, format_ticks, to_ticks

HOUR = 3600 * TICKS_PER_SECOND


def window(start: str, end: str) -> AuditWindow:
    return AuditWindow.parse(start, end)


def test_a_whole_number_of_steps():
    parts = split_window(window("2026-01-01T00:00:00Z", "2026-01-01T04:00:00Z"), timedelta(hours=1))
    assert [(format_ticks(part.start), format_ticks(part.end)) for part in parts] == [
        ("2026-01-01T00:00:00.0000000+00:00", "2026-01-01T01:00:00.0000000+00:00"),
        ("2026-01-01T01:00:00.0000000+00:00", "2026-01-01T02:00:00.0000000+00:00"),
        ("2026-01-01T02:00:00.0000000+00:00", "2026-01-01T03:00:00.0000000+00:00"),
        ("2026-01-01T03:00:00.0000000+00:00", "2026-01-01T04:00:00.0000000+00:00"),
    ]


def test_the_last_sub_window_is_the_shorter_remainder():
    parts = split_window(window("2026-01-01T00:00:00Z", "2026-01-01T02:30:00Z"), timedelta(hours=1))
    assert [part.end - part.start for part in parts] == [HOUR, HOUR, HOUR // 2]
    assert parts[-1].end == to_ticks("2026-01-01T02:30:00Z")


def test_a_window_shorter_than_one_step_is_one_sub_window():
    whole = window("2026-01-01T00:00:00Z", "2026-01-01T00:20:00Z")
    assert split_window(whole, timedelta(hours=1)) == [whole]


def test_seven_digit_bounds_are_kept_exactly():
    # Bounds a datetime could not hold (the 7th digit), and a step of a few ticks.
    whole = window("2026-01-01T00:00:00.0000003Z", "2026-01-01T00:00:00.0000010Z")
    parts = split_window(whole, 3)
    assert [(part.start % 100, part.end % 100) for part in parts] == [(3, 6), (6, 9), (9, 10)]
    assert format_ticks(parts[-1].end) == "2026-01-01T00:00:00.0000010+00:00"


def test_a_timedelta_step_is_converted_to_ticks_exactly():
    whole = window("2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z")
    assert split_window(whole, timedelta(microseconds=250_001)) == split_window(whole, 2_500_010)


@pytest.mark.parametrize(
    ("step", "message"),
    [
        (0, "sub-window length must be positive, got 0 ticks"),
        (-HOUR, "must be positive, got -36000000000 ticks"),
        (timedelta(0), "must be positive, got 0:00:00"),
        (timedelta(hours=-1), "must be positive, got -1:00:00"),
        (True, "must be ticks \\(an int\\) or a timedelta, got True"),
        (1.5, "must be ticks \\(an int\\) or a timedelta, got 1.5"),
    ],
)
def test_a_step_that_is_not_positive_is_refused(step, message):
    with pytest.raises(WindowError, match=message):
        split_window(window("2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z"), step)


def test_an_empty_window_is_refused():
    with pytest.raises(WindowError, match=r"window \[2026-01-01T00:00:00.0000000\+00:00, .*\) is empty"):
        split_window(window("2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z"), timedelta(hours=1))


def test_an_end_before_the_start_is_refused_when_the_window_is_built():
    with pytest.raises(WindowError, match="window_end .* is before window_start"):
        split_window(window("2026-01-01T02:00:00Z", "2026-01-01T01:00:00Z"), timedelta(hours=1))


def test_max_parts_refuses_before_building_the_sub_windows():
    # A year in single ticks would be 3e14 windows: refused at once, not after filling the memory.
    year = window("2025-01-01T00:00:00Z", "2026-01-01T00:00:00Z")
    with pytest.raises(WindowError, match=r"gives 315360000000000 sub-windows, more than the limit of 1024"):
        split_window(year, 1, max_parts=1024)
    assert len(split_window(year, timedelta(days=1), max_parts=365)) == 365
    with pytest.raises(WindowError, match="gives 365 sub-windows, more than the limit of 364"):
        split_window(year, timedelta(days=1), max_parts=364)


@given(
    start=st.integers(min_value=0, max_value=4_000_000_000 * TICKS_PER_SECOND),
    length=st.integers(min_value=1, max_value=400 * 24 * HOUR),
    step=st.integers(min_value=1, max_value=30 * 24 * HOUR) | st.integers(min_value=1, max_value=1_000),
)
def test_sub_windows_are_contiguous_disjoint_and_cover_the_window(start, length, step):
    # Keep the number of sub-windows small enough to build; max_parts is tested above.
    step = max(step, -(-length // 2_000))
    whole = AuditWindow(start, start + length)
    parts = split_window(whole, step)
    assert parts[0].start == whole.start and parts[-1].end == whole.end
    assert all(earlier.end == later.start for earlier, later in pairwise(parts))  # no gap, no overlap
    assert all(part.end - part.start == step for part in parts[:-1])
    assert 0 < parts[-1].end - parts[-1].start <= step
    assert len(parts) == -(-length // step)
    # Every instant of the window is in exactly one sub-window, and nothing outside is in any.
    for instant in {whole.start, whole.end - 1, whole.start + length // 2, whole.start - 1, whole.end}:
        assert sum(part.contains(instant) for part in parts) == (1 if whole.contains(instant) else 0)
