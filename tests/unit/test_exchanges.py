"""
The client's exchanges driven step by step with crafted answers: no sockets, no sleeping.

Each test plays the driver's part: it answers every ``Send`` with the next scripted response (or
transport error) and every ``NeedToken`` with the current token (the next one once a token was
rejected, as the token cache does), and records every step, so the requests built, the waits asked
for and the errors raised can be checked exactly.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from airflow_provider_orchestrator_audit.client.exchanges import (
    AuditLogQuery,
    Exchange,
    NeedToken,
    Send,
    Sleep,
    fetch_audit_page,
    request_token,
)
from airflow_provider_orchestrator_audit.client.retry import RetryPolicy
from airflow_provider_orchestrator_audit.client.settings import ConnectionSettings
from airflow_provider_orchestrator_audit.client.tokens import TokenCache
from airflow_provider_orchestrator_audit.exceptions import (
    OrchestratorAuthError,
    OrchestratorConfigError,
    OrchestratorRequestError,
    OrchestratorResponseError,
)

SETTINGS = ConnectionSettings(
    conn_id="audit",
    base_url="https://orch.example",
    organization="acme",
    client_id="app-id",
    client_secret="app-secret-value",
)
PAT_SETTINGS = dataclasses.replace(SETTINGS, client_id=None, client_secret=None, access_token="pat-value-123")
TOKEN_URL = "https://orch.example/identity_/connect/token"
PAGE_URL = "https://orch.example/acme/audit_/api/auditlogs?top=2&skip=0&sortBy=createdOn&sortOrder=desc"
POLICY = RetryPolicy(max_attempts=8, backoff_base=0.5, backoff_max=4)
ENTRY = '{"createdOn":"2026-01-01T00:00:00.1234567+00:00","id":7,"action":"Login"}'
PAGE = f'{{"totalCount": 1, "results": [{ENTRY}]}}'.encode()
GRANT = b'{"access_token": "issued-token", "expires_in": 3600, "token_type": "Bearer"}'


def answer(status: int = 200, body: bytes = b"", **headers: str) -> httpx.Response:
    return httpx.Response(
        status, content=body, headers={key.replace("_", "-"): value for key, value in headers.items()}
    )


class Driver:
    """Carries out an exchange's steps from a script, as the real drivers do over sockets."""

    def __init__(self, *replies: httpx.Response | httpx.TransportError, tokens: tuple[str, ...] = ("t-1", "t-2")):
        self.replies = list(replies)
        self.tokens = list(tokens)  # the first is current; a rejected one is dropped
        self.steps: list[Send | Sleep | NeedToken] = []

    def run(self, exchange: Exchange[Any]) -> Any:
        reply: Any = None
        while True:
            try:
                step = exchange.send(reply)
            except StopIteration as done:
                return done.value
            self.steps.append(step)
            if isinstance(step, Send):
                reply = self.replies.pop(0)
            elif isinstance(step, NeedToken):
                if step.rejected == self.tokens[0]:
                    self.tokens.pop(0)
                reply = self.tokens[0]
            else:
                reply = None

    @property
    def sent(self) -> list[httpx.Request]:
        return [step.request for step in self.steps if isinstance(step, Send)]

    @property
    def sleeps(self) -> list[Sleep]:
        return [step for step in self.steps if isinstance(step, Sleep)]


def page(driver: Driver, settings: ConnectionSettings = SETTINGS, policy: RetryPolicy = POLICY) -> Any:
    return driver.run(fetch_audit_page(settings, policy, AuditLogQuery(top=2)))


def token(driver: Driver, policy: RetryPolicy = POLICY) -> Any:
    return driver.run(request_token(SETTINGS, policy))


# --- tokens ----------------------------------------------------------------------------------------


