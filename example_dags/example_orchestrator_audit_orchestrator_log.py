"""
### Export a tenant's Orchestrator audit log (its *Audit* page) to S3, hour by hour

Every hour, the tenant's Orchestrator audit entries of that hour (who started which job, changed which
process, asset, queue, robot or folder; ``data_interval_start <= ExecutionTime < data_interval_end``,
from ``{org}/{tenant}/orchestrator_/odata/AuditLogs``) are written to one JSON-lines object, each line
the server's own JSON text of one entry with the entities it changed, under
``orchestrator-audit/organization=<org>/source=orchestrator/tenant=<tenant>/dt=.../hour=.../``. Reruns
and backfills overwrite the same key instead of duplicating.

**Setup**

1. Connection ``orchestrator_audit_default`` (type *UiPath Orchestrator Audit*), Client ID and Client
   secret of a confidential external application with the scope ``OR.Audit.Read`` (its identity also
   needs the tenant's Audit View permission). The hook asks the identity server for ``OR.Audit.Read``
   by itself; leave the form's Scope at its default.

   * Automation Cloud: Base URL ``https://cloud.uipath.com``, Organization and Tenant as in
     ``https://cloud.uipath.com/<org>/<tenant>``.
   * Automation Suite: the same with Base URL ``https://<your domain>``.
   * Standalone Orchestrator: only *Orchestrator URL* ``https://<server>`` (the token URL, organization
     and host follow from it); no tenant is needed.
2. Connection ``aws_default`` with write access to the bucket, and the variable
   ``orchestrator_audit_bucket`` naming it (default ``audit-logs``).

**Params**: ``tenant`` exports another tenant than the connection's; ``window_start`` and
``window_end`` (ISO-8601, both or neither) export any window instead of the run's data interval.

**Late entries**: the export of an hour waits until it is 10 minutes old (``min_age``; the task defers,
holding no worker slot), so that entries written just after their ``ExecutionTime`` are in it.

**Limits**: up to 8 pages of 1,000 entries are in flight per run and at most 2 runs at once; throttling
(429) and server errors are retried by the hook, longer outages by the task's retries.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow_provider_orchestrator_audit.compat import DAG, CronDataIntervalTimetable, Param, exponential_backoff
from airflow_provider_orchestrator_audit.transfers.audit_logs_to_s3 import AuditLogsToS3Operator

with DAG(
    dag_id="example_orchestrator_audit_orchestrator_log",
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=2,
    doc_md=__doc__,
    tags=["uipath", "audit", "s3"],
    params={
        "tenant": Param(None, type=["null", "string"], description="tenant name; empty: the connection's extra tenant"),
        "window_start": Param(
            None, type=["null", "string"], description="ISO-8601 start; empty: the run's data interval"
        ),
        "window_end": Param(None, type=["null", "string"], description="ISO-8601 end (exclusive)"),
    },
    default_args={
        "retries": 3,
        "retry_delay": timedelta(minutes=2),
        "retry_exponential_backoff": exponential_backoff(2.0),
        "max_retry_delay": timedelta(minutes=30),
    },
) as dag:
    AuditLogsToS3Operator(
        task_id="export_orchestrator_audit_log",
        source="orchestrator",
        # Unset params render as "None": the operator then uses the connection's tenant and the data interval.
        tenant="{{ params.tenant }}",
        window_start="{{ params.window_start }}",
        window_end="{{ params.window_end }}",
        include_entities=True,
        min_age=timedelta(minutes=10),
        s3_bucket="{{ var.value.get('orchestrator_audit_bucket', 'audit-logs') }}",
        compression="gzip",
    )
