"""
AuditLogsToS3Operator with source="orchestrator", end to end: real Airflow (dag.test), the local
Orchestrator's odata/AuditLogs over HTTP, SeaweedFS as S3.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from typing import Any

import pytest

from airflow_provider_orchestrator_audit.exceptions import OrchestratorConfigError
from airflow_provider_orchestrator_audit.hooks.orchestrator_audit import OrchestratorAuditHook
from airflow_provider_orchestrator_audit.testing.orchestrator_dataset import OdataSwitches
from airflow_provider_orchestrator_audit.timestamps import to_ticks
from tests.conftest import set_connection
from tests.faults.scenario_helpers import bucket_contents, run_export, unfinished_uploads

pytestmark = pytest.mark.usefixtures("airflow_db")

TENANT = "Finance"
WINDOW = ("2026-01-01T00:10:00Z", "2026-01-01T00:20:00Z")
KEY = (
    "orchestrator-audit/organization=acme/source=orchestrator/tenant=Finance/dt=2026-01-01/hour=00/"
    "20260101T001000Z_20260101T002000Z.jsonl"
)


def window_entries(server: Any, tenant: str = TENANT, window: tuple[str, str] = WINDOW) -> list[tuple[int, int]]:
    """``(Id, ticks as stored)`` of the window's entries now."""
    return server.odata_listing.window_entries(tenant, to_ticks(window[0]), to_ticks(window[1]))


def entry_lines(server: Any, entries: list[tuple[int, int]], tenant: str = TENANT, entities: bool = True) -> list[str]:
    """The lines the export must write: the server's own text of each entry, U+2028/U+2029 escaped."""
    return server.odata_listing.entry_lines(tenant, entries, entities)


def object_lines(s3_server: Any, bucket: str, key: str) -> list[str]:
    objects = bucket_contents(s3_server, bucket)
    assert list(objects) == [key], sorted(objects)
    body = gzip.decompress(objects[key]) if key.endswith(".gz") else objects[key]
    text = body.decode("utf-8")
    assert text == "" or text.endswith("\n")
    return text[:-1].split("\n") if text else []


def assert_exact(
    run: Any, server: Any, s3_server: Any, bucket: str, key: str = KEY, tenant: str = TENANT, entities: bool = True
) -> list[str]:
    assert run.state == "success" and run.task_state == "success", f"the export failed: {run.error!r}"
    lines = object_lines(s3_server, bucket, key)
    expected = entry_lines(server, window_entries(server, tenant), tenant, entities)
    assert len(expected) > 300
    written, wanted = Counter(lines), Counter(expected)
    assert not [line[:80] for line, count in written.items() if count > 1], "entries written twice"
    assert not wanted - written, f"{len(wanted - written)} entries missing"
    assert not written - wanted, f"{len(written - wanted)} lines that are not window entries"
    assert run.result["records"] == len(expected) and run.result["objects"] == [f"s3://{bucket}/{key}"]
    assert unfinished_uploads(s3_server, bucket) == []
    return lines


def kwargs(conn_id: str, bucket: str, **changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "orchestrator_conn_id": conn_id,
        "s3_bucket": bucket,
        "source": "orchestrator",
        "window_start": WINDOW[0],
        "window_end": WINDOW[1],
        "page_size": 50,
        "max_concurrency": 3,
    }
    values.update(changes)
    return values


@pytest.fixture
def finance_conn(orchestrator, monkeypatch) -> str:
    return set_connection(monkeypatch, "odata_conn", orchestrator.airflow_connection(tenant=TENANT))


def test_the_window_exactly_once_with_entities_and_one_token(orchestrator, finance_conn, bucket, s3_server):
    run = run_export("odata_exact", kwargs(finance_conn, bucket))
    lines = assert_exact(run, orchestrator, s3_server, bucket)
    assert all('"Entities":[{' in line for line in lines)
    assert [json.loads(line)["Id"] for line in lines] != [], "lines are JSON"
    assert orchestrator.token_scopes == ("OR.Audit.Read",), "one token, for the OData scope, for every request"
    queries = [request.query for request in orchestrator.stats.audit_timeline]
    assert all("%24skip" not in query and "Id+asc" in query and "%24expand=Entities" in query for query in queries)