def test_token_request_is_a_client_credentials_grant():
    driver = Driver(answer(200, GRANT))
    grant = token(driver)
    assert (grant.access_token, grant.expires_in) == ("issued-token", 3600)
    (request,) = driver.sent
    assert (request.method, str(request.url)) == ("POST", TOKEN_URL)
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert dict(httpx.QueryParams(request.content.decode())) == {
        "grant_type": "client_credentials",
        "client_id": "app-id",
        "client_secret": "app-secret-value",
        "scope": "PM.Audit.Read",
    }
    assert driver.steps == [Send(request)]


def test_a_granted_token_serves_until_shortly_before_it_expires_then_a_page_asks_for_another():
    grant = token(Driver(answer(200, b'{"access_token": "short-lived", "expires_in": 120}')))
    now = [0.0]
    cache = TokenCache(clock=lambda: now[0])
    cache.store(grant.access_token, grant.expires_in)
    now[0] = 107.9
    assert cache.get() == "short-lived"
    now[0] = 108.0  # a tenth of the lifetime before expiry
    assert cache.get() is None
    # The page exchange never keeps a token itself: each attempt asks the driver's cache.
    driver = Driver(answer(200, PAGE), tokens=("renewed",))
    page(driver)
    assert driver.steps[0] == NeedToken(rejected=None)
    assert driver.sent[0].headers["Authorization"] == "Bearer renewed"


def test_a_token_endpoint_hiccup_or_throttle_is_retried():
    driver = Driver(
        answer(503, b"busy"), httpx.ConnectError("refused"), answer(429, Retry_After="2"), answer(200, GRANT)
    )
    assert token(driver).access_token == "issued-token"
    assert len(driver.sent) == 4
    assert [sleep.shared for sleep in driver.sleeps] == [False, False, True]
    assert driver.sleeps[2].seconds == 2.0


def test_a_token_answer_broken_once_is_asked_again():
    driver = Driver(answer(200, b'{"access_token": "cut-sh'), answer(200, GRANT))
    assert token(driver).access_token == "issued-token"
    assert len(driver.sent) == 2 and len(driver.sleeps) == 1


def test_a_token_answer_that_stays_broken_fails_with_its_tokens_masked():
    body = b'{"access_token":"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln'
    driver = Driver(*[answer(200, body)] * 3)
    with pytest.raises(OrchestratorResponseError) as info:
        token(driver)
    assert str(info.value) == (
        f"Connection 'audit': POST {TOKEN_URL} returned HTTP 200 on each of 3 attempts with a body that is not the "
        "documented response (not valid JSON: Invalid JSON: EOF while parsing a string at line 1 column 58). "
        """Body starts: '{"access_token":"***'. Check that the token URL """
        f"({TOKEN_URL}) is the identity server's token endpoint (set extra 'token_url' for a standalone "
        "Orchestrator) and that nothing in between rewrites its answers."
    )
    # The validation error quotes the whole body; it must not ride along as the error's context.
    assert info.value.__context__ is None and info.value.__cause__ is None
    assert len(driver.sent) == 3 and len(driver.sleeps) == 2


def test_a_well_formed_token_answer_without_a_token_fails_at_once():
    driver = Driver(answer(200, b'{"token_type": "Bearer", "expires_in": 3600}'))
    with pytest.raises(OrchestratorResponseError) as info:
        token(driver)
    message = str(info.value)
    assert "returned HTTP 200 with a body that is not the documented response (access_token: Field required)" in message
    assert f"Check that the token URL ({TOKEN_URL})" in message
    assert len(driver.sent) == 1 and not driver.sleeps


