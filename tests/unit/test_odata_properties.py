"""
The OData page parser against a reference reading on Python's json, on generated pages.

Pages are generated as JSON text (escapes chosen freely, numbers as written, raw U+2028/U+2029, whitespace,
pretty-printing, keys in any order, unknown and repeated members, ``ExecutionTime`` in several shapes, Ids
that are not int64 numbers), as in the classic parser's properties. The reference reads the body with
:mod:`json`, takes each entry's exact text from :func:`~.page_parser.scan_records` and builds the entry
with ``OrchestratorAuditEntry(raw, text)``, which checks ``Id`` and ``ExecutionTime`` itself. The parser
must give the same page (each entry's line, fields, Id, ExecutionTime and ticks) or fail where the
reference fails, damaged exactly when the body is not JSON text at all.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from airflow_provider_orchestrator_audit.client import odata
from airflow_provider_orchestrator_audit.client.odata import parse_orchestrator_page
from airflow_provider_orchestrator_audit.client.page_parser import (
    JSON_DECODER,
    PageFormatError,
    expect_char,
    is_json,
    scan_records,
    skip_whitespace,
)
from airflow_provider_orchestrator_audit.orchestrator_models import OrchestratorAuditEntry, OrchestratorAuditPage
from tests.unit.test_page_parser_properties import damage, json_string, json_value, whitespace
from tests.unit.timestamp_texts import timestamp_texts

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

EXECUTION_TIME = st.one_of(
    # Orchestrator's own shape, on all sides of the minute cache (seconds 00-59, every fraction digit).
    timestamp_texts(st.sampled_from(["Z", "Z", "+00:00", "+02:00", "-05:30"])),
    st.sampled_from(
        [
            "2026-01-02T03:04:05Z",
            "2026-01-02T03:04:05.5Z",
            "2026-01-02T03:04:05.123+01:00",
            "2026-01-02T03:04:05.1234567",  # no offset: read as UTC
            "2026-01-02T03:04:60.0000000Z",  # second 60
            "2026-02-30T03:04:05.0000000Z",  # no such day
            "2026-01-02T03:04:05.12345678Z",  # sub-100 ns
            "2026-01-02T03:04:5\u0663.1234567Z",  # a non-ASCII digit
            "2026-01-02T03:04:05.1_34567Z",  # int() would take these three
            "2026-01-02T03:04:05.+234567Z",
            "2026-01-02T03:04: 5.1234567Z",
            "2026-01-02T03:04:05.1234567X",
            "2026-01-02T03:04:05,1234567Z",
            "yesterday",
        ]
    ),
)
IDS = st.one_of(
    st.integers(0, 2**63 - 1).map(str),
    st.sampled_from(["0", "7", "-1", "1.0", "1e3", "true", "null", '"7"', '"x"', str(2**63), "[1]"]),
)


@st.composite
def entry(draw: st.DrawFn, pretty: bool) -> str:
    """One entry's JSON text: Id and ExecutionTime (usually) among other fields, in any order."""
    space = whitespace(pretty)
    fields = []
    if draw(st.integers(0, 19)):
        key = draw(st.sampled_from(['"Id"', '"Id"', '"\\u0049d"']))
        fields.append(f"{key}{draw(space)}:{draw(space)}{draw(IDS)}")
    if draw(st.integers(0, 19)):
        key = draw(st.sampled_from(['"ExecutionTime"', '"ExecutionTime"', '"Execution\\u0054ime"']))
        value = draw(
            st.one_of(json_string(EXECUTION_TIME).map(lambda pair: pair[1]), st.sampled_from(["null", "20260102"]))
            if draw(st.integers(0, 9)) == 0
            else json_string(EXECUTION_TIME).map(lambda pair: pair[1])
        )
        fields.append(f"{key}{draw(space)}:{draw(space)}{value}")
    for name, value in draw(st.lists(st.tuples(json_string(), json_value(pretty)), max_size=4)):
        fields.insert(draw(st.integers(0, len(fields))), f"{name[1]}{draw(space)}:{draw(space)}{value}")
    return "{" + draw(space) + ("," + draw(space)).join(fields) + draw(space) + "}"


