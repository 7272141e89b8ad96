"""
AuditLogsToS3Operator with source="organization_events" / "tenant_events", end to end: real Airflow
(dag.test), the local Orchestrator's events endpoints over HTTP, SeaweedFS as S3.
"""

from __future__ import annotations

import gzip
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from airflow_provider_orchestrator_audit.exceptions import OrchestratorConfigError
from airflow_provider_orchestrator_audit.testing.events_dataset import ORGANIZATION_STREAM
from airflow_provider_orchestrator_audit.timestamps import to_ticks
from airflow_provider_orchestrator_audit.transfers.audit_logs_to_s3 import AuditLogsToS3Operator
from tests.conftest import set_connection
from tests.faults.scenario_helpers import bucket_contents, run_export, unfinished_uploads

pytestmark = pytest.mark.usefixtures("airflow_db")

WINDOW = ("2026-01-01T00:10:00Z", "2026-01-01T00:20:00Z")


def event_lines(server: Any, stream: str, window: tuple[str, str] = WINDOW) -> list[str]:
    """The window's events as the export must write them: the server's own text, U+2028/U+2029 escaped."""
    rows = server.event_listing.events_between(stream, to_ticks(window[0]), to_ticks(window[1]))
    return [
        server.events.event_json(stream, index, ticks).replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
        for ticks, _, index in rows
    ]


def object_lines(body: bytes, key: str) -> list[str]:
    text = (gzip.decompress(body) if key.endswith(".gz") else body).decode("utf-8")
    assert text == "" or text.endswith("\n")
    return text[:-1].split("\n") if text else []


def assert_exact(run: Any, server: Any, s3_server: Any, bucket: str, stream: str, key: str) -> list[str]:
    assert run.state == "success" and run.task_state == "success", f"the export failed: {run.error!r}"
    objects = bucket_contents(s3_server, bucket)
    assert list(objects) == [key], sorted(objects)
    lines = object_lines(objects[key], key)
    expected = event_lines(server, stream)
    assert len(expected) > 300
    written, wanted = Counter(lines), Counter(expected)
    assert not [line[:80] for line, count in written.items() if count > 1], "events written twice"
    assert not wanted - written, f"{len(wanted - written)} events missing"
    assert not written - wanted, f"{len(written - wanted)} lines that are not window events"
    assert run.result["records"] == len(expected) and run.result["total_count"] is None
    assert run.result["objects"] == [f"s3://{bucket}/{key}"]
    assert unfinished_uploads(s3_server, bucket) == []
    return lines


def kwargs(conn_id: str, bucket: str, **changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "orchestrator_conn_id": conn_id,
        "s3_bucket": bucket,
        "window_start": WINDOW[0],
        "window_end": WINDOW[1],
        "page_size": 20,
        "max_concurrency": 2,
    }
    values.update(changes)
    return values


ORG_KEY = (
    "orchestrator-audit/organization=acme/source=organization_events/dt=2026-01-01/hour=00/"
    "20260101T001000Z_20260101T002000Z.jsonl"
)
TENANT_KEY = (
    "orchestrator-audit/organization=acme/source=tenant_events/tenant=Finance/dt=2026-01-01/hour=00/"
    "20260101T001000Z_20260101T002000Z.jsonl.gz"
)


def test_organization_events_exactly_once(orchestrator, orchestrator_conn, bucket, s3_server):
    run = run_export("org_events", kwargs(orchestrator_conn, bucket, source="organization_events"))
    lines = assert_exact(run, orchestrator, s3_server, bucket, ORGANIZATION_STREAM, ORG_KEY)
    assert all('"tenantId":null' in line for line in lines)


def test_tenant_events_from_the_connection_gzip_and_a_rerun(orchestrator, bucket, s3_server, monkeypatch):
    conn = set_connection(monkeypatch, "events_conn", orchestrator.airflow_connection(tenant="Finance"))
    operator_kwargs = kwargs(conn, bucket, source="tenant_events", compression="gzip")
    first = run_export("tenant_events", operator_kwargs)
    lines = assert_exact(first, orchestrator, s3_server, bucket, "Finance", TENANT_KEY)
    assert all('"tenantName":"Finance"' in line for line in lines)
    second = run_export("tenant_events", operator_kwargs)
    assert Counter(assert_exact(second, orchestrator, s3_server, bucket, "Finance", TENANT_KEY)) == Counter(lines)


def test_templated_tenant_overrides_the_connection(orchestrator, bucket, s3_server, monkeypatch):
    conn = set_connection(monkeypatch, "events_conn", orchestrator.airflow_connection(tenant="Finance"))
    run = run_export(
        "tenant_param",
        kwargs(conn, bucket, source="tenant_events", tenant="{{ params.tenant }}"),
        params={"tenant": "HR"},
    )
    key = TENANT_KEY.replace("tenant=Finance", "tenant=HR").removesuffix(".gz")
    assert_exact(run, orchestrator, s3_server, bucket, "HR", key)


