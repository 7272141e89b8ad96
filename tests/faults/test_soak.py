"""
A soak: twenty consecutive hourly windows exported one after another through Airflow, with faults on all along.

The local Orchestrator throttles (429), fails (503) and resets connections periodically, entries arrive at the
newest end and expire at the oldest end on every request, tie groups come back in a new order on every request,
and pages are capped below the size asked for. Between the exporter and S3 sits a :class:`CuttingProxy` that
cuts two runs' uploads, so those runs fail and Airflow retries them.

What it proves: across the twenty objects, every entry of the twenty hours is there exactly once, each in the
object of its own hour and nothing outside it; the runs that failed were retried and left nothing behind (the
bucket holds exactly the twenty objects and no unfinished upload); the failures said what failed and what to do.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_orchestrator_audit.export.keys import default_key
from airflow_provider_orchestrator_audit.paging.window import AuditWindow
from airflow_provider_orchestrator_audit.testing import DEFAULT_START, AuditDataset, LocalOrchestratorServer
from airflow_provider_orchestrator_audit.timestamps import ticks_to_datetime, to_ticks
from tests.conftest import set_connection
from tests.integration.airflow_runs import load_dag, write_export_dag, xcom_return_value
from tests.support.proxy import CuttingProxy

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("airflow_db")]

DAG_ID = "soak_hourly_export"
CONN_ID = "orchestrator_soak"
ENTRIES_PER_HOUR = 400
FIRST_HOUR = 4  # hours 0-3 are a cushion for retention: it removes about one entry per page served
HOURS = 20
# botocore's attempts per S3 request (its own retry), and so the cuts that fail one try of a run.
S3_ATTEMPTS = 2
# run number -> (S3 operation cut on every attempt of its first try, bytes let through, what its failure says):
# the upload is cut mid-body, the listing of earlier objects mid-head.
S3_CUTS = {5: ("PutObject", 64 * 1024, "Writing s3://"), 13: ("ListObjects", 100, "Cannot list S3 bucket")}

# Set by the test: what the bucket holds (keys, unfinished uploads), looked at between a failed try and its retry.
_bucket_state: Callable[[], tuple[list[str], list[str]]] | None = None
_retried: list[tuple[str, BaseException, tuple[list[str], list[str]] | None]] = []


def record_retry(context: Any) -> None:
    """``on_retry_callback``: keeps the error each failed try ended with, and what it left in the bucket."""
    state = _bucket_state() if _bucket_state is not None else None
    _retried.append((context["ti"].run_id, context["exception"], state))


@pytest.fixture(scope="module")
def source() -> Iterator[LocalOrchestratorServer]:
    """
    Twenty-five hours of 400 entries (ties shuffled per request, bursts of 20-60 entries in one instant),
    served in pages of at most 70, with a 429 (Retry-After: 1) every 29th, a 503 every 13th and a reset every
    17th request, and 2 arrivals and 1 expiry per page served.
    """
    dataset = AuditDataset(size=25 * ENTRIES_PER_HOUR, seed=2026, entries_per_hour=ENTRIES_PER_HOUR)
    server = LocalOrchestratorServer(
        dataset,
        page_size_cap=70,
        arrivals_per_request=2,
        removals_per_request=1,
        throttle_every=29,
        error_every=13,
        reset_every=17,
        seed=5,
    )
    server.faults.periodic_retry_after_seconds = 1
    with server:
        yield server


def write_soak_dag() -> Path:
    """An hourly DAG (data intervals), two retries without delay, exporting each hour to its default key."""
    return write_export_dag(
        DAG_ID,
        {
            "orchestrator_conn_id": CONN_ID,
            "s3_bucket": "{{ var.value.soak_bucket }}",
            "page_size": 100,
            "max_concurrency": 4,
        },
        default_args='{"retries": 2, "retry_delay": timedelta(0), "on_retry_callback": record_retry}',
        imports="from datetime import timedelta\nfrom tests.faults.test_soak import record_retry",
    )


def task_tries(run_id: str) -> int:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = session.query(TaskInstance).filter_by(dag_id=DAG_ID, run_id=run_id, task_id="export").one()
        return int(ti.try_number)


def hour_window(hour: int) -> AuditWindow:
    start = ticks_to_datetime(DEFAULT_START) + timedelta(hours=hour)
    return AuditWindow.parse(start, start + timedelta(hours=1))


def test_twenty_hours_under_faults_hold_every_entry_exactly_once(
    source, s3_server, bucket, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
):
    """
    Twenty hourly runs, one after another, against a flaky, drifting Orchestrator; runs 5 and 13 lose their
    first try to S3 cuts and succeed on the retry. Every entry of the twenty hours is written exactly once, in
    its own hour's object, and nothing else is in the bucket.
    """
    started = time.monotonic()
    dataset = source.dataset
    client = s3_server.client()
    request.addfinalizer(client.close)
    with CuttingProxy.to(s3_server.endpoint_url) as proxy:
        aws = s3_server.airflow_connection()
        aws["extra"]["endpoint_url"] = proxy.url
        aws["extra"]["config_kwargs"] = {"retries": {"mode": "standard", "total_max_attempts": S3_ATTEMPTS}}
        set_connection(monkeypatch, "aws_default", aws)
        set_connection(monkeypatch, CONN_ID, source.airflow_connection())
        monkeypatch.setenv("AIRFLOW_VAR_SOAK_BUCKET", bucket)
        path = write_soak_dag()
        request.addfinalizer(lambda: path.unlink(missing_ok=True))  # later DagBag parses need not import it
        dag = load_dag(path, DAG_ID)
        _retried.clear()

        def bucket_state() -> tuple[list[str], list[str]]:
            uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
            return sorted(s3_server.list_keys(bucket)), sorted(upload["Key"] for upload in uploads)

        monkeypatch.setattr(sys.modules[__name__], "_bucket_state", bucket_state)

        runs: list[tuple[AuditWindow, str, dict[str, Any]]] = []
        for number in range(1, HOURS + 1):
            window = hour_window(FIRST_HOUR + number - 1)
            if number in S3_CUTS:
                # Every attempt of the first try is cut; the rule is used up by then, so the retry goes through.
                operation, after_bytes, _ = S3_CUTS[number]
                proxy.cut_after(after_bytes, operations={operation}, times=S3_ATTEMPTS)
            # A data-interval run's logical date is the end of the hour it exports.
            run = dag.test(logical_date=window.end_datetime)
            assert run.state == "success", f"run {number} ({window}) ended {run.state}"
            assert task_tries(run.run_id) == (2 if number in S3_CUTS else 1), number
            result = xcom_return_value(DAG_ID, run.run_id, "export")
            runs.append((window, run.run_id, result))
        assert proxy.cuts == S3_ATTEMPTS * len(S3_CUTS)
        assert sorted(proxy.operations(cut=True)) == sorted(
            op for op, _, _ in S3_CUTS.values() for _ in range(S3_ATTEMPTS)
        )

    # The faults did happen, all through the soak.
    statuses = source.stats.responses_by_status
    assert statuses.get(429, 0) >= 10 and statuses.get(503, 0) >= 20 and source.stats.connection_resets >= 15

    keys = {window: default_key("acme", window, None) for window, _, _ in runs}
    # The retried runs, and only they, failed with a message naming what failed and what to do, and left
    # nothing: between the failed try and its retry the bucket held the earlier hours' objects, no upload.
    by_run = {run_id: number for number, (_, run_id, _) in enumerate(runs, start=1)}
    assert sorted(by_run[run_id] for run_id, _, _ in _retried) == sorted(S3_CUTS)
    for run_id, error, state in _retried:
        number = by_run[run_id]
        message = str(error)
        assert message.startswith(S3_CUTS[number][2]), message
        assert f"Nothing of this run is visible in the bucket. Check that S3 is reachable at {proxy.url}" in message
        assert s3_server.secret_key not in message and s3_server.access_key not in message
        assert state == (sorted(keys[window] for window, _, _ in runs[: number - 1]), [])

    # Retention removed only entries older than the first hour: every entry of the twenty hours still exists.
    first_index, _ = dataset.index_range(hour_window(FIRST_HOUR).start, hour_window(FIRST_HOUR).end)
    low, high = dataset.visible_range()
    assert 0 < low < first_index, "retention must have run, and must not have reached the checked hours"
    assert high > 25 * ENTRIES_PER_HOUR  # and entries arrived throughout

    # Exactly the twenty objects, no unfinished upload.
    assert sorted(s3_server.list_keys(bucket)) == sorted(keys.values())
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []

    seen: Counter[str] = Counter()
    expected_all: Counter[str] = Counter()
    for window, _, result in runs:
        body = s3_server.get_object_bytes(bucket, keys[window]).decode("utf-8")
        lines = body.split("\n")[:-1]
        assert result["objects"] == [f"s3://{bucket}/{keys[window]}"] and result["records"] == len(lines)
        records = [json.loads(line) for line in lines]
        assert all(window.start <= to_ticks(record["createdOn"]) < window.end for record in records), window
        first, end = dataset.index_range(window.start, window.end)
        expected = Counter(json.dumps(dataset.entry(i), sort_keys=True) for i in range(first, end))
        got = Counter(json.dumps(record, sort_keys=True) for record in records)
        assert got == expected, f"{window}: {len(got - expected)} unexpected, {len(expected - got)} missing"
        seen.update(got)
        expected_all.update(expected)
    # Across all objects, each entry as often as the data set holds it (entries carry no id, and a few tie-group
    # members are identical, field for field): once.
    assert seen == expected_all
    assert sum(seen.values()) == sum(expected_all.values()) > HOURS * ENTRIES_PER_HOUR * 0.9
    print(f"soak: {HOURS} runs, {sum(seen.values())} entries, {source.stats} in {time.monotonic() - started:.1f}s")


def test_soak_windows_are_consecutive_hours():
    """The twenty windows tile twenty consecutive hours, none overlapping (so 'exactly once' is across all)."""
    windows = [hour_window(FIRST_HOUR + n) for n in range(HOURS)]
    assert all(a.end == b.start for a, b in itertools.pairwise(windows))
    assert windows[0].start_datetime == datetime.fromisoformat("2026-01-01T04:00:00+00:00")
    assert windows[-1].end_datetime == datetime.fromisoformat("2026-01-02T00:00:00+00:00")
