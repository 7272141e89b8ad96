"""The sensor on every supported line, through ``dag.test()``: poking until new entries, and deferring to its trigger."""

from __future__ import annotations

import textwrap
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_orchestrator_audit.triggers.audit_logs import AuditLogsTotalCountTrigger
from tests.conftest import DAGS_FOLDER, ORCHESTRATOR_ENTRIES
from tests.integration.airflow_runs import load_dag
from tests.lines.airflow_line import run_dag_test, xcom_value

pytestmark = pytest.mark.usefixtures("airflow_db")


def write_sensor_dag(dag_id: str, sensor_kwargs: dict[str, Any]) -> Path:
    path = Path(DAGS_FOLDER) / f"{dag_id}.py"
    path.write_text(
        textwrap.dedent(
            f"""
            from datetime import datetime, timezone

            from airflow_provider_orchestrator_audit.compat import DAG
            from airflow_provider_orchestrator_audit.sensors.audit_logs import AuditLogsTotalCountSensor

            with DAG(dag_id={dag_id!r}, schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)) as dag:
                AuditLogsTotalCountSensor(task_id="wait", **{sensor_kwargs!r})
            """
        )
    )
    return path


def grow_after_requests(orchestrator, entries: int, requests: int) -> None:
    """New activity once the sensor has made ``requests`` requests (however long Airflow takes to start it)."""
    seen = orchestrator.stats.audit_requests

    def grow() -> None:
        deadline = time.monotonic() + 60
        while orchestrator.stats.audit_requests < seen + requests and time.monotonic() < deadline:
            time.sleep(0.02)
        orchestrator.dataset.append(entries)

    threading.Thread(target=grow, daemon=True).start()


@pytest.fixture
def trigger_runs(monkeypatch) -> list[dict[str, Any]]:
    """The serialized arguments of every trigger run, and its events, recorded as they happen."""
    runs: list[dict[str, Any]] = []
    original = AuditLogsTotalCountTrigger.run

    async def recording(self):
        record = {"kwargs": self.serialize()[1], "events": []}
        runs.append(record)
        async for event in original(self):
            record["events"].append(event.payload)
            yield event

    monkeypatch.setattr(AuditLogsTotalCountTrigger, "run", recording)
    return runs


def test_poke_mode_waits_for_new_entries(orchestrator, orchestrator_conn, trigger_runs):
    dag_id = "line_sensor_poke"
    path = write_sensor_dag(dag_id, {"orchestrator_conn_id": orchestrator_conn, "poke_interval": 0.2, "timeout": 30})
    grow_after_requests(orchestrator, 4, requests=2)  # the first poke sets the baseline, the second sees none
    run = run_dag_test(load_dag(path, dag_id), datetime(2026, 2, 1, tzinfo=UTC))
    assert run.state == "success"
    assert xcom_value(dag_id, run.run_id, "wait") == ORCHESTRATOR_ENTRIES + 4
    assert orchestrator.stats.audit_requests >= 3  # it poked before the entries arrived
    assert trigger_runs == []


def test_deferrable_mode_hands_the_wait_to_the_trigger_and_resumes(orchestrator, orchestrator_conn, trigger_runs):
    dag_id = "line_sensor_deferred"
    path = write_sensor_dag(
        dag_id, {"orchestrator_conn_id": orchestrator_conn, "deferrable": True, "poke_interval": 0.2, "timeout": 30}
    )
    grow_after_requests(orchestrator, 6, requests=2)  # the sensor's check, then the trigger's first poll
    run = run_dag_test(load_dag(path, dag_id), datetime(2026, 2, 2, tzinfo=UTC))
    assert run.state == "success"
    # Resumed in execute_complete with the trigger's count.
    assert xcom_value(dag_id, run.run_id, "wait") == ORCHESTRATOR_ENTRIES + 6
    (trigger_run,) = trigger_runs
    assert trigger_run["kwargs"]["baseline_count"] == ORCHESTRATOR_ENTRIES
    assert [event["status"] for event in trigger_run["events"]] == ["success"]
