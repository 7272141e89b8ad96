"""AuditLogsToS3Operator end to end: real Airflow (dag.test), the local Orchestrator over HTTP, SeaweedFS."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime

import pytest

from airflow_provider_orchestrator_audit.exceptions import AuditExportError, OrchestratorResponseError
from airflow_provider_orchestrator_audit.paging.window import WindowError
from airflow_provider_orchestrator_audit.testing import Fault
from airflow_provider_orchestrator_audit.timestamps import to_ticks
from airflow_provider_orchestrator_audit.transfers.audit_logs_to_s3 import AuditLogsToS3Operator
from tests.conftest import CONN_ID
from tests.integration.airflow_runs import install_example, run_dag, write_export_dag

pytestmark = pytest.mark.usefixtures("airflow_db")

# The shared local Orchestrator's 5,000 entries run from 2026-01-01T00:00Z for about 83 minutes.
WINDOW = ("2026-01-01T00:10:00Z", "2026-01-01T00:50:00Z")


def expected_lines(orchestrator, start: str, end: str) -> list[dict]:
    """The window's entries as the data set holds them, newest first."""
    entries = orchestrator.dataset.entries_between(to_ticks(start), to_ticks(end))
    return sorted(entries, key=lambda entry: to_ticks(entry["createdOn"]), reverse=True)


def read_objects(s3_server, bucket: str, prefix: str = "") -> dict[str, list[str]]:
    objects = {}
    for key in s3_server.list_keys(bucket, prefix):
        body = s3_server.get_object_bytes(bucket, key)
        text = (gzip.decompress(body) if key.endswith(".gz") else body).decode("utf-8")
        objects[key] = text.split("\n")[:-1] if text else []
    return objects


def canonical(records) -> list[str]:
    return sorted(json.dumps(record, sort_keys=True, ensure_ascii=False) for record in records)


def export(orchestrator_conn: str, bucket: str, **kwargs) -> dict:
    """Run the operator's execute() directly (the wiring is the same one dag.test() runs)."""
    operator = AuditLogsToS3Operator(
        task_id="export", orchestrator_conn_id=orchestrator_conn, s3_bucket=bucket, **kwargs
    )
    return operator.execute({})


# --- through Airflow --------------------------------------------------------------------------------


def test_example_dag_exports_its_hour(orchestrator, bucket, s3_server, monkeypatch):
    from tests.conftest import set_connection

    set_connection(monkeypatch, "orchestrator_audit_default", orchestrator.airflow_connection())
    monkeypatch.setenv("AIRFLOW_VAR_ORCHESTRATOR_AUDIT_BUCKET", bucket)
    path = install_example("example_orchestrator_audit_to_s3.py")
    state, result = run_dag(
        path, "example_orchestrator_audit_to_s3", datetime(2026, 1, 1, 1, tzinfo=UTC), task_id="export_audit_logs"
    )
    assert state == "success"
    key = "orchestrator-audit/organization=acme/dt=2026-01-01/hour=00/20260101T000000Z_20260101T010000Z.jsonl.gz"
    assert result["objects"] == [f"s3://{bucket}/{key}"]
    expected = expected_lines(orchestrator, "2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z")
    assert result["records"] == len(expected) > 3000
    assert result["window_start"] == "2026-01-01T00:00:00.0000000+00:00"
    assert result["total_count"] == orchestrator.dataset.total_count
    lines = read_objects(s3_server, bucket)[key]
    assert canonical(json.loads(line) for line in lines) == canonical(expected)


def test_dag_with_explicit_window_and_parts(orchestrator, orchestrator_conn, bucket, s3_server):
    path = write_export_dag(
        "explicit_window",
        {
            "orchestrator_conn_id": orchestrator_conn,
            "s3_bucket": bucket,
            "s3_key": "audit/{{ dag.dag_id }}/window.jsonl",
            "window_start": WINDOW[0],
            "window_end": WINDOW[1],
            "max_records_per_file": 1000,
        },
    )
    state, result = run_dag(path, "explicit_window", datetime(2026, 3, 1, tzinfo=UTC))
    assert state == "success"
    objects = read_objects(s3_server, bucket)
    assert sorted(objects) == [f"audit/explicit_window/window.part-{n:05d}.jsonl" for n in range(3)]
    assert [len(lines) for lines in objects.values()] == [1000, 1000, result["records"] - 2000]
    assert result["objects"] == [f"s3://{bucket}/{key}" for key in sorted(objects)]


def test_a_run_without_a_data_interval_fails_with_advice(orchestrator, orchestrator_conn, bucket):
    operator = AuditLogsToS3Operator(task_id="export", orchestrator_conn_id=orchestrator_conn, s3_bucket=bucket)
    moment = datetime(2026, 1, 1, 1, tzinfo=UTC)
    with pytest.raises(WindowError, match="data interval is empty.*CronDataIntervalTimetable.*window_start"):
        operator.execute({"data_interval_start": moment, "data_interval_end": moment})
    with pytest.raises(WindowError, match="no data interval"):
        operator.execute({})
    assert orchestrator.stats.audit_requests == 0 and orchestrator.stats.token_requests == 0


