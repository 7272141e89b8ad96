"""AuditLogsTotalCountSensor and its trigger against the local Orchestrator: pokes, the trigger under asyncio, dag.test()."""

from __future__ import annotations

import asyncio
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowSensorTimeout, AirflowSkipException

from airflow_provider_orchestrator_audit.exceptions import (
    OrchestratorAuthError,
    OrchestratorConfigError,
    OrchestratorResponseError,
)
from airflow_provider_orchestrator_audit.sensors.audit_logs import AuditLogsTotalCountSensor
from airflow_provider_orchestrator_audit.testing import Fault
from airflow_provider_orchestrator_audit.timestamps import format_ticks, to_ticks
from airflow_provider_orchestrator_audit.triggers.audit_logs import AuditLogsTotalCountTrigger
from tests.conftest import DAGS_FOLDER, ORCHESTRATOR_ENTRIES, set_connection
from tests.integration.airflow_runs import install_example, load_dag, xcom_return_value

_open_sensors: list[AuditLogsTotalCountSensor] = []


def sensor(conn_id: str, **kwargs: Any) -> AuditLogsTotalCountSensor:
    made = AuditLogsTotalCountSensor(task_id="wait", orchestrator_conn_id=conn_id, **kwargs)
    _open_sensors.append(made)
    return made


@pytest.fixture(autouse=True)
def _close_hooks() -> Iterator[None]:
    yield
    while _open_sensors:
        _open_sensors.pop().hook.close()


def newest_created_on(orchestrator) -> str:
    _, high = orchestrator.dataset.visible_range()
    return orchestrator.dataset.entry(high - 1)["createdOn"]


def wrong_secret_connection(orchestrator, monkeypatch) -> str:
    conn = orchestrator.airflow_connection()
    conn["password"] = "not-the-secret"
    return set_connection(monkeypatch, "sensor_wrong_secret", conn)


def grow_later(orchestrator, entries: int, after: float) -> threading.Timer:
    """New activity ``after`` seconds from now, as a user's actions would add it."""
    timer = threading.Timer(after, orchestrator.dataset.append, args=(entries,))
    timer.daemon = True
    timer.start()
    return timer


# --- poke -------------------------------------------------------------------------------------------


def test_first_poke_sets_the_baseline_and_growth_succeeds(orchestrator, orchestrator_conn):
    waiting = sensor(orchestrator_conn)
    first = waiting.poke({})
    assert not first.is_done and first.xcom_value == ORCHESTRATOR_ENTRIES
    assert not waiting.poke({}).is_done
    orchestrator.dataset.append(3)
    grown = waiting.poke({})
    assert grown.is_done and grown.xcom_value == ORCHESTRATOR_ENTRIES + 3
    assert isinstance(grown.xcom_value, int)
    # One request per poke, for a single entry, newest first.
    assert orchestrator.stats.pages == [(0, 1)] * 3
    assert orchestrator.stats.audit_requests == 3


def test_explicit_baseline_as_a_rendered_template(orchestrator, orchestrator_conn):
    assert sensor(orchestrator_conn, baseline_count=str(ORCHESTRATOR_ENTRIES - 1)).poke({}).is_done
    assert not sensor(orchestrator_conn, baseline_count=" 5000 ").poke({}).is_done
    assert not sensor(orchestrator_conn, baseline_count=ORCHESTRATOR_ENTRIES).poke({}).is_done
    # An unset template renders as "None": the first poke's count, as for baseline_count=None.
    unset = sensor(orchestrator_conn, baseline_count="None")
    assert not unset.poke({}).is_done
    orchestrator.dataset.append(1)
    assert unset.poke({}).is_done


