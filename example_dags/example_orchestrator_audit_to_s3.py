"""
### Export UiPath Orchestrator audit logs to S3, hour by hour

Every hour, the entries created in that hour (``data_interval_start <= createdOn < data_interval_end``)
are written to one JSON-lines object in S3 whose key is derived from the organization and the hour,
so reruns and backfills overwrite instead of duplicating.

**Setup**

1. Connection ``orchestrator_audit_default`` (type *UiPath Orchestrator Audit*): Base URL
   ``https://cloud.uipath.com``, Client ID and Client secret of a confidential external application
   with the scope ``PM.Audit.Read``, Organization = your organization's URL name.
2. Connection ``aws_default`` with write access to the bucket (for S3-compatible storage, set
   ``endpoint_url`` in its extra).
3. Variable ``orchestrator_audit_bucket`` naming the bucket (default ``audit-logs``).

**Any window**: *Trigger* the DAG with the params ``window_start`` and ``window_end`` (ISO-8601 such as
``2026-01-31T13:00:00Z``; an offset or ``Z`` may be given, none means UTC). Set both or neither: with
neither the run exports its data interval, with only one the export fails at once, naming the missing
bound. For long backfills, ``example_orchestrator_audit_mapped_backfill`` splits a window into many
tasks that run in parallel.

**Failures**: the hook retries throttling (429), server errors and timeouts for up to 10 minutes within
one try; the task's retries, about 2-4, 4-8 and 8-16 minutes apart (never more than 30), cover longer
outages. A retry rewrites the same key, and nothing is visible in S3 before a window is complete.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow_provider_orchestrator_audit.compat import DAG, CronDataIntervalTimetable, Param, exponential_backoff
from airflow_provider_orchestrator_audit.transfers.audit_logs_to_s3 import AuditLogsToS3Operator

with DAG(
    dag_id="example_orchestrator_audit_to_s3",
    # A timetable with data intervals: "@hourly" alone gives Airflow 3 runs with an empty interval.
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    # Backfills and manual windows may run next to the hourly run: at most 4 runs, each with up to 8 pages
    # in flight, bounds the load on Orchestrator (a 429 makes the hook back off).
    max_active_runs=4,
    doc_md=__doc__,
    tags=["uipath", "audit", "s3"],
    params={
        "window_start": Param(
            None, type=["null", "string"], description="ISO-8601 start; empty: the run's data interval"
        ),
        "window_end": Param(None, type=["null", "string"], description="ISO-8601 end (exclusive)"),
    },
    default_args={
        "retries": 3,
        "retry_delay": timedelta(minutes=2),
        # Doubles the delay each try (a multiplier from Airflow 3.3, a flag before), capped by max_retry_delay.
        "retry_exponential_backoff": exponential_backoff(2.0),
        "max_retry_delay": timedelta(minutes=30),
    },
) as dag:
    AuditLogsToS3Operator(
        task_id="export_audit_logs",
        s3_bucket="{{ var.value.get('orchestrator_audit_bucket', 'audit-logs') }}",
        # Unset params render as "None": the operator then exports the run's data interval.
        window_start="{{ params.window_start }}",
        window_end="{{ params.window_end }}",
        compression="gzip",
    )
