"""OrchestratorAuditHook and its async twin over real HTTP against the local Orchestrator server."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest

from airflow_provider_orchestrator_audit.client.retry import RetryPolicy
from airflow_provider_orchestrator_audit.exceptions import (
    OrchestratorAuthError,
    OrchestratorRequestError,
    OrchestratorResponseError,
)
from airflow_provider_orchestrator_audit.hooks.orchestrator_audit import (
    OrchestratorAuditAsyncHook,
    OrchestratorAuditHook,
)
from airflow_provider_orchestrator_audit.testing import DOCUMENTED_FIELDS, Fault
from tests.conftest import set_connection

FAST = RetryPolicy(max_attempts=5, backoff_base=0.01, backoff_max=0.05, max_elapsed=30)


_open_hooks: list[OrchestratorAuditHook] = []


def hook(conn_id: str, policy: RetryPolicy = FAST) -> OrchestratorAuditHook:
    made = OrchestratorAuditHook(conn_id, retry_policy=policy)
    _open_hooks.append(made)
    return made


@pytest.fixture(autouse=True)
def _close_hooks():
    yield
    while _open_hooks:
        _open_hooks.pop().close()


def connection(orchestrator, **changes) -> dict:
    conn = orchestrator.airflow_connection()
    extra = dict(conn["extra"], **changes.pop("extra", {}))
    conn.update(changes, extra=extra)
    return conn


# --- the Test button --------------------------------------------------------------------------------


def test_test_connection_reports_the_entry_count(orchestrator, orchestrator_conn):
    ok, message = OrchestratorAuditHook(orchestrator_conn).test_connection()
    assert ok, message
    assert message.endswith(f"{orchestrator.dataset.total_count} audit entries")
    assert "'acme'" in message


def test_test_connection_with_a_wrong_secret_says_what_to_fix(orchestrator, monkeypatch):
    conn_id = set_connection(monkeypatch, "wrong_secret", connection(orchestrator, password="not-the-secret"))
    ok, message = OrchestratorAuditHook(conn_id).test_connection()
    assert not ok
    # The form tests a copy under a random id, so the message does not name the connection.
    assert message.startswith(f"The identity server at {orchestrator.token_url} refused the token request")
    assert "invalid_client" in message and "wrong_secret" not in message
    assert "Password (client secret)" in message
    assert "not-the-secret" not in message
    assert orchestrator.stats.audit_requests == 0


def test_test_connection_with_an_unreachable_host_answers_quickly(monkeypatch):
    conn_id = set_connection(
        monkeypatch,
        "nowhere",
        {
            "conn_type": "orchestrator_audit",
            "host": "http://127.0.0.1:9",
            "login": "a",
            "password": "secret-b",
            "extra": {"organization": "acme", "timeout": 2},
        },
    )
    started = time.monotonic()
    ok, message = OrchestratorAuditHook(conn_id).test_connection()
    assert not ok and "ConnectError" in message and "127.0.0.1:9" in message
    assert time.monotonic() - started < 15


# --- pages ---------------------------------------------------------------------------------------------


def test_pages_are_typed_and_keep_every_field(orchestrator, orchestrator_conn):
    page = hook(orchestrator_conn).get_audit_logs(top=50, skip=10)
    assert page.total_count == orchestrator.dataset.total_count
    assert len(page.results) == 50
    newest_first = [entry.created_on_ticks for entry in page.results]
    assert newest_first == sorted(newest_first, reverse=True)
    for entry in page.results:
        assert len(entry.created_on) == 33 and entry.created_on[19] == "."  # 7 digits and an offset, untouched
        assert entry.created_at.tzinfo is not None
    # Unknown fields survive (the data set gives about one entry in twenty an extra field).
    everything = hook(orchestrator_conn).get_audit_logs(top=1000).results
    assert any(set(entry.raw) - set(DOCUMENTED_FIELDS) for entry in everything)
    assert orchestrator.stats.pages[-1] == (0, 1000)


def test_ascending_order_and_language_are_sent(orchestrator, orchestrator_conn):
    page = hook(orchestrator_conn).get_audit_logs(top=3, sort_order="asc", language="en", api_version="1.0")
    ticks = [entry.created_on_ticks for entry in page.results]
    assert ticks == sorted(ticks)


# --- tokens ----------------------------------------------------------------------------------------


def test_one_token_serves_many_requests(orchestrator, orchestrator_conn):
    audit_hook = hook(orchestrator_conn)
    for skip in range(5):
        audit_hook.get_audit_logs(top=1, skip=skip)
    assert orchestrator.stats.token_requests == 1
    assert orchestrator.stats.audit_requests == 5


def test_concurrent_requests_share_one_token_request(orchestrator, orchestrator_conn):
    orchestrator.latency_seconds = 0.05
    audit_hook = hook(orchestrator_conn)
    errors: list[BaseException] = []

    def work(skip: int) -> None:
        try:
            audit_hook.get_audit_logs(top=5, skip=skip)
        except Exception as error:  # noqa: BLE001 - every failure is reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert orchestrator.stats.token_requests == 1
    assert orchestrator.stats.audit_requests == 16


def test_a_token_is_renewed_before_it_expires(orchestrator, orchestrator_conn):
    orchestrator.token_lifetime_seconds = 1
    audit_hook = hook(orchestrator_conn)
    audit_hook.get_audit_logs(top=1)
    time.sleep(1.0)  # past the refresh margin (a tenth of the lifetime), not yet expired on the server
    audit_hook.get_audit_logs(top=1)
    assert orchestrator.stats.token_requests == 2
    assert orchestrator.stats.responses_by_status.get(401, 0) == 0


def test_a_revoked_token_is_refreshed_once_and_the_request_retried(orchestrator, orchestrator_conn):
    audit_hook = hook(orchestrator_conn)
    audit_hook.get_audit_logs(top=1)
    orchestrator.revoke_tokens()
    page = audit_hook.get_audit_logs(top=1)
    assert page.results
    assert orchestrator.stats.token_requests == 2
    assert orchestrator.stats.responses_by_status[401] == 1


def test_a_401_that_survives_a_refresh_is_an_auth_error(orchestrator, orchestrator_conn):
    orchestrator.faults.push(
        Fault.status(401, body=b'{"error": "invalid_token"}', content_type="application/json"), times=2
    )
    with pytest.raises(OrchestratorAuthError) as info:
        hook(orchestrator_conn).get_audit_logs(top=1)
    message = str(info.value)
    assert "HTTP 401" in message and orchestrator_conn in message and orchestrator.token_url in message
    assert orchestrator.stats.token_requests == 2


def test_403_names_the_missing_permission(orchestrator, orchestrator_conn):
    orchestrator.faults.push(
        Fault.status(403, body=b'{"error": "insufficient_scope"}', content_type="application/json")
    )
    with pytest.raises(OrchestratorAuthError, match="HTTP 403.*insufficient_scope.*PM.Audit.Read"):
        hook(orchestrator_conn).get_audit_logs(top=1)


def test_a_scope_the_application_lacks_is_invalid_scope(orchestrator, monkeypatch):
    conn_id = set_connection(monkeypatch, "scoped", connection(orchestrator, extra={"scope": "OR.Robots.Read"}))
    with pytest.raises(OrchestratorAuthError, match="invalid_scope.*'OR.Robots.Read'") as info:
        hook(conn_id).get_audit_logs(top=1)
    assert orchestrator.token_url in str(info.value)


def test_a_token_without_the_audit_scope_is_refused_with_403(orchestrator, monkeypatch):
    orchestrator.granted_scopes = ("PM.Audit.Read", "PM.Audit", "OR.Robots.Read")
    conn_id = set_connection(monkeypatch, "robots", connection(orchestrator, extra={"scope": "OR.Robots.Read"}))
    with pytest.raises(OrchestratorAuthError, match="HTTP 403"):
        hook(conn_id).get_audit_logs(top=1)


def test_standalone_token_url(orchestrator, monkeypatch):
    conn_id = set_connection(
        monkeypatch,
        "standalone",
        connection(orchestrator, extra={"token_url": f"{orchestrator.url}/identity/connect/token"}),
    )
    assert hook(conn_id).get_audit_logs(top=1).results


def test_personal_access_token_needs_no_token_request(orchestrator, monkeypatch):
    conn_id = set_connection(monkeypatch, "pat", orchestrator.airflow_connection(personal_access_token=True))
    assert hook(conn_id).get_audit_logs(top=2).results
    assert orchestrator.stats.token_requests == 0


def test_a_rejected_personal_access_token_is_not_refreshed(orchestrator, monkeypatch):
    conn = orchestrator.airflow_connection(personal_access_token=True)
    conn["extra"]["access_token"] = "revoked-pat-value"
    conn_id = set_connection(monkeypatch, "bad_pat", conn)
    with pytest.raises(OrchestratorAuthError, match="personal access token") as info:
        hook(conn_id).get_audit_logs(top=1)
    assert "revoked-pat-value" not in str(info.value)
    assert orchestrator.stats.audit_requests == 1 and orchestrator.stats.token_requests == 0


# --- retries -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["header-seconds", "header-date", "body"])
def test_429_waits_as_the_server_asks(orchestrator, orchestrator_conn, style):
    orchestrator.faults.push(Fault.throttle(retry_after_seconds=1, style=style))
    started = time.monotonic()
    page = hook(orchestrator_conn).get_audit_logs(top=1)
    waited = time.monotonic() - started
    assert page.results
    assert orchestrator.stats.responses_by_status[429] == 1
    # An HTTP-date has whole seconds, so its wait can be up to a second shorter.
    assert waited >= (0.0 if style == "header-date" else 0.9)
    assert waited < 5


def test_5xx_html_pages_resets_and_read_timeouts_are_retried(orchestrator, monkeypatch):
    conn_id = set_connection(monkeypatch, "short_timeout", connection(orchestrator, extra={"timeout": 0.5}))
    orchestrator.faults.push(Fault.server_error(502))
    orchestrator.faults.push(Fault.server_error(503))
    orchestrator.faults.push(Fault.reset())
    orchestrator.faults.push(Fault.stall(1.5))
    orchestrator.faults.push(Fault.truncated())
    page = hook(conn_id, RetryPolicy(max_attempts=8, backoff_base=0.01, backoff_max=0.05)).get_audit_logs(top=3)
    assert len(page.results) == 3
    assert orchestrator.stats.audit_requests == 6


def test_attempts_are_bounded_and_the_error_shows_the_body(orchestrator, orchestrator_conn):
    orchestrator.faults.push(Fault.server_error(503), times=10)
    with pytest.raises(OrchestratorRequestError) as info:
        hook(orchestrator_conn, RetryPolicy(max_attempts=3, backoff_base=0.01)).get_audit_logs(top=1)
    message = str(info.value)
    assert "gave up after 3 attempts" in message and "HTTP 503" in message and "/acme/audit_/api/auditlogs" in message
    assert "<" not in message.split("Body")[-1]  # HTML tags are stripped from the excerpt
    assert orchestrator.stats.audit_requests == 3


def test_total_retry_time_is_bounded(orchestrator, orchestrator_conn):
    orchestrator.faults.push(Fault.throttle(retry_after_seconds=30), times=3)
    started = time.monotonic()
    with pytest.raises(OrchestratorRequestError, match="max_elapsed"):
        hook(orchestrator_conn, RetryPolicy(max_elapsed=5)).get_audit_logs(top=1)
    assert time.monotonic() - started < 3


def test_a_token_endpoint_hiccup_is_retried(orchestrator, orchestrator_conn):
    orchestrator.faults.push(Fault.server_error(503), endpoint="token")
    assert hook(orchestrator_conn).get_audit_logs(top=1).results
    assert orchestrator.stats.token_requests == 2


# --- bad responses ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "times", "problem"),
    [
        # A body that is not JSON text is retried (it was damaged on its way); one that stays broken fails.
        (Fault.malformed_json(), FAST.max_damaged_body_attempts, "not valid JSON"),
        (Fault.non_utf8(), FAST.max_damaged_body_attempts, "not valid JSON"),
        # Well-formed JSON of the wrong shape fails at once: asking again gets the same document.
        (Fault.wrong_shape(), 1, "totalCount: Field required"),
        (Fault.missing_total_count(), 1, "totalCount: Field required"),
        (Fault.bad_created_on(), 1, "createdOn is not a timestamp"),
    ],
)
def test_bad_bodies_name_the_url_status_and_an_excerpt(orchestrator, orchestrator_conn, fault, times, problem):
    orchestrator.faults.push(fault, times=times)
    with pytest.raises(OrchestratorResponseError) as info:
        hook(orchestrator_conn).get_audit_logs(top=2)
    assert orchestrator.stats.audit_requests == times
    message = str(info.value)
    assert problem in message
    assert f"GET {orchestrator.url}/acme/audit_/api/auditlogs?top=2" in message
    assert "HTTP 200" in message and "Body starts: '" in message
    assert orchestrator_conn in message


def test_a_broken_body_once_is_retried(orchestrator, orchestrator_conn):
    orchestrator.faults.push(Fault.malformed_json())
    orchestrator.faults.push(Fault.non_utf8())
    assert len(hook(orchestrator_conn).get_audit_logs(top=2).results) == 2
    assert orchestrator.stats.audit_requests == 3


def test_a_body_cut_short_every_time_fails_clearly(orchestrator, orchestrator_conn):
    orchestrator.faults.push(Fault.truncated(), times=10)
    with pytest.raises(OrchestratorRequestError, match="RemoteProtocolError.*gave up after 3 attempts"):
        hook(orchestrator_conn, RetryPolicy(max_attempts=3, backoff_base=0.01)).get_audit_logs(top=1)


def test_bad_parameters_fail_before_any_request(orchestrator, orchestrator_conn):
    with pytest.raises(ValueError, match="top must be an integer"):
        hook(orchestrator_conn).get_audit_logs(top=-1)
    with pytest.raises(ValueError, match="sort_order must be 'asc' or 'desc'"):
        hook(orchestrator_conn).get_audit_logs(top=1, sort_order="newest")
    assert orchestrator.stats.audit_requests == 0 and orchestrator.stats.token_requests == 0


# --- secrets ---------------------------------------------------------------------------------------


def test_no_secret_or_token_reaches_the_logs(orchestrator, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    conn_id = set_connection(monkeypatch, "wrong_then_right", connection(orchestrator, password="wrong-secret-value"))
    OrchestratorAuditHook(conn_id).test_connection()
    audit_hook = hook(set_connection(monkeypatch, "right", orchestrator.airflow_connection()))
    orchestrator.faults.push(Fault.throttle(retry_after_seconds=0))
    audit_hook.get_audit_logs(top=1)
    orchestrator.revoke_tokens()
    audit_hook.get_audit_logs(top=1)
    tokens = {audit_hook.client.access_token()}
    text = caplog.text
    assert orchestrator.stats.token_requests == 3  # the refused one, the first token, its replacement
    for secret in ("wrong-secret-value", orchestrator.client_secret, *tokens):
        assert secret not in text


# --- async ------------------------------------------------------------------------------------------


def test_async_hook_shares_parsing_retries_and_tokens(orchestrator, orchestrator_conn):
    orchestrator.faults.push(Fault.throttle(retry_after_seconds=0))

    async def main():
        async_hook = OrchestratorAuditAsyncHook(orchestrator_conn, retry_policy=FAST)
        try:
            pages = await asyncio.gather(*(async_hook.get_audit_logs(top=2, skip=n) for n in range(8)))
        finally:
            await async_hook.aclose()
        return pages

    pages = asyncio.run(main())
    assert all(len(page.results) == 2 for page in pages)
    assert orchestrator.stats.token_requests == 1
    assert orchestrator.stats.responses_by_status[429] == 1


def test_async_hook_raises_the_same_clear_errors(orchestrator, monkeypatch):
    conn_id = set_connection(monkeypatch, "async_wrong", connection(orchestrator, password="wrong-async-secret"))

    async def main():
        async_hook = OrchestratorAuditAsyncHook(conn_id, retry_policy=FAST)
        try:
            await async_hook.get_audit_logs(top=1)
        finally:
            await async_hook.aclose()

    with pytest.raises(OrchestratorAuthError, match="invalid_client") as info:
        asyncio.run(main())
    assert "wrong-async-secret" not in str(info.value)


def test_a_429_holds_back_every_request_of_the_client(orchestrator, orchestrator_conn):
    audit_hook = hook(orchestrator_conn)
    audit_hook.get_audit_logs(top=1)  # token in hand
    orchestrator.faults.push(Fault.throttle(retry_after_seconds=1))
    started = time.monotonic()
    first = threading.Thread(target=audit_hook.get_audit_logs, kwargs={"top": 1})
    first.start()
    time.sleep(0.3)  # the first request has been throttled by now
    audit_hook.get_audit_logs(top=1, skip=5)  # a concurrent page waits for the same moment
    assert time.monotonic() - started >= 0.95
    first.join()
    assert orchestrator.stats.responses_by_status[429] == 1


def test_a_broken_token_answer_once_is_retried_and_one_that_stays_broken_fails(orchestrator, orchestrator_conn):
    orchestrator.faults.push(Fault.malformed_json(), endpoint="token")
    assert hook(orchestrator_conn).get_audit_logs(top=1).results
    assert orchestrator.stats.token_requests == 2
    orchestrator.revoke_tokens()
    orchestrator.faults.push(Fault.non_utf8(), endpoint="token", times=FAST.max_damaged_body_attempts)
    with pytest.raises(OrchestratorResponseError, match="on each of 3 attempts.*not valid JSON") as info:
        hook(orchestrator_conn).get_audit_logs(top=1)
    assert orchestrator.token_url in str(info.value) and '"access_token":"***"' in str(info.value)