def test_newer_than_compares_all_seven_digits(orchestrator, orchestrator_conn):
    newest = newest_created_on(orchestrator)
    ticks = to_ticks(newest)
    assert ticks % 10, "the newest entry should use the seventh digit for this test to mean something"
    assert not sensor(orchestrator_conn, newer_than=newest).poke({}).is_done
    one_tick_earlier = sensor(orchestrator_conn, newer_than=format_ticks(ticks - 1)).poke({})
    assert one_tick_earlier.is_done and one_tick_earlier.xcom_value == ORCHESTRATOR_ENTRIES
    # The same instant written with another offset is the same instant.
    assert not sensor(orchestrator_conn, newer_than=_with_offset(newest)).poke({}).is_done
    # With newer_than alone the count is no condition: no baseline is taken from the first poke.
    store = _DictStore()
    assert not sensor(orchestrator_conn, newer_than=newest).poke({"task_state_store": store}).is_done
    assert store.values == {}


def _with_offset(created_on: str) -> str:
    """``createdOn`` (a ``+00:00`` timestamp) rewritten at ``+02:00``: the same instant."""
    moved = datetime.fromisoformat(created_on[:19] + "+00:00").astimezone(timezone(timedelta(hours=2)))
    return f"{moved:%Y-%m-%dT%H:%M:%S}{created_on[19:27]}+02:00"


@pytest.mark.parametrize(
    ("baseline", "newer_than_offset", "done"),
    [
        (ORCHESTRATOR_ENTRIES, -1, True),  # only the timestamp condition holds
        (ORCHESTRATOR_ENTRIES - 1, 0, True),  # only the count condition holds
        (ORCHESTRATOR_ENTRIES - 1, -1, True),  # both hold
        (ORCHESTRATOR_ENTRIES, 0, False),  # neither holds
    ],
)
def test_either_condition_suffices(orchestrator, orchestrator_conn, baseline, newer_than_offset, done):
    newer_than = format_ticks(to_ticks(newest_created_on(orchestrator)) + newer_than_offset)
    result = sensor(orchestrator_conn, baseline_count=baseline, newer_than=newer_than).poke({})
    assert result.is_done is done
    assert orchestrator.stats.audit_requests == 1


def test_retention_hides_growth_from_the_count_but_not_from_newer_than(orchestrator, orchestrator_conn):
    baseline, newest = ORCHESTRATOR_ENTRIES, newest_created_on(orchestrator)
    # Three entries arrive while five expire: totalCount shrinks although there is new activity.
    orchestrator.dataset.append(3)
    orchestrator.dataset.expire(5)
    assert not sensor(orchestrator_conn, baseline_count=baseline).poke({}).is_done
    found = sensor(orchestrator_conn, baseline_count=baseline, newer_than=newest).poke({})
    assert found.is_done and found.xcom_value == ORCHESTRATOR_ENTRIES - 2


def test_poke_errors_are_the_hooks_clear_errors(orchestrator, orchestrator_conn, monkeypatch):
    conn_id = wrong_secret_connection(orchestrator, monkeypatch)
    with pytest.raises(OrchestratorAuthError, match="invalid_client") as info:
        sensor(conn_id).poke({})
    assert "not-the-secret" not in str(info.value)
    orchestrator.faults.push(Fault.wrong_shape())
    with pytest.raises(OrchestratorResponseError, match="totalCount"):
        sensor(orchestrator_conn).poke({})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"newer_than": "yesterday"}, "newer_than: 'yesterday' is not an ISO-8601 timestamp"),
        ({"newer_than": "2026-01-01T00:00:00.123456789Z"}, "sub-100ns precision"),
        ({"baseline_count": "-3"}, "baseline_count must be a non-negative integer"),
        ({"baseline_count": "many"}, "baseline_count must be a non-negative integer.*'many'"),
        ({"baseline_count": True}, "baseline_count must be a non-negative integer"),
    ],
)
def test_bad_arguments_fail_before_any_request(orchestrator, orchestrator_conn, kwargs, message):
    for deferrable in (False, True):
        with pytest.raises(OrchestratorConfigError, match=message):
            sensor(orchestrator_conn, deferrable=deferrable, **kwargs).execute({})
    assert orchestrator.stats.audit_requests == 0 and orchestrator.stats.token_requests == 0


