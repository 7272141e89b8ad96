"""
The page parser's msgspec path against the reference scanner on Python's json, on generated pages.

Pages are generated as JSON *text*, not through json.dumps, so that they hold what servers really send
and a re-encoding parser would change: escapes chosen freely (``\\u00e9`` or ``é``, ``\\/``, surrogate
pairs), numbers as written (``1.10``, ``-0``, ``1E+2``), raw U+2028/U+2029 in strings, whitespace and
pretty-printing, keys in any order, unknown and repeated keys, and 7-digit ``createdOn`` in several shapes.
Both ways must read every page alike (each entry's line, fields, ``createdOn`` and ticks), and anything the
fast path leaves to the scanner must end in the scanner's own answer or error.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TypeVar

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from airflow_provider_orchestrator_audit.client import page_parser
from airflow_provider_orchestrator_audit.client.page_parser import PageFormatError, parse_page
from airflow_provider_orchestrator_audit.models import AuditLogPage
from airflow_provider_orchestrator_audit.timestamps import TimestampError, parse_seven_digit_timestamp, parse_timestamp
from tests.unit.timestamp_texts import timestamp_texts

_Page = TypeVar("_Page")

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}
# Text as audit entries hold it: accents, CJK, emoji (astral), line and paragraph separators, controls.
_CHARACTERS = st.one_of(
    st.characters(codec="utf-8"),
    st.sampled_from(["\u2028", "\u2029", "\n", "\r", "\t", '"', "\\", "/", "é", "漢", "😀", "\x00", "\x1f", "\x7f"]),
)


def _escaped(char: str, style: int) -> str:
    code = ord(char)
    if code > 0xFFFF:
        high, low = 0xD800 + ((code - 0x10000) >> 10), 0xDC00 + ((code - 0x10000) & 0x3FF)
        return f"\\u{high:04x}\\u{low:04X}" if style % 2 else f"\\u{high:04X}\\u{low:04x}"
    if style % 3 == 0 and char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    if style % 3 == 1 and char == "/":
        return "\\/"
    return f"\\u{code:04x}" if style % 2 else f"\\u{code:04X}"


@st.composite
def json_string(draw: st.DrawFn, value: st.SearchStrategy[str] | None = None) -> tuple[str, str]:
    """``(the Python string, a JSON text of it)`` with each character raw or escaped at random."""
    text = draw(value if value is not None else st.text(_CHARACTERS, max_size=12))
    styles = draw(st.lists(st.integers(0, 5), min_size=len(text), max_size=len(text)))
    out = []
    for char, style in zip(text, styles, strict=True):
        must_escape = char in '"\\' or ord(char) < 0x20
        out.append(_escaped(char, style) if must_escape or style >= 4 else char)
    return text, '"' + "".join(out) + '"'


NUMBERS = st.sampled_from(["0", "-0", "1.10", "1E+2", "2e-3", "-12.5e10", "123456789012345678901234567890", "7", "1.0"])
SCALARS = st.one_of(NUMBERS, st.sampled_from(["true", "false", "null"]), json_string().map(lambda pair: pair[1]))


def whitespace(pretty: bool) -> st.SearchStrategy[str]:
    return st.text(st.sampled_from(" \t\n\r"), max_size=3) if pretty else st.just("")


@st.composite
def json_value(draw: st.DrawFn, pretty: bool, depth: int = 0) -> str:
    if depth >= 2 or draw(st.booleans()):
        return draw(SCALARS)
    space = whitespace(pretty)
    if draw(st.booleans()):
        items = draw(st.lists(json_value(pretty, depth + 1), max_size=3))
        return "[" + ",".join(draw(space) + item + draw(space) for item in items) + "]"
    pairs = draw(st.lists(st.tuples(json_string(), json_value(pretty, depth + 1)), max_size=3))
    return "{" + ",".join(f"{draw(space)}{key[1]}{draw(space)}:{draw(space)}{value}" for key, value in pairs) + "}"


CREATED_ON = st.one_of(
    # Orchestrator's own shape, on all sides of the minute cache (seconds 00-59, every fraction digit).
    timestamp_texts(st.sampled_from(["+00:00", "-05:30", "+14:00", "+23:59"])),
    st.sampled_from(
        [
            "2026-01-02T03:04:05Z",
            "2026-01-02T03:04:05.1234567Z",
            "2026-01-02 03:04:05.1234567+00:00",
            "2026-01-02T03:04:05.123+01:00",
            "2026-01-02T03:04:05.123456700+00:00",
            "2026-01-02",
            "2026-01-02T03:04:60.0000000+00:00",  # second 60
            "2026-02-30T03:04:05.0000000+00:00",  # no such day
            "2026-01-02T03:04:05.12345678+00:00",  # sub-100 ns
            "2026-01-02T03:04:05.1234567+24:00",
            "2026-01-02T03:04:5٣.1234567+00:00",  # a non-ASCII digit
            "yesterday",
        ]
    ),
)


@st.composite
def entry(draw: st.DrawFn, pretty: bool) -> str:
    """One entry's JSON text: createdOn (usually) among other fields, in any order."""
    space = whitespace(pretty)
    created_key = draw(st.sampled_from(['"createdOn"', '"createdOn"', '"created\\u004fn"']))
    created = draw(
        st.one_of(
            json_string(CREATED_ON).map(lambda pair: pair[1]),
            st.sampled_from(["null", "20260102", '["2026-01-02T03:04:05.1234567+00:00"]']),
        )
        if draw(st.integers(0, 9)) == 0
        else json_string(CREATED_ON).map(lambda pair: pair[1])
    )
    fields = [f"{created_key}{draw(space)}:{draw(space)}{created}"] if draw(st.integers(0, 19)) else []
    for key, value in draw(st.lists(st.tuples(json_string(), json_value(pretty)), max_size=4)):
        fields.insert(draw(st.integers(0, len(fields))), f"{key[1]}{draw(space)}:{draw(space)}{value}")
    return "{" + draw(space) + ("," + draw(space)).join(fields) + draw(space) + "}"


