from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from airflow_provider_orchestrator_audit.timestamps import (
    TICKS_PER_SECOND,
    TimestampError,
    format_ticks,
    parse_seven_digit_timestamps,
    parse_timestamp,
    parse_utc_timestamps,
    ticks_to_datetime,
    to_ticks,
)
from tests.unit.timestamp_texts import timestamp_texts


def test_seven_digits_are_kept_exactly():
    a = parse_timestamp("2021-10-14T13:10:15.1964174+00:00")
    b = parse_timestamp("2021-10-14T13:10:15.1964175+00:00")
    assert b - a == 1
    assert format_ticks(a) == "2021-10-14T13:10:15.1964174+00:00"


@pytest.mark.parametrize(
    "text",
    [
        "2026-01-31T14:00:00+01:00",
        "2026-01-31T13:00:00Z",
        "2026-01-31 13:00:00+00:00",
        "2026-01-31T13:00:00.0000000+00:00",
        "2026-01-31T08:00:00-05:00",
        "2026-01-31T13:00:00.000000000Z",
        "2026-01-31T13:00Z",
    ],
)
def test_offsets_and_separators(text):
    assert parse_timestamp(text) == parse_timestamp("2026-01-31T13:00:00Z")


def test_date_only_and_naive_are_utc():
    assert parse_timestamp("2026-01-31") == to_ticks(date(2026, 1, 31))
    assert parse_timestamp("2026-01-31T13:00:00") == parse_timestamp("2026-01-31T13:00:00Z")
    with pytest.raises(TimestampError, match="no UTC offset"):
        parse_timestamp("2026-01-31T13:00:00", assume_utc=False)


@pytest.mark.parametrize(
    "text", ["yesterday", "", "2026-13-01T00:00:00Z", "2026-01-01T00:00:00.123456789Z", "2026-01-01T25:00:00Z"]
)
def test_bad_values_say_what_is_wrong(text):
    with pytest.raises(TimestampError, match=repr(text)[1:-1][:10] or "timestamp"):
        parse_timestamp(text)


def test_datetimes_round_trip():
    moment = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert ticks_to_datetime(to_ticks(moment)) == moment
    assert to_ticks(moment) % 10 == 0


@given(st.integers(min_value=0, max_value=4_000_000_000 * TICKS_PER_SECOND))
def test_format_parse_round_trip(ticks):
    assert parse_timestamp(format_ticks(ticks)) == ticks


@given(
    st.integers(min_value=0, max_value=4_000_000_000 * TICKS_PER_SECOND),
    st.integers(min_value=-14 * 60, max_value=14 * 60),
)
def test_fast_path_agrees_with_the_general_parser(ticks, offset_minutes):
    # Orchestrator's exact shape takes a fast path; a trailing space forces the general regex path.
    local = ticks_to_datetime(ticks).astimezone(timezone(timedelta(minutes=offset_minutes)))
    sign = "+" if offset_minutes >= 0 else "-"
    text = f"{local:%Y-%m-%dT%H:%M:%S}.{ticks % TICKS_PER_SECOND:07d}{sign}{abs(offset_minutes) // 60:02d}:{abs(offset_minutes) % 60:02d}"
    assert len(text) == 33
    assert parse_timestamp(text) == parse_timestamp(text + " ") == ticks


_SEVEN_DIGITS = timestamp_texts(st.sampled_from(["Z", "+00:00", "-05:30"]))


@given(
    st.lists(
        st.tuples(_SEVEN_DIGITS, st.integers(0, 32), st.sampled_from(list("0123456789:.+-_ TZ\u0663x"))), max_size=8
    )
)
def test_a_pages_timestamps_at_once_read_as_parse_timestamp_reads_each(changes):
    """The batch gives parse_timestamp's ticks, or fails where it fails, also right after a valid text of a minute."""
    texts = [text for base, at, char in changes for text in (base, base[:at] + char + base[at + 1 :])]
    expected: list[int] = []
    for text in texts:
        try:
            expected.append(parse_timestamp(text))
        except TimestampError:
            with pytest.raises(TimestampError):
                parse_seven_digit_timestamps(texts)
            return
    assert parse_seven_digit_timestamps(texts) == expected


@given(
    st.integers(0, 7).flatmap(
        lambda digits: st.lists(timestamp_texts(st.just("Z"), st.just(digits)), min_size=1, max_size=6)
    ),
    st.lists(st.tuples(st.integers(0, 27), st.sampled_from(list("0123456789:.-TZ_ +\u0663x"))), max_size=2),
)
@example(["2026-01-02T03:04:05.1234567Z", "2026-02-30T03:04:05.1234567Z"], [])  # no such day
@example(["2026-01-02T03:04:05.1234567Z", "2026-01-02T03:04:60.1234567Z"], [])  # second 60
@example(["2026-01-02T03:04:05.1234567Z", "2026-01-02T03:04:05.1_34567Z"], [])  # int() would read it
@example(["2026-01-02T03:04:05.1234567Z", "2026-01-02T03:04:0\u0663.1234567Z"], [])
@example(["2026-01-02T03:04:05.1234567Z", "2026-01-02T03:04:05.1234567Z "], [])
@example(["2026-01-02T03:04:05.123Z", "2026-01-02T03:04:60.123Z"], [])  # the events' shape
@example(["2026-01-02T03:04:05Z", "2026-01-02T03:04:05.Z"], [])  # no fraction, then an empty one
@example(["2026-01-02T03:04:05.12Z", "2026-01-02T03:04:05.123"], [])  # one length, no Z
def test_a_page_of_utc_timestamps_reads_as_parse_timestamp_reads_each(texts, changes):
    """Texts all of one UTC shape (any fraction length) are read at once: the same ticks, or an error where one is."""
    for at, char in changes:
        texts = [*texts[:-1], texts[-1][:at] + char + texts[-1][at + 1 :]]
    try:
        expected = [parse_timestamp(text) for text in texts]
    except TimestampError:
        with pytest.raises(TimestampError):
            parse_utc_timestamps(texts)
    else:
        assert parse_utc_timestamps(texts) == expected
