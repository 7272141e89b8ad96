"""
The events page parser's msgspec path against the reference scanner on Python's json, on generated pages.

As for the classic pages (whose text generators these tests share), pages are generated as JSON *text*:
escapes chosen freely, numbers as written, raw U+2028/U+2029 in strings, pretty-printing, keys in any order,
unknown and repeated keys, ``id`` and ``createdOn`` in every shape (the events API's ``...12.345Z`` with any
fraction length, and wrong ones). Both ways must read every page alike (each event's line, fields, id,
``createdOn`` and ticks, the links), and anything the fast path leaves to the scanner must end in the
scanner's own answer or error. The documented envelope (``auditEvents``, ``previous``, ``next``) and one with
other members take two different fast paths: both are generated.
"""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from airflow_provider_orchestrator_audit.client import events as events_client
from airflow_provider_orchestrator_audit.client.events import (
    EventsQuery,
    parse_event_lines,
    parse_events_page,
    request_url,
)
from airflow_provider_orchestrator_audit.client.page_parser import PageFormatError
from airflow_provider_orchestrator_audit.client.settings import ConnectionSettings
from airflow_provider_orchestrator_audit.event_models import (
    AuditEventsPage,
    EventLine,
    EventLinesPage,
    created_on_ticks,
)
from airflow_provider_orchestrator_audit.exceptions import OrchestratorRequestError
from airflow_provider_orchestrator_audit.timestamps import TimestampError, parse_timestamp
from tests.unit.test_page_parser_properties import (
    CREATED_ON,
    assert_parses_like_the_reference,
    damage,
    json_string,
    json_value,
    whitespace,
)
from tests.unit.timestamp_texts import timestamp_texts

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# The events API's shape at every fraction length (none to 7 digits), on all sides of the minute cache.
EVENTS_CREATED_ON = timestamp_texts(st.just("Z"), st.integers(0, 7))
ANY_CREATED_ON = st.one_of(
    EVENTS_CREATED_ON,
    CREATED_ON,
    st.sampled_from(
        [
            "2026-01-31T13:05:12.Z",  # a dot without digits
            "2026-01-31T13:05:60.345Z",  # second 60
            "2026-01-31T13:05:12,345Z",  # a comma
            "2026-01-31T13:05:1٣.345Z",  # a non-ASCII digit
            "2026-01-31T13:05:12.3456789Z",
            "2026-01-31t13:05:12.345Z",
            "2026-01-31 13:05:12.345Z",
            "2026-01-31T13:05:12.345z",
            "2026-02-30T13:05:12.345Z",  # no such day
            "2026-01-31T13:05:12.34567890Z",  # 8 digits
        ]
    ),
)
IDS = st.one_of(
    st.uuids().map(str),
    st.sampled_from(["e1", "é", "a\u2028b", "x\\u0041", ""]),
    st.text(max_size=8),
)


@st.composite
def event(draw: st.DrawFn, pretty: bool) -> str:
    """One event's JSON text: id and createdOn (usually) among other fields, in any order."""
    space = whitespace(pretty)
    fields = []
    if draw(st.integers(0, 19)):
        value = (
            json_string(IDS).map(lambda pair: pair[1]) if draw(st.integers(0, 9)) else st.sampled_from(["7", "null"])
        )
        fields.append(f'"id"{draw(space)}:{draw(space)}{draw(value)}')
    if draw(st.integers(0, 19)):
        created = draw(st.sampled_from(['"createdOn"', '"createdOn"', '"created\\u004fn"']))
        value = json_string(ANY_CREATED_ON).map(lambda pair: pair[1]) if draw(st.integers(0, 9)) else st.just("1")
        fields.insert(draw(st.integers(0, len(fields))), f"{created}{draw(space)}:{draw(space)}{draw(value)}")
    for key, value in draw(st.lists(st.tuples(json_string(), json_value(pretty)), max_size=4)):
        fields.insert(draw(st.integers(0, len(fields))), f"{key[1]}{draw(space)}:{draw(space)}{value}")
    return "{" + draw(space) + ("," + draw(space)).join(fields) + draw(space) + "}"


LINKS = st.one_of(
    st.just("null"),
    st.just('"/acme/DefaultTenant/tenantaudit_/api/query/events?qw=eyJhIjoxfQ%3D%3D"'),
    json_string().map(lambda pair: pair[1]),
    st.sampled_from(['""', "3", "[]", '"\\ud800"']),
)