@st.composite
def page_body(draw: st.DrawFn) -> bytes:
    """A page's body: totalCount and results (as the API sends them, or wrong) with extra keys, any order."""
    pretty = draw(st.booleans())
    space = whitespace(pretty)
    entries = draw(st.lists(entry(pretty), max_size=6))
    results = "[" + draw(space) + ("," + draw(space)).join(entries) + draw(space) + "]"
    total = draw(st.sampled_from(["29", "0", "123456789012345678901234567890", "-1", "1.0", '"29"', "null", "true"]))
    members = [f'"totalCount"{draw(space)}:{draw(space)}{total}', f'"results"{draw(space)}:{draw(space)}{results}']
    for key, value in draw(st.lists(st.tuples(json_string(), json_value(pretty)), max_size=2)):
        members.append(f"{key[1]}:{value}")
    if draw(st.integers(0, 19)) == 0:
        members.append('"extra":' + draw(st.sampled_from(["NaN", "-Infinity", '"\\ud800"'])))
    members = draw(st.permutations(members))
    if draw(st.integers(0, 9)) == 0:
        members = members[1:]  # one of them missing
    return (draw(space) + "{" + ",".join(members) + "}" + draw(space)).encode("utf-8")


def _reference(body: bytes) -> AuditLogPage | PageFormatError:
    try:
        return page_parser._scan_page(body)
    except PageFormatError as error:
        return error


def _assert_same(page: AuditLogPage, expected: AuditLogPage) -> None:
    assert page.total_count == expected.total_count
    assert len(page.results) == len(expected.results)
    for got, want in zip(page.results, expected.results, strict=True):
        assert got.to_json() == want.to_json()
        assert got.created_on_ticks == want.created_on_ticks
        assert got.created_on == want.created_on
        assert dict(got.raw) == dict(want.raw)
        assert list(got.raw) == list(want.raw)


def damage(body: bytes, data: st.DataObject) -> bytes:
    """``body`` cut short, one byte replaced, or bytes inserted, where and how ``data`` draws."""
    how = data.draw(st.sampled_from(["cut", "replace", "insert"]))
    at = data.draw(st.integers(0, max(0, len(body) - 1)))
    if how == "cut":
        return body[:at]
    byte = data.draw(st.sampled_from([b"\xff", b"\xe2\x80", b"\x00", b"]", b"}", b",", b'"', b"\\", b"\n", b"9"]))
    return body[:at] + byte + body[at + (how == "replace") :]


