"""
One hourly export task in a real ``airflow standalone`` (scheduler, dag-processor, API server, triggerer;
LocalExecutor, SQLite), from the trigger to the run's end: where the time goes, beside an empty task run
the same way in the same Airflow (what any task costs there).

Each round triggers the empty DAG, waits for it, then triggers the hourly example DAG for one hour (its
``window_start``/``window_end`` params) and waits for it. The phases come from Airflow's own records
(the REST API's run and task-instance dates, the task log's timestamps):

- trigger -> scheduled: the scheduler creating the run and its task instance;
- scheduled -> queued: the scheduler handing the task to the executor;
- queued -> started: the LocalExecutor's worker starting the task's supervisor;
- started -> first log line: the task process starting and parsing the DAG file;
- task log, first line -> last line: the task itself; for the export split by the operator's own log
  lines: first line -> "Exporting" (the DAG file's imports and parse, the connection, the S3 client and
  the bucket check), "Exporting" -> "Read" (the token, locating the hour, reading, spooling and the
  parts streamed meanwhile), "Read" -> "Wrote" (completing the upload), "Wrote" -> last line (lineage,
  the XCom, the task runner's end);
- last log line -> task ended: the task runner reporting the end to the API server;
- task ended -> run ended: the scheduler noticing.

The local Orchestrator (100 ms per request) and SeaweedFS run in their own processes. The first round is
untimed (caches, the first DAG parse). Medians of ``--repeat`` rounds.

    .venv/bin/python benchmarks/standalone_task.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import sys
import tempfile
import textwrap
import time
from datetime import datetime, timedelta
from pathlib import Path

from harness import median, orchestrator, s3

from tests.e2e.airflow_cluster import AirflowCluster

HERE = Path(__file__).resolve().parent
DAG_FILE = HERE.parent / "example_dags" / "example_orchestrator_audit_to_s3.py"
EXPORT_DAG, EXPORT_TASK = "example_orchestrator_audit_to_s3", "export_audit_logs"
EMPTY_DAG, EMPTY_TASK = "standalone_benchmark_empty", "nothing"
ENTRIES = 2 * 86_400  # 2026-01-01 .. 2026-01-02, one entry per second
BUCKET = "bench"
PHASES = (
    "trigger_to_scheduled",
    "scheduled_to_queued",
    "queued_to_started",
    "started_to_first_log_line",
    "task_log_first_to_last_line",
    "  first_line_to_exporting",
    "  exporting_to_read",
    "  read_to_wrote",
    "  wrote_to_last_line",
    "last_log_line_to_task_end",
    "task_end_to_run_end",
    "trigger_to_run_end",
)

EMPTY_DAG_SOURCE = f'''
"""An empty task: what any task costs in this Airflow."""
from datetime import datetime

from airflow.sdk import DAG, task

with DAG("{EMPTY_DAG}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):

    @task
    def {EMPTY_TASK}():
        return None

    {EMPTY_TASK}()
'''


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def wait_for_run(airflow: AirflowCluster, dag_id: str, run_id: str, timeout: float = 300.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = airflow.api(f"dags/{dag_id}/dagRuns/{run_id}")
        if run["state"] in ("success", "failed"):
            if run["state"] != "success":
                raise RuntimeError(f"{dag_id} run {run_id} failed:\n{airflow.log_tail()}")
            return run
        time.sleep(0.2)
    raise TimeoutError(f"{dag_id} run {run_id} did not end within {timeout:.0f} s:\n{airflow.log_tail()}")


#: the operator's log lines that split its task (see the module docstring)
EXPORT_MARKS = ("Exporting ", "Read ", "Wrote ")


def task_log(airflow: AirflowCluster, dag_id: str, run_id: str, task_id: str) -> list[tuple[datetime, str]]:
    """The task's log lines with the times the task process wrote them, oldest first."""
    path = f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/1?full_content=true"
    content = airflow.api(path)["content"]
    lines = sorted(
        (parse_time(line["timestamp"]), str(line.get("event", "")))
        for line in content
        if isinstance(line, dict) and line.get("timestamp")
    )
    if not lines:
        raise RuntimeError(f"no timestamped lines in the log of {dag_id}/{run_id}/{task_id}")
    return lines


def first_line_starting(lines: list[tuple[datetime, str]], prefix: str) -> datetime:
    for stamp, event in lines:
        if event.startswith(prefix):
            return stamp
    raise RuntimeError(f"no log line starts with {prefix!r}: {[event for _, event in lines]}")


