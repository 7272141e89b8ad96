"""A whole export through ``dag.test()`` on every supported line: the exact window, gzip, a rerun, lineage."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime

import pytest

from airflow_provider_orchestrator_audit.compat import get_hook_lineage_collector
from airflow_provider_orchestrator_audit.timestamps import to_ticks
from airflow_provider_orchestrator_audit.transfers.audit_logs_to_s3 import AuditLogsToS3Operator
from tests.integration.airflow_runs import load_dag, write_export_dag
from tests.lines.airflow_line import run_dag_test, xcom_value

pytestmark = pytest.mark.usefixtures("airflow_db")

PREFIX = "orchestrator-audit/organization=acme/dt=2026-01-01/hour=00"
KEY = f"{PREFIX}/20260101T000000Z_20260101T010000Z.jsonl.gz"


def window_entries(orchestrator, start: str, end: str) -> list[str]:
    entries = orchestrator.dataset.entries_between(to_ticks(start), to_ticks(end))
    return sorted(json.dumps(entry, sort_keys=True, ensure_ascii=False) for entry in entries)


def stored_entries(s3_server, bucket: str, key: str) -> list[str]:
    lines = gzip.decompress(s3_server.get_object_bytes(bucket, key)).decode("utf-8").split("\n")
    assert lines[-1] == ""  # every record ends with a newline, the last one too
    return sorted(json.dumps(json.loads(line), sort_keys=True, ensure_ascii=False) for line in lines[:-1])


def test_an_hourly_run_exports_exactly_its_hour_gzipped_and_a_rerun_replaces_it(
    orchestrator, orchestrator_conn, bucket, s3_server
):
    dag_id = "line_hourly_export"
    path = write_export_dag(
        dag_id, {"orchestrator_conn_id": orchestrator_conn, "s3_bucket": bucket, "compression": "gzip"}
    )
    expected = window_entries(orchestrator, "2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z")
    assert len(expected) > 3000
    for attempt in ("first run", "rerun"):
        run = run_dag_test(load_dag(path, dag_id), datetime(2026, 1, 1, 1, tzinfo=UTC))
        assert run.state == "success", attempt
        result = xcom_value(dag_id, run.run_id, "export")
        assert result["objects"] == [f"s3://{bucket}/{KEY}"], attempt
        assert result["records"] == len(expected)
        assert result["window_start"] == "2026-01-01T00:00:00.0000000+00:00"
        assert result["window_end"] == "2026-01-01T01:00:00.0000000+00:00"
        assert s3_server.list_keys(bucket) == [KEY], attempt
        assert s3_server.get_object_bytes(bucket, KEY)[:2] == b"\x1f\x8b"
        assert stored_entries(s3_server, bucket, KEY) == expected, attempt


def test_lineage_names_the_audit_log_and_the_object(orchestrator, orchestrator_conn, bucket):
    collector = get_hook_lineage_collector()
    # One collector serves the whole test process and keeps at most [lineage] max_assets_per_collector
    # assets: start from an empty one, as each task process does.
    for collected in (collector._inputs, collector._outputs, collector._input_counts, collector._output_counts):
        collected.clear()
    operator = AuditLogsToS3Operator(
        task_id="export",
        orchestrator_conn_id=orchestrator_conn,
        s3_bucket=bucket,
        s3_key="lineage.jsonl",
        window_start="2026-01-01T00:10:00Z",
        window_end="2026-01-01T00:20:00Z",
    )
    operator.execute({})
    lineage = collector.collected_assets
    assert f"{orchestrator.url}/acme/audit_/api/auditlogs" in {item.asset.uri for item in lineage.inputs}
    assert f"s3://{bucket}/lineage.jsonl" in {item.asset.uri for item in lineage.outputs}