# --- exactly once -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arrivals", "removals", "cap", "page_size", "concurrency"),
    [
        (0, 0, None, None, 8),
        (4, 1, None, 200, 8),  # entries arrive and expire while paging
        (3, 0, 70, None, 4),  # the server gives fewer entries than asked
        (6, 2, 45, 500, 6),  # all of it at once, small pages full of page boundaries inside tie groups
    ],
)
def test_every_entry_exactly_once(
    orchestrator, orchestrator_conn, bucket, s3_server, arrivals, removals, cap, page_size, concurrency
):
    orchestrator.arrivals_per_request = arrivals
    orchestrator.removals_per_request = removals
    orchestrator.page_size_cap = cap
    expected = expected_lines(orchestrator, *WINDOW)
    result = export(
        orchestrator_conn,
        bucket,
        window_start=WINDOW[0],
        window_end=WINDOW[1],
        page_size=page_size,
        max_concurrency=concurrency,
        s3_key="w.jsonl",
    )
    lines = read_objects(s3_server, bucket)["w.jsonl"]
    written = [json.loads(line) for line in lines]
    assert result["records"] == len(written) == len(expected)
    assert canonical(written) == canonical(expected)
    assert orchestrator.dataset.total_count != 5_000 or arrivals == removals


def test_lines_are_the_server_entries_verbatim(orchestrator, orchestrator_conn, bucket, s3_server):
    export(orchestrator_conn, bucket, window_start=WINDOW[0], window_end=WINDOW[1], s3_key="v.jsonl")
    body = s3_server.get_object_bytes(bucket, "v.jsonl")
    text = body.decode("utf-8")  # strictly UTF-8
    lines = text.split("\n")
    assert lines[-1] == ""  # every record ends with a newline
    expected = {json.dumps(entry, sort_keys=True): entry for entry in expected_lines(orchestrator, *WINDOW)}
    tricky = 0
    for line in lines[:-1]:
        record = json.loads(line)
        source = expected[json.dumps(record, sort_keys=True)]
        assert record == source and list(record) == list(source)  # every field, in the server's order
        assert len(record["createdOn"]) == 33  # 7 fractional digits, unchanged
        if any(mark in (record.get("message") or "") for mark in ("\n", "\u2028", '"')):
            tricky += 1
    assert tricky > 0, "the window should hold messages with newlines, U+2028 or quotes"
    assert "\u2028" not in text and len(text.splitlines()) == len(lines) - 1


def test_gzip_objects(orchestrator, orchestrator_conn, bucket, s3_server):
    result = export(orchestrator_conn, bucket, window_start=WINDOW[0], window_end=WINDOW[1], compression="gzip")
    (key,) = s3_server.list_keys(bucket)
    assert key.endswith("/20260101T001000Z_20260101T005000Z.jsonl.gz") and "/dt=2026-01-01/hour=00/" in key
    assert len(read_objects(s3_server, bucket)[key]) == result["records"]


def test_the_gzip_level_changes_the_bytes_not_the_lines(orchestrator, orchestrator_conn, bucket, s3_server):
    window = {"window_start": WINDOW[0], "window_end": WINDOW[1], "compression": "gzip"}
    sizes, lines = {}, {}
    for level in (None, 1, 9):  # None: the default, 3
        export(orchestrator_conn, bucket, s3_key=f"level-{level}.jsonl.gz", compression_level=level, **window)
        body = s3_server.get_object_bytes(bucket, f"level-{level}.jsonl.gz")
        sizes[level], lines[level] = len(body), sorted(gzip.decompress(body).splitlines())  # pages in arrival order
    assert lines[None] == lines[1] == lines[9] and len(lines[None]) == 2400
    assert sizes[9] < sizes[None] <= sizes[1]


def test_an_empty_window_writes_an_empty_object(orchestrator, orchestrator_conn, bucket, s3_server):
    result = export(
        orchestrator_conn,
        bucket,
        window_start="2025-06-01T00:00:00Z",
        window_end="2025-06-01T01:00:00Z",
        compression="gzip",
    )
    assert result["records"] == 0 and len(result["objects"]) == 1
    (key,) = s3_server.list_keys(bucket)
    assert gzip.decompress(s3_server.get_object_bytes(bucket, key)) == b""


# --- failures and reruns ----------------------------------------------------------------------------