def run_once(airflow: AirflowCluster, dag_id: str, task_id: str, conf: dict) -> dict[str, float]:
    """Trigger ``dag_id`` and take its run apart into the phases above (seconds)."""
    triggered = datetime.now().astimezone()
    run_id = airflow.api_post(f"dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf})["dag_run_id"]
    run = wait_for_run(airflow, dag_id, run_id)
    ti = airflow.api(f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}")
    lines = task_log(airflow, dag_id, run_id, task_id)
    first_line, last_line = lines[0][0], lines[-1][0]
    scheduled, queued = parse_time(ti["scheduled_when"]), parse_time(ti["queued_when"])
    started, ended = parse_time(ti["start_date"]), parse_time(ti["end_date"])
    run_end = parse_time(run["end_date"])
    marks = {
        "trigger_to_scheduled": (triggered, scheduled),
        "scheduled_to_queued": (scheduled, queued),
        "queued_to_started": (queued, started),
        "started_to_first_log_line": (started, first_line),
        "task_log_first_to_last_line": (first_line, last_line),
        "last_log_line_to_task_end": (last_line, ended),
        "task_end_to_run_end": (ended, run_end),
        "trigger_to_run_end": (triggered, run_end),
    }
    if dag_id == EXPORT_DAG:
        exporting, read, wrote = (first_line_starting(lines, mark) for mark in EXPORT_MARKS)
        marks.update(
            {
                "  first_line_to_exporting": (first_line, exporting),
                "  exporting_to_read": (exporting, read),
                "  read_to_wrote": (read, wrote),
                "  wrote_to_last_line": (wrote, last_line),
            }
        )
    return {name: (later - earlier).total_seconds() for name, (earlier, later) in marks.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    dags = Path(tempfile.mkdtemp(prefix="standalone-bench-dags-"))
    atexit.register(shutil.rmtree, dags, ignore_errors=True)
    empty_dag = dags / "standalone_benchmark_empty.py"
    empty_dag.write_text(textwrap.dedent(EMPTY_DAG_SOURCE))
    with orchestrator(ENTRIES, latency_ms=100) as orch, s3(BUCKET) as s3_server:
        env = {
            "AIRFLOW_CONN_ORCHESTRATOR_AUDIT_DEFAULT": json.dumps(orch.connection()),
            **s3_server.airflow_connection_env("aws_default"),
            "AIRFLOW_VAR_ORCHESTRATOR_AUDIT_BUCKET": BUCKET,
        }
        with AirflowCluster([DAG_FILE, empty_dag], env) as airflow:
            for dag_id in (EXPORT_DAG, EMPTY_DAG):
                airflow.wait_for_dag(dag_id)
                airflow.api_patch(f"dags/{dag_id}", {"is_paused": False})
            results: dict[str, list[dict[str, float]]] = {EMPTY_DAG: [], EXPORT_DAG: []}
            hour = datetime(2026, 1, 2, 0, 0)
            for round_number in range(args.repeat + 1):
                start = hour + timedelta(hours=round_number)
                window = {
                    "window_start": f"{start:%Y-%m-%dT%H:%M:%S}Z",
                    "window_end": f"{start + timedelta(hours=1):%Y-%m-%dT%H:%M:%S}Z",
                }
                empty = run_once(airflow, EMPTY_DAG, EMPTY_TASK, {})
                export = run_once(airflow, EXPORT_DAG, EXPORT_TASK, window)
                load = os.getloadavg()[0]
                label = "untimed" if round_number == 0 else f"round {round_number}"
                print(
                    f"{label}: empty task {empty['trigger_to_run_end']:.2f} s, export task "
                    f"{export['trigger_to_run_end']:.2f} s (load {load:.1f})",
                    flush=True,
                )
                if round_number:
                    results[EMPTY_DAG].append(empty)
                    results[EXPORT_DAG].append(export)
    print(f"\nmedians of {args.repeat} rounds, seconds (an hour of 3,600 entries at 100 ms per request):")
    print(f"{'phase':<30} {'empty task':>11} {'export task':>12} {'difference':>11}")
    for name in PHASES:
        export_s = median([r[name] for r in results[EXPORT_DAG]])
        if name not in results[EMPTY_DAG][0]:
            print(f"{name:<30} {'':>11} {export_s:>12.2f}")
            continue
        empty_s = median([r[name] for r in results[EMPTY_DAG]])
        print(f"{name:<30} {empty_s:>11.2f} {export_s:>12.2f} {export_s - empty_s:>+11.2f}")


if __name__ == "__main__":
    sys.exit(main())
