"""
Fault scenarios of the event sources through Airflow's dag.test(): throttling, expiring tokens, damaged
bodies, cursors the server no longer accepts, and every answer to the events API's unknowns. Each ends
with the exact window in S3, or a clear failure with nothing written.
"""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_orchestrator_audit.exceptions import OrchestratorRequestError, OrchestratorResponseError
from airflow_provider_orchestrator_audit.paging import PagingError
from airflow_provider_orchestrator_audit.testing import Fault, ListingSwitches
from tests.conftest import set_connection
from tests.faults.scenario_helpers import assert_failed_cleanly, run_export
from tests.integration.test_event_export import assert_exact, kwargs

pytestmark = pytest.mark.usefixtures("airflow_db")

KEY = "events/window.jsonl"
FAST_RETRIES = {"max_attempts": 4, "backoff_base": 0.01, "backoff_max": 0.05, "max_elapsed": 60}


@pytest.fixture
def tenant_conn(orchestrator, monkeypatch) -> str:
    return set_connection(monkeypatch, "events_faults", orchestrator.airflow_connection(tenant="DefaultTenant"))


def scenario(conn: str, bucket: str, **changes: Any) -> dict[str, Any]:
    return kwargs(conn, bucket, source="tenant_events", s3_key=KEY, request_retry_policy=FAST_RETRIES, **changes)


def test_throttling_errors_and_resets(orchestrator, tenant_conn, bucket, s3_server):
    for fault in (
        Fault.throttle(0.2),
        Fault.throttle(0.1, style="body"),
        Fault.server_error(503),
        Fault.reset(),
        Fault.throttle(0.1, style="header-date"),
    ):
        orchestrator.faults.push(fault)
    orchestrator.faults.push(Fault.stall(0), times=5)
    orchestrator.faults.push(Fault.throttle(0.1), times=2)
    run = run_export("events_throttled", scenario(tenant_conn, bucket))
    assert_exact(run, orchestrator, s3_server, bucket, "DefaultTenant", KEY)
    assert orchestrator.stats.responses_by_status.get(429) == 5


def test_tokens_expiring_mid_export(orchestrator, tenant_conn, bucket, s3_server):
    orchestrator.token_lifetime_seconds = 0.3
    orchestrator.latency_seconds = 0.02
    run = run_export("events_tokens", scenario(tenant_conn, bucket))
    assert_exact(run, orchestrator, s3_server, bucket, "DefaultTenant", KEY)
    assert orchestrator.stats.token_requests > 1


def test_damaged_bodies_once_each(orchestrator, tenant_conn, bucket, s3_server):
    for fault in (Fault.non_utf8(), Fault.truncated(), Fault.malformed_json()):
        orchestrator.faults.push(Fault.stall(0), times=3)
        orchestrator.faults.push(fault)
    run = run_export("events_damaged", scenario(tenant_conn, bucket))
    assert_exact(run, orchestrator, s3_server, bucket, "DefaultTenant", KEY)


def test_a_body_damaged_every_time_fails_cleanly(orchestrator, tenant_conn, bucket, s3_server):
    orchestrator.faults.push(Fault.stall(0), times=6)
    orchestrator.faults.push(Fault.malformed_json(), times=40)
    run = run_export("events_broken", scenario(tenant_conn, bucket))
    assert_failed_cleanly(run, s3_server, bucket, OrchestratorResponseError, "tenantaudit_/api/query/events", "JSON")


def test_a_wrong_shaped_answer_fails_cleanly(orchestrator, tenant_conn, bucket, s3_server):
    orchestrator.faults.push(Fault.stall(0), times=4)
    orchestrator.faults.push(Fault.wrong_shape())
    run = run_export("events_wrong_shape", scenario(tenant_conn, bucket))
    assert_failed_cleanly(run, s3_server, bucket, OrchestratorResponseError, "auditEvents: Field required")


@pytest.mark.parametrize(
    "switches",
    [
        ListingSwitches(expire_cursor_every=2),
        ListingSwitches(expire_cursor_every=3, cursor_expired_status=410, cursor_keeps_from=False),
        ListingSwitches(to_inclusive=True, from_inclusive=False, page_overlap=3, page_order="oldest_first"),
        ListingSwitches(page_size_cap=7, empty_last_page=True),
    ],
    ids=["cursor-expires", "cursor-gone-and-from-dropped", "inclusive-overlap-oldest-first", "cap-7"],
)
def test_every_answer_to_the_unknowns(orchestrator, tenant_conn, bucket, s3_server, switches):
    orchestrator.event_listing.switches = switches
    orchestrator.event_arrivals_per_request = 2  # new events keep arriving while the export pages
    run = run_export("events_unknowns", scenario(tenant_conn, bucket))
    assert_exact(run, orchestrator, s3_server, bucket, "DefaultTenant", KEY)


def test_cursors_refused_every_time_inside_a_tie_group_fail_cleanly(orchestrator, tenant_conn, bucket, s3_server):
    # Two events a page and every cursor refused: asking again from the last event read lists the
    # same two members of its tie group again, and the export cannot get past them.
    orchestrator.event_listing.switches = ListingSwitches(page_size_cap=2, expire_cursor_every=1)
    run = run_export("events_cursor_refused", scenario(tenant_conn, bucket))
    assert_failed_cleanly(run, s3_server, bucket, PagingError, "refused", "cursors in a row")


def test_an_unknown_tenant_fails_cleanly(orchestrator, orchestrator_conn, bucket, s3_server):
    run = run_export("events_no_such_tenant", scenario(orchestrator_conn, bucket, tenant="Nope"))
    assert_failed_cleanly(run, s3_server, bucket, OrchestratorRequestError, "HTTP 404", "tenant ('Nope')")