def test_classic_keys_are_unchanged(orchestrator, orchestrator_conn, bucket, s3_server):
    run = run_export("classic_key", kwargs(orchestrator_conn, bucket, page_size=500))
    assert run.state == "success", run.error
    assert list(bucket_contents(s3_server, bucket)) == [
        "orchestrator-audit/organization=acme/dt=2026-01-01/hour=00/20260101T001000Z_20260101T002000Z.jsonl"
    ]


def test_a_tenant_source_without_a_tenant_fails_before_any_request(orchestrator, orchestrator_conn, bucket, s3_server):
    run = run_export("no_tenant", kwargs(orchestrator_conn, bucket, source="tenant_events"))
    assert run.state == "failed" and isinstance(run.error, OrchestratorConfigError)
    message = str(run.error)
    assert "source='tenant_events' needs a tenant" in message and "extra 'tenant'" in message
    assert orchestrator.stats.audit_requests == 0 and orchestrator.stats.token_requests == 0
    assert s3_server.list_keys(bucket) == []


def test_an_unknown_source_is_an_import_error():
    with pytest.raises(ValueError, match="export: source must be one of 'classic', 'organization_events'"):
        AuditLogsToS3Operator(task_id="export", s3_bucket="b", source="events")


def test_an_empty_window_writes_an_empty_object(orchestrator, orchestrator_conn, bucket, s3_server):
    operator = AuditLogsToS3Operator(
        task_id="export",
        orchestrator_conn_id=orchestrator_conn,
        s3_bucket=bucket,
        source="organization_events",
        window_start="2025-06-01T00:00:00Z",  # before the first event (a future window would wait for min_age)
        window_end="2025-06-01T01:00:00Z",
    )
    result = operator.execute({})
    assert result["records"] == 0
    [key] = s3_server.list_keys(bucket)
    assert "source=organization_events/dt=2025-06-01/hour=00/" in key
    assert s3_server.get_object_bytes(bucket, key) == b""


def test_lineage_names_the_events_endpoint(orchestrator, bucket, monkeypatch):
    from airflow_provider_orchestrator_audit.compat import get_hook_lineage_collector

    conn = set_connection(monkeypatch, "events_conn", orchestrator.airflow_connection(tenant="Finance"))
    collector = get_hook_lineage_collector()
    operator = AuditLogsToS3Operator(
        task_id="export",
        orchestrator_conn_id=conn,
        s3_bucket=bucket,
        source="tenant_events",
        window_start=WINDOW[0],
        window_end=WINDOW[1],
    )
    operator.execute({})
    inputs = {asset.asset.uri for asset in collector.collected_assets.inputs}
    assert f"{orchestrator.url}/acme/Finance/tenantaudit_/api/query/events" in inputs


def test_a_logical_date_window(orchestrator, orchestrator_conn, bucket, s3_server):
    """The run's data interval (an hourly schedule) is the window, as for the classic source."""
    from tests.integration.airflow_runs import run_dag, write_export_dag

    path = write_export_dag(
        "events_hourly",
        {"orchestrator_conn_id": orchestrator_conn, "s3_bucket": bucket, "source": "organization_events"},
    )
    state, result = run_dag(path, "events_hourly", datetime(2026, 1, 1, 1, tzinfo=UTC))
    path.unlink()
    assert state == "success"
    window = ("2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z")
    assert result["records"] == len(event_lines(orchestrator, ORGANIZATION_STREAM, window)) > 3000


def test_the_tenant_events_example_exports_each_tenant_as_a_mapped_task(orchestrator, bucket, s3_server, monkeypatch):
    from tests.integration.airflow_runs import install_example, load_dag

    set_connection(monkeypatch, "orchestrator_audit_default", orchestrator.airflow_connection())
    monkeypatch.setenv("AIRFLOW_VAR_ORCHESTRATOR_AUDIT_BUCKET", bucket)
    path = install_example("example_orchestrator_audit_tenant_events.py")
    dag_id = "example_orchestrator_audit_tenant_events"
    try:
        run = load_dag(path, dag_id).test(
            logical_date=datetime(2026, 1, 1, 1, tzinfo=UTC),
            run_conf={"tenants": ["DefaultTenant", "Finance", "HR", "Finance"]},
        )
    finally:
        path.unlink()
    assert run.state == "success"
    hour = ("2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z")
    keys = sorted(s3_server.list_keys(bucket))
    assert keys == [
        f"orchestrator-audit/organization=acme/source=tenant_events/tenant={tenant}/dt=2026-01-01/hour=00/"
        "20260101T000000Z_20260101T010000Z.jsonl.gz"
        for tenant in ("DefaultTenant", "Finance", "HR")
    ]
    for key, tenant in zip(keys, ("DefaultTenant", "Finance", "HR"), strict=True):
        lines = object_lines(s3_server.get_object_bytes(bucket, key), key)
        assert Counter(lines) == Counter(event_lines(orchestrator, tenant, hour))
