"""The example DAGs import cleanly, and serialize for the scheduler, on every supported line."""

from __future__ import annotations

from tests.integration.airflow_runs import EXAMPLE_DAGS
from tests.lines.airflow_line import parse_dag_folder, serialize

EXAMPLES = {
    "example_orchestrator_audit_to_s3",
    "example_orchestrator_audit_event_driven",
    "example_orchestrator_audit_mapped_backfill",
}


def test_every_example_imports_and_serializes_without_errors_or_warnings():
    dagbag, warnings_seen = parse_dag_folder(EXAMPLE_DAGS)
    assert dagbag.import_errors == {}
    assert warnings_seen == []
    assert set(dagbag.dag_ids) == EXAMPLES
    for dag_id in EXAMPLES:
        data = serialize(dagbag.dags[dag_id])
        assert data["dag"].get("dag_id", data["dag"].get("_dag_id")) == dag_id  # (2.11 names it _dag_id)
        assert data["dag"]["tasks"], dag_id
