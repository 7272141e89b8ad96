"""The spool writes an export's event lines exactly as it writes the whole events they come from."""

from __future__ import annotations

import gzip
import json

import pytest

from airflow_provider_orchestrator_audit.client.events import parse_event_lines, parse_events_page
from airflow_provider_orchestrator_audit.event_models import AuditEvent, EventLine
from airflow_provider_orchestrator_audit.export.spool import JsonLinesSpool

EVENTS = [
    '{"id":"b","createdOn":"2026-01-31T13:05:12.345Z","actorName":"Zoë","n":1.10}',
    '{"id":"a","createdOn":"2026-01-31T13:05:12.345Z","s":"x\u2028y"}',
    '{"id":"c","createdOn":"2026-01-31T13:05:11Z","eventDetails":"{\\"k\\":\\"\\\\n\\"}"}',
]
BODY = ('{"auditEvents":[' + ",".join(EVENTS) + '],"next":null,"previous":"/older"}').encode()


def spooled(batches: list[list], compression: str | None, per_file: int | None = None) -> list[bytes]:
    with JsonLinesSpool(compression, per_file) as spool:
        for batch in batches:
            spool.write(batch)
        parts = [part.file.read() for part in spool.finish()]
    return [gzip.decompress(part) for part in parts] if compression else parts


@pytest.mark.parametrize("compression", [None, "gzip"])
@pytest.mark.parametrize("per_file", [None, 2])
def test_event_lines_are_spooled_as_the_events_are(compression: str | None, per_file: int | None) -> None:
    lines, events = parse_event_lines(BODY).events, parse_events_page(BODY).events
    assert [type(line) for line in lines] == [EventLine] * 3
    written = spooled([lines[:2], lines[2:]], compression, per_file)
    assert written == spooled([events[:2], events[2:]], compression, per_file)
    text = b"".join(written).decode("utf-8")
    assert text.splitlines() == text.split("\n")[:-1]  # no U+2028 left raw to split a line
    assert [json.loads(line)["id"] for line in text.split("\n")[:-1]] == ["b", "a", "c"]
    assert "\\u2028" in text and '"n":1.10' in text  # escaped, and the server's own number text


def test_a_batch_of_lines_and_events_together_writes_the_same_lines() -> None:
    lines, events = parse_event_lines(BODY).events, parse_events_page(BODY).events
    assert spooled([[lines[0], events[1], lines[2]]], None) == spooled([events], None)


def test_an_event_line_of_an_event_keeps_its_text() -> None:
    event = AuditEvent({"id": "x", "createdOn": "2026-01-31T13:05:12.1234567Z", "s": "é"})
    line = EventLine.of(event)
    assert (line.event_id, line.created_on, line.created_on_ticks) == ("x", event.created_on, event.created_on_ticks)
    assert line.to_json_bytes() == event.to_json_bytes() and line.to_json() == event.to_json()


def test_a_pretty_printed_event_with_a_lone_surrogate_is_written_escaped() -> None:
    body = b'{"auditEvents":[{\n "id": "a",\n "createdOn": "2026-01-31T13:05:12Z", "s": "\\ud800 \\ud83d\\ude00"}]}'
    written = spooled([parse_event_lines(body).events], None)
    assert written == spooled([parse_events_page(body).events], None)
    line = b"".join(written).decode("utf-8")
    assert line == '{"id":"a","createdOn":"2026-01-31T13:05:12Z","s":"\\ud800 \U0001f600"}\n'
    assert json.loads(line)["s"] == "\ud800 \U0001f600"
