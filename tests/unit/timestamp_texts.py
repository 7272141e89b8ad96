"""Generated timestamp texts for the property tests of the parsers that read them."""

from __future__ import annotations

from hypothesis import strategies as st


def _text(
    year: int, month: int, day: int, hour: int, minute: int, second: int, digits: int, fraction: int, offset: str
) -> str:
    fraction_text = f".{fraction % 10**digits:0{digits}d}" if digits else ""
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}{fraction_text}{offset}"


def timestamp_texts(
    offsets: st.SearchStrategy[str], digits: st.SearchStrategy[int] | None = None
) -> st.SearchStrategy[str]:
    """
    ``YYYY-MM-DDTHH:MM:SS[.f..]{offset}`` texts on all sides of the parsers' minute caches: any second of a
    minute, every fraction digit.

    :param offsets: the offsets (``"Z"``, ``"+00:00"``, ...) to end the texts with.
    :param digits: how many fraction digits (0: no fraction at all); seven, Orchestrator's own, by default.
    """
    return st.builds(
        _text,
        st.integers(1970, 2100),
        st.integers(1, 12),
        st.integers(1, 28),
        st.integers(0, 23),
        st.integers(0, 59),
        st.integers(0, 59),
        st.just(7) if digits is None else digits,
        st.integers(0, 9_999_999),
        offsets,
    )
