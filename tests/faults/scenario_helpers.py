"""
Shared parts of the fault scenarios: run one whole export through Airflow's ``dag.test()``, and check
what reached S3 against the data set the local Orchestrator serves.

Every scenario ends in one of two outcomes, checked by :func:`assert_exact_export` or
:func:`assert_failed_cleanly`: the object holds every entry of the window exactly once, byte for byte
as the server sent it, or the task failed with a message that names what was wrong, and the bucket
holds nothing (no object, no unfinished multipart upload).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from airflow_provider_orchestrator_audit.testing import Fault
from airflow_provider_orchestrator_audit.timestamps import to_ticks
from tests.integration.airflow_runs import HOURLY, load_dag, write_export_dag, xcom_return_value

# The shared local Orchestrator's 5,000 entries start at 2026-01-01T00:00Z, about one a second:
# ten minutes hold some 600 entries, a handful of pages of 100.
WINDOW = ("2026-01-01T00:10:00Z", "2026-01-01T00:20:00Z")
KEY = "audit/window.jsonl"
# Any date: the scenarios give the window explicitly (or through params), not through the run's interval.
LOGICAL_DATE = datetime(2026, 3, 1, tzinfo=UTC)

# A fault-free export of WINDOW with export_kwargs() takes 15 audit requests: 8 one-entry probes locate
# its edges (two searches at once), then 7 pages of 100, 4 at a time,
# started once the upper edge is known (up to 4 more when the lower search is slow: those are not needed).
PROBES = 8
FAULT_FREE_REQUESTS = 15
# Both searches begin by probing the newest and the oldest entry: the only requests asked for twice.
SHARED_PROBES = 2

_failures: list[BaseException] = []


def let_through(server: Any, requests: int) -> None:
    """
    Serve the next ``requests`` audit requests normally: faults queued after this land on the requests
    that follow, wherever the export is by then.
    """
    server.faults.push(Fault.stall(0), times=requests)


def record_failure(context: Any) -> None:
    """``on_failure_callback`` of the scenario DAGs: keeps the exception the task failed with."""
    _failures.append(context["exception"])


@dataclass
class ExportRun:
    """
    One ``dag.test()`` run of a one-task export DAG.

    :param state: the DAG run's state.
    :param task_state: the export task's state.
    :param result: the task's XCom return value (None when it failed).
    :param error: the exception the task failed with, as Airflow handed it to ``on_failure_callback``.
    :param seconds: wall time of the run.
    """

    state: str
    task_state: str | None
    result: dict[str, Any] | None
    error: BaseException | None
    seconds: float


def export_kwargs(conn_id: str, bucket: str, **changes: Any) -> dict[str, Any]:
    """Operator arguments of a scenario: :data:`WINDOW` to :data:`KEY` in pages of 100, 4 at a time."""
    kwargs: dict[str, Any] = {
        "orchestrator_conn_id": conn_id,
        "s3_bucket": bucket,
        "s3_key": KEY,
        "window_start": WINDOW[0],
        "window_end": WINDOW[1],
        "page_size": 100,
        "max_concurrency": 4,
    }
    kwargs.update(changes)
    return kwargs


def write_scenario_dag(
    dag_id: str, operator_kwargs: dict[str, Any], *, params: dict[str, Any] | None = None, schedule: str = HOURLY
) -> Path:
    """
    A DAG file with one ``AuditLogsToS3Operator(task_id="export", **operator_kwargs)``, no retries, and
    :func:`record_failure` as its failure callback, in the test Airflow's DAG folder.

    :param params: the DAG's params, for templated arguments such as ``"{{ params.window_start }}"``.
    :param schedule: the DAG's ``schedule`` as Python source, e.g. ``"None"`` for manual runs only.
    """
    return write_export_dag(
        dag_id,
        operator_kwargs,
        params=params,
        schedule=schedule,
        imports="from tests.faults.scenario_helpers import record_failure",
        operator_source="on_failure_callback=record_failure",
    )


def run_export(
    dag_id: str,
    operator_kwargs: dict[str, Any],
    *,
    params: dict[str, Any] | None = None,
    run_conf: dict[str, Any] | None = None,
    schedule: str = HOURLY,
) -> ExportRun:
    """
    Write the scenario's DAG (see :func:`write_scenario_dag`), run it once with ``dag.test()``, with
    ``run_conf`` as the run's conf (it overrides params), and remove the file again (every
    ``dag.test()`` parses the whole DAG folder).
    """
    path = write_scenario_dag(dag_id, operator_kwargs, params=params, schedule=schedule)
    _failures.clear()
    started = time.monotonic()
    try:
        dag = load_dag(path, dag_id)
        run = dag.test(logical_date=LOGICAL_DATE, run_conf=run_conf)
    finally:
        path.unlink()
    seconds = time.monotonic() - started
    errors = list(_failures)
    assert len(errors) <= 1, f"the task failed more than once: {errors!r}"
    return ExportRun(
        state=str(run.state),
        task_state=task_state(dag_id, run.run_id),
        result=xcom_return_value(dag_id, run.run_id, "export"),
        error=errors[0] if errors else None,
        seconds=seconds,
    )


def task_state(dag_id: str, run_id: str, task_id: str = "export") -> str | None:
    """The state Airflow recorded for a task of a run."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = session.query(TaskInstance).filter_by(dag_id=dag_id, run_id=run_id, task_id=task_id).one()
        return None if ti.state is None else str(ti.state)


