"""
Throttling, outages and refused credentials during whole exports.

Each scenario runs the export DAG with ``dag.test()`` against the local Orchestrator over HTTP and
SeaweedFS as S3, with faults scripted at chosen requests, and ends in exactly one of two ways: the
object holds every entry of the window once, byte for byte, or the task fails with a message naming
what was wrong and what to do, and the bucket holds nothing.
"""

from __future__ import annotations

import pytest

from airflow_provider_orchestrator_audit.exceptions import OrchestratorAuthError, OrchestratorRequestError
from airflow_provider_orchestrator_audit.testing import Fault
from tests.conftest import set_connection
from tests.faults.scenario_helpers import (
    PROBES,
    assert_exact_export,
    assert_failed_cleanly,
    connection_with,
    export_kwargs,
    let_through,
    run_export,
)

pytestmark = pytest.mark.usefixtures("airflow_db")

# --- throttling ----------------------------------------------------------------------------------------


def test_a_run_of_429s_in_every_retry_after_style_is_waited_out(orchestrator, orchestrator_conn, bucket, s3_server):
    """
    429s asking for a second's wait in ``Retry-After`` seconds, as an HTTP-date and in the JSON body are
    each honoured (the throttled request comes back no sooner), and cost no entry and no duplicate.
    """
    let_through(orchestrator, 3)
    for style in ("header-seconds", "header-date", "body"):
        orchestrator.faults.push(Fault.throttle(1, style=style))
    run = run_export("faults_429_styles", export_kwargs(orchestrator_conn, bucket))
    assert_exact_export(run, orchestrator, s3_server, bucket)
    assert orchestrator.faults.pending() == 0
    timeline = orchestrator.stats.audit_timeline
    throttled = [(n, request) for n, request in enumerate(timeline) if request.status == 429]
    assert len(throttled) == 3
    for n, request in throttled:
        retry = next(later for later in timeline[n + 1 :] if later.query == request.query)
        waited = retry.arrived - request.arrived
        assert waited >= 0.9, f"{request.query} was sent again after {waited:.2f}s, not the 1s the server asked"
    assert orchestrator.stats.token_requests == 1  # throttling is no reason to fetch a new token


def test_a_429_asking_for_an_hour_fails_at_once_and_writes_nothing(orchestrator, orchestrator_conn, bucket, s3_server):
    """A ``Retry-After`` beyond the policy's ``max_retry_after`` is not slept through: the task fails saying so."""
    let_through(orchestrator, 4)
    orchestrator.faults.push(Fault.throttle(3600))
    run = run_export("faults_429_hour", export_kwargs(orchestrator_conn, bucket))
    assert_failed_cleanly(
        run,
        s3_server,
        bucket,
        OrchestratorRequestError,
        f"Connection {orchestrator_conn!r}",
        f"GET {orchestrator.audit_url}?",
        "HTTP 429",
        "the server asked to wait 3600s, more than max_retry_after=300s",
        "try again later",
    )
    assert run.seconds < 240  # generous for a loaded machine; sleeping as asked would take an hour


# --- outages ---------------------------------------------------------------------------------------------


def test_a_burst_of_gateway_errors_with_html_pages_is_retried(orchestrator, orchestrator_conn, bucket, s3_server):
    """502, 503, 504 and 500 answered with a proxy's HTML page while pages are being read are retried."""
    let_through(orchestrator, PROBES + 1)  # the edges are located and the first page read: pages are in flight
    for code in (502, 503, 504, 500):
        orchestrator.faults.push(Fault.server_error(code))
    run = run_export("faults_5xx_burst", export_kwargs(orchestrator_conn, bucket))
    assert_exact_export(run, orchestrator, s3_server, bucket)
    assert orchestrator.faults.pending() == 0
    served = orchestrator.stats.responses_by_status
    assert [served.get(code) for code in (500, 502, 503, 504)] == [1, 1, 1, 1]


def test_an_outage_that_outlasts_the_retries_fails_clearly(orchestrator, orchestrator_conn, bucket, s3_server):
    """
    A service answering 503 with an HTML page (``Retry-After: 0``) to every request: each request gives
    up after its 8 attempts, and the task fails with the status, the URL and the page's text without
    its tags.
    """
    unavailable = Fault.status(
        503,
        "<html><body><h1>503 Service Unavailable</h1><p>Maintenance in progress</p></body></html>",
        headers={"Retry-After": "0"},
        content_type="text/html",
    )
    orchestrator.faults.push(unavailable, times=100)
    run = run_export("faults_5xx_outage", export_kwargs(orchestrator_conn, bucket))
    message = assert_failed_cleanly(
        run,
        s3_server,
        bucket,
        OrchestratorRequestError,
        f"GET {orchestrator.audit_url}?",
        "failed with HTTP 503; gave up after 8 attempts",
        "'503 Service Unavailable Maintenance in progress'",
        "raise the hook's retry limits or try again later",
    )
    assert "<" not in message
    assert orchestrator.stats.audit_requests <= 16  # two edge searches, 8 attempts each: then it stops