def test_a_failure_mid_export_writes_nothing(orchestrator, orchestrator_conn, bucket, s3_server):
    for _ in range(12):
        orchestrator.faults.push(Fault.stall(0))  # answered normally
    orchestrator.faults.push(Fault.wrong_shape())
    with pytest.raises(OrchestratorResponseError, match="totalCount"):
        export(
            orchestrator_conn, bucket, window_start=WINDOW[0], window_end=WINDOW[1], page_size=100, max_concurrency=2
        )
    assert orchestrator.stats.audit_requests > 12
    assert s3_server.list_keys(bucket) == []


def test_a_rerun_leaves_exactly_the_newest_objects(orchestrator, orchestrator_conn, bucket, s3_server):
    common = {"window_start": WINDOW[0], "window_end": WINDOW[1], "s3_key": "audit/window.jsonl"}
    unrelated = "audit/window-other.jsonl"
    s3_server.client().put_object(Bucket=bucket, Key=unrelated, Body=b"keep me\n")
    first = export(orchestrator_conn, bucket, max_records_per_file=700, **common)
    assert len(first["objects"]) == 4
    second = export(orchestrator_conn, bucket, max_records_per_file=1500, **common)
    assert sorted(s3_server.list_keys(bucket)) == sorted(
        [unrelated, "audit/window.part-00000.jsonl", "audit/window.part-00001.jsonl"]
    )
    third = export(orchestrator_conn, bucket, **common)
    assert sorted(s3_server.list_keys(bucket)) == [unrelated, "audit/window.jsonl"]
    assert first["records"] == second["records"] == third["records"]


# --- bad input -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"window_start": WINDOW[1], "window_end": WINDOW[0]}, WindowError, "window_end .* is before window_start"),
        (
            {"window_start": "yesterday", "window_end": WINDOW[1]},
            WindowError,
            "export: window_start: 'yesterday' is not an ISO-8601",
        ),
        (
            {"window_start": WINDOW[0], "window_end": "None"},
            WindowError,
            "window_end is not set while the other bound is",
        ),
    ],
)
def test_bad_windows_fail_before_any_request(orchestrator, orchestrator_conn, bucket, kwargs, error, message):
    with pytest.raises(error, match=message):
        export(orchestrator_conn, bucket, **kwargs)
    assert orchestrator.stats.audit_requests == 0 and orchestrator.stats.token_requests == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"compression": "zip"}, "compression must be None or 'gzip'"),
        ({"page_size": 0}, "page_size must be at least 1"),
        ({"max_records_per_file": -5}, "max_records_per_file must be at least 1"),
        ({"max_concurrency": 0}, "max_concurrency must be at least 1"),
    ],
)
def test_bad_parameters_fail_when_the_dag_is_parsed(kwargs, message):
    with pytest.raises(ValueError, match=f"export: {message}"):
        AuditLogsToS3Operator(task_id="export", s3_bucket="b", **kwargs)


def test_the_request_retry_policy_reaches_the_hook_and_airflows_retry_policy_stays_airflows():
    from airflow_provider_orchestrator_audit.client.retry import RetryPolicy

    operator = AuditLogsToS3Operator(task_id="export", s3_bucket="b", request_retry_policy={"max_attempts": 2})
    assert operator.orchestrator_hook.retry_policy == RetryPolicy(max_attempts=2)
    # Airflow 3.3 evaluates a task's retry_policy on every failure: the HTTP policy must not shadow it.
    assert operator.retry_policy is None
    assert AuditLogsToS3Operator(task_id="export", s3_bucket="b").orchestrator_hook.retry_policy == RetryPolicy()


def test_a_missing_bucket_fails_before_reading(orchestrator, orchestrator_conn, bucket):
    with pytest.raises(AuditExportError, match="S3 bucket 'no-such-bucket'.*aws_conn_id='aws_default'"):
        export(orchestrator_conn, "no-such-bucket", window_start=WINDOW[0], window_end=WINDOW[1])
    assert orchestrator.stats.audit_requests == 0


def test_the_connection_id_is_used(orchestrator, bucket):
    with pytest.raises(Exception, match="isn't defined"):
        export("missing_connection", bucket, window_start=WINDOW[0], window_end=WINDOW[1])
    assert CONN_ID != "missing_connection"


def test_lineage_names_the_audit_log_and_the_objects(orchestrator, orchestrator_conn, bucket):
    from airflow.sdk.lineage import get_hook_lineage_collector

    collector = get_hook_lineage_collector()
    result = export(orchestrator_conn, bucket, window_start=WINDOW[0], window_end=WINDOW[1], s3_key="lineage.jsonl")
    lineage = collector.collected_assets
    inputs = {asset.asset.uri for asset in lineage.inputs}
    outputs = {asset.asset.uri for asset in lineage.outputs}
    assert f"{orchestrator.url}/acme/audit_/api/auditlogs" in inputs
    assert f"s3://{bucket}/lineage.jsonl" in outputs
    assert result["objects"] == [f"s3://{bucket}/lineage.jsonl"]
