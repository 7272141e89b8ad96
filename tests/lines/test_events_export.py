"""source="tenant_events" on every supported line: its example DAG through ``dag.test()``, exactly its hour."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest

from tests.conftest import set_connection
from tests.integration.test_event_export import event_lines, object_lines
from tests.lines.airflow_line import run_example

pytestmark = pytest.mark.usefixtures("airflow_db")

DAG_ID = "example_orchestrator_audit_tenant_events"
KEY = (
    "orchestrator-audit/organization=acme/source=tenant_events/tenant=DefaultTenant/dt=2026-01-01/hour=00/"
    "20260101T000000Z_20260101T010000Z.jsonl.gz"
)


def test_the_example_exports_the_default_tenants_events_of_its_hour(orchestrator, bucket, s3_server, monkeypatch):
    set_connection(monkeypatch, "orchestrator_audit_default", orchestrator.airflow_connection())
    monkeypatch.setenv("AIRFLOW_VAR_ORCHESTRATOR_AUDIT_BUCKET", bucket)
    run = run_example(DAG_ID, datetime(2026, 1, 1, 1, tzinfo=UTC))
    assert run.state == "success"
    assert s3_server.list_keys(bucket) == [KEY]
    expected = event_lines(orchestrator, "DefaultTenant", ("2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z"))
    assert len(expected) > 1000
    assert Counter(object_lines(s3_server.get_object_bytes(bucket, KEY), KEY)) == Counter(expected)
    assert orchestrator.token_scopes == ("PM.Audit.Read",)
