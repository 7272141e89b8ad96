"""
The provider on a distributed Airflow: CeleryExecutor workers on a PostgreSQL metadata database.

PostgreSQL (metadata database and Celery's result backend), Redis (Celery's broker), Airflow's
scheduler, dag-processor, api-server and triggerer, and two Celery workers with their own homes, temp
directories and host names run on loopback, with the local Orchestrator and SeaweedFS behind them. The
mapped backfill example exports a day as 24 one-hour sub-windows on both workers; one worker is killed
(SIGKILL, with every process it forked) while it exports, and its task is retried on the other. A
deferrable sensor waits in the triggerer meanwhile, and resumes on a worker when entries arrive.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_orchestrator_audit.testing import AuditDataset, LocalOrchestratorServer
from tests.distributed.celery_cluster import CeleryAirflowCluster, Worker
from tests.distributed.servers import PostgresServer, RedisServer
from tests.integration.test_export import canonical, expected_lines, read_objects

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(900)]

EXAMPLE_DAG = Path(__file__).resolve().parents[2] / "example_dags" / "example_orchestrator_audit_mapped_backfill.py"
# Every log of the last run (each component's output, each task's log), for a look after a failure.
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "distributed"
DAG_ID = "example_orchestrator_audit_mapped_backfill"
EXPORT_TASK_ID = "export_sub_window"
HOURS = 24
ENTRIES_PER_HOUR = 600
# Every audit answer is this late: an hour's export takes a few seconds, long enough to be caught exporting.
LATENCY_SECONDS = 0.4
WORKERS = ("worker-a", "worker-b")
LOST_WORKER = "worker-a"
CLIENT_SECRET = f"celery-secret-{uuid.uuid4().hex}"

SENSOR_DAG_ID = "orchestrator_audit_deferred_sensor"
SENSOR_DAG = f"""
from datetime import datetime, timezone

from airflow_provider_orchestrator_audit.compat import DAG
from airflow_provider_orchestrator_audit.sensors.audit_logs import AuditLogsTotalCountSensor

with DAG(dag_id={SENSOR_DAG_ID!r}, schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)) as dag:
    AuditLogsTotalCountSensor(task_id="wait", deferrable=True, poke_interval=1, timeout=600)
