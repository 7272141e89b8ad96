"""
### Backfill UiPath Orchestrator audit logs to S3 in parallel, one mapped task per sub-window

A run cuts its window into sub-windows of ``hours_per_task`` hours (the last one shorter when the
window is not a whole number of them) and exports each with its own mapped
``AuditLogsToS3Operator`` task. Each sub-window goes to its own key, derived from the organization
and the sub-window's bounds, so the mapped tasks share nothing: they can run at the same time on
different workers, a failed one is retried alone, and a rerun overwrites its object instead of
duplicating it. With ``hours_per_task = 1`` and whole-hour windows the keys are exactly the ones
``example_orchestrator_audit_to_s3`` writes, so the two DAGs fill the same objects.

**The window**: the run's data interval (one day on schedule, or each day of
``airflow backfill create --dag-id example_orchestrator_audit_mapped_backfill --from-date ... --to-date ...``),
or any window given as the params ``window_start`` and ``window_end`` on *Trigger* (ISO-8601 such as
``2025-06-01T00:00:00Z``; both or neither). Without them, a manual run given a logical date exports the
last whole day before it; one given no logical date has no interval and fails at once, saying so.

**Why ``expand_kwargs``**: ``.partial(...).expand(window_start=[...], window_end=[...])`` would map
over the cross product of the two lists, pairing every start with every end. ``expand_kwargs`` takes
one dict per sub-window, so each task gets the start and end of the same sub-window.

**Limits**: at most ``max_active_tis_per_dag`` = 4 sub-windows are exported at once across all runs
(each with up to 4 requests in flight), so a year-long backfill does not flood Orchestrator's rate
limits; queued sub-windows wait for a free slot. To share one budget with other DAGs that read the
same organization, create a pool and set ``pool=`` on the export. A window may hold at most
``[core] max_map_length`` (1,024 by default) sub-windows: choose a larger ``hours_per_task`` for
longer windows. Keep ``hours_per_task`` fixed for a given range: objects of a different length have
other keys, and the earlier ones would stay next to them.

**Setup**: the connections ``orchestrator_audit_default`` and ``aws_default`` and the variable
``orchestrator_audit_bucket``, as for ``example_orchestrator_audit_to_s3``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow_provider_orchestrator_audit.compat import (
    DAG,
    CronDataIntervalTimetable,
    Param,
    conf,
    exponential_backoff,
    task,
)
from airflow_provider_orchestrator_audit.paging.window import AuditWindow, WindowError, split_window
from airflow_provider_orchestrator_audit.templating import unset_to_none
from airflow_provider_orchestrator_audit.timestamps import format_ticks
from airflow_provider_orchestrator_audit.transfers.audit_logs_to_s3 import AuditLogsToS3Operator

SPLIT_TASK_ID = "split_into_sub_windows"
EXPORT_TASK_ID = "export_sub_window"

with DAG(
    dag_id="example_orchestrator_audit_mapped_backfill",
    # Daily runs with a data interval, each exported as hourly sub-windows; backfills create one run per day.
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    # The export's max_active_tis_per_dag bounds the load on Orchestrator; two runs keep the slots busy
    # while one run's last sub-windows finish.
    max_active_runs=2,
    doc_md=__doc__,
    tags=["uipath", "audit", "s3", "backfill"],
    params={
        "window_start": Param(
            None, type=["null", "string"], description="ISO-8601 start; empty: the run's data interval"
        ),
        "window_end": Param(None, type=["null", "string"], description="ISO-8601 end (exclusive)"),
        "hours_per_task": Param(
            1, type="integer", minimum=1, description="Hours per mapped export task; the last one may be shorter"
        ),
    },
    default_args={
        # The hook already retries throttling and server errors for up to 10 minutes within a try:
        # these retries are for longer outages, about 2-4, 4-8 and 8-16 minutes apart.
        "retries": 3,
        "retry_delay": timedelta(minutes=2),
        "retry_exponential_backoff": exponential_backoff(2.0),
        "max_retry_delay": timedelta(minutes=30),
    },
) as dag:

    @task(task_id=SPLIT_TASK_ID)
    def split_into_sub_windows(**context: Any) -> list[dict[str, str]]:
        """
        The sub-windows to export, as the keyword arguments of one mapped export task each.

        Bounds are formatted with all 7 fractional digits, so a window given to the tick is split to the tick.
        """
        params = context["params"]
        start, end = unset_to_none(params.get("window_start")), unset_to_none(params.get("window_end"))
        if (start is None) != (end is None):
            missing = "window_end" if end is None else "window_start"
            raise WindowError(f"{missing} is not set while the other bound is; set both or neither")
        if start is None:
            start, end = context.get("data_interval_start"), context.get("data_interval_end")
            if start is None or end is None or start == end:
                raise WindowError(
                    "this run has no data interval to split (a manual run has one only when given a logical "
                    "date): trigger it with the params window_start and window_end, or with a logical date"
                )
        window = AuditWindow.parse(start, end)
        # Airflow refuses to map more than [core] max_map_length values, with a less helpful message.
        max_map_length = conf.getint("core", "max_map_length", fallback=1024)
        try:
            sub_windows = split_window(window, timedelta(hours=int(params["hours_per_task"])), max_parts=max_map_length)
        except WindowError as error:
            raise WindowError(f"{error} (raise the param hours_per_task, or [core] max_map_length)") from None
        return [
            {"window_start": format_ticks(part.start), "window_end": format_ticks(part.end)} for part in sub_windows
        ]

    AuditLogsToS3Operator.partial(
        task_id=EXPORT_TASK_ID,
        s3_bucket="{{ var.value.get('orchestrator_audit_bucket', 'audit-logs') }}",
        compression="gzip",
        # 4 sub-windows at once with 4 pages each: at most 16 requests in flight for the whole backfill.
        max_concurrency=4,
        max_active_tis_per_dag=4,
        # The grid names each mapped task by its sub-window instead of a bare index.
        map_index_template="{{ task.window_start }}",
    ).expand_kwargs(split_into_sub_windows())