def assert_parses_like_the_reference(
    body: bytes,
    reference: Callable[[bytes], _Page | PageFormatError],
    fast: Callable[[bytes], _Page | None],
    parse: Callable[[bytes], _Page],
    assert_same: Callable[[_Page, _Page], None],
) -> None:
    """
    The fast path's page (when it takes ``body``) and the parser's answer are the reference's: the same page,
    or the same error, equally damaged.
    """
    expected = reference(body)
    read = fast(body)
    if read is not None:
        assert not isinstance(expected, PageFormatError), expected
        assert_same(read, expected)
    try:
        page = parse(body)
    except PageFormatError as error:
        assert isinstance(expected, PageFormatError)
        assert (str(error), error.damaged) == (str(expected), expected.damaged)
    else:
        assert not isinstance(expected, PageFormatError), expected
        assert_same(page, expected)


def _assert_parses_like_the_reference(body: bytes) -> None:
    assert_parses_like_the_reference(body, _reference, page_parser._read_page, parse_page, _assert_same)


@SETTINGS
@given(page_body())
@example(b'{"totalCount":1,"results":[{"createdOn":"2021-10-14T13:10:15.1964174+00:00","ratio":1.10}]}')
@example('{"totalCount":1,"results":[{"createdOn":"2021-10-14T13:10:15.1964174+00:00","m":"a\u2028b"}]}'.encode())
@example(b'{"totalCount":1,"results":[{"createdOn":"2021-10-14T13:10:15.1964174+00:00","m":"\\ud800"}]}')
@example(b'{"totalCount":1,"extra":"\xff","results":[{"createdOn":"2021-10-14T13:10:15.1964174+00:00"}]}')
@example(b'{"totalCount":1,"results":[{"createdOn":"2021-10-14T13:10:15.1964174+00:00"}],"results":[]}')
def test_the_fast_path_reads_every_page_as_the_reference_scanner(body):
    _assert_parses_like_the_reference(body)


@SETTINGS
@given(page_body(), st.data())
def test_damaged_bodies_fail_as_the_reference_says(body, data):
    """Cut short, a byte replaced, or bytes inserted: the same answer or the same error as the scanner."""
    _assert_parses_like_the_reference(damage(body, data))


# Most generated pages hold an entry the reference refuses (no createdOn, say) and are filtered out; the
# property still needs its 300 valid pages, so filtering much is expected here, not a health problem.
@settings(SETTINGS, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.lists(entry(pretty=False), min_size=1, max_size=8), st.booleans())
def test_ordinary_pages_take_the_fast_path(entries, pretty):
    """Without the forms msgspec refuses (lone surrogates), valid pages never fall back to the scanner."""
    body = '{"totalCount":8,"results":[' + ",".join(entries) + "]}"
    if pretty:
        body = json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    expected = _reference(body.encode())
    assume(not isinstance(expected, PageFormatError) and "\\ud8" not in body.lower() and "\\udc" not in body.lower())
    assert page_parser._read_page(body.encode()) is not None


def test_lines_are_the_servers_text_and_break_free():
    body = (
        '{"totalCount":2,"results":[{"createdOn":"2021-10-14T13:10:15.1964174+00:00","ratio":1.10,"name":"Jos\\u00e9",'
        '"path":"a\\/b","m":"one\u2028two"},{"createdOn":"2021-10-14T13:10:15.1964174+00:00","unknown":{"x":[1E+2]}}]}'
    ).encode()
    first, second = parse_page(body).results
    # A raw U+2028 cannot stay in a line: it is escaped (it can only stand in a string), the rest kept as sent.
    assert first.to_json() == (
        '{"createdOn":"2021-10-14T13:10:15.1964174+00:00","ratio":1.10,"name":"Jos\\u00e9","path":"a\\/b",'
        '"m":"one\\u2028two"}'
    )
    assert second.to_json() == '{"createdOn":"2021-10-14T13:10:15.1964174+00:00","unknown":{"x":[1E+2]}}'
    assert second.created_on == "2021-10-14T13:10:15.1964174+00:00"


@SETTINGS
@given(CREATED_ON, st.integers(0, 32), st.sampled_from(list("0123456789:.+-TZ /٣x")))
@example("2026-01-02T03:04:05.1234567+00:00", 17, "6")  # second 60 after a valid one of that minute
@example("2026-01-02T03:04:05.1234567+00:00", 20, "٣")
def test_created_on_ticks_match_parse_timestamp(base, at, char):
    """The minute cache gives parse_timestamp's answer, also for a text right after a valid one of its minute."""
    for text in (base, base[:at] + char + base[at + 1 :]):
        try:
            expected: int | type[TimestampError] = parse_timestamp(text)
        except TimestampError:
            expected = TimestampError
        try:
            got: int | type[TimestampError] = parse_seven_digit_timestamp(text)
        except TimestampError:
            got = TimestampError
        assert got == expected, text