@st.composite
def page_body(draw: st.DrawFn) -> bytes:
    """A page's body: auditEvents and the links (as the API sends them, or wrong), maybe more members."""
    pretty = draw(st.booleans())
    space = whitespace(pretty)
    events = draw(st.lists(event(pretty), max_size=6))
    array = "[" + draw(space) + ("," + draw(space)).join(events) + draw(space) + "]"
    if draw(st.integers(0, 19)) == 0:
        array = draw(st.sampled_from(["{}", "null", '"[]"']))
    members = [f'"auditEvents"{draw(space)}:{draw(space)}{array}']
    for name in ("next", "previous"):
        if draw(st.integers(0, 4)):
            members.append(f'"{name}"{draw(space)}:{draw(space)}{draw(LINKS)}')
    for key, value in draw(st.lists(st.tuples(json_string(), json_value(pretty)), max_size=2)):
        if draw(st.integers(0, 2)) == 0:
            members.append(f"{key[1]}:{value}")
    if draw(st.integers(0, 19)) == 0:
        members.append('"extra":' + draw(st.sampled_from(["NaN", "-Infinity", '"\\ud800"', '"\\u00e9"'])))
    members = draw(st.permutations(members))
    if draw(st.integers(0, 9)) == 0:
        members = members[1:]  # one of them missing
    return (draw(space) + "{" + ",".join(members) + "}" + draw(space)).encode("utf-8")


def _reference(body: bytes) -> AuditEventsPage | PageFormatError:
    try:
        return events_client._scan_events_page(body)
    except PageFormatError as error:
        return error


def _assert_same(page: AuditEventsPage, expected: AuditEventsPage) -> None:
    assert (page.previous, page.next) == (expected.previous, expected.next)
    assert len(page.events) == len(expected.events)
    for got, want in zip(page.events, expected.events, strict=True):
        assert got.to_json() == want.to_json()
        assert got.to_json_bytes() == want.to_json_bytes() == want.to_json().encode("utf-8")
        assert (got.event_id, got.created_on, got.created_on_ticks) == (
            want.event_id,
            want.created_on,
            want.created_on_ticks,
        )
        assert got.created_at == want.created_at
        assert dict(got.raw) == dict(want.raw)
        assert list(got.raw) == list(want.raw)


def _assert_same_lines(page: EventLinesPage, expected: AuditEventsPage) -> None:
    """The export's page holds, of each event, what the reference's gives: its line, id and createdOn."""
    assert (page.previous, page.next) == (expected.previous, expected.next)
    assert [type(event) for event in page.events] == [EventLine] * len(expected.events)
    assert [(event.event_id, event.created_on, event.created_on_ticks, event.line) for event in page.events] == [
        (event.event_id, event.created_on, event.created_on_ticks, event.to_json().encode("utf-8"))
        for event in expected.events
    ]
    assert [event.to_json() for event in page.events] == [event.to_json() for event in expected.events]


def _assert_parses_like_the_reference(body: bytes) -> None:
    assert_parses_like_the_reference(body, _reference, events_client._read_events, parse_events_page, _assert_same)
    assert_parses_like_the_reference(
        body, _reference, events_client._read_event_lines, parse_event_lines, _assert_same_lines
    )


ORDINARY = (
    '{"id":"0f6a2c1e-8d5b-4c1a-9e2f-3b4c5d6e7f80","createdOn":"2026-01-31T13:05:12.345Z",'
    '"actorName":"Zoë Ångström","eventDetails":"{\\"note\\":\\"a\\\\nb\\"}","status":0,"n":1.10}'
)


@SETTINGS
@given(page_body())
# The documented envelope (first fast path), its events ASCII or not, U+2028 raw, ids escaped.
@example(f'{{"auditEvents":[{ORDINARY}],"next":null,"previous":"/p"}}'.encode())
@example(f'{{"auditEvents":[{ORDINARY.replace("Zoë Ångström", "Zoe")}],"previous":null}}'.encode())
@example('{"auditEvents":[{"id":"a","createdOn":"2026-01-31T13:05:12Z","s":"x\u2028y\u2029"}]}'.encode())
@example(b'{"auditEvents":[{"id":"\\u0061","createdOn":"2026-01-31T13:05:12.1234567Z"}],"previous":""}')
# Members besides the documented three (second fast path), a repeated auditEvents, a link that is not a string.
@example(f'{{"count":1,"auditEvents":[{ORDINARY}],"previous":"/p"}}'.encode())
@example(f'{{"auditEvents":[],"auditEvents":[{ORDINARY}]}}'.encode())
@example(f'{{"auditEvents":[{ORDINARY}],"previous":3}}'.encode())
@example(b'{"auditEvents":[{"id":"a","createdOn":"2026-01-31T13:05:12.345Z"}],"extra":"\xff"}')
# Pretty-printed events are re-encoded; not UTF-8 inside an event; createdOn the cache must refuse.
@example(b'{"auditEvents":[{\n"id":"a",\n"createdOn":"2026-01-31T13:05:12.345Z","n":1.10}]}')
@example(b'{"auditEvents":[{\n"id":"a",\n"createdOn":"2026-01-31T13:05:12.345Z","s":"\\ud800 \\ud83d\\ude00"}]}')
@example(b'{"auditEvents":[{"id":"a","createdOn":"2026-01-31T13:05:12.345Z","s":"\xff"}]}')
@example(b'{"auditEvents":[{"id":"a","createdOn":"2026-01-31T13:05:60.345Z"}]}')
@example(b'{"auditEvents":[{"id":"a","createdOn":"2026-01-31T13:05:12.Z"}]}')
def test_the_fast_path_reads_every_page_as_the_reference_scanner(body: bytes) -> None:
    _assert_parses_like_the_reference(body)


