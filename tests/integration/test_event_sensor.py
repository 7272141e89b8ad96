"""AuditLogsNewEntriesSensor and its trigger for every source, against the local Orchestrator."""

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

from airflow_provider_orchestrator_audit.compat import AirflowSensorTimeout
from airflow_provider_orchestrator_audit.exceptions import OrchestratorAuthError, OrchestratorConfigError
from airflow_provider_orchestrator_audit.sensors.audit_logs import AuditLogsNewEntriesSensor
from airflow_provider_orchestrator_audit.testing.events_dataset import ORGANIZATION_STREAM
from airflow_provider_orchestrator_audit.timestamps import format_ticks, parse_timestamp
from airflow_provider_orchestrator_audit.triggers.audit_logs import AuditLogsNewEntriesTrigger
from tests.conftest import DAGS_FOLDER, set_connection
from tests.integration.airflow_runs import load_dag, xcom_return_value

STREAMS = {"classic": None, "organization_events": ORGANIZATION_STREAM, "tenant_events": "Finance"}


@pytest.fixture
def tenant_conn(orchestrator, monkeypatch) -> str:
    return set_connection(monkeypatch, "sensor_events", orchestrator.airflow_connection(tenant="Finance"))


def newest_text(orchestrator, source: str) -> str:
    if source == "classic":
        _, high = orchestrator.dataset.visible_range()
        return orchestrator.dataset.entry(high - 1)["createdOn"]
    events, stream = orchestrator.events, STREAMS[source]
    return events.format_created_on(events.ticks(events.stream(stream).high - 1))


_sensors: list[AuditLogsNewEntriesSensor] = []


def sensor(conn_id: str, **kwargs: Any) -> AuditLogsNewEntriesSensor:
    made = AuditLogsNewEntriesSensor(task_id="wait", orchestrator_conn_id=conn_id, **kwargs)
    _sensors.append(made)
    return made


@pytest.fixture(autouse=True)
def _close_hooks() -> Iterator[None]:
    yield
    while _sensors:
        _sensors.pop().hook.close()


@pytest.mark.parametrize("source", list(STREAMS))
def test_poke_compares_the_newest_entry_at_full_precision(orchestrator, tenant_conn, source):
    newest = newest_text(orchestrator, source)
    ticks = parse_timestamp(newest)
    done = sensor(tenant_conn, source=source, newer_than=format_ticks(ticks - 1)).poke({})
    assert done.is_done and done.xcom_value == newest
    assert not sensor(tenant_conn, source=source, newer_than=newest).poke({}).is_done


def test_the_tenant_argument_wins_over_the_connection(orchestrator, tenant_conn):
    hr = orchestrator.events
    hr.append("HR", 1)  # HR's newest event is now newer than Finance's
    newest = hr.format_created_on(hr.ticks(hr.stream("HR").high - 1))
    result = sensor(tenant_conn, source="tenant_events", tenant="HR", newer_than="2026-01-01T00:00:00Z").poke({})
    assert result.xcom_value == newest


def test_bad_arguments_and_connections_fail_clearly(orchestrator, orchestrator_conn, monkeypatch):
    with pytest.raises(ValueError, match="wait: source must be one of"):
        AuditLogsNewEntriesSensor(task_id="wait", source="events", newer_than="2026-01-01")
    with pytest.raises(OrchestratorConfigError, match="needs a tenant.*extra 'tenant'"):
        sensor(orchestrator_conn, source="tenant_events", newer_than="2026-01-01").execute({})
    with pytest.raises(OrchestratorConfigError, match="newer_than is required"):
        sensor(orchestrator_conn, source="organization_events").execute({})
    with pytest.raises(OrchestratorConfigError, match="newer_than: 'soon'"):
        sensor(orchestrator_conn, newer_than="soon").execute({})
    assert orchestrator.stats.audit_requests == 0
    conn = orchestrator.airflow_connection()
    conn["password"] = "wrong"
    wrong = set_connection(monkeypatch, "wrong_secret", conn)
    with pytest.raises(OrchestratorAuthError, match="invalid_client"):
        sensor(wrong, source="organization_events", newer_than="2026-01-01", timeout=5).execute({})


def test_poke_mode_times_out(orchestrator, tenant_conn):
    waiting = sensor(
        tenant_conn, source="tenant_events", newer_than="2030-01-01T00:00:00Z", poke_interval=0.1, timeout=0.3
    )
    with pytest.raises(AirflowSensorTimeout):
        waiting.execute({})


def run_trigger(trigger: AuditLogsNewEntriesTrigger) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger fired nothing")

    return asyncio.run(main())


def test_trigger_fires_when_events_arrive_and_round_trips(orchestrator):
    newest = newest_text(orchestrator, "tenant_events")
    trigger = AuditLogsNewEntriesTrigger(
        orchestrator_conn_id="unused", newer_than=newest, source="tenant_events", tenant="Finance", poke_interval=0.05
    )
    path, kwargs = trigger.serialize()
    assert path.endswith("AuditLogsNewEntriesTrigger") and kwargs["tenant"] == "Finance"
    assert AuditLogsNewEntriesTrigger(**kwargs).serialize() == (path, kwargs)


def test_trigger_under_asyncio(orchestrator, tenant_conn):
    newest = newest_text(orchestrator, "tenant_events")
    timer = threading.Timer(0.3, orchestrator.events.append, args=("Finance", 2))
    timer.start()
    payload = run_trigger(
        AuditLogsNewEntriesTrigger(
            orchestrator_conn_id=tenant_conn,
            newer_than=newest,
            source="tenant_events",
            tenant="Finance",
            poke_interval=0.1,
            deadline=time.time() + 20,
        )
    )
    timer.join()
    assert payload["status"] == "success" and payload["newest_created_on"] == newest_text(orchestrator, "tenant_events")
    late = run_trigger(
        AuditLogsNewEntriesTrigger(
            orchestrator_conn_id=tenant_conn,
            newer_than="2030-01-01T00:00:00Z",
            source="organization_events",
            poke_interval=0.05,
            deadline=time.time() + 0.2,
        )
    )
    assert late["status"] == "timeout" and "Sensor has timed out" in late["message"]


@pytest.mark.usefixtures("airflow_db")
def test_deferred_sensor_through_dag_test(orchestrator, tenant_conn):
    dag_id = "events_sensor_deferred"
    path = Path(DAGS_FOLDER) / f"{dag_id}.py"
    kwargs = {
        "orchestrator_conn_id": tenant_conn,
        "source": "tenant_events",
        "newer_than": newest_text(orchestrator, "tenant_events"),
        "deferrable": True,
        "poke_interval": 0.2,
        "timeout": 60,
    }
    path.write_text(
        textwrap.dedent(
            f"""
            from datetime import datetime, timezone

            from airflow_provider_orchestrator_audit.compat import DAG
            from airflow_provider_orchestrator_audit.sensors.audit_logs import AuditLogsNewEntriesSensor

            with DAG(dag_id={dag_id!r}, schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)) as dag:
                AuditLogsNewEntriesSensor(task_id="wait", **{kwargs!r})
            """
        )
    )
    timer = threading.Timer(1.0, orchestrator.events.append, args=("Finance", 3))
    timer.start()
    try:
        run = load_dag(path, dag_id).test(logical_date=datetime(2026, 2, 1, tzinfo=UTC))
    finally:
        timer.join()
        path.unlink()
    assert run.state == "success"
    assert xcom_return_value(dag_id, run.run_id, "wait") == newest_text(orchestrator, "tenant_events")