@pytest.mark.parametrize(
    ("status", "body", "advice"),
    [
        (
            401,
            b'{"error": "invalid_client"}',
            (
                "error invalid_client: check the connection's Login (client id) and Password (client secret) "
                "of the external application."
            ),
        ),
        (
            400,
            b'{"error": "invalid_scope", "error_description": "scope not granted"}',
            (
                "error invalid_scope (scope not granted): the external application is not allowed scope "
                "'PM.Audit.Read': add the Orchestrator API scope PM.Audit.Read (or PM.Audit) to it, or change the "
                "connection's extra 'scope'."
            ),
        ),
        (
            400,
            b'{"error": "unauthorized_client"}',
            (
                "error unauthorized_client: the external application may not use the client-credentials grant; "
                "make it a confidential application."
            ),
        ),
        (
            400,
            b"<html>Bad Request</html>",
            "error unknown: check the connection's credentials and extra 'token_url'.",
        ),
    ],
    ids=["invalid-client", "invalid-scope", "unauthorized-client", "no-code"],
)
def test_a_refused_token_request_names_the_setting_to_fix(status, body, advice):
    driver = Driver(answer(status, body))
    with pytest.raises(OrchestratorAuthError) as info:
        token(driver)
    assert str(info.value) == (
        f"Connection 'audit': the identity server at {TOKEN_URL} refused the token request with HTTP {status}, {advice}"
    )
    assert "app-secret-value" not in str(info.value)
    assert len(driver.sent) == 1 and not driver.sleeps


# --- pages -----------------------------------------------------------------------------------------


def test_a_page_request_carries_the_query_and_the_bearer_token():
    driver = Driver(answer(200, PAGE))
    query = AuditLogQuery(top=50, skip=100, sort_order="ASC", language="en", api_version="1.0")
    result = driver.run(fetch_audit_page(SETTINGS, POLICY, query))
    assert result.total_count == 1 and [entry.to_json() for entry in result.results] == [ENTRY]
    (request,) = driver.sent
    assert str(request.url) == (
        "https://orch.example/acme/audit_/api/auditlogs?language=en&top=50&skip=100&sortBy=createdOn"
        "&sortOrder=asc&api-version=1.0"
    )
    assert request.headers["Authorization"] == "Bearer t-1"
    assert request.headers["Accept"] == "application/json"
    assert request.headers["User-Agent"] == "airflow-provider-orchestrator-audit"
    assert driver.steps == [NeedToken(rejected=None), Send(request)]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"top": -1}, "top must be an integer from 0 to 2147483647, got -1"),
        ({"top": 10, "skip": 2**31}, "skip must be an integer from 0 to 2147483647, got 2147483648"),
        ({"top": True}, "top must be an integer from 0 to 2147483647, got True"),
        ({"top": "10"}, "top must be an integer from 0 to 2147483647, got '10'"),
        ({"top": 10, "sort_order": "newest"}, "sort_order must be 'asc' or 'desc', got 'newest'"),
    ],
)
def test_a_bad_query_fails_before_any_step(arguments, message):
    with pytest.raises(OrchestratorConfigError) as info:
        AuditLogQuery(**arguments)
    assert str(info.value) == message


def test_a_401_gets_one_fresh_token_and_one_more_try():
    driver = Driver(answer(401), answer(200, PAGE))
    assert page(driver).total_count == 1
    first, second = driver.sent
    assert driver.steps == [NeedToken(None), Send(first), NeedToken(rejected="t-1"), Send(second)]
    assert second.headers["Authorization"] == "Bearer t-2"


def test_a_401_that_survives_the_fresh_token_is_an_auth_error():
    refused = answer(401, WWW_Authenticate='Bearer error="invalid_token"')
    driver = Driver(refused, refused)
    with pytest.raises(OrchestratorAuthError) as info:
        page(driver)
    assert str(info.value) == (
        f"Connection 'audit': GET {PAGE_URL} answered HTTP 401 (error code: invalid_token): a fresh token from "
        f"{TOKEN_URL} was refused too: check that Host, extra 'organization' and extra 'token_url' belong to the "
        "same Orchestrator deployment."
    )
    assert len(driver.sent) == 2 and not driver.sleeps