def window_lines(server: Any, window: tuple[str, str] = WINDOW) -> list[str]:
    """
    The window's entries as the export must write them, oldest first: the server's own JSON text, with
    only U+2028 and U+2029 escaped (JSON allows them raw, but line readers split records there).
    """
    dataset = server.dataset
    first, end = dataset.index_range(to_ticks(window[0]), to_ticks(window[1]))
    low, high = dataset.visible_range()
    return [
        dataset.entry_json(i).decode("utf-8").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
        for i in range(max(first, low), min(end, high))
    ]


def bucket_contents(s3_server: Any, bucket: str) -> dict[str, bytes]:
    """Every object in the bucket, by key."""
    return {key: s3_server.get_object_bytes(bucket, key) for key in s3_server.list_keys(bucket)}


def unfinished_uploads(s3_server: Any, bucket: str) -> list[str]:
    """Keys of multipart uploads begun in the bucket and neither completed nor aborted."""
    answer = s3_server.client().list_multipart_uploads(Bucket=bucket)
    return [upload["Key"] for upload in answer.get("Uploads", [])]


def assert_exact_export(run: ExportRun, server: Any, s3_server: Any, bucket: str, *, key: str = KEY) -> list[str]:
    """
    The run succeeded and wrote one object, ``key``, whose lines are the window's entries exactly once
    each, every one byte for byte as the server sent it; returns those lines.
    """
    assert run.state == "success" and run.task_state == "success", f"the export failed: {run.error!r}"
    objects = bucket_contents(s3_server, bucket)
    assert list(objects) == [key], f"expected exactly {key!r} in the bucket, found {sorted(objects)}"
    text = objects[key].decode("utf-8")
    assert text.endswith("\n"), "every line, the last included, ends with a newline"
    lines = text[:-1].split("\n")
    expected = window_lines(server)
    assert len(expected) > 300, "the scenario window should hold hundreds of entries"
    written, wanted = Counter(lines), Counter(expected)
    duplicated = sorted(line[:80] for line, count in written.items() if count > 1)
    missing = sorted(line[:80] for line in wanted - written)
    unexpected = sorted(line[:80] for line in written - wanted)
    assert not duplicated, f"{len(duplicated)} entries written more than once, e.g. {duplicated[:2]}"
    assert not missing, f"{len(missing)} window entries missing, e.g. {missing[:2]}"
    assert not unexpected, f"{len(unexpected)} lines that are not window entries, e.g. {unexpected[:2]}"
    assert run.result is not None
    assert run.result["records"] == len(expected)
    assert run.result["objects"] == [f"s3://{bucket}/{key}"]
    assert unfinished_uploads(s3_server, bucket) == []
    return lines


def assert_failed_cleanly(
    run: ExportRun, s3_server: Any, bucket: str, error_type: type[BaseException], *fragments: str
) -> str:
    """
    The task failed with ``error_type`` whose message holds every one of ``fragments``, and the bucket
    holds nothing: no object, no unfinished multipart upload. Returns the message.
    """
    assert run.state == "failed" and run.task_state == "failed", f"expected a failed run, got {run.state}"
    assert isinstance(run.error, error_type), f"expected {error_type.__name__}, got {run.error!r}"
    message = str(run.error)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} is not in the error message: {message}"
    assert s3_server.list_keys(bucket) == [], "a failed export must leave nothing in the bucket"
    assert unfinished_uploads(s3_server, bucket) == []
    assert run.result is None
    return message


def connection_with(server: Any, *, extra: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """The local server's Airflow connection with some fields (``password=...``) or extras changed."""
    conn = server.airflow_connection()
    conn.update(fields)
    conn["extra"] = {**conn["extra"], **(extra or {})}
    return conn
