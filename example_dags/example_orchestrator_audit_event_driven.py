"""
### Export UiPath Orchestrator audit entries when there are new ones

Every 10 minutes a run waits, deferred in the triggerer (no worker slot), until the audit log holds
entries it has not exported yet, then exports everything since the previous export to S3. A quiet
period skips the run; the next run picks up where the last export ended, so windows are contiguous
and every entry is exported once.

"New" is either condition of ``AuditLogsTotalCountSensor``:

* ``totalCount`` grew past the count the previous run saw (kept in that run's XCom), or
* the newest entry's ``createdOn`` is later than the end of the last export. Retention removes old
  entries as new ones arrive, so the count alone can miss activity; this condition cannot.

A window ends one minute before the export starts (``SETTLE``), so that an entry committed a moment
after its ``createdOn`` is not skipped; an entry written in that last minute goes to the next run's window.
The first run, with no export to continue from, exports the ``first_window_hours`` before it.

There are no window params: each window starts where the previous export ended, and an ad hoc window
would break that chain. Use this DAG *instead of* the hourly one for a bucket and prefix, not next to
it: their windows differ, so their objects would hold the same entries under different keys.

**Failures**: the hook retries throttling, server errors and timeouts for up to 10 minutes within a try;
the tasks' retries, about 1-2 and 2-4 minutes apart, cover longer outages. A retried export reads the
window its run computed, so it rewrites the same key.

**Setup**: the connections ``orchestrator_audit_default`` and ``aws_default`` and the variable
``orchestrator_audit_bucket``, as for ``example_orchestrator_audit_to_s3``; a triggerer must be running.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow_provider_orchestrator_audit.compat import DAG, CronTriggerTimetable, Param, exponential_backoff, task
from airflow_provider_orchestrator_audit.sensors.audit_logs import AuditLogsTotalCountSensor
from airflow_provider_orchestrator_audit.timestamps import format_ticks, to_ticks
from airflow_provider_orchestrator_audit.transfers.audit_logs_to_s3 import AuditLogsToS3Operator

WAIT_TASK_ID = "wait_for_new_audit_entries"
EXPORT_TASK_ID = "export_new_audit_entries"
#: How far behind "now" a window ends: entries are committed a little after their ``createdOn``.
SETTLE = timedelta(minutes=1)

with DAG(
    dag_id="example_orchestrator_audit_event_driven",
    # The window comes from the previous export, not from a data interval: a trigger timetable is enough.
    schedule=CronTriggerTimetable("*/10 * * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    # Runs continue from each other's XComs: one at a time.
    max_active_runs=1,
    doc_md=__doc__,
    tags=["uipath", "audit", "s3", "event-driven"],
    params={
        "first_window_hours": Param(
            24, type="integer", minimum=1, description="Hours exported by the first run, which has no export before it"
        ),
    },
    # Short retries: the next run is due 10 minutes later and waits for this one (max_active_runs=1).
    default_args={
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": exponential_backoff(2.0),
        "max_retry_delay": timedelta(minutes=4),
    },
) as dag:

    @task(multiple_outputs=True)
    def previous_run(**context: Any) -> dict[str, Any]:
        """The count the last successful wait saw, and where the last export ended (or the first window's start)."""
        ti = context["ti"]
        # map_indexes=-1 returns the newest value; without it, Airflow 3 returns a list of every earlier
        # run's value as soon as there are two.
        last_seen_count = ti.xcom_pull(task_ids=WAIT_TASK_ID, include_prior_dates=True, map_indexes=-1)
        last_export = ti.xcom_pull(task_ids=EXPORT_TASK_ID, include_prior_dates=True, map_indexes=-1)
        if last_export:
            exported_until = last_export["window_end"]
        else:
            # A scheduled run's logical date is its cron tick; a manual run may have none.
            moment = context.get("logical_date") or context["dag_run"].run_after
            hours = int(context["params"]["first_window_hours"])
            exported_until = format_ticks(to_ticks(moment - timedelta(hours=hours)))
        return {"last_seen_count": last_seen_count, "exported_until": exported_until}

    @task(multiple_outputs=True)
    def export_window(exported_until: str) -> dict[str, str]:
        """From the end of the last export to a minute ago (never before the start: an empty window is fine)."""
        end = max(to_ticks(datetime.now(UTC) - SETTLE), to_ticks(exported_until))
        return {"window_start": exported_until, "window_end": format_ticks(end)}

    state = previous_run()
    wait = AuditLogsTotalCountSensor(
        task_id=WAIT_TASK_ID,
        # None on the first run: then only newer_than (the first window's start) is checked.
        baseline_count=state["last_seen_count"],
        newer_than=state["exported_until"],
        deferrable=True,
        poke_interval=60,
        timeout=timedelta(minutes=9),
        # Nothing new before the next run is due: skip the export. Errors still fail the task.
        soft_fail=True,
    )
    window = export_window(state["exported_until"])
    wait >> window
    AuditLogsToS3Operator(
        task_id=EXPORT_TASK_ID,
        s3_bucket="{{ var.value.get('orchestrator_audit_bucket', 'audit-logs') }}",
        window_start=window["window_start"],
        window_end=window["window_end"],
        compression="gzip",
    )