@st.composite
def page_body(draw: st.DrawFn) -> bytes:
    """A page's body: @odata.context, @odata.count, value (as the API sends them, or wrong) and others."""
    pretty = draw(st.booleans())
    space = whitespace(pretty)
    entries = draw(st.lists(entry(pretty), max_size=6))
    if draw(st.integers(0, 19)) == 0:
        entries.insert(0, draw(st.sampled_from(["3", "null", '"x"', "[]"])))  # an entry that is not an object
    value = "[" + draw(space) + ("," + draw(space)).join(entries) + draw(space) + "]"
    count = draw(
        st.sampled_from(["3", "0", "1000", "-1", "1.0", '"3"', "null", "true", "123456789012345678901234567890"])
    )
    members = [f'"value"{draw(space)}:{draw(space)}{value}', f'"@odata.count"{draw(space)}:{draw(space)}{count}']
    if draw(st.booleans()):
        members.append('"@odata.context":' + draw(st.sampled_from(['"/odata/$metadata#AuditLogs"', "null", "1"])))
    if draw(st.integers(0, 4)) == 0:
        members.append('"@odata.nextLink":' + draw(st.sampled_from(['"/odata/AuditLogs?$skip=3"', '""', "null", "5"])))
    for name, other in draw(st.lists(st.tuples(json_string(), json_value(pretty)), max_size=2)):
        members.append(f"{name[1]}:{other}")
    if draw(st.integers(0, 19)) == 0:
        members.append('"extra":' + draw(st.sampled_from(["NaN", "-Infinity", '"\\ud800"'])))
    members = draw(st.permutations(members))
    if draw(st.integers(0, 9)) == 0:
        members = members[1:]  # one of them missing
    return (draw(space) + "{" + ",".join(members) + "}" + draw(space) + draw(st.sampled_from(["", "\n"]))).encode()


def _scan_envelope(text: str) -> tuple[dict[str, Any], list[OrchestratorAuditEntry] | None]:
    """
    The envelope's members and the entries of its ``value``, each built from its own text; the last ``value``
    counts, as the last of any repeated member does in Python's json.

    :raises PageFormatError: when that ``value`` holds an element that is no object or no usable entry.
    """
    index = skip_whitespace(text, expect_char(text, skip_whitespace(text, 0), "{"))
    members: dict[str, Any] = {}
    entries: list[OrchestratorAuditEntry] | PageFormatError | None = None
    if text[index : index + 1] != "}":
        while True:
            key, index = JSON_DECODER.raw_decode(text, index)
            index = skip_whitespace(text, expect_char(text, skip_whitespace(text, index), ":"))
            start = index
            members[key], index = JSON_DECODER.raw_decode(text, index)
            if key == "value":
                entries = None
                if isinstance(members[key], list):
                    try:
                        entries = scan_records(text, start, "value", OrchestratorAuditEntry)[0]
                    except PageFormatError as error:
                        entries = error
            index = skip_whitespace(text, index)
            if text[index : index + 1] == ",":
                index = skip_whitespace(text, index + 1)
                continue
            break
    if isinstance(entries, PageFormatError):
        raise entries
    return members, entries


