"""What the UI tests check the same way on every Airflow line: the connection form's labels, and deferral."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_provider_orchestrator_audit.testing import LocalOrchestratorServer
    from tests.e2e.airflow_cluster import AirflowCluster

#: The connection form's standard fields as the hook relabels them, and its own extra fields.
FORM_LABELS = ("Base URL", "Port", "Client ID", "Client secret")
EXTRA_LABELS = (
    "Organization",
    "Tenant",
    "Scope",
    "Token URL",
    "Orchestrator URL",
    "Personal access token",
    "Verify TLS",
    "Timeout (seconds)",
)

SENSOR_DAG_ID = "orchestrator_audit_deferred_sensor"


def write_sensor_dag(folder: Path, conn_id: str) -> Path:
    """A DAG with one deferrable sensor on ``conn_id``, written into ``folder``."""
    path = folder / f"{SENSOR_DAG_ID}.py"
    path.write_text(
        f"""
from datetime import datetime, timezone

from airflow_provider_orchestrator_audit.compat import DAG
from airflow_provider_orchestrator_audit.sensors.audit_logs import AuditLogsTotalCountSensor

with DAG(dag_id={SENSOR_DAG_ID!r}, schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)) as dag:
    AuditLogsTotalCountSensor(
        task_id="wait", orchestrator_conn_id={conn_id!r}, deferrable=True, poke_interval=1, timeout=300
    )
"""
    )
    return path


def check_the_sensor_defers_and_resumes(airflow: AirflowCluster, orchestrator: LocalOrchestratorServer) -> None:
    """
    A run of the sensor DAG: the task defers, its trigger polls from the triggerer while the task stays
    deferred, and new entries resume the task, which returns the new total.
    """
    airflow.wait_for_dag(SENSOR_DAG_ID)
    airflow.api_patch(f"dags/{SENSOR_DAG_ID}", {"is_paused": False})
    baseline = orchestrator.dataset.total_count
    run_id = airflow.trigger(SENSOR_DAG_ID)
    task = f"dags/{SENSOR_DAG_ID}/dagRuns/{run_id}/taskInstances/wait"

    deadline = time.monotonic() + 180
    while (state := airflow.api(task)["state"]) != "deferred":
        assert state not in ("failed", "upstream_failed"), airflow.failure_report()
        assert time.monotonic() < deadline, f"the sensor never deferred: {airflow.api(task)}"
        time.sleep(1)
    polls = orchestrator.stats.audit_requests
    deadline = time.monotonic() + 60
    while orchestrator.stats.audit_requests < polls + 2:  # the trigger polls while the task is deferred
        assert time.monotonic() < deadline, "the trigger did not poll"
        time.sleep(0.5)
    assert airflow.api(task)["state"] == "deferred"
    # The new entries come once the scheduler has heard that the deferring worker exited. Airflow 3's
    # scheduler fails a task whose trigger fires before that: the worker's late "success" for the same try
    # looks like an external change (apache/airflow#66374 and #67287, fixed in later releases; #72716,
    # the resumed attempt already running, is open). Activity within seconds of a deferral can meet that
    # race on those releases; it is Airflow's, not the sensor's, and not what this test is about.
    airflow.wait_for_log(
        f"Received executor event with state success for task instance TaskInstanceKey(dag_id='{SENSOR_DAG_ID}', "
        f"task_id='wait', run_id='{run_id}'"
    )
    assert airflow.api(task)["state"] == "deferred"

    orchestrator.dataset.append(3)
    deadline = time.monotonic() + 180
    while (state := airflow.api(task)["state"]) != "success":
        assert state not in ("failed", "upstream_failed"), airflow.failure_report()
        assert time.monotonic() < deadline, f"the task did not resume: {state}"
        time.sleep(1)
    xcom = airflow.api(f"{task}/xcomEntries/return_value")
    assert int(xcom["value"]) == baseline + 3
