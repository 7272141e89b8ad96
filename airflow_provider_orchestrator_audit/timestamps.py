"""Full-precision audit timestamps.

Orchestrator writes ``createdOn`` with seven fractional digits (100 ns ticks) and an explicit UTC
offset, e.g. ``2021-10-14T13:10:15.1964174+00:00``. Python's :class:`~datetime.datetime` keeps only
six, so two distinct entries can collapse onto one ``datetime``. Every comparison in this provider
therefore uses :data:`Ticks`: an ``int`` counting 100 ns intervals since the Unix epoch in UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from operator import add, itemgetter

__all__ = [
    "TICKS_PER_SECOND",
    "Ticks",
    "TimestampError",
    "datetime_to_ticks",
    "format_ticks",
    "parse_seven_digit_timestamp",
    "parse_seven_digit_timestamps",
    "parse_timestamp",
    "parse_utc_timestamp",
    "parse_utc_timestamps",
    "ticks_to_datetime",
    "to_ticks",
]

Ticks = int
TICKS_PER_SECOND = 10_000_000
_TICKS_PER_MICROSECOND = 10
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL = _EPOCH.toordinal()

_ISO_RE = re.compile(
    r"""
    ^\s*
    (?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})
    (?:
        [Tt\ ]
        (?P<hour>\d{2}):(?P<minute>\d{2})
        (?::(?P<second>\d{2})(?:[.,](?P<fraction>\d{1,9}))?)?
    )?
    \s*
    (?P<offset>[Zz]|[+-]\d{2}(?::?\d{2})?)?
    \s*$
    """,
    re.VERBOSE,
)


class TimestampError(ValueError):
    """A value could not be read as an ISO-8601 timestamp."""


def parse_timestamp(value: str, *, assume_utc: bool = True) -> Ticks:
    """
    Parse an ISO-8601 timestamp into ticks, keeping up to 7 fractional digits exactly.

    Accepts a ``T`` or space separator, ``Z`` or any ``±HH:MM`` offset, and a date alone (midnight).
    Digits beyond the seventh (nanoseconds) must be zero: dropping them silently would move a
    window bound.

    :param value: the text to parse.
    :param assume_utc: read a timestamp without an offset as UTC; when False, such a value is an error.
    :raises TimestampError: when the value is not such a timestamp.
    """
    if isinstance(value, str) and len(value) == 33 and value[19] == "." and value[27] in "+-":
        # Orchestrator's own shape, ``2021-10-14T13:10:15.1964174+00:00``: the C parser is ~40x faster
        # than the regex; it keeps 6 digits, so the fraction is taken from the text itself.
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None and value[20:27].isdigit():
            offset = parsed.utcoffset() or timedelta(0)
            seconds = (
                (parsed.toordinal() - _EPOCH_ORDINAL) * 86_400
                + parsed.hour * 3600
                + parsed.minute * 60
                + parsed.second
                - offset.days * 86_400
                - offset.seconds
            )
            return seconds * TICKS_PER_SECOND + int(value[20:27])
    match = _ISO_RE.match(value) if isinstance(value, str) else None
    if match is None:
        raise TimestampError(
            f"{value!r} is not an ISO-8601 timestamp; expected e.g. '2026-01-31T13:00:00Z' "
            "or '2026-01-31T13:00:00.1234567+00:00'"
        )
    parts = match.groupdict()
    fraction = parts["fraction"] or ""
    if len(fraction) > 7 and fraction[7:].strip("0"):
        raise TimestampError(
            f"{value!r} has sub-100ns precision; Orchestrator timestamps carry at most 7 fractional digits"
        )
    offset_text = parts["offset"]
    if offset_text is None and not assume_utc:
        raise TimestampError(f"{value!r} has no UTC offset; add 'Z' or an offset such as '+00:00'")
    try:
        naive = datetime(
            int(parts["year"]),
            int(parts["month"]),
            int(parts["day"]),
            int(parts["hour"] or 0),
            int(parts["minute"] or 0),
            int(parts["second"] or 0),
        )
        offset = _parse_offset(offset_text)
    except ValueError as exc:
        raise TimestampError(f"{value!r} is not a valid timestamp: {exc}") from None
    whole_seconds = naive.replace(tzinfo=UTC) - offset
    ticks = datetime_to_ticks(whole_seconds)
    return ticks + int((fraction + "0000000")[:7])


# Ticks of a seven-digit timestamp up to its minute (with its offset): a page of entries spans a few minutes.
_MINUTES: dict[str, Ticks] = {}
_MAX_MINUTES = 4096
# Ticks of the minute ``YYYY-MM-DDTHH:MM`` of UTC texts ``...Z``, by that text.
_UTC_MINUTES: dict[str, Ticks] = {}
# Per length of a UTC text ``...:SSZ`` / ``...:SS.fZ`` .. ``...:SS.fffffffZ``: the ticks of one unit of the
# number its seconds and fraction digits make (``12.345`` read as 12345: 10,000 ticks each).
_UNIT_OF_LENGTH: dict[int, Ticks] = {20: TICKS_PER_SECOND} | {21 + n: 10 ** (7 - n) for n in range(1, 8)}


def parse_seven_digit_timestamp(text: str) -> Ticks:
    """
    :func:`parse_timestamp` of ``text``, from a cache of its minute when it has .NET's round-trip shape with
    seven fractional digits (``2021-10-14T13:10:15.1964174+00:00`` or ``...15.1964174Z``: Orchestrator's
    ``createdOn`` and ``ExecutionTime``).

    Up to the seconds such a text maps to ticks linearly in the seconds and the 7 fractional digits once the
    rest (date, hour, minute, offset) is fixed, so the rest is parsed once per minute: the ticks are that
    minute's plus ``int("151964174")``. Any other text goes to :func:`parse_timestamp`.
    """
    if len(text) in (28, 33) and text[16] == ":" and text[19] == "." and text.isascii() and text[17] < "6":
        digits = text[17:19] + text[20:27]
        if digits.isdigit():
            minute = text[:16] + text[27:]
            start = _MINUTES.get(minute)
            if start is None:
                start = parse_timestamp(text) - int(digits)
                if len(_MINUTES) >= _MAX_MINUTES:
                    _MINUTES.clear()
                _MINUTES[minute] = start
            return start + int(digits)
    return parse_timestamp(text)


def parse_utc_timestamp(text: str) -> Ticks:
    """
    :func:`parse_timestamp` of ``text``, from a cache of its minute when it has the UTC shape of the audit
    events' ``createdOn`` (``2026-01-31T13:05:12.345Z``: any fraction length up to seven digits, or none).

    Up to the seconds such a text maps to ticks linearly in the digits of its seconds and fraction once the
    minute is fixed, so the minute is parsed once (by the general parser, on the whole text, so that errors
    are its own) and the rest is read by slicing. Any other text goes to :func:`parse_seven_digit_timestamp`.
    """
    unit = _UNIT_OF_LENGTH.get(len(text))
    if unit is not None and text[-1] == "Z" and text[16] == ":" and text[17] < "6" and text.isascii():
        digits = text[17:19] if unit == TICKS_PER_SECOND else text[17:19] + text[20:-1]
        if digits.isdigit() and (unit == TICKS_PER_SECOND or text[19] == "."):
            minute = text[:16]
            start = _UTC_MINUTES.get(minute)
            if start is None:
                start = parse_timestamp(text) - int(digits) * unit
                if len(_UTC_MINUTES) >= _MAX_MINUTES:
                    _UTC_MINUTES.clear()
                _UTC_MINUTES[minute] = start
            return start + int(digits) * unit
    return parse_seven_digit_timestamp(text)  # ``...+00:00`` (Orchestrator's own shape), else parse_timestamp


def parse_utc_timestamps(texts: list[str]) -> list[Ticks]:
    """
    The ticks of each text, as :func:`parse_timestamp` gives them, for a page's worth of texts at once: texts
    that all have one UTC shape ``...:SS[.f..]Z`` with the same number of fraction digits (the events'
    ``createdOn``, Orchestrator's ``ExecutionTime``) with steps over all of them, any other page a text at a
    time through :func:`parse_utc_timestamp`.

    :raises TimestampError: naming a text that is not a timestamp.
    """
    ticks = _utc_fixed_shape_ticks(texts)
    return ticks if ticks is not None else list(map(parse_utc_timestamp, texts))


#: The name Orchestrator's seven-digit ``ExecutionTime`` pages were read through first.
parse_seven_digit_timestamps = parse_utc_timestamps

# The pieces of a UTC text ``YYYY-MM-DDTHH:MM:SS[.f..]Z``: its minute, its seconds, its fraction (by length).
_MINUTE, _SECONDS = itemgetter(slice(0, 16)), itemgetter(slice(17, 19))
_FRACTIONS = {length: itemgetter(slice(20, length - 1)) for length in _UNIT_OF_LENGTH if length > 20}


def _utc_fixed_shape_ticks(texts: list[str]) -> list[Ticks] | None:
    """
    The ticks of texts that all have the shape ``2026-01-31T13:05:12[.f..]Z`` with one length, read with steps
    over all of them (checked on the texts joined, taken apart with ``map``), not a loop; None when one has
    another shape or length.
    """
    count = len(texts)
    if not count:
        return None
    length = len(texts[0])
    unit = _UNIT_OF_LENGTH.get(length)
    joined = "".join(texts)
    if not (
        unit is not None
        and len(joined) == length * count
        and joined.isascii()
        and joined[length - 1 :: length] == "Z" * count
        and joined[16::length] == ":" * count
        and (length == 20 or joined[19::length] == "." * count)
        and max(joined[17::length]) < "6"
        and set(map(len, texts)) == {length}
    ):
        return None
    seconds = map(_SECONDS, texts)
    digits = list(seconds) if length == 20 else list(map(add, seconds, map(_FRACTIONS[length], texts)))
    if not "".join(digits).isdigit():  # ASCII (joined is): 0-9 only
        return None
    minutes = list(map(_MINUTE, texts))
    new = set(minutes).difference(_UTC_MINUTES)
    if new:
        if len(_UTC_MINUTES) + len(new) > _MAX_MINUTES:
            _UTC_MINUTES.clear()
            new = set(minutes)
        for minute, text in dict(zip(minutes, texts, strict=True)).items():
            if minute in new:  # the whole text checked by the general parser, which says what is wrong
                _UTC_MINUTES[minute] = parse_timestamp(text) - int(text[17:19] + text[20:-1]) * unit
    values = map(int, digits) if unit == 1 else map(unit.__mul__, map(int, digits))
    return list(map(add, map(_UTC_MINUTES.__getitem__, minutes), values))


def _parse_offset(text: str | None) -> timedelta:
    if text is None or text in ("Z", "z"):
        return timedelta(0)
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
    if hours > 23 or minutes > 59:
        raise ValueError(f"offset {text!r} is out of range")
    return sign * timedelta(hours=hours, minutes=minutes)


def datetime_to_ticks(value: datetime) -> Ticks:
    """Convert an aware datetime to ticks (a naive one is read as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * TICKS_PER_SECOND + delta.microseconds * _TICKS_PER_MICROSECOND


def ticks_to_datetime(ticks: Ticks) -> datetime:
    """Convert ticks to an aware UTC datetime; the seventh digit is truncated."""
    return _EPOCH + timedelta(microseconds=ticks // _TICKS_PER_MICROSECOND)


def format_ticks(ticks: Ticks) -> str:
    """Format ticks the way Orchestrator does: ``2021-10-14T13:10:15.1964174+00:00``."""
    seconds, remainder = divmod(ticks, TICKS_PER_SECOND)
    whole = _EPOCH + timedelta(seconds=seconds)
    return f"{whole:%Y-%m-%dT%H:%M:%S}.{remainder:07d}+00:00"


def to_ticks(value: str | datetime | date) -> Ticks:
    """Ticks of a string, datetime or date (a date means its midnight in UTC)."""
    if isinstance(value, datetime):
        return datetime_to_ticks(value)
    if isinstance(value, date):
        return datetime_to_ticks(datetime(value.year, value.month, value.day, tzinfo=UTC))
    if isinstance(value, str):
        return parse_timestamp(value)
    raise TimestampError(f"{value!r} ({type(value).__name__}) is not a timestamp, datetime or date")