def test_connection_resets_and_read_timeouts_are_retried(orchestrator, bucket, s3_server, monkeypatch):
    """
    Connections reset without an answer and answers that stall past the connection's read timeout
    (extra ``timeout``) are retried; the slow answers that arrive later are not used twice.
    """
    conn_id = set_connection(monkeypatch, "faults_short_timeout", connection_with(orchestrator, extra={"timeout": 0.5}))
    for fault in (Fault.reset(), Fault.stall(1.0), Fault.reset(), Fault.stall(1.0)):
        let_through(orchestrator, 2)  # probes and pages alike
        orchestrator.faults.push(fault)
    run = run_export("faults_resets_stalls", export_kwargs(conn_id, bucket))
    assert_exact_export(run, orchestrator, s3_server, bucket)
    assert orchestrator.faults.pending() == 0
    assert orchestrator.stats.connection_resets == 2


def test_an_identity_server_outage_at_the_start_is_retried(orchestrator, orchestrator_conn, bucket, s3_server):
    """The token endpoint answering 503 twice (``Retry-After: 0``) delays the export; it does not fail it."""
    unavailable = Fault.status(503, "<html><h1>503 Service Unavailable</h1></html>", {"Retry-After": "0"}, "text/html")
    orchestrator.faults.push(unavailable, endpoint="token", times=2)
    run = run_export("faults_token_outage", export_kwargs(orchestrator_conn, bucket))
    assert_exact_export(run, orchestrator, s3_server, bucket)
    assert orchestrator.stats.token_requests == 3


# --- tokens ----------------------------------------------------------------------------------------------


def test_tokens_that_expire_in_the_middle_of_the_export_are_replaced(
    orchestrator, orchestrator_conn, bucket, s3_server
):
    """
    Tokens that the server stops accepting long before the client expects (0.3 s of life, announced as
    ``expires_in: 1``) expire again and again while the export pages: each 401 brings one new token and
    one more try, and the output is still exact.
    """
    orchestrator.token_lifetime_seconds = 0.3
    orchestrator.latency_seconds = 0.05  # the export lasts a few token lifetimes
    run = run_export("faults_token_expiry", export_kwargs(orchestrator_conn, bucket, page_size=50, max_concurrency=2))
    assert_exact_export(run, orchestrator, s3_server, bucket)
    assert orchestrator.stats.responses_by_status.get(401, 0) >= 1, "no token expired during the export"
    assert orchestrator.stats.token_requests >= 2


# --- refused credentials ---------------------------------------------------------------------------------


def test_a_wrong_client_secret_fails_before_any_audit_request(orchestrator, bucket, s3_server, monkeypatch):
    """``invalid_client`` from the identity server: the message says to check Login and Password."""
    conn_id = set_connection(
        monkeypatch, "faults_wrong_secret", connection_with(orchestrator, password="not-it-at-all")
    )
    run = run_export("faults_invalid_client", export_kwargs(conn_id, bucket))
    assert_failed_cleanly(
        run,
        s3_server,
        bucket,
        OrchestratorAuthError,
        "Connection 'faults_wrong_secret'",
        f"the identity server at {orchestrator.token_url} refused the token request with HTTP 400",
        "error invalid_client",
        "check the connection's Login (client id) and Password (client secret)",
    )
    assert orchestrator.stats.audit_requests == 0


def test_an_application_without_the_audit_scope_is_refused_a_token(orchestrator, orchestrator_conn, bucket, s3_server):
    """``invalid_scope``: the external application may not ask for PM.Audit.Read; the message says how to fix it."""
    orchestrator.granted_scopes = ("OR.Robots.Read",)
    run = run_export("faults_invalid_scope", export_kwargs(orchestrator_conn, bucket))
    assert_failed_cleanly(
        run,
        s3_server,
        bucket,
        OrchestratorAuthError,
        "error invalid_scope",
        "not allowed scope 'PM.Audit.Read': add the Orchestrator API scope PM.Audit.Read (or PM.Audit) to it",
    )
    assert orchestrator.stats.audit_requests == 0


def test_a_token_without_audit_permission_gets_403(orchestrator, bucket, s3_server, monkeypatch):
    """A token granted only other scopes is refused by the audit API with 403; the message names the scope to add."""
    orchestrator.granted_scopes = ("PM.Audit.Read", "OR.Robots.Read")
    conn_id = set_connection(
        monkeypatch, "faults_robots_scope", connection_with(orchestrator, extra={"scope": "OR.Robots.Read"})
    )
    run = run_export("faults_403_scope", export_kwargs(conn_id, bucket))
    assert_failed_cleanly(
        run,
        s3_server,
        bucket,
        OrchestratorAuthError,
        f"GET {orchestrator.audit_url}?",
        "answered HTTP 403 (error code: insufficient_scope)",
        "grant the external application the scope PM.Audit.Read (asked for: 'OR.Robots.Read')",
    )