def _reference(body: bytes) -> OrchestratorAuditPage | str:
    """The page as Python's json reads it, or why it is not one (``damaged`` when not JSON text at all)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "damaged"
    if not is_json(text):
        return "damaged"
    try:
        members, entries = _scan_envelope(text)
    except (ValueError, RecursionError):  # PageFormatError too: an entry that is no object, or unusable
        return "not a page"
    count, link = members.get("@odata.count"), members.get("@odata.nextLink")
    if entries is None or (count is not None and (type(count) is not int or count < 0)):
        return "not a page"
    return OrchestratorAuditPage(entries, count=count, next_link=link if isinstance(link, str) and link else None)


def _assert_same(page: OrchestratorAuditPage, expected: OrchestratorAuditPage) -> None:
    assert (page.count, page.next_link) == (expected.count, expected.next_link)
    assert len(page.entries) == len(expected.entries)
    for got, want in zip(page.entries, expected.entries, strict=True):
        assert got.to_json_bytes() == want.to_json_bytes() and got.to_json() == want.to_json()
        assert (got.entry_id, got.execution_time, got.execution_time_ticks) == (
            want.entry_id,
            want.execution_time,
            want.execution_time_ticks,
        )
        assert got.created_on_ticks == want.created_on_ticks and got.created_at == want.created_at
        assert dict(got.raw) == dict(want.raw) and list(got.raw) == list(want.raw)


def _msgspec_refuses(body: bytes) -> bool:
    # Valid JSON msgspec does not read: NaN and the infinities, and lone surrogate escapes.
    lowered = body.lower()
    return any(
        form in lowered
        for form in (
            b"nan",
            b"infinity",
            b"\\ud8",
            b"\\ud9",
            b"\\uda",
            b"\\udb",
            b"\\udc",
            b"\\udd",
            b"\\ude",
            b"\\udf",
        )
    )


def _assert_parses_like_the_reference(body: bytes) -> None:
    expected = _reference(body)
    try:
        page = parse_orchestrator_page(body)
    except PageFormatError as error:
        if not isinstance(expected, str):
            # The one refusal of a page Python's json reads: a form msgspec does not read.
            assert str(error) == "not an OData page msgspec could read" and _msgspec_refuses(body), error
        else:
            assert error.damaged is (expected == "damaged"), (error, expected)
    else:
        assert not isinstance(expected, str), expected
        _assert_same(page, expected)


@SETTINGS
@given(page_body())
@example(b'{"@odata.count":1,"value":[{"Id":7,"ExecutionTime":"2026-01-02T03:04:05.1234567Z","N":1.10}]}')
@example('{"value":[{"Id":7,"ExecutionTime":"2026-01-02T03:04:05.1234567Z","m":"a\u2028b\u2029"}]}'.encode())
@example(b'{"value":[{"Id":7,"ExecutionTime":"2026-01-02T03:04:05.1234567Z","m":"\xff"}]}')
@example(b'{"@odata.context":"\xff","value":[{"Id":7,"ExecutionTime":"2026-01-02T03:04:05.1234567Z"}]}')
@example(b'{"value":[{"Id":7,"ExecutionTime":"2026-01-02T03:04:05.1234567Z"}],"value":[]}')
@example(b'{"value":[{"Id":"7","ExecutionTime":"2026-01-02T03:04:05.1234567Z"}]}')
@example(b'{"value":[{"Id":7,"ExecutionTime":"2026-01-02T03:04:05.1234567Z"},\n{"Id":8,\n"ExecutionTime":"x"}]}')
@example(b'{"value":[{"Id":7,"ExecutionTime":"2026-01-02T03:04:05.1234567Z"},{"Id":8,"ExecutionTime":"x"}]}')
@example(
    b'{"value":[{"Id":7,"ExecutionTime":"2026-01-02T03:04:05.1234567Z"},{"Id":8,"\\u0045xecutionTime":"2026-01-02T03:04:05.1_34567Z"}]}'
)
@example(b'{"value":[{"Id":7,"ExecutionTime":"2026-01-02T03:04:05.1234567Z"}],"@odata.deltaLink":"\xff"}')
@example(b'{"value":[{"Id":7,"ExecutionTime":"2026-01-02T03:04:05.1234567Z"}]}\n')
@example(b'{"value":[{"Id":0,"ExecutionTime":"2026-01-02T03:04:05.1234567Z","A":"\xff"}],"@odata.count":-1}')
def test_pages_read_as_the_reference_reads_them(body):
    _assert_parses_like_the_reference(body)


@SETTINGS
@given(page_body(), st.data())
def test_damaged_bodies_fail_as_the_reference_says(body, data):
    """Cut short, a byte replaced, or bytes inserted: the same page, or an error where the reference has one."""
    _assert_parses_like_the_reference(damage(body, data))


@st.composite
def ordinary_entry(draw: st.DrawFn) -> str:
    """An entry as Orchestrator writes it: a numeric Id, a timestamp ExecutionTime, other fields in any order."""
    fields = [
        f'"Id":{draw(st.integers(0, 2**63 - 1))}',
        '"ExecutionTime":' + draw(json_string(EXECUTION_TIME))[1],
    ]
    for name, value in draw(st.lists(st.tuples(json_string(), json_value(False)), max_size=4)):
        fields.insert(draw(st.integers(0, len(fields))), f"{name[1]}:{value}")
    return "{" + ",".join(fields) + "}"


# Many generated entries carry an ExecutionTime the reference refuses (second 60, say) and are filtered out.
@settings(SETTINGS, max_examples=100, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.lists(ordinary_entry(), min_size=1, max_size=8), st.booleans())
@example(['{"Id":5,"ExecutionTime":"2026-01-02T03:04:05.1234567Z","OperationText":"caf\u00e9 \u2028 \u6f22"}'], True)
def test_ordinary_pages_take_the_fast_path(entries, trailing_newline):
    """Valid compact pages (without the forms msgspec refuses) never go to the entry-by-entry reading."""
    body = '{"@odata.context":"/odata/$metadata#AuditLogs","@odata.count":8,"value":[' + ",".join(entries) + "]}"
    body += "\n" if trailing_newline else ""
    expected = _reference(body.encode())
    assume(not isinstance(expected, str) and not _msgspec_refuses(body.encode()))
    assume(all("\n" not in line and "\r" not in line for line in entries))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(odata, "_read_page", _no_slow_reading)
        page = parse_orchestrator_page(body.encode())
    assert isinstance(expected, OrchestratorAuditPage)
    _assert_same(page, expected)


def _no_slow_reading(body: bytes) -> OrchestratorAuditPage:
    raise AssertionError(f"an ordinary page went to the entry-by-entry reading: {body[:300]!r}")


def test_lines_are_the_servers_text_on_both_readings():
    line = (
        '{"Id":9,"ExecutionTime":"2026-01-31T11:00:00.1234567Z","N":1.10,"P":"a\\/b","M":"one\u2028two","E":"\\u00e9"}'
    )
    compact = ('{"@odata.count":1,"value":[' + line + "]}").encode()
    pretty = ('{\n  "@odata.count": 1,\n  "value": [' + line + "]\n}").encode()
    for body in (compact, pretty):
        (entry,) = parse_orchestrator_page(body).entries
        assert entry.to_json() == line.replace("\u2028", "\\u2028")
        assert entry.raw["M"] == "one\u2028two" and json.loads(entry.to_json()) == dict(entry.raw)
