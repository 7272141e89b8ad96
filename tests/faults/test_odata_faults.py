"""
Fault scenarios of source="orchestrator" through Airflow's dag.test(): OData error bodies, 400, 403 for a
missing scope or permission, 429 with Retry-After, 5xx, resets and damaged bodies. Each ends with the
exact window in S3, or a clear failure with nothing written, and no secret in any log line.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_provider_orchestrator_audit.exceptions import (
    OrchestratorAuthError,
    OrchestratorRequestError,
    OrchestratorResponseError,
)
from airflow_provider_orchestrator_audit.testing import Fault
from airflow_provider_orchestrator_audit.testing.orchestrator_dataset import OdataSwitches
from tests.conftest import set_connection
from tests.faults import test_secrets
from tests.faults.scenario_helpers import assert_failed_cleanly, run_export
from tests.integration.test_orchestrator_export import assert_exact, kwargs

pytestmark = pytest.mark.usefixtures("airflow_db")

# The secrets scenarios' fixtures: every logger at DEBUG, and a client secret no earlier test has shown.
task_logs = test_secrets.task_logs
client_secret = test_secrets.client_secret

KEY = "odata/window.jsonl"
FAST_RETRIES = {"max_attempts": 4, "backoff_base": 0.01, "backoff_max": 0.05, "max_elapsed": 60}
ODATA_ERROR = {"message": "The query specified in the URI is not valid.", "errorCode": 1001, "traceId": "0af7651916"}


@pytest.fixture
def finance_conn(orchestrator, monkeypatch) -> str:
    return set_connection(monkeypatch, "odata_faults", orchestrator.airflow_connection(tenant="Finance"))


def scenario(conn: str, bucket: str, **changes: Any) -> dict[str, Any]:
    return kwargs(conn, bucket, s3_key=KEY, request_retry_policy=FAST_RETRIES, **changes)


def test_throttling_server_errors_and_resets_are_retried(orchestrator, finance_conn, bucket, s3_server):
    orchestrator.faults.push(Fault.stall(0), times=3)
    for fault in (
        Fault.throttle(0.2),
        Fault.server_error(503),
        Fault.throttle(0.1, style="body"),
        Fault.status(500, json.dumps({"message": "An error has occurred.", "errorCode": 0, "traceId": "x"})),
        Fault.reset(),
        Fault.server_error(502),
    ):
        orchestrator.faults.push(fault)
    run = run_export("odata_throttled", scenario(finance_conn, bucket))
    assert_exact(run, orchestrator, s3_server, bucket, KEY)
    statuses = orchestrator.stats.responses_by_status
    assert statuses[429] == 2 and statuses[503] == 1 and statuses[500] == 1 and statuses[502] == 1


def test_a_retry_after_is_waited_for(orchestrator, finance_conn, bucket, s3_server):
    orchestrator.faults.push(Fault.throttle(1.0))
    run = run_export("odata_retry_after", scenario(finance_conn, bucket, max_concurrency=1))
    assert_exact(run, orchestrator, s3_server, bucket, KEY)
    timeline = orchestrator.stats.audit_timeline
    throttled = next(index for index, request in enumerate(timeline) if request.status == 429)
    assert timeline[throttled + 1].arrived - timeline[throttled].arrived >= 0.95


def test_damaged_bodies_are_asked_for_again(orchestrator, finance_conn, bucket, s3_server):
    for fault in (Fault.non_utf8(), Fault.truncated(), Fault.malformed_json()):
        orchestrator.faults.push(Fault.stall(0), times=2)
        orchestrator.faults.push(fault)
    run = run_export("odata_damaged", scenario(finance_conn, bucket))
    assert_exact(run, orchestrator, s3_server, bucket, KEY)


def test_an_odata_400_fails_cleanly_quoting_the_error(orchestrator, finance_conn, bucket, s3_server):
    orchestrator.faults.push(Fault.stall(0), times=4)
    orchestrator.faults.push(Fault.status(400, json.dumps(ODATA_ERROR)))
    run = run_export("odata_400", scenario(finance_conn, bucket))
    assert_failed_cleanly(
        run,
        s3_server,
        bucket,
        OrchestratorRequestError,
        "orchestrator_/odata/AuditLogs",
        "HTTP 400: 'The query specified in the URI is not valid. (errorCode 1001, traceId 0af7651916)'",
        "$filter",
    )


def test_a_missing_audit_view_permission_fails_with_advice(orchestrator, finance_conn, bucket, s3_server):
    orchestrator.odata_listing.switches = OdataSwitches(audit_view=False)
    run = run_export("odata_403_permission", scenario(finance_conn, bucket))
    assert_failed_cleanly(
        run,
        s3_server,
        bucket,
        OrchestratorAuthError,
        "HTTP 403",
        "permission Audit.View",
        "OR.Audit.Read",
        "Audit View",
    )


def test_a_token_without_the_scope_fails_with_advice_and_no_secret_shown(
    orchestrator,
    bucket,
    s3_server,
    monkeypatch,
    task_logs,
    client_secret,
):
    # The connection pins the platform's scope: the token is granted, and Orchestrator refuses it.
    conn = orchestrator.airflow_connection(tenant="Finance")
    conn["extra"]["scope"] = "PM.Audit"
    conn_id = set_connection(monkeypatch, "odata_pinned_pm", conn)
    run = run_export("odata_403_scope", scenario(conn_id, bucket))
    assert_failed_cleanly(
        run,
        s3_server,
        bucket,
        OrchestratorAuthError,
        "HTTP 403",
        "OR.Audit.Read",
        "client id 'local-client'",
        "External Applications",
        "extra 'scope'",
    )
    assert orchestrator.token_scopes == ("PM.Audit",)
    test_secrets.assert_never_shown([client_secret, *orchestrator.issued_tokens], task_logs, run)


def test_an_application_not_allowed_the_scope_fails_at_the_token(orchestrator, finance_conn, bucket, s3_server):
    orchestrator.granted_scopes = ("PM.Audit.Read", "PM.Audit")
    run = run_export("odata_invalid_scope", scenario(finance_conn, bucket))
    assert_failed_cleanly(
        run, s3_server, bucket, OrchestratorAuthError, "invalid_scope", "'OR.Audit.Read'", "OR.Audit.Read (or OR.Audit)"
    )
    assert orchestrator.stats.audit_requests == 0


def test_a_body_damaged_every_time_fails_cleanly(orchestrator, finance_conn, bucket, s3_server):
    orchestrator.faults.push(Fault.stall(0), times=5)
    orchestrator.faults.push(Fault.malformed_json(), times=40)
    run = run_export("odata_broken", scenario(finance_conn, bucket))
    assert_failed_cleanly(run, s3_server, bucket, OrchestratorResponseError, "odata/AuditLogs", "JSON")


def test_an_unknown_tenant_fails_cleanly(orchestrator, finance_conn, bucket, s3_server):
    run = run_export("odata_no_such_tenant", scenario(finance_conn, bucket, tenant="Nope"))
    assert_failed_cleanly(run, s3_server, bucket, OrchestratorRequestError, "HTTP 404", "tenant ('Nope')")