def test_403_names_the_permission_and_is_not_retried():
    driver = Driver(answer(403, b'{"error": "insufficient_scope"}'))
    with pytest.raises(OrchestratorAuthError) as info:
        page(driver)
    assert str(info.value) == (
        f"Connection 'audit': GET {PAGE_URL} answered HTTP 403 (error code: insufficient_scope): the credentials "
        "lack permission to read audit logs: grant the external application the scope PM.Audit.Read (asked for: "
        "'PM.Audit.Read'), or give the token's user the Audit View permission."
    )
    assert driver.steps == [NeedToken(None), Send(driver.sent[0])]


def test_a_refusal_echoing_the_token_or_a_secret_names_neither():
    """The error code a 401/403 quotes comes from the server: the token sent and the secrets are masked in it."""
    driver = Driver(answer(403, b'{"error": "t-1 app-secret-value"}'))
    with pytest.raises(OrchestratorAuthError) as info:
        page(driver)
    assert "(error code: *** ***)" in str(info.value)
    assert "t-1" not in str(info.value) and "app-secret-value" not in str(info.value)


def test_a_personal_access_token_is_sent_as_is_and_never_refreshed():
    driver = Driver(answer(200, PAGE))
    page(driver, PAT_SETTINGS)
    assert driver.steps == [Send(driver.sent[0])]
    assert driver.sent[0].headers["Authorization"] == "Bearer pat-value-123"

    driver = Driver(answer(401, b'{"error": "invalid_token"}'))
    with pytest.raises(OrchestratorAuthError) as info:
        page(driver, PAT_SETTINGS)
    assert str(info.value) == (
        f"Connection 'audit': GET {PAGE_URL} answered HTTP 401 (error code: invalid_token): the personal access "
        "token in extra 'access_token' is expired, revoked or for another organization."
    )
    assert len(driver.steps) == 1


# --- waits and retries ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "seconds"),
    [
        (answer(429, Retry_After="7"), 7.0),
        (answer(429, Retry_After=" 1.5 "), 1.5),
        (answer(429, b'{"retry_after": 3}'), 3.0),
        (answer(429, b'{"retryAfter": 0}'), 0.0),
        (answer(429, Retry_After="-4"), 0.0),
    ],
    ids=["seconds", "fractional-seconds", "json-body", "json-body-camel-case", "negative"],
)
def test_429_waits_as_long_as_the_server_asks_and_holds_back_the_whole_client(reply, seconds):
    driver = Driver(reply, answer(200, PAGE))
    assert page(driver).total_count == 1
    assert driver.sleeps == [Sleep(seconds, shared=True)]


def test_429_with_an_http_date_waits_until_then():
    when = format_datetime(datetime.fromtimestamp(time.time() + 30, tz=UTC), usegmt=True)
    driver = Driver(answer(429, Retry_After=when), answer(200, PAGE))
    page(driver)
    (sleep,) = driver.sleeps
    assert 28.5 <= sleep.seconds <= 30 and sleep.shared  # the date has whole seconds


def test_503_with_retry_after_waits_that_long_for_this_request_only():
    driver = Driver(answer(503, Retry_After="5"), answer(200, PAGE))
    page(driver)
    assert driver.sleeps == [Sleep(5.0, shared=False)]


def test_a_retry_after_beyond_the_policy_fails_at_once():
    driver = Driver(answer(429, b"slow down", Retry_After="3600"))
    with pytest.raises(OrchestratorRequestError) as info:
        page(driver)
    assert str(info.value) == (
        f"Connection 'audit': GET {PAGE_URL} failed with HTTP 429; the server asked to wait 3600s, more than "
        "max_retry_after=300s: 'slow down'. The server may be down or throttling; raise the hook's retry limits "
        "or try again later."
    )
    assert not driver.sleeps


def test_a_wait_that_would_end_past_max_elapsed_is_not_started():
    driver = Driver(answer(429, Retry_After="30"))
    with pytest.raises(OrchestratorRequestError, match=r"gave up after 1 attempts in \d+\.\ds \(max_elapsed=5s\)"):
        page(driver, policy=RetryPolicy(max_elapsed=5))
    assert not driver.sleeps