def test_without_entities_and_gzip(orchestrator, finance_conn, bucket, s3_server):
    run = run_export("odata_no_entities", kwargs(finance_conn, bucket, include_entities=False, compression="gzip"))
    lines = assert_exact(run, orchestrator, s3_server, bucket, KEY + ".gz", entities=False)
    assert not any('"Entities"' in line for line in lines)


@pytest.mark.parametrize(
    "switches",
    [
        OdataSwitches(fraction_digits=7, offset="Z"),
        OdataSwitches(fraction_digits=3, offset="+00:00", trim_fraction=True),
        OdataSwitches(fraction_digits=0, offset="+02:00"),
        OdataSwitches(fraction_digits=3, page_size_cap=17, short_pages=True),
    ],
    ids=["7-digits-Z", "3-digits-trimmed-+00:00", "0-digits-+02:00", "short-pages"],
)
def test_every_time_precision_and_short_pages(orchestrator, finance_conn, bucket, s3_server, switches):
    orchestrator.odata_listing.switches = switches
    run = run_export("odata_precision", kwargs(finance_conn, bucket))
    assert_exact(run, orchestrator, s3_server, bucket)


def test_entries_arriving_while_paging(orchestrator, finance_conn, bucket, s3_server):
    # The window reaches past the newest entry: entries recorded during the export land in it.
    window = ("2026-01-01T01:00:00Z", "2026-01-01T02:00:00Z")
    before = set(entry_lines(orchestrator, window_entries(orchestrator, window=window)))
    orchestrator.odata_arrivals_per_request = 3
    run = run_export(
        "odata_arrivals", kwargs(finance_conn, bucket, window_start=window[0], window_end=window[1], s3_key="a.jsonl")
    )
    assert run.state == "success", run.error
    lines = object_lines(s3_server, bucket, "a.jsonl")
    after = set(entry_lines(orchestrator, window_entries(orchestrator, window=window)))
    assert len(lines) == len(set(lines)), "entries written twice"
    assert before < set(lines) <= after
    assert len(set(lines) - before) >= 3, "entries that arrived while paging are exported"


def test_a_standalone_orchestrator_from_one_setting(orchestrator, bucket, s3_server, monkeypatch):
    conn = set_connection(monkeypatch, "standalone", orchestrator.airflow_connection(standalone=True))
    run = run_export("odata_standalone", kwargs(conn, bucket, s3_key="s.jsonl"))
    lines = object_lines(s3_server, bucket, "s.jsonl")
    assert run.state == "success", run.error
    expected = entry_lines(orchestrator, window_entries(orchestrator, tenant="DefaultTenant"), tenant="DefaultTenant")
    assert Counter(lines) == Counter(expected)
    paths = {request.query.split("?")[0] for request in orchestrator.stats.audit_timeline}
    assert paths == {"/odata/AuditLogs"}


def test_the_default_key_names_the_tenant_from_the_operator(orchestrator, finance_conn, bucket, s3_server):
    run = run_export(
        "odata_tenant_param", kwargs(finance_conn, bucket, tenant="{{ params.tenant }}"), params={"tenant": "HR"}
    )
    assert_exact(run, orchestrator, s3_server, bucket, KEY.replace("tenant=Finance", "tenant=HR"), tenant="HR")


def test_a_tenant_is_required_before_any_request(orchestrator, orchestrator_conn, bucket, s3_server):
    run = run_export("odata_no_tenant", kwargs(orchestrator_conn, bucket))
    assert run.state == "failed" and isinstance(run.error, OrchestratorConfigError)
    assert "source='orchestrator' needs a tenant" in str(run.error) and orchestrator.stats.audit_requests == 0


