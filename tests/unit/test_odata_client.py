"""The OData exchange of source="orchestrator": query text, page parsing, scopes, errors and their advice."""

from __future__ import annotations

import httpx
import pytest

from airflow_provider_orchestrator_audit.client.exchanges import NeedToken, Send
from airflow_provider_orchestrator_audit.client.odata import (
    OdataQuery,
    fetch_orchestrator_page,
    orchestrator_audit_url,
    parse_orchestrator_page,
)
from airflow_provider_orchestrator_audit.client.page_parser import PageFormatError
from airflow_provider_orchestrator_audit.client.retry import RetryPolicy
from airflow_provider_orchestrator_audit.client.settings import ConnectionSettings
from airflow_provider_orchestrator_audit.exceptions import (
    OrchestratorAuthError,
    OrchestratorConfigError,
    OrchestratorRequestError,
)

SETTINGS = ConnectionSettings(
    conn_id="c", base_url="https://cloud.uipath.com", organization="acme", client_id="app", client_secret="s3cr3t-value"
)


def run(exchange, reply: httpx.Response):
    step = next(exchange)
    assert isinstance(step, NeedToken)
    step = exchange.send("tok-123456")
    assert isinstance(step, Send)
    try:
        exchange.send(reply)
    except StopIteration as done:
        return step.request, done.value
    raise AssertionError("the exchange asked for more")


def test_the_query_is_the_filter_we_send():
    query = OdataQuery(
        "T", "2026-01-31T13:00:00Z", "2026-01-31T14:00:00Z", 41, top=1000, count=True, expand_entities=True
    )
    assert query.params() == {
        "$filter": "ExecutionTime ge 2026-01-31T13:00:00Z and ExecutionTime lt 2026-01-31T14:00:00Z and Id gt 41",
        "$orderby": "Id asc",
        "$top": "1000",
        "$count": "true",
        "$expand": "Entities",
    }
    with pytest.raises(OrchestratorConfigError, match="top must be an integer from 1 to 1000"):
        OdataQuery("T", top=1001)


def test_urls_for_cloud_and_standalone():
    assert orchestrator_audit_url(SETTINGS, "Default Tenant") == (
        "https://cloud.uipath.com/acme/Default%20Tenant/orchestrator_/odata/AuditLogs"
    )
    standalone = ConnectionSettings(
        conn_id="c", base_url="https://orch.local", organization="orch.local", access_token="pat-value",
        orchestrator_url="https://orch.local/prefix",
    )  # fmt: skip
    assert orchestrator_audit_url(standalone, None) == "https://orch.local/prefix/odata/AuditLogs"
    assert standalone.token_url == "https://orch.local/prefix/identity/connect/token"
    with pytest.raises(OrchestratorConfigError, match="needs a tenant"):
        orchestrator_audit_url(SETTINGS, None)


def test_the_token_asks_for_or_audit_read_unless_the_connection_pins_a_scope():
    exchange = fetch_orchestrator_page(SETTINGS, RetryPolicy(), OdataQuery("T"))
    assert next(exchange) == NeedToken(None, "OR.Audit.Read")
    pinned = ConnectionSettings(**{**SETTINGS.__dict__, "scope": "OR.Audit PM.Audit", "scope_pinned": True})
    assert next(fetch_orchestrator_page(pinned, RetryPolicy(), OdataQuery("T"))) == NeedToken(None, "OR.Audit PM.Audit")
    assert SETTINGS.scope_for("OR.Audit.Read") == "OR.Audit.Read" and pinned.scope_for("x") == "OR.Audit PM.Audit"


def test_a_page_is_read_with_its_count_and_verbatim_text():
    body = (
        b'{"@odata.context":"x","@odata.count":2,"value":[{"Id":"7","ExecutionTime":"2026-01-31T13:00:00.1234567+02:00",'
        b'"OperationText":"caf\xc3\xa9 \xe2\x80\xa8"} , {"Id":8,"ExecutionTime":"2026-01-31T11:00:00Z"}]}'
    )
    request, page = run(
        fetch_orchestrator_page(SETTINGS, RetryPolicy(), OdataQuery("T")), httpx.Response(200, content=body)
    )
    assert request.headers["Authorization"] == "Bearer tok-123456"
    assert page.count == 2 and [entry.entry_id for entry in page.entries] == [7, 8]
    first, second = page.entries
    assert (
        first.to_json()
        == '{"Id":"7","ExecutionTime":"2026-01-31T13:00:00.1234567+02:00","OperationText":"café \\u2028"}'
    )
    assert first.execution_time_ticks + 2 * 3600 * 10**7 - 1234567 == second.execution_time_ticks + 2 * 3600 * 10**7
    assert second.to_json_bytes() == b'{"Id":8,"ExecutionTime":"2026-01-31T11:00:00Z"}'
    assert first.to_json_bytes() == first.to_json().encode("utf-8")


