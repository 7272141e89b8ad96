"""
Entries recorded late (their createdOn below the newest entries, anywhere in the listing): every entry
that existed before the export and lies in the window is written exactly once, through dag.test().
"""

from __future__ import annotations

import gzip
import json
import time
from collections import Counter
from datetime import UTC, datetime

import pytest

from airflow_provider_orchestrator_audit.timestamps import to_ticks
from tests.integration.airflow_runs import run_dag, write_export_dag

pytestmark = pytest.mark.usefixtures("airflow_db")


def window_lines(orchestrator, start: str, end: str) -> Counter[str]:
    """The window's entries the server holds now, as the exact lines an export writes."""
    low, high = to_ticks(start), to_ticks(end)
    view = orchestrator.dataset.view()
    # Every visible entry in the window, rendered exactly as the server serves it.
    indices = orchestrator.dataset.page_indices(0, view.total, view=view)
    lines = Counter()
    for index in indices:
        entry = json.loads(orchestrator.dataset.entry_json(index))
        if low <= to_ticks(entry["createdOn"]) < high:
            lines[canonical(entry)] += 1
    return lines


def canonical(entry: dict) -> str:
    # Lines are compared as JSON values: the export writes the server's text, with U+2028 escaped.
    return json.dumps(entry, sort_keys=True, ensure_ascii=False)


def written_lines(s3_server, bucket: str) -> Counter[str]:
    lines: Counter[str] = Counter()
    for key in s3_server.list_keys(bucket, ""):
        body = s3_server.get_object_bytes(bucket, key)
        text = (gzip.decompress(body) if key.endswith(".gz") else body).decode("utf-8")
        lines.update(canonical(json.loads(line)) for line in text.split("\n")[:-1])
    return lines


@pytest.mark.parametrize(
    ("window", "late", "lag_minutes", "burst_every", "burst", "arrivals", "cap"),
    [
        # The reported case: 5 late entries per request up to 57 minutes below the newest, in the middle.
        (("2026-01-01T00:30:00Z", "2026-01-01T01:00:00Z"), 5, 57, None, 0, 0, 100),
        # Bursts of 150 late entries every 4th request, small capped pages, entries arriving at the head.
        (("2026-01-01T00:20:00Z", "2026-01-01T00:50:00Z"), 2, 80, 4, 150, 3, 60),
        # The window at the head of the log (it ends after the newest entry), late entries near the head.
        (("2026-01-01T01:00:00Z", "2026-01-01T02:00:00Z"), 4, 10, 5, 40, 4, 100),
    ],
    ids=["middle", "middle-bursts", "head"],
)
def test_no_entry_that_existed_before_the_export_is_lost(
    orchestrator,
    orchestrator_conn,
    bucket,
    s3_server,
    request,
    window,
    late,
    lag_minutes,
    burst_every,
    burst,
    arrivals,
    cap,
):
    orchestrator.page_size_cap = cap
    orchestrator.arrivals_per_request = arrivals
    orchestrator.late_per_request = late
    orchestrator.late_max_lag_seconds = lag_minutes * 60
    orchestrator.late_burst_every = burst_every
    orchestrator.late_burst_size = burst
    before = window_lines(orchestrator, *window)
    # One DAG id per case: each dag.test() of changed DAG source adds a DAG version under its id.
    dag_id = f"late_entries_{request.node.callspec.id.replace('-', '_')}"
    path = write_export_dag(
        dag_id,
        {
            "orchestrator_conn_id": orchestrator_conn,
            "s3_bucket": bucket,
            "window_start": window[0],
            "window_end": window[1],
            "max_concurrency": 4,
        },
    )
    state, result = run_dag(path, dag_id, datetime(2026, 3, 1, tzinfo=UTC))
    assert state == "success"
    after = window_lines(orchestrator, *window)
    written = written_lines(s3_server, bucket)
    assert result["records"] == sum(written.values())
    missing = before - written
    assert not missing, f"{sum(missing.values())} entries that existed before the export are missing"
    assert not written - after, "a line that is not an entry of the window was written"
    # Recorded late entries did land in the window while it was read: the scenario tested something.
    assert sum(after.values()) > sum(before.values())
    assert orchestrator.stats.audit_requests > 10


