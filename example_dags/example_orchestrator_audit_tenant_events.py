"""
### Export UiPath's tenant audit events to S3, hour by hour, one mapped task per tenant

Every hour, each tenant's audit events of that hour (``data_interval_start <= createdOn <
data_interval_end``, from ``{org}/{tenant}/tenantaudit_/api/query/events``) are written to one
JSON-lines object per tenant, each line the server's own JSON text of one event, under
``orchestrator-audit/organization=<org>/source=tenant_events/tenant=<tenant>/dt=.../hour=.../``.
The tenants are one mapped ``AuditLogsToS3Operator`` task each: they run in parallel, a failed one is
retried alone, and a rerun overwrites its own object.

**Setup**

1. Connection ``orchestrator_audit_default`` (type *UiPath Orchestrator Audit*) as for
   ``example_orchestrator_audit_to_s3``; the external application needs the scope ``PM.Audit.Read``.
2. Connection ``aws_default`` with write access to the bucket, and the variable
   ``orchestrator_audit_bucket`` naming it (default ``audit-logs``).
3. The tenants to export: the param ``tenants`` (their names as in your Orchestrator URL,
   ``https://cloud.uipath.com/<org>/<tenant>``); *Trigger* the DAG with another list to export others.

**Late events**: events can be recorded some time after their ``createdOn``. ``min_age`` on the operator
exports an hour only once it is that old (the task waits by deferring, holding no worker slot); set it
to what your organization's audit pipeline needs.

**Limits**: at most 4 tenants are exported at once (``max_active_tis_per_dag``), each with up to 8
requests in flight; throttling (429) is backed off per task.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow_provider_orchestrator_audit.compat import DAG, CronDataIntervalTimetable, Param, exponential_backoff, task
from airflow_provider_orchestrator_audit.transfers.audit_logs_to_s3 import AuditLogsToS3Operator

with DAG(
    dag_id="example_orchestrator_audit_tenant_events",
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=2,
    doc_md=__doc__,
    tags=["uipath", "audit", "s3"],
    params={
        "tenants": Param(
            ["DefaultTenant"],
            type="array",
            items={"type": "string", "minLength": 1},
            minItems=1,
            description="tenant names, as in https://cloud.uipath.com/<org>/<tenant>",
        ),
    },
    default_args={
        "retries": 3,
        "retry_delay": timedelta(minutes=2),
        "retry_exponential_backoff": exponential_backoff(2.0),
        "max_retry_delay": timedelta(minutes=30),
    },
) as dag:

    @task
    def tenants_to_export(params: dict[str, Any] | None = None) -> list[str]:
        """The run's tenants, each name once, in the order given."""
        names = [str(name).strip() for name in (params or {}).get("tenants", [])]
        return list(dict.fromkeys(name for name in names if name))

    AuditLogsToS3Operator.partial(
        task_id="export_tenant_events",
        source="tenant_events",
        s3_bucket="{{ var.value.get('orchestrator_audit_bucket', 'audit-logs') }}",
        compression="gzip",
        max_active_tis_per_dag=4,
    ).expand(tenant=tenants_to_export())