def test_one_hook_caches_a_token_per_scope(orchestrator, monkeypatch):
    # The connection form fills in scope PM.Audit.Read: that default does not pin the scope of every source.
    conn = orchestrator.airflow_connection(tenant=TENANT)
    conn["extra"]["scope"] = "PM.Audit.Read"
    hook = OrchestratorAuditHook(set_connection(monkeypatch, "form_default_scope", conn))
    try:
        for _ in range(2):
            assert hook.get_audit_logs(top=1).total_count > 0
            assert hook.get_orchestrator_audit_logs(top=1, count=True).count == 5000
    finally:
        hook.close()
    assert orchestrator.token_scopes == ("PM.Audit.Read", "OR.Audit.Read")
    assert orchestrator.stats.audit_requests == 4


def test_lineage_names_the_odata_endpoint(orchestrator, finance_conn, bucket):
    from airflow_provider_orchestrator_audit.compat import get_hook_lineage_collector
    from airflow_provider_orchestrator_audit.transfers.audit_logs_to_s3 import AuditLogsToS3Operator

    collector = get_hook_lineage_collector()
    operator = AuditLogsToS3Operator(
        task_id="export", orchestrator_conn_id=finance_conn, s3_bucket=bucket, source="orchestrator",
        window_start=WINDOW[0], window_end=WINDOW[1], s3_key="l.jsonl",
    )  # fmt: skip
    operator.execute({})
    inputs = {asset.asset.uri for asset in collector.collected_assets.inputs}
    assert f"{orchestrator.url}/acme/Finance/orchestrator_/odata/AuditLogs" in inputs


def test_bad_arguments_fail_the_dag_import_naming_the_task():
    from airflow_provider_orchestrator_audit.sensors.audit_logs import AuditLogsTotalCountSensor
    from airflow_provider_orchestrator_audit.transfers.audit_logs_to_s3 import AuditLogsToS3Operator

    with pytest.raises(ValueError, match=r"export: page_size is \$top for source='orchestrator': at most 1000"):
        AuditLogsToS3Operator(task_id="export", s3_bucket="b", source="orchestrator", page_size=1001)
    with pytest.raises(ValueError, match="wait: source must be 'classic' or 'orchestrator'"):
        AuditLogsTotalCountSensor(task_id="wait", source="tenant_events")


def test_the_example_exports_the_connections_tenant_hour_by_hour(orchestrator, bucket, s3_server, monkeypatch):
    """The example DAG through ``dag.test()``: its unset params fall back to the connection's tenant and the hour."""
    from datetime import UTC, datetime

    from tests.integration.airflow_runs import install_example, load_dag, xcom_return_value

    dag_id = "example_orchestrator_audit_orchestrator_log"
    set_connection(monkeypatch, "orchestrator_audit_default", orchestrator.airflow_connection(tenant=TENANT))
    monkeypatch.setenv("AIRFLOW_VAR_ORCHESTRATOR_AUDIT_BUCKET", bucket)
    path = install_example(f"{dag_id}.py")
    try:
        run = load_dag(path, dag_id).test(logical_date=datetime(2026, 1, 1, 1, tzinfo=UTC))
    finally:
        path.unlink()
    assert run.state == "success"
    hour = ("2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z")
    key = (
        "orchestrator-audit/organization=acme/source=orchestrator/tenant=Finance/dt=2026-01-01/hour=00/"
        "20260101T000000Z_20260101T010000Z.jsonl.gz"
    )
    expected = entry_lines(orchestrator, window_entries(orchestrator, window=hour))
    assert len(expected) > 1000 and all('"Entities":[' in line for line in expected)
    assert Counter(object_lines(s3_server, bucket, key)) == Counter(expected)
    result = xcom_return_value(dag_id, run.run_id, "export_orchestrator_audit_log")
    assert result["records"] == len(expected) and result["objects"] == [f"s3://{bucket}/{key}"]