def test_answers_that_cannot_prove_the_pages_meet_fail_with_nothing_written(
    orchestrator, orchestrator_conn, bucket, s3_server
):
    # Two entries per page: one must repeat the page before and one waits for the next, so no page can
    # prove a single new entry complete. The export says so instead of guessing by offsets.
    orchestrator.page_size_cap = 2
    orchestrator.late_per_request = 1
    path = write_export_dag(
        "late_entries_capped",
        {
            "orchestrator_conn_id": orchestrator_conn,
            "s3_bucket": bucket,
            "window_start": "2026-01-01T00:30:00Z",
            "window_end": "2026-01-01T01:00:00Z",
        },
    )
    state, result = run_dag(path, "late_entries_capped", datetime(2026, 3, 1, tzinfo=UTC))
    assert state == "failed" and result is None
    assert s3_server.list_keys(bucket, "") == []
    assert orchestrator.stats.audit_requests < 50


# --- min_age: export a window only once entries recorded late have had time to arrive ------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-1, "min_age must not be negative"),
        ("30m", "min_age must be a timedelta, a number of seconds or None"),
        (True, "min_age must be a timedelta, a number of seconds or None"),
    ],
)
def test_a_bad_min_age_fails_when_the_dag_is_parsed(value, message):
    from airflow_provider_orchestrator_audit.transfers.audit_logs_to_s3 import AuditLogsToS3Operator

    with pytest.raises(ValueError, match=f"export_audit: {message}"):
        AuditLogsToS3Operator(task_id="export_audit", s3_bucket="b", min_age=value)


def test_a_young_window_waits_in_the_triggerer_until_it_is_min_age_old(
    orchestrator, orchestrator_conn, bucket, s3_server
):
    from datetime import timedelta

    now = datetime.now(UTC).replace(microsecond=0)
    window = ((now - timedelta(minutes=5)).isoformat(), now.isoformat())
    wait = 4.0
    started = time.monotonic()
    path = write_export_dag(
        "min_age_young",
        {
            "orchestrator_conn_id": orchestrator_conn,
            "s3_bucket": bucket,
            "window_start": window[0],
            "window_end": window[1],
            "min_age": wait,
        },
    )
    state, result = run_dag(path, "min_age_young", datetime(2026, 3, 1, tzinfo=UTC))
    assert state == "success"
    assert result["records"] == 0 and len(result["objects"]) == 1
    # The deferral: no request reached Orchestrator before window_end + min_age.
    ready_after = (now + timedelta(seconds=wait) - datetime.now(UTC)).total_seconds() + (time.monotonic() - started)
    first_request = min(request.arrived for request in orchestrator.stats.audit_timeline) - started
    assert first_request >= ready_after - 0.5, (first_request, ready_after)


def test_an_old_window_is_exported_at_once_whatever_min_age(orchestrator, orchestrator_conn, bucket, s3_server):
    path = write_export_dag(
        "min_age_old",
        {
            "orchestrator_conn_id": orchestrator_conn,
            "s3_bucket": bucket,
            "window_start": "2026-01-01T00:10:00Z",
            "window_end": "2026-01-01T00:20:00Z",
            "min_age": 3600,
        },
    )
    started = time.monotonic()
    state, result = run_dag(path, "min_age_old", datetime(2026, 3, 1, tzinfo=UTC))
    assert state == "success" and result["records"] > 500
    assert time.monotonic() - started < 60


def test_min_age_defaults_to_ten_minutes_for_the_event_sources_only():
    from datetime import timedelta

    from airflow_provider_orchestrator_audit.transfers.audit_logs_to_s3 import AuditLogsToS3Operator

    def min_age(**kwargs):
        return AuditLogsToS3Operator(task_id="export", s3_bucket="b", **kwargs).min_age

    assert min_age() is None
    assert min_age(source="organization_events") == timedelta(minutes=10)
    assert min_age(source="tenant_events", tenant="T") == timedelta(minutes=10)
    assert min_age(source="tenant_events", tenant="T", min_age=None) is None
    assert min_age(source="classic", min_age=90) == timedelta(seconds=90)
    assert min_age(min_age=0) is None
