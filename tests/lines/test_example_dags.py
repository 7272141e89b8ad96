"""The example DAGs import cleanly, and serialize for the scheduler, on every supported line."""

from __future__ import annotations

from tests.integration.airflow_runs import EXAMPLE_DAGS
from tests.lines.airflow_line import parse_dag_folder, serialize


def test_every_example_imports_and_serializes_without_errors_or_warnings():
    # Each example file holds one DAG named after the file.
    examples = {path.stem for path in EXAMPLE_DAGS.glob("example_*.py")}
    assert len(examples) >= 3
    dagbag, warnings_seen = parse_dag_folder(EXAMPLE_DAGS)
    assert dagbag.import_errors == {}
    assert warnings_seen == []
    assert set(dagbag.dag_ids) == examples
    for dag_id in examples:
        data = serialize(dagbag.dags[dag_id])
        assert data["dag"].get("dag_id", data["dag"].get("_dag_id")) == dag_id  # (2.11 names it _dag_id)
        assert data["dag"]["tasks"], dag_id