@SETTINGS
@given(page_body(), st.data())
def test_damaged_bodies_fail_as_the_reference_says(body: bytes, data: st.DataObject) -> None:
    """Cut short, a byte replaced, or bytes inserted: the same answer or the same error as the scanner."""
    _assert_parses_like_the_reference(damage(body, data))


# Most generated events are refused by the reference (no id, say) and filtered out: expected here.
@settings(SETTINGS, max_examples=100, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.lists(event(pretty=False), min_size=1, max_size=8), st.booleans(), st.booleans())
def test_ordinary_pages_take_the_fast_path(events: list[str], pretty: bool, other_members: bool) -> None:
    """Without the forms msgspec refuses (lone surrogates), valid pages never fall back to the scanner."""
    body = '{"auditEvents":[' + ",".join(events) + '],"next":null,"previous":"/p"' + (',"x":1' * other_members) + "}"
    if pretty:
        body = json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    expected = _reference(body.encode())
    assume(not isinstance(expected, PageFormatError) and "\\ud8" not in body.lower() and "\\udc" not in body.lower())
    page = events_client._read_events(body.encode())
    assert page is not None
    _assert_same(page, expected)
    lines = events_client._read_event_lines(body.encode())
    assert lines is not None
    _assert_same_lines(lines, expected)


@SETTINGS
@given(st.one_of(EVENTS_CREATED_ON, ANY_CREATED_ON), st.integers(0, 27), st.sampled_from(list("0123456789:.+-TZz /٣x")))
@example("2026-01-02T03:04:05.123Z", 17, "6")  # second 60 after a valid one of that minute
@example("2026-01-02T03:04:05.123Z", 19, "Z")
@example("2026-01-02T03:04:05Z", 18, "٣")
def test_created_on_ticks_match_parse_timestamp(base: str, at: int, char: str) -> None:
    """The minute cache gives parse_timestamp's answer, also for a text right after a valid one of its minute."""
    for text in (base, base[:at] + char + base[at + 1 :]):
        try:
            expected: int | type[TimestampError] = parse_timestamp(text)
        except TimestampError:
            expected = TimestampError
        try:
            got: int | type[TimestampError] = created_on_ticks(text)
        except TimestampError:
            got = TimestampError
        assert got == expected, text


BASES = [
    "http://127.0.0.1:8080",
    "https://cloud.example/",
    "https://cloud.example/prefix",
    "https://Cloud.Example:8443",
]
CURSOR_TEXT = st.lists(
    st.sampled_from([*"/abc-_~.%2E?&=#:;@+!$'()*,[]|<> é\\", "qw", "..", "//", "%41", "%zz", "/a", "/b"]), max_size=14
).map("".join)


@SETTINGS
@given(st.sampled_from(BASES), CURSOR_TEXT)
@example("https://cloud.example/prefix", "/acme/DefaultTenant/tenantaudit_/api/query/events?to=x&qw=a%2Fb+c")
@example("https://cloud.example/prefix", "/acme/./x/../events?qw=1")
@example("http://127.0.0.1:8080", "/#")  # join drops an empty fragment
@example("http://127.0.0.1:8080", "/a?")  # and an empty query
@example("http://127.0.0.1:8080", "/c;")  # and parameters of the last segment
@example("https://cloud.example/prefix", "//elsewhere.example/events?qw=1")
@example("https://cloud.example/prefix", "https://elsewhere.example/events")
def test_a_cursor_is_joined_to_the_base_url(base: str, cursor: str) -> None:
    """The cheap join of the usual cursor (a path) gives httpx's join; other hosts are refused."""
    settings_ = ConnectionSettings("c", base, "acme", client_id="id", client_secret="s")
    root = httpx.URL(settings_.base_url + "/")
    try:
        joined = root.join(cursor)
    except httpx.InvalidURL:
        with pytest.raises(httpx.InvalidURL):
            request_url(settings_, EventsQuery("organization", cursor=cursor))
        return
    query = EventsQuery("organization", cursor=cursor)
    if (joined.scheme, joined.host, joined.port) != (root.scheme, root.host, root.port):
        with pytest.raises(OrchestratorRequestError, match="another host"):
            request_url(settings_, query)
    else:
        assert request_url(settings_, query) == joined
        assert str(request_url(settings_, query)) == str(joined)