def test_5xx_resets_and_timeouts_are_retried_with_growing_backoff():
    driver = Driver(
        answer(502, b"<html><h1>Bad Gateway</h1></html>"),
        httpx.ReadTimeout("timed out"),
        httpx.RemoteProtocolError("peer closed connection without sending complete message body"),
        answer(504),
        answer(500),
        answer(200, PAGE),
    )
    assert page(driver).total_count == 1
    assert len(driver.sent) == 6
    ceilings = [0.5, 1, 2, 4, 4]  # backoff_base doubling, capped at backoff_max; full jitter below each
    for sleep, ceiling in zip(driver.sleeps, ceilings, strict=True):
        assert 0 <= sleep.seconds <= ceiling
    assert not any(sleep.shared for sleep in driver.sleeps)
    # Each attempt asks for the token again, so a token renewed meanwhile is used.
    assert [step for step in driver.steps if isinstance(step, NeedToken)] == [NeedToken(None)] * 6


def test_a_server_that_stays_down_is_given_up_on_with_its_page_quoted():
    driver = Driver(*[answer(503, b"<html><body><h1>Service   Unavailable</h1></body></html>")] * 3)
    with pytest.raises(OrchestratorRequestError) as info:
        page(driver, policy=RetryPolicy(max_attempts=3, backoff_base=0.01))
    assert str(info.value) == (
        f"Connection 'audit': GET {PAGE_URL} failed with HTTP 503; gave up after 3 attempts: 'Service Unavailable'. "
        "The server may be down or throttling; raise the hook's retry limits or try again later."
    )
    assert len(driver.sent) == 3 and len(driver.sleeps) == 2


def test_a_connection_that_keeps_failing_is_given_up_on():
    driver = Driver(*[httpx.ConnectError("[Errno 111] Connection refused")] * 2, httpx.ReadTimeout(""))
    with pytest.raises(OrchestratorRequestError) as info:
        page(driver, policy=RetryPolicy(max_attempts=3, backoff_base=0.01))
    assert str(info.value) == (
        f"Connection 'audit': GET {PAGE_URL} failed with ReadTimeout; gave up after 3 attempts. "
        "The server may be down or throttling; raise the hook's retry limits or try again later."
    )


def test_another_status_fails_at_once_quoting_the_body_without_secrets():
    driver = Driver(answer(404, b"no route for Bearer t-1 with app-secret-value"))
    with pytest.raises(OrchestratorRequestError) as info:
        page(driver)
    assert str(info.value) == (
        f"Connection 'audit': GET {PAGE_URL} failed with HTTP 404: 'no route for Bearer *** with ***'"
    )


# --- bodies that are not the documented page ----------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"not json", b'{"totalCount": 1, "results": [{"createdOn": "2026-01', b'{"results": [], "x": "\xff"}'],
    ids=["not-json", "cut-short", "not-utf-8"],
)
def test_a_page_damaged_once_is_asked_again(body):
    driver = Driver(answer(200, body), answer(200, PAGE))
    assert page(driver).total_count == 1
    assert len(driver.sent) == 2 and len(driver.sleeps) == 1 and not driver.sleeps[0].shared


def test_a_page_that_stays_damaged_fails_after_max_damaged_body_attempts():
    driver = Driver(*[answer(200, b"not json")] * 3)
    with pytest.raises(OrchestratorResponseError) as info:
        page(driver)
    assert str(info.value) == (
        f"Connection 'audit': GET {PAGE_URL} returned HTTP 200 on each of 3 attempts with a body that is not the "
        "documented response (not valid JSON: Expecting '{' at position 0). Body starts: 'not json'. Check that "
        "Host (https://orch.example) reaches Orchestrator itself, not a proxy, firewall or sign-in page; if it "
        "does, the service keeps sending broken answers: try again later or report it to UiPath."
    )
    assert len(driver.sent) == 3 and len(driver.sleeps) == 2