"""


def backfill_dag(directory: Path) -> Path:
    """
    The mapped backfill example as shipped, but retried after seconds instead of minutes.

    The example waits 2-4 minutes before a retry (longer outages than the hook's own retries cover);
    the test's lost worker needs only a new try, so it would only wait.
    """
    source = EXAMPLE_DAG.read_text()
    shipped = '"retry_delay": timedelta(minutes=2),'
    assert source.count(shipped) == 1, f"the example no longer sets {shipped}"
    path = directory / EXAMPLE_DAG.name
    path.write_text(source.replace(shipped, '"retry_delay": timedelta(seconds=3),'))
    return path


@pytest.fixture(scope="module")
def orchestrator() -> Iterator[LocalOrchestratorServer]:
    # A day and an hour of entries from 2026-01-01T00:00Z: entries that arrive later fall after the day.
    dataset = AuditDataset(size=(HOURS + 1) * ENTRIES_PER_HOUR, seed=17, entries_per_hour=ENTRIES_PER_HOUR)
    with LocalOrchestratorServer(dataset, client_secret=CLIENT_SECRET, latency_seconds=LATENCY_SECONDS) as server:
        yield server


@pytest.fixture(scope="module")
def cluster(orchestrator, s3_server, tmp_path_factory) -> Iterator[tuple[CeleryAirflowCluster, str]]:
    bucket = f"celery-{uuid.uuid4().hex[:8]}"
    s3_server.create_bucket(bucket)
    dags = tmp_path_factory.mktemp("dags")
    (dags / f"{SENSOR_DAG_ID}.py").write_text(SENSOR_DAG)
    connection = json.dumps(orchestrator.airflow_connection())
    env = {
        **s3_server.airflow_connection_env("aws_default"),
        "AIRFLOW_CONN_ORCHESTRATOR_AUDIT_DEFAULT": connection,
        "AIRFLOW_VAR_ORCHESTRATOR_AUDIT_BUCKET": bucket,
    }
    with PostgresServer() as postgres, RedisServer() as redis:
        airflow = CeleryAirflowCluster(
            [backfill_dag(dags), dags / f"{SENSOR_DAG_ID}.py"],
            env,
            database_url=postgres.sqlalchemy_url,
            broker_url=redis.url,
            workers=WORKERS,
            worker_concurrency=2,
        )
        try:
            with airflow:
                airflow.wait_for_dag(DAG_ID)
                airflow.wait_for_dag(SENSOR_DAG_ID)
                yield airflow, bucket
        finally:
            airflow.keep_logs(ARTIFACTS)
            airflow.remove()


def wait_for(description: str, condition, cluster: CeleryAirflowCluster, timeout: float, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while (result := condition()) is None or result is False:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{description}: not within {timeout:.0f} s\n{cluster.logs()}")
        time.sleep(interval)
    return result


def task_state(cluster: CeleryAirflowCluster, path: str) -> str | None:
    state = cluster.api(path)["state"]
    assert state not in ("failed", "upstream_failed"), f"{path}: {state}\n{cluster.logs(80)}"
    return state


def export_instances(cluster: CeleryAirflowCluster, run_id: str) -> list[dict]:
    path = f"dags/{DAG_ID}/dagRuns/{run_id}/taskInstances?task_id={EXPORT_TASK_ID}&limit=100"
    return [ti for ti in cluster.api(path)["task_instances"] if ti["task_id"] == EXPORT_TASK_ID]


def exporting_now(worker: Worker, run_id: str) -> int | None:
    """The map index of a first try that the worker's task log shows reading its window, if any."""
    for log in (worker.task_log_folder / f"dag_id={DAG_ID}" / f"run_id={run_id}" / f"task_id={EXPORT_TASK_ID}").glob(
        "map_index=*/attempt=1.log"
    ):
        text = log.read_text(errors="replace")
        if "Exporting audit entries" in text and not re.search(r"Read \d+ entries", text):
            return int(log.parent.name.removeprefix("map_index="))
    return None


def test_a_mapped_backfill_survives_a_lost_worker(cluster, orchestrator, s3_server):
    airflow, bucket = cluster
    started = time.monotonic()
    for dag_id in (DAG_ID, SENSOR_DAG_ID):
        airflow.api_patch(f"dags/{dag_id}", {"is_paused": False})

    # A deferrable sensor first: it waits in the triggerer, holding no worker slot, through the backfill.
    baseline = orchestrator.dataset.total_count
    sensor_run = airflow.api_post(f"dags/{SENSOR_DAG_ID}/dagRuns", {"logical_date": None})["dag_run_id"]
    sensor = f"dags/{SENSOR_DAG_ID}/dagRuns/{sensor_run}/taskInstances/wait"
    wait_for("the sensor defers", lambda: task_state(airflow, sensor) == "deferred", airflow, 180)

    window = {"window_start": "2026-01-01T00:00:00Z", "window_end": "2026-01-02T00:00:00Z", "hours_per_task": 1}
    run_id = airflow.api_post(f"dags/{DAG_ID}/dagRuns", {"logical_date": None, "conf": window})["dag_run_id"]
    run = f"dags/{DAG_ID}/dagRuns/{run_id}"

    # The lost worker has finished an hour (its work must survive it) and is inside the export of another.
    lost = airflow.worker(LOST_WORKER)

    def caught_exporting() -> int | None:
        assert airflow.api(run)["state"] != "failed", airflow.logs(80)
        finished_here = [
            ti for ti in export_instances(airflow, run_id) if ti["hostname"] == LOST_WORKER and ti["state"] == "success"
        ]
        return exporting_now(lost, run_id) if finished_here else None

    killed_index = wait_for("the worker exports its second hour", caught_exporting, airflow, 300, interval=0.2)
    key_prefix = "orchestrator-audit/organization=acme/dt=2026-01-01/"
    airflow.kill_worker(LOST_WORKER)
    killed_at = time.monotonic()
    written_at_kill = set(s3_server.list_keys(bucket, key_prefix))

    def run_finished() -> str | None:
        state = airflow.api(run)["state"]
        return state if state in ("success", "failed") else None

    try:
        final_state = wait_for("the backfill run finishes", run_finished, airflow, 480)
    except TimeoutError as error:
        raise TimeoutError(f"{error}\n{airflow.stall_report(DAG_ID, run_id)}") from None
    assert final_state == "success", airflow.logs(80)
    finished = time.monotonic()

    # Every hour's object holds exactly that hour's entries.
    objects = read_objects(s3_server, bucket, key_prefix)
    expected_keys = {
        f"{key_prefix}hour={hour:02d}/20260101T{hour:02d}0000Z_{'20260102T000000Z' if hour == 23 else f'20260101T{hour + 1:02d}0000Z'}.jsonl.gz"
        for hour in range(HOURS)
    }
    assert set(objects) == expected_keys
    for hour in range(HOURS):
        key = next(key for key in objects if f"/hour={hour:02d}/" in key)
        end = "2026-01-02T00:00:00Z" if hour == 23 else f"2026-01-01T{hour + 1:02d}:00:00Z"
        expected = expected_lines(orchestrator, f"2026-01-01T{hour:02d}:00:00Z", end)
        assert len(expected) > ENTRIES_PER_HOUR / 2
        assert canonical(json.loads(line) for line in objects[key]) == canonical(expected), key
    killed_hour_key = next(key for key in expected_keys if f"/hour={killed_index:02d}/" in key)
    assert killed_hour_key not in written_at_kill, "the killed task had written its hour"
    uploads = s3_server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert uploads == [], f"multipart uploads left open: {uploads}"

    # Both workers exported hours; the killed one's task was retried, on the other worker, and succeeded.
    instances = export_instances(airflow, run_id)
    assert len(instances) == HOURS and all(ti["state"] == "success" for ti in instances)
    assert {ti["hostname"] for ti in instances} == set(WORKERS)
    tries = airflow.api(f"{run}/taskInstances/{EXPORT_TASK_ID}/{killed_index}/tries")["task_instances"]
    by_try = {attempt["try_number"]: attempt for attempt in tries}
    assert by_try[1]["hostname"] == LOST_WORKER and by_try[1]["state"] != "success", tries
    last = by_try[max(by_try)]
    assert max(by_try) > 1 and last["state"] == "success" and last["hostname"] != LOST_WORKER, tries

    # New entries resume the deferred sensor on a worker.
    assert task_state(airflow, sensor) == "deferred"
    orchestrator.dataset.append(3)
    wait_for("the sensor resumes", lambda: task_state(airflow, sensor) == "success", airflow, 180)
    resumed = airflow.api(sensor)
    assert resumed["hostname"] in WORKERS and resumed["hostname"] != LOST_WORKER
    assert int(airflow.api(f"{sensor}/xcomEntries/return_value")["value"]) == baseline + 3

    # No secret in anything a worker wrote (nor the control plane: the triggerer ran the sensor's polls).
    secrets = [CLIENT_SECRET, s3_server.secret_key, *orchestrator.issued_tokens]
    assert len(secrets) > 2, "no token was issued: the exports did not authenticate"
    logs = [path for worker in airflow.workers for path in worker.log_files()]
    logs += [component.log_path for component in airflow.components]
    logs += [path for path in (airflow.home / "logs").rglob("*") if path.is_file()]
    for path in logs:
        text = path.read_text(errors="replace")
        leaked = [secret[:12] + "..." for secret in secrets if secret in text]
        assert not leaked, f"{path.name} holds secrets: {leaked}"
    assert any(re.search(r"Wrote \d+ records", path.read_text(errors="replace")) for path in logs)

    print(
        f"\nbackfill with a lost worker: {finished - started:.0f} s from the sensor's trigger to the run's end, "
        f"{finished - killed_at:.0f} s after the kill (hour {killed_index:02d} retried)"
    )