def test_entries_keep_the_servers_bytes_and_decode_on_demand():
    line = '{"Id":9,"ExecutionTime":"2026-01-31T11:00:00.5Z","DisplayName":"Zoë\'s \\u00e9 asset","N":1.10}'
    body = b'{"value":[' + line.encode("utf-8") + b"]}"
    (entry,) = parse_orchestrator_page(body).entries
    assert entry.to_json_bytes() == line.encode("utf-8") and entry.to_json() == line
    assert entry.raw["DisplayName"] == "Zoë's \u00e9 asset" and entry.raw["N"] == 1.1
    assert entry.created_on == "2026-01-31T11:00:00.5Z" and entry.entry_id == 9


@pytest.mark.parametrize(
    ("value", "message", "damaged"),
    [
        (b'[{"Id":1,"ExecutionTime":"2026-01-01T00:00:00Z"}, 3]', r"value\[1\]: must be an object", False),
        (b'[{"Id":1,"ExecutionTime":"2026-01-01T00:00:00Z","A":"caf\xe9"}]', "not UTF-8", True),
        (b'[{"Id":1,"ExecutionTime":12}]', r"value\[0\].ExecutionTime: must be a timestamp string", False),
    ],
)
def test_entries_that_are_not_usable(value, message, damaged):
    with pytest.raises(PageFormatError, match=message) as caught:
        parse_orchestrator_page(b'{"value":' + value + b"}")
    assert caught.value.damaged is damaged


@pytest.mark.parametrize(
    ("body", "message", "damaged"),
    [
        (b'{"value": [{"Id": 1, "ExecutionTime": "2026', "not valid JSON", True),
        (b'{"@odata.count": 1}', "value: Field required", False),
        (b'{"value": [{"Id": -1, "ExecutionTime": "2026-01-01T00:00:00Z"}]}', r"value\[0\].Id", False),
        (b'{"value": [{"Id": 1, "ExecutionTime": "yesterday"}]}', "ExecutionTime is not a timestamp", False),
        (b'{"@odata.count": "many", "value": []}', "@odata.count", False),
    ],
)
def test_bodies_that_are_not_a_page(body, message, damaged):
    with pytest.raises(PageFormatError, match=message) as caught:
        parse_orchestrator_page(body)
    assert caught.value.damaged is damaged


def test_403_advice_names_the_scope_and_the_external_application():
    body = b'{"message":"You are not authorized!","errorCode":0,"traceId":"abc"}'
    with pytest.raises(OrchestratorAuthError) as caught:
        run(fetch_orchestrator_page(SETTINGS, RetryPolicy(), OdataQuery("T")), httpx.Response(403, content=body))
    message = str(caught.value)
    assert "You are not authorized! (errorCode 0, traceId abc)" in message
    assert "OR.Audit.Read" in message and "client id 'app'" in message and "Audit View" in message


def test_400_quotes_the_odata_error_and_says_what_we_sent():
    body = b'{"message":"The query specified in the URI is not valid.","errorCode":1001,"traceId":"t-1"}'
    with pytest.raises(OrchestratorRequestError) as caught:
        run(fetch_orchestrator_page(SETTINGS, RetryPolicy(), OdataQuery("T")), httpx.Response(400, content=body))
    message = str(caught.value)
    assert "HTTP 400: 'The query specified in the URI is not valid. (errorCode 1001, traceId t-1)'" in message
    assert "$filter" in message and "tok-123456" not in message


def test_execution_times_read_as_the_general_parser_reads_them():
    import random

    from airflow_provider_orchestrator_audit.event_models import created_on_ticks
    from airflow_provider_orchestrator_audit.timestamps import TimestampError, parse_timestamp

    rng = random.Random(14)
    texts = [
        f"{rng.randint(1970, 2100):04d}-{rng.randint(1, 12):02d}-{rng.randint(1, 31):02d}T{rng.randint(0, 24):02d}:"
        f"{rng.randint(0, 59):02d}:{rng.randint(0, 61):02d}.{rng.randint(0, 9_999_999):07d}Z"
        for _ in range(3000)
    ]
    texts += ["2026-01-31T13:05:1x.3456789Z", "2026-01-31T13:05:12.345678\u0669Z", "2026-01-31 13:05:12.3456789Z"]

    def read(parse, text):
        try:
            return parse(text)
        except TimestampError:
            return "not a timestamp"

    assert [read(created_on_ticks, text) for text in texts] == [read(parse_timestamp, text) for text in texts]
