"""
The README's "Scaling out": the operator keeps no state between tasks, so separate worker processes export
windows at once without coordinating, each spooling in its own temporary directory, and a window run again
on another worker writes the same key over.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import tempfile
from multiprocessing.connection import Connection
from pathlib import Path

import pytest

from tests.integration.test_export import canonical, expected_lines, read_objects

pytestmark = pytest.mark.usefixtures("airflow_db")

# Three adjacent windows of the shared local Orchestrator's data set (5,000 entries from 2026-01-01T00:00Z).
WINDOWS = [
    ("2026-01-01T00:00:00Z", "2026-01-01T00:20:00Z"),
    ("2026-01-01T00:20:00Z", "2026-01-01T00:40:00Z"),
    ("2026-01-01T00:40:00Z", "2026-01-01T01:00:00Z"),
]


def _export_in_worker(conn_id: str, bucket: str, start: str, end: str, spool_dir: str, answer: Connection) -> None:
    """A worker process: export one window with the temporary directory a worker of its own would have."""
    os.environ["TMPDIR"] = spool_dir
    tempfile.tempdir = None  # read TMPDIR again
    spooled: list[str] = []  # the spool's files, wherever they are made
    make_file = tempfile.NamedTemporaryFile

    def recording(*args, **kwargs):  # type: ignore[no-untyped-def]
        file = make_file(*args, **kwargs)
        spooled.append(file.name)
        return file

    tempfile.NamedTemporaryFile = recording  # type: ignore[assignment]
    try:
        from airflow_provider_orchestrator_audit.transfers.audit_logs_to_s3 import AuditLogsToS3Operator

        operator = AuditLogsToS3Operator(
            task_id="export", orchestrator_conn_id=conn_id, s3_bucket=bucket, window_start=start, window_end=end
        )
        result = operator.execute({})
        answer.send({"pid": os.getpid(), "spooled": spooled, "result": result})
    except Exception as error:  # noqa: BLE001 - reported to the test, which fails with it
        answer.send({"pid": os.getpid(), "error": f"{type(error).__name__}: {error}"})


def _run_workers(conn_id: str, bucket: str, jobs: list[tuple[str, str, Path]]) -> list[dict]:
    """Each job in a process of its own (spawned, as a fresh worker starts), all at once; their answers in order."""
    context = multiprocessing.get_context("spawn")
    running = []
    try:
        for start, end, spool_dir in jobs:
            ours, theirs = context.Pipe(duplex=False)
            process = context.Process(
                target=_export_in_worker, args=(conn_id, bucket, start, end, str(spool_dir), theirs), daemon=True
            )
            process.start()
            running.append((process, ours))
        answers = []
        for process, ours in running:
            assert ours.poll(180), "a worker gave no answer within 3 minutes"
            answers.append(ours.recv())
            process.join(30)
            assert process.exitcode == 0
        return answers
    finally:
        for process, _ in running:  # a worker still running after a failed check is not left behind
            if process.is_alive():
                process.kill()
                process.join(10)


def test_workers_export_windows_at_once_and_a_retry_elsewhere_writes_the_same_key(
    orchestrator, orchestrator_conn, bucket, s3_server, tmp_path
):
    orchestrator.latency_seconds = 0.02  # the workers' reading overlaps
    spool_dirs = [tmp_path / f"worker-{index}" for index in range(len(WINDOWS) + 1)]
    for spool_dir in spool_dirs:
        spool_dir.mkdir()

    answers = _run_workers(
        orchestrator_conn,
        bucket,
        [(start, end, spool_dir) for (start, end), spool_dir in zip(WINDOWS, spool_dirs[: len(WINDOWS)], strict=True)],
    )
    assert all("error" not in answer for answer in answers), answers
    assert len({answer["pid"] for answer in answers}) == len(WINDOWS)
    for answer, spool_dir in zip(answers, spool_dirs[: len(WINDOWS)], strict=True):
        assert answer["spooled"] and all(Path(name).parent == spool_dir for name in answer["spooled"]), answer
    keys = [answer["result"]["objects"][0].removeprefix(f"s3://{bucket}/") for answer in answers]
    objects = read_objects(s3_server, bucket)
    assert sorted(objects) == sorted(keys)
    for key, (start, end) in zip(keys, WINDOWS, strict=True):
        assert canonical(json.loads(line) for line in objects[key]) == canonical(
            expected_lines(orchestrator, start, end)
        )
    # Nothing of a worker's spool is left behind in its temporary directory.
    assert [sorted(os.listdir(spool_dir)) for spool_dir in spool_dirs] == [[] for _ in spool_dirs]

    # The middle window again, on another worker with another temporary directory: the same key, written over.
    before = objects[keys[1]]
    (retry,) = _run_workers(orchestrator_conn, bucket, [(*WINDOWS[1], spool_dirs[-1])])
    assert "error" not in retry, retry
    assert retry["pid"] not in {answer["pid"] for answer in answers}
    assert retry["result"]["objects"] == answers[1]["result"]["objects"]
    assert retry["spooled"] and all(Path(name).parent == spool_dirs[-1] for name in retry["spooled"])
    again = read_objects(s3_server, bucket)
    assert sorted(again) == sorted(keys)
    assert sorted(again[keys[1]]) == sorted(before)
    assert os.listdir(spool_dirs[-1]) == []
