"""
Where the time of one hourly export task goes, from a fresh interpreter to the written object: each phase
timed (wall and CPU) in a new process, as a worker starts one for each task.

The phases, in the order a task meets them:

- ``import airflow``: Airflow itself (configuration, settings, logging);
- the operator's module, on top of that (what a DAG file's import adds);
- provider discovery: Airflow's providers manager listing the providers and their hooks;
- DAG parsing: the hourly example DAG file read through a DagBag;
- the first token: the Orchestrator hook's connection, client and access token;
- the S3 client: the amazon provider's hook building its boto3 client;
- the bucket check the export does before reading;
- the rest of ``execute()``: locating the hour, reading its 3,600 entries, spooling and uploading.

The local Orchestrator (100 ms per request) and SeaweedFS run in their own processes. Each round starts a
new task process; medians of ``--repeat`` rounds. The first round is run untimed (the file system cache).

    .venv/bin/python benchmarks/task_startup.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from harness import median, orchestrator, s3, use_connections

HERE = os.path.dirname(os.path.abspath(__file__))
DAG_FILE = os.path.join(os.path.dirname(HERE), "example_dags", "example_orchestrator_audit_to_s3.py")
ENTRIES = 2 * 86_400  # 2026-01-01 .. 2026-01-02, one entry per second
WINDOW = ("2026-01-02T12:00:00Z", "2026-01-02T13:00:00Z")
PHASES = (
    "import_airflow",
    "import_operator_module",
    "provider_discovery",
    "dag_parsing",
    "first_token",
    "s3_client",
    "bucket_check",
    "rest_of_execute",
)

# Runs in the task process: prints one JSON line of {phase: [wall, cpu]}.
TASK = r"""
import json, sys, time
phases = {}
def timed(name, run):
    wall, cpu = time.perf_counter(), time.process_time()
    result = run()
    phases[name] = [time.perf_counter() - wall, time.process_time() - cpu]
    return result

timed("import_airflow", lambda: __import__("airflow"))
module = timed(
    "import_operator_module",
    lambda: __import__("airflow_provider_orchestrator_audit.transfers.audit_logs_to_s3", fromlist=["x"]),
)
banned = sorted(
    name for name in sys.modules
    if name.split(".")[0] in ("boto3", "tests") or "openlineage" in name
    or name.startswith("airflow_provider_orchestrator_audit.testing")
)

def discover():
    from airflow.providers_manager import ProvidersManager
    manager = ProvidersManager()
    return len(manager.providers), len(manager.hooks)

providers = timed("provider_discovery", discover)

def parse():
    from airflow.dag_processing.dagbag import DagBag
    bag = DagBag(dag_folder=DAG_FILE)
    assert not bag.import_errors, bag.import_errors
    return len(bag.dags)

dags = timed("dag_parsing", parse)
operator = module.AuditLogsToS3Operator(
    task_id="export", s3_bucket="bench", window_start=WINDOW[0], window_end=WINDOW[1], compression="gzip"
)
timed("first_token", lambda: operator.orchestrator_hook.get_conn().access_token())
timed("s3_client", lambda: operator.s3_hook.get_conn())

def check():
    from airflow_provider_orchestrator_audit.export.s3_publisher import S3Publisher
    S3Publisher(operator.s3_hook, "bench").check_bucket()

timed("bucket_check", check)
result = timed("rest_of_execute", lambda: operator.execute({}))
assert result["records"] > 3000, result  # about one entry a second
print(json.dumps({"phases": phases, "banned_modules": banned, "providers_hooks": providers, "dags": dags}))
"""


def task_process() -> dict:
    """One task in a fresh interpreter; its phases and the whole process's wall time."""
    started = time.perf_counter()
    code = f"DAG_FILE = {DAG_FILE!r}\nWINDOW = {WINDOW!r}\n" + TASK
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"the task process failed:\n{done.stderr[-4000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    report["process_wall"] = time.perf_counter() - started
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    load_before = os.getloadavg()
    with orchestrator(ENTRIES, latency_ms=100) as orch, s3() as s3_server:
        use_connections(orch, s3_server)
        task_process()  # untimed: the file system cache
        rounds = [task_process() for _ in range(args.repeat)]
    summary: dict[str, object] = {}
    for phase in PHASES:
        summary[phase] = {
            "wall_median": round(median([r["phases"][phase][0] for r in rounds]), 3),
            "cpu_median": round(median([r["phases"][phase][1] for r in rounds]), 3),
        }
    summary["process_wall_median"] = round(median([r["process_wall"] for r in rounds]), 2)
    summary["process_walls"] = [round(r["process_wall"], 2) for r in rounds]
    summary["banned_modules_after_operator_import"] = rounds[-1]["banned_modules"]
    summary["providers_hooks"] = rounds[-1]["providers_hooks"]
    summary["load_average_before_after"] = [round(load_before[0], 1), round(os.getloadavg()[0], 1)]
    summary["cpus"] = os.cpu_count()
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
