"""
Bad parameters fail before Orchestrator is asked anything: not one token request, not one audit request.

The window and the bucket come from DAG params through templates, as in a DAG triggered with a config,
and each scenario is a real ``dag.test()`` run whose conf overrides one of them. Arguments that are not
templated (``compression``, ``page_size``, ``max_concurrency``) are checked when the DAG file is parsed,
so the mistake shows as the DAG's import error, naming the task, before any run exists.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_orchestrator_audit.exceptions import AuditExportError, OrchestratorConfigError
from airflow_provider_orchestrator_audit.paging.window import WindowError
from tests.faults.scenario_helpers import (
    WINDOW,
    assert_failed_cleanly,
    export_kwargs,
    run_export,
    write_scenario_dag,
)

pytestmark = pytest.mark.usefixtures("airflow_db")

TEMPLATED = {
    "s3_bucket": "{{ params.bucket }}",
    "window_start": "{{ params.window_start }}",
    "window_end": "{{ params.window_end }}",
}


def nothing_was_asked(server) -> None:
    stats = server.stats
    assert (stats.audit_requests, stats.token_requests) == (0, 0), f"requests were sent: {stats}"


@pytest.mark.parametrize(
    ("conf", "error", "message"),
    [
        (
            {"window_start": WINDOW[1], "window_end": WINDOW[0]},
            WindowError,
            (
                "export: window_end 2026-01-01T00:10:00.0000000+00:00 is before window_start "
                "2026-01-01T00:20:00.0000000+00:00; swap them, or check the templates that render them"
            ),
        ),
        (
            {"window_start": "31/01/2026 13:00"},
            WindowError,
            (
                "export: window_start: '31/01/2026 13:00' is not an ISO-8601 timestamp; expected e.g. "
                "'2026-01-31T13:00:00Z'"
            ),
        ),
        (
            {"window_end": "2026-02-30T00:00:00Z"},
            WindowError,
            "export: window_end: '2026-02-30T00:00:00Z' is not a valid timestamp: day is out of range for month",
        ),
        (
            {"window_end": None},  # renders as "None": one bound given, the other not
            WindowError,
            "export: window_end is not set while the other bound is; set both or neither",
        ),
        ({"bucket": ""}, OrchestratorConfigError, "export: s3_bucket is empty"),
    ],
    ids=["end-before-start", "not-iso-8601", "no-such-day", "one-bound-missing", "empty-bucket"],
)
def test_bad_templated_values_fail_before_any_request(
    orchestrator, orchestrator_conn, bucket, s3_server, conf, error, message
):
    """A run whose conf gives an unusable window or bucket fails saying which value and why; nothing is asked or written."""
    params = {"bucket": bucket, "window_start": WINDOW[0], "window_end": WINDOW[1]}
    run = run_export(
        "bad_parameters_templated", export_kwargs(orchestrator_conn, bucket, **TEMPLATED), params=params, run_conf=conf
    )
    assert_failed_cleanly(run, s3_server, bucket, error, message)
    nothing_was_asked(orchestrator)


def test_a_bucket_that_does_not_exist_fails_before_any_request(orchestrator, orchestrator_conn, bucket, s3_server):
    """A templated bucket that is not there is found out with one S3 call, before anything is read."""
    params = {"bucket": bucket, "window_start": WINDOW[0], "window_end": WINDOW[1]}
    run = run_export(
        "bad_parameters_no_bucket",
        export_kwargs(orchestrator_conn, bucket, **TEMPLATED),
        params=params,
        run_conf={"bucket": "no-such-bucket-for-audit"},
    )
    assert_failed_cleanly(
        run, s3_server, bucket, AuditExportError, "S3 bucket 'no-such-bucket-for-audit'", "aws_conn_id='aws_default'"
    )
    assert "no-such-bucket-for-audit" not in s3_server.client().list_buckets()["Buckets"]
    nothing_was_asked(orchestrator)


def test_a_manual_run_without_a_window_says_how_to_give_one(orchestrator, orchestrator_conn, bucket, s3_server):
    """
    A DAG with ``schedule=None`` and no explicit window: its runs have an empty data interval, and the
    task says how to get a window instead of exporting nothing.
    """
    kwargs = export_kwargs(orchestrator_conn, bucket)
    del kwargs["window_start"], kwargs["window_end"]
    run = run_export("bad_parameters_manual_run", kwargs, schedule="None")
    assert_failed_cleanly(
        run,
        s3_server,
        bucket,
        WindowError,
        "export: this run's data interval is empty",
        "CronDataIntervalTimetable('0 * * * *', timezone='UTC')",
        "set window_start and window_end on the operator",
    )
    nothing_was_asked(orchestrator)


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ({"compression": "zip"}, "export: compression must be None or 'gzip', got 'zip'"),
        (
            {"compression": "gzip", "compression_level": 10},
            "export: compression_level must be an integer from 1 to 9, got 10",
        ),
        (
            {"compression_level": 5},
            "export: compression_level applies to compression='gzip' only (got 5 with compression=None)",
        ),
        ({"page_size": 0}, "export: page_size must be at least 1, got 0"),
        ({"page_size": -100}, "export: page_size must be at least 1, got -100"),
        ({"max_concurrency": 0}, "export: max_concurrency must be at least 1, got 0"),
        (
            {"request_retry_policy": {"max_atempts": 3}},
            (
                "export: request_retry_policy {'max_atempts': 3} is not usable: RetryPolicy.__init__() got an "
                "unexpected keyword argument 'max_atempts'"
            ),
        ),
        (
            {"request_retry_policy": {"max_attempts": 0}},
            "export: request_retry_policy {'max_attempts': 0} is not usable: max_attempts must be at least 1, got 0",
        ),
    ],
    ids=[
        "unknown-compression",
        "gzip-level-10",
        "level-without-gzip",
        "page-size-0",
        "page-size-negative",
        "no-concurrency",
        "retry-policy-misspelt",
        "retry-policy-no-attempts",
    ],
)
def test_bad_operator_arguments_are_import_errors_of_the_dag(
    orchestrator, orchestrator_conn, bucket, s3_server, argument, message
):
    """The DAG file does not load; Airflow lists the error for the file, and no run ever starts."""
    from airflow.dag_processing.dagbag import DagBag

    path = write_scenario_dag("bad_parameters_parse", export_kwargs(orchestrator_conn, bucket, **argument))
    try:
        bag = DagBag(dag_folder=str(path))
    finally:
        Path(path).unlink()
    assert bag.dag_ids == []
    assert message in bag.import_errors[str(path)]
    nothing_was_asked(orchestrator)
    assert s3_server.list_keys(bucket) == []