def test_poke_mode_waits_for_growth_and_returns_the_count(orchestrator, orchestrator_conn):
    grow_later(orchestrator, 4, after=0.5)
    started = time.monotonic()
    result = sensor(orchestrator_conn, poke_interval=0.1, timeout=20, deferrable=False).execute({})
    assert result == ORCHESTRATOR_ENTRIES + 4
    assert time.monotonic() - started < 10


def test_poke_mode_times_out(orchestrator, orchestrator_conn):
    with pytest.raises(AirflowSensorTimeout):
        sensor(orchestrator_conn, poke_interval=0.1, timeout=0.3, deferrable=False).execute({})


def test_reschedule_mode_without_a_state_store_asks_for_a_baseline(orchestrator, orchestrator_conn):
    with pytest.raises(OrchestratorConfigError, match="reschedule.*baseline_count"):
        sensor(orchestrator_conn, mode="reschedule").poke({})
    assert sensor(orchestrator_conn, mode="reschedule", baseline_count=1).poke({}).is_done


def test_the_first_count_is_kept_in_the_task_state_store(orchestrator, orchestrator_conn):
    store = _DictStore()
    assert not sensor(orchestrator_conn, mode="reschedule").poke({"task_state_store": store})
    assert store.values == {"orchestrator_audit_baseline_count": ORCHESTRATOR_ENTRIES}
    # A reschedule (or a retry) is a new process with a new sensor object: the baseline survives.
    orchestrator.dataset.append(2)
    result = sensor(orchestrator_conn, mode="reschedule").poke({"task_state_store": store})
    assert result.is_done and result.xcom_value == ORCHESTRATOR_ENTRIES + 2


class _DictStore:
    """The task state store's get/set, in memory."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any, **_: Any) -> None:
        self.values[key] = value


# --- resuming after the trigger -------------------------------------------------------------------------


def test_execute_complete_returns_the_count_or_raises_what_went_wrong(orchestrator_conn):
    waiting = sensor(orchestrator_conn)
    assert waiting.execute_complete({}, {"status": "success", "total_count": 5003, "message": "grew"}) == 5003
    with pytest.raises(AirflowSensorTimeout, match="no new audit entries"):
        waiting.execute_complete({}, {"status": "timeout", "total_count": 5000, "message": "no new audit entries"})
    with pytest.raises(OrchestratorAuthError, match="refused"):
        waiting.execute_complete({}, {"status": "error", "error_type": "OrchestratorAuthError", "message": "refused"})
    with pytest.raises(OrchestratorConfigError):
        waiting.execute_complete({}, {"status": "error", "error_type": "OrchestratorConfigError", "message": "x"})
    with pytest.raises(Exception, match="does not know"):
        waiting.execute_complete({}, {"status": "maybe"})


def test_soft_fail_skips_a_timeout_but_not_an_error(orchestrator_conn):
    waiting = sensor(orchestrator_conn, soft_fail=True)
    timeout = {"event": {"status": "timeout", "total_count": 1, "message": "Sensor has timed out"}}
    with pytest.raises(AirflowSkipException):
        waiting.resume_execution("execute_complete", timeout, {})
    error = {"event": {"status": "error", "error_type": "OrchestratorAuthError", "message": "secret revoked"}}
    with pytest.raises(OrchestratorAuthError, match="secret revoked"):
        waiting.resume_execution("execute_complete", error, {})
    # The scheduler's own deferral timeout (a trigger that never ran) is a sensor timeout too.
    with pytest.raises(AirflowSensorTimeout):
        sensor(orchestrator_conn).resume_execution("__fail__", {"error": "Trigger timeout"}, {})


# --- the trigger under asyncio ------------------------------------------------------------------------


def trigger(conn_id: str, **kwargs: Any) -> AuditLogsTotalCountTrigger:
    kwargs.setdefault("poke_interval", 0.1)
    return AuditLogsTotalCountTrigger(orchestrator_conn_id=conn_id, **kwargs)


def first_event(made: AuditLogsTotalCountTrigger, within: float = 20) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        events = made.run()
        try:
            event = await asyncio.wait_for(anext(events), within)
        finally:
            await events.aclose()
        return event.payload

    return asyncio.run(main())


@pytest.fixture
def no_sync_connection_lookup(monkeypatch):
    """Fail any synchronous connection lookup: inside the triggerer's event loop it would block every trigger."""
    from airflow.sdk import BaseHook

    def refuse(*args, **kwargs):
        raise AssertionError("synchronous get_connection() called inside the event loop")

    monkeypatch.setattr(BaseHook, "get_connection", classmethod(refuse))


