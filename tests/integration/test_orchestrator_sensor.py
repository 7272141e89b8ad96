"""The sensors with source="orchestrator": @odata.count and the newest ExecutionTime, in poke mode and deferred."""

from __future__ import annotations

import asyncio
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_orchestrator_audit.exceptions import OrchestratorAuthError
from airflow_provider_orchestrator_audit.sensors.audit_logs import AuditLogsNewEntriesSensor, AuditLogsTotalCountSensor
from airflow_provider_orchestrator_audit.timestamps import format_ticks
from airflow_provider_orchestrator_audit.triggers.audit_logs import AuditLogsTotalCountTrigger
from tests.conftest import DAGS_FOLDER, ORCHESTRATOR_EVENTS, set_connection
from tests.integration.airflow_runs import forget_dag, load_dag, xcom_return_value

TENANT = "Finance"
_made: list[Any] = []


@pytest.fixture
def finance_conn(orchestrator, monkeypatch) -> str:
    return set_connection(monkeypatch, "odata_sensor", orchestrator.airflow_connection(tenant=TENANT))


@pytest.fixture(autouse=True)
def _close_hooks() -> Iterator[None]:
    yield
    while _made:
        _made.pop().hook.close()


def newest(orchestrator) -> tuple[str, int]:
    """The newest entry's ``ExecutionTime`` as the server writes it, and its stored ticks."""
    ticks = max(ticks for _, ticks in orchestrator.orchestrator_audit.entries(TENANT))
    return orchestrator.odata_listing.switches.format(ticks), ticks


def total_count_sensor(conn_id: str, **kwargs: Any) -> AuditLogsTotalCountSensor:
    made = AuditLogsTotalCountSensor(task_id="wait", orchestrator_conn_id=conn_id, source="orchestrator", **kwargs)
    _made.append(made)
    return made


def test_total_count_is_the_odata_count(orchestrator, finance_conn):
    assert total_count_sensor(finance_conn, baseline_count=ORCHESTRATOR_EVENTS - 1).poke({}).xcom_value == 5000
    assert not total_count_sensor(finance_conn, baseline_count=ORCHESTRATOR_EVENTS).poke({}).is_done
    text, ticks = newest(orchestrator)
    assert total_count_sensor(finance_conn, newer_than=format_ticks(ticks - 1)).poke({}).is_done
    assert not total_count_sensor(finance_conn, newer_than=text).poke({}).is_done
    assert orchestrator.token_scopes == ("OR.Audit.Read",) * 4  # one sensor, one hook, one token each


def test_new_entries_sensor_returns_the_newest_execution_time(orchestrator, finance_conn):
    orchestrator.orchestrator_audit.record_late(TENANT, 1, [3600 * 10**7])  # a new Id, an older time
    text, ticks = newest(orchestrator)
    made = AuditLogsNewEntriesSensor(
        task_id="wait", orchestrator_conn_id=finance_conn, source="orchestrator", newer_than=format_ticks(ticks - 1)
    )
    _made.append(made)
    result = made.poke({})
    assert result.is_done and result.xcom_value == text


def test_a_token_without_or_audit_read_fails_with_advice(orchestrator, finance_conn):
    orchestrator.granted_scopes = ("PM.Audit.Read", "PM.Audit", "OR.Audit.Read")
    conn = orchestrator.airflow_connection(tenant=TENANT)
    conn["extra"]["scope"] = "PM.Audit"
    with pytest.MonkeyPatch.context() as patch:
        pinned = set_connection(patch, "pinned_pm", conn)
        with pytest.raises(OrchestratorAuthError, match=r"OR\.Audit\.Read.*client id 'local-client'.*extra 'scope'"):
            total_count_sensor(pinned, baseline_count=0, timeout=5).execute({})


def run_trigger(trigger: AuditLogsTotalCountTrigger) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger fired nothing")

    return asyncio.run(main())


def test_the_trigger_counts_under_asyncio_and_round_trips(orchestrator, finance_conn):
    trigger = AuditLogsTotalCountTrigger(
        orchestrator_conn_id=finance_conn,
        baseline_count=ORCHESTRATOR_EVENTS,
        poke_interval=0.1,
        deadline=time.time() + 20,
        source="orchestrator",
        tenant=TENANT,
    )
    path, kwargs = trigger.serialize()
    assert kwargs["source"] == "orchestrator" and AuditLogsTotalCountTrigger(**kwargs).serialize() == (path, kwargs)
    timer = threading.Timer(0.3, orchestrator.orchestrator_audit.append, args=(TENANT, 2))
    timer.start()
    payload = run_trigger(trigger)
    timer.join()
    assert payload["status"] == "success" and payload["total_count"] == ORCHESTRATOR_EVENTS + 2


@pytest.mark.usefixtures("airflow_db")
def test_deferred_total_count_sensor_through_dag_test(orchestrator, finance_conn):
    dag_id = "odata_count_deferred"
    forget_dag(dag_id)
    path = Path(DAGS_FOLDER) / f"{dag_id}.py"
    kwargs = {
        "orchestrator_conn_id": finance_conn,
        "source": "orchestrator",
        "tenant": "{{ params.tenant }}",
        "baseline_count": ORCHESTRATOR_EVENTS,
        "deferrable": True,
        "poke_interval": 0.2,
        "timeout": 60,
    }
    path.write_text(
        textwrap.dedent(
            f"""
            from datetime import datetime, timezone

            from airflow_provider_orchestrator_audit.compat import DAG
            from airflow_provider_orchestrator_audit.sensors.audit_logs import AuditLogsTotalCountSensor

            with DAG(dag_id={dag_id!r}, schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
                     params={{"tenant": "HR"}}) as dag:
                AuditLogsTotalCountSensor(task_id="wait", **{kwargs!r})
            """
        )
    )
    timer = threading.Timer(1.0, orchestrator.orchestrator_audit.append, args=("HR", 3))
    timer.start()
    try:
        run = load_dag(path, dag_id).test(logical_date=datetime(2026, 2, 1, tzinfo=UTC))
    finally:
        timer.join()
        path.unlink()
    assert run.state == "success"
    assert xcom_return_value(dag_id, run.run_id, "wait") == ORCHESTRATOR_EVENTS + 3