def test_max_damaged_body_attempts_is_the_policys():
    driver = Driver(*[answer(200, b"\xff\xfe")] * 5, answer(200, PAGE))
    assert page(driver, policy=dataclasses.replace(POLICY, max_damaged_body_attempts=6)).total_count == 1
    driver = Driver(answer(200, b"not json"))
    with pytest.raises(OrchestratorResponseError, match=r"returned HTTP 200 with a body .* undocumented form"):
        page(driver, policy=dataclasses.replace(POLICY, max_damaged_body_attempts=1))


def test_damaged_answers_also_count_against_max_attempts():
    driver = Driver(*[answer(200, b"not json")] * 2)
    with pytest.raises(OrchestratorRequestError) as info:
        page(driver, policy=RetryPolicy(max_attempts=2, max_damaged_body_attempts=3))
    assert str(info.value) == (
        f"Connection 'audit': GET {PAGE_URL} failed with HTTP 200 with a broken body (not valid JSON: Expecting "
        "'{' at position 0); gave up after 2 attempts: 'not json'. The server may be down or throttling; raise "
        "the hook's retry limits or try again later."
    )


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b'{"items": []}', "totalCount: Field required"),
        (b"[]", "not valid JSON: Expecting '{' at position 0"),
        (f'{{"results": [{ENTRY}]}}'.encode(), "totalCount: Field required"),
        (b'{"totalCount": -1, "results": []}', "totalCount: must be a non-negative integer, got -1"),
        (b'{"totalCount": 1}', "results: Field required"),
        (b'{"totalCount": 1, "results": [{"createdOn": "yesterday"}]}', "results.0: createdOn is not a timestamp"),
        (b'{"totalCount": 1, "results": [7]}', "results.0: Input should be a valid dictionary"),
    ],
    ids=["wrong-shape", "array", "total-count-missing", "negative-total", "results-missing", "bad-date", "not-objects"],
)
def test_a_well_formed_page_of_the_wrong_shape_fails_at_once(body, problem):
    driver = Driver(answer(200, body))
    with pytest.raises(OrchestratorResponseError) as info:
        page(driver)
    message = str(info.value)
    assert message.startswith(
        f"Connection 'audit': GET {PAGE_URL} returned HTTP 200 with a body that is not the documented response "
        f"({problem}"
    )
    assert message.endswith(
        "Check that Host (https://orch.example) and extra 'organization' ('acme') name an Orchestrator deployment "
        "and that nothing in between rewrites its answers; if they do, the service answered in an undocumented "
        "form: report this message to UiPath."
    )
    assert len(driver.sent) == 1 and not driver.sleeps


def test_a_page_echoing_the_request_is_quoted_without_the_token_or_secret():
    driver = Driver(answer(200, b'{"echo": "Authorization: Bearer t-1", "secret": "app-secret-value"}'))
    with pytest.raises(OrchestratorResponseError) as info:
        page(driver)
    assert """Body starts: '{"echo": "Authorization: Bearer ***", "secret": "***"}'.""" in str(info.value)


def test_retries_and_refreshes_log_no_secret_or_token(caplog):
    caplog.set_level(logging.DEBUG)
    echo = b"Authorization: Bearer first-token-value; client_secret=app-secret-value"
    driver = Driver(
        answer(401, echo),
        answer(429, echo, Retry_After="0"),
        answer(200, b"<html>" + echo),
        answer(503, echo),
        answer(200, PAGE),
        tokens=("first-token-value", "second-token-value"),
    )
    assert page(driver).total_count == 1
    assert len(caplog.records) == 4  # the refresh, then one line per retry
    for secret in ("first-token-value", "second-token-value", "app-secret-value"):
        assert secret not in caplog.text
