"""source="orchestrator" on every supported line: its example DAG through ``dag.test()``, exactly its hour."""

from __future__ import annotations

import gzip
from collections import Counter
from datetime import UTC, datetime

import pytest

from airflow_provider_orchestrator_audit.timestamps import to_ticks
from tests.conftest import set_connection
from tests.lines.airflow_line import run_example, xcom_value

pytestmark = pytest.mark.usefixtures("airflow_db")

DAG_ID = "example_orchestrator_audit_orchestrator_log"
TENANT = "Finance"
KEY = (
    "orchestrator-audit/organization=acme/source=orchestrator/tenant=Finance/dt=2026-01-01/hour=00/"
    "20260101T000000Z_20260101T010000Z.jsonl.gz"
)


def hour_lines(server) -> list[str]:
    """The lines the hour 00:00-01:00 must give: each entry's text as served, U+2028/U+2029 escaped."""
    listing = server.odata_listing
    hour = listing.window_entries(TENANT, to_ticks("2026-01-01T00:00:00Z"), to_ticks("2026-01-01T01:00:00Z"))
    return listing.entry_lines(TENANT, hour)


def test_the_example_exports_the_connections_tenant_for_its_hour(orchestrator, bucket, s3_server, monkeypatch):
    set_connection(monkeypatch, "orchestrator_audit_default", orchestrator.airflow_connection(tenant=TENANT))
    monkeypatch.setenv("AIRFLOW_VAR_ORCHESTRATOR_AUDIT_BUCKET", bucket)
    run = run_example(DAG_ID, datetime(2026, 1, 1, 1, tzinfo=UTC))
    assert run.state == "success"
    expected = hour_lines(orchestrator)
    assert len(expected) > 1000
    assert s3_server.list_keys(bucket) == [KEY]
    text = gzip.decompress(s3_server.get_object_bytes(bucket, KEY)).decode("utf-8")
    assert text.endswith("\n") and Counter(text[:-1].split("\n")) == Counter(expected)
    result = xcom_value(DAG_ID, run.run_id, "export_orchestrator_audit_log")
    assert result["records"] == len(expected) and result["objects"] == [f"s3://{bucket}/{KEY}"]
    assert orchestrator.token_scopes == ("OR.Audit.Read",)