def test_trigger_fires_on_growth_and_closes_its_hook(orchestrator, orchestrator_conn, no_sync_connection_lookup):
    made = trigger(orchestrator_conn, baseline_count=ORCHESTRATOR_ENTRIES)
    grow_later(orchestrator, 5, after=0.4)
    payload = first_event(made)
    assert payload["status"] == "success"
    assert payload["total_count"] == ORCHESTRATOR_ENTRIES + 5
    assert payload["newest_created_on"] == newest_created_on(orchestrator)
    assert "totalCount 5005 vs baseline 5000" in payload["message"]
    assert made.hook._client is None  # closed before firing
    assert orchestrator.stats.audit_requests >= 2 and set(orchestrator.stats.pages) == {(0, 1)}


def test_trigger_fires_on_a_newer_entry(orchestrator, orchestrator_conn):
    newest = newest_created_on(orchestrator)
    payload = first_event(trigger(orchestrator_conn, newer_than=format_ticks(to_ticks(newest) - 1)))
    assert payload["status"] == "success" and payload["total_count"] == ORCHESTRATOR_ENTRIES
    assert orchestrator.stats.audit_requests == 1


def test_trigger_keeps_waiting_while_nothing_is_new(orchestrator, orchestrator_conn):
    made = trigger(orchestrator_conn, baseline_count=ORCHESTRATOR_ENTRIES, newer_than=newest_created_on(orchestrator))

    async def main() -> None:
        waiting = asyncio.ensure_future(anext(made.run()))
        # Wait for three polls however slow the machine is, rather than for a fixed time.
        deadline = time.monotonic() + 30
        while orchestrator.stats.audit_requests < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert not waiting.done()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting

    asyncio.run(main())
    assert orchestrator.stats.audit_requests >= 3  # it polled, every 0.1 s
    assert made.hook._client is None  # cancelled (the triggerer removing it): closed all the same


def test_trigger_times_out_at_its_deadline(orchestrator, orchestrator_conn):
    started = time.time()
    payload = first_event(trigger(orchestrator_conn, baseline_count=ORCHESTRATOR_ENTRIES, deadline=started + 0.5))
    elapsed = time.time() - started
    assert payload["status"] == "timeout" and payload["total_count"] == ORCHESTRATOR_ENTRIES
    assert payload["message"].startswith("Sensor has timed out: no new audit entries")
    assert "totalCount 5000 vs baseline 5000" in payload["message"]
    assert 0.5 <= elapsed < 5


def test_trigger_turns_errors_into_one_error_event(orchestrator, monkeypatch, no_sync_connection_lookup):
    conn_id = wrong_secret_connection(orchestrator, monkeypatch)
    payload = first_event(trigger(conn_id, baseline_count=0))
    assert payload["status"] == "error" and payload["error_type"] == "OrchestratorAuthError"
    assert "invalid_client" in payload["message"] and "not-the-secret" not in payload["message"]
    assert orchestrator.stats.token_requests == 1  # refused for good: no retry loop
    missing = first_event(trigger("no_such_connection", baseline_count=0))
    assert missing["status"] == "error" and missing["error_type"] == "OrchestratorConfigError"
    assert "'no_such_connection'" in missing["message"]


def test_trigger_resumes_from_its_serialized_form(orchestrator, orchestrator_conn):
    """A triggerer restart: the trigger is rebuilt from serialize() and keeps the baseline it was given."""
    from airflow.sdk._shared.module_loading import import_string

    classpath, kwargs = trigger(orchestrator_conn, baseline_count=ORCHESTRATOR_ENTRIES).serialize()
    orchestrator.dataset.append(1)  # happened while no triggerer was running
    payload = first_event(import_string(classpath)(**kwargs))
    assert payload["status"] == "success" and payload["total_count"] == ORCHESTRATOR_ENTRIES + 1


# --- through Airflow: dag.test() runs the trigger in-process --------------------------------------------


needs_airflow_db = pytest.mark.usefixtures("airflow_db")


def write_sensor_dag(dag_id: str, sensor_kwargs: dict[str, Any]) -> Path:
    path = Path(DAGS_FOLDER) / f"{dag_id}.py"
    path.write_text(
        textwrap.dedent(
            f"""
            from datetime import datetime, timezone

            from airflow.sdk import DAG

            from airflow_provider_orchestrator_audit.sensors.audit_logs import AuditLogsTotalCountSensor

            with DAG(dag_id={dag_id!r}, schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)) as dag:
                AuditLogsTotalCountSensor(task_id="wait", **{sensor_kwargs!r})
            """
        )
    )
    return path


def task_state(dag_id: str, run_id: str, task_id: str) -> str | None:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = session.query(TaskInstance).filter_by(dag_id=dag_id, run_id=run_id, task_id=task_id).one()
        return ti.state


class TriggerRuns:
    """Every trigger run's kwargs (to tell a deferred wait from a poke) and events, and what to do when one starts."""

    def __init__(self) -> None:
        self.kwargs: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.on_start: Callable[[], object] = lambda: None


@pytest.fixture
def trigger_runs(monkeypatch) -> TriggerRuns:
    runs = TriggerRuns()
    original = AuditLogsTotalCountTrigger.run

    async def recording(self):
        runs.kwargs.append(self.serialize()[1])
        runs.on_start()
        async for event in original(self):
            runs.events.append(event.payload)
            yield event

    monkeypatch.setattr(AuditLogsTotalCountTrigger, "run", recording)
    return runs


@needs_airflow_db
def test_deferred_sensor_succeeds_through_dag_test(orchestrator, orchestrator_conn, trigger_runs):
    dag_id = "sensor_deferred_growth"
    path = write_sensor_dag(
        dag_id,
        {"orchestrator_conn_id": orchestrator_conn, "deferrable": True, "poke_interval": 0.2, "timeout": 30},
    )
    # New activity once the sensor has deferred and the trigger polls.
    trigger_runs.on_start = lambda: grow_later(orchestrator, 5, after=0.5)
    dag = load_dag(path, dag_id)
    run = dag.test(logical_date=datetime(2026, 2, 1, tzinfo=UTC))
    assert run.state == "success"
    assert xcom_return_value(dag_id, run.run_id, "wait") == ORCHESTRATOR_ENTRIES + 5
    # It deferred once, with the first check's count as its baseline and a deadline 30 s out.
    (kwargs,) = trigger_runs.kwargs
    assert kwargs["baseline_count"] == ORCHESTRATOR_ENTRIES and kwargs["newer_than"] is None
    assert kwargs["deadline"] == pytest.approx(time.time() + 30, abs=25)


@needs_airflow_db
@pytest.mark.parametrize(("soft_fail", "state"), [(False, "failed"), (True, "skipped")])
def test_deferred_sensor_timeout_through_dag_test(orchestrator, orchestrator_conn, trigger_runs, soft_fail, state):
    dag_id = f"sensor_deferred_timeout_{soft_fail}".lower()
    path = write_sensor_dag(
        dag_id,
        {
            "orchestrator_conn_id": orchestrator_conn,
            "newer_than": newest_created_on(orchestrator),
            "deferrable": True,
            "poke_interval": 0.2,
            "timeout": 1,
            "soft_fail": soft_fail,
        },
    )
    dag = load_dag(path, dag_id)
    run = dag.test(logical_date=datetime(2026, 2, 1, tzinfo=UTC))
    assert task_state(dag_id, run.run_id, "wait") == state
    assert [event["status"] for event in trigger_runs.events] == ["timeout"]
    (kwargs,) = trigger_runs.kwargs
    assert kwargs["baseline_count"] is None and kwargs["newer_than"] == newest_created_on(orchestrator)


@needs_airflow_db
def test_deferred_sensor_error_fails_the_task_even_with_soft_fail(orchestrator, orchestrator_conn, trigger_runs):
    dag_id = "sensor_deferred_error"
    path = write_sensor_dag(
        dag_id,
        {
            "orchestrator_conn_id": orchestrator_conn,
            "deferrable": True,
            "poke_interval": 0.2,
            "timeout": 30,
            "soft_fail": True,
        },
    )
    # The first check is answered; then the permission is withdrawn and the trigger's poll gets 403.
    orchestrator.faults.push(Fault.stall(0))
    orchestrator.faults.push(Fault.status(403, '{"error": "forbidden"}'))
    dag = load_dag(path, dag_id)
    run = dag.test(logical_date=datetime(2026, 2, 1, tzinfo=UTC))
    assert task_state(dag_id, run.run_id, "wait") == "failed"
    (event,) = trigger_runs.events
    assert event["status"] == "error" and event["error_type"] == "OrchestratorAuthError"
    assert "HTTP 403" in event["message"] and "permission" in event["message"]
    assert orchestrator.stats.audit_requests == 2  # failed for good at once: no polling on


# --- the event-driven example -------------------------------------------------------------------------


@needs_airflow_db
def test_event_driven_example_continues_from_the_last_export(orchestrator, bucket, monkeypatch, trigger_runs):
    set_connection(monkeypatch, "orchestrator_audit_default", orchestrator.airflow_connection())
    monkeypatch.setenv("AIRFLOW_VAR_ORCHESTRATOR_AUDIT_BUCKET", bucket)
    dag_id = "example_orchestrator_audit_event_driven"
    path = install_example(f"{dag_id}.py")
    dag = load_dag(path, dag_id)
    wait = dag.get_task("wait_for_new_audit_entries")
    wait.poke_interval, wait.timeout = 0.2, 30  # the example polls every minute, for up to 9 minutes
    for task in dag.tasks:
        task.retries = 0  # a failure should fail the test now, not after the example's retry delays

    # First run: no export to continue from; the 24 hours before the run hold the whole data set.
    first = dag.test(logical_date=datetime(2026, 1, 1, 1, 30, tzinfo=UTC))
    assert first.state == "success"
    exported = xcom_return_value(dag_id, first.run_id, "export_new_audit_entries")
    assert exported["window_start"] == "2025-12-31T01:30:00.0000000+00:00"
    assert exported["records"] == ORCHESTRATOR_ENTRIES
    assert xcom_return_value(dag_id, first.run_id, "wait_for_new_audit_entries") == ORCHESTRATOR_ENTRIES

    assert trigger_runs.kwargs == []  # the last 24 hours held new entries: no need to defer

    # Later runs: nothing new at first, so the sensor defers; then the log grows. Each continues from the
    # run before (the third run is where a plain xcom_pull(include_prior_dates=True) would get a list).
    previous_count, previous_export = ORCHESTRATOR_ENTRIES, exported
    for minute, arrivals in ((40, 7), (50, 2)):
        trigger_runs.kwargs.clear()
        trigger_runs.on_start = lambda arrivals=arrivals: grow_later(orchestrator, arrivals, after=0.5)
        run = dag.test(logical_date=datetime(2026, 1, 1, 1, minute, tzinfo=UTC))
        assert run.state == "success"
        (kwargs,) = trigger_runs.kwargs  # deferred with the count and the export end of the run before
        assert kwargs["baseline_count"] == previous_count
        assert kwargs["newer_than"] == previous_export["window_end"]
        count = xcom_return_value(dag_id, run.run_id, "wait_for_new_audit_entries")
        assert count == previous_count + arrivals
        export = xcom_return_value(dag_id, run.run_id, "export_new_audit_entries")
        assert export["window_start"] == previous_export["window_end"]  # contiguous windows: each entry once
        assert export["window_end"] >= export["window_start"]
        previous_count, previous_export = count, export
