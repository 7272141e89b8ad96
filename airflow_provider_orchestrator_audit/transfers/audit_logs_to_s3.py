"""Export one date-bounded window of an organization's audit log to S3 as JSON lines, exactly once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import closing
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_orchestrator_audit.client.events import TENANT_ADVICE, EventsQuery, events_url
from airflow_provider_orchestrator_audit.client.odata import MAX_TOP, ORCHESTRATOR_TENANT_ADVICE, orchestrator_audit_url
from airflow_provider_orchestrator_audit.client.retry import RetryPolicy
from airflow_provider_orchestrator_audit.compat import BaseOperator, datetime_trigger, get_hook_lineage_collector
from airflow_provider_orchestrator_audit.event_models import SOURCE_LEVELS, SOURCES, EventLinesPage
from airflow_provider_orchestrator_audit.exceptions import OrchestratorConfigError
from airflow_provider_orchestrator_audit.export.events_reader import EventWindowReader
from airflow_provider_orchestrator_audit.export.heap import collect_only_new_objects
from airflow_provider_orchestrator_audit.export.keys import DEFAULT_PREFIX, default_key
from airflow_provider_orchestrator_audit.export.orchestrator_reader import OrchestratorWindowReader
from airflow_provider_orchestrator_audit.export.reader import WindowReader
from airflow_provider_orchestrator_audit.export.s3_object_settings import ObjectSettings, ObjectSettingsError
from airflow_provider_orchestrator_audit.export.s3_sink import S3JsonLinesSink
from airflow_provider_orchestrator_audit.export.spool import COMPRESSIONS, checked_gzip_level
from airflow_provider_orchestrator_audit.hooks.orchestrator_audit import OrchestratorAuditHook
from airflow_provider_orchestrator_audit.orchestrator_models import ORCHESTRATOR_SOURCE
from airflow_provider_orchestrator_audit.paging.event_slices import EventsRequest
from airflow_provider_orchestrator_audit.paging.odata_keyset import KeysetRequest
from airflow_provider_orchestrator_audit.paging.window import AuditWindow, WindowError
from airflow_provider_orchestrator_audit.templating import unset_to_none
from airflow_provider_orchestrator_audit.timestamps import format_ticks, ticks_to_datetime
from airflow_provider_orchestrator_audit.validation import checked_int

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from airflow_provider_orchestrator_audit.compat import Context

__all__ = ["DEFAULT_EVENTS_MIN_AGE", "SOURCES", "AuditLogsToS3Operator"]

#: Events asked for per page of the event sources (the cap UiPath reports); the server may give fewer.
DEFAULT_EVENTS_PAGE_SIZE = 200

_MANUAL_RUN_ADVICE = (
    "set window_start and window_end on the operator (ISO-8601, e.g. '2026-01-31T13:00:00Z'; templates such as "
    "'{{ params.window_start }}' work), or trigger the DAG with a data interval (a scheduled run or a backfill)"
)


#: How long after ``window_end`` the event sources wait by default. UiPath does not document how late an event
#: can be recorded (its long-term store lags by a day or two); the live API's events appear within minutes,
#: so ten minutes keeps an hourly export timely while leaving late events time to arrive.
DEFAULT_EVENTS_MIN_AGE = timedelta(minutes=10)
#: ``min_age`` not given: None for the classic source, :data:`DEFAULT_EVENTS_MIN_AGE` for the event sources.
_SOURCE_DEFAULT: Any = object()


def _min_age(task_id: str, value: timedelta | float | None) -> timedelta | None:
    """The operator's ``min_age`` as a duration; a bad one fails the DAG's import, naming the task."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        age = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        age = timedelta(seconds=value)
    else:
        raise ValueError(f"{task_id}: min_age must be a timedelta, a number of seconds or None, got {value!r}")
    if age < timedelta(0):
        raise ValueError(f"{task_id}: min_age must not be negative, got {value!r}")
    return age or None


def _request_retry_policy(task_id: str, value: RetryPolicy | Mapping[str, Any] | None) -> RetryPolicy:
    """The operator's ``request_retry_policy`` as a policy; a bad one fails the DAG's import, naming the task."""
    if value is None:
        return RetryPolicy()
    if isinstance(value, RetryPolicy):
        return value
    if isinstance(value, Mapping):
        try:
            return RetryPolicy(**value)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{task_id}: request_retry_policy {dict(value)!r} is not usable: {error}") from None
    raise ValueError(
        f"{task_id}: request_retry_policy must be a RetryPolicy, a dict of its fields or None, got {value!r}"
    )


class AuditLogsToS3Operator(BaseOperator):
    """
    Export the audit entries with ``window_start <= createdOn < window_end`` to S3 as JSON lines, each once.

    Lines are the server's own text of each entry; keys derive from the organization, the source and the
    window, so reruns and backfills overwrite instead of duplicating; nothing is visible until the whole
    window is read. How the window is located, paged and kept exact, and how uploads are cleaned up after
    a failure: README, "How exactness works" and "Faults, bad input and secrets".

    Example::

        AuditLogsToS3Operator(
            task_id="export_audit_logs",
            s3_bucket="audit-logs",
            compression="gzip",
            min_age=timedelta(minutes=10),
        )

    :param s3_bucket: the destination bucket. (templated)
    :param s3_key: the object key; by default
        ``{s3_prefix}/organization={org}/dt={YYYY-MM-DD}/hour={HH}/{start}_{end}.jsonl[.gz]``, from the
        window's start. With ``max_records_per_file``, parts are named ``<key stem>.part-00000.jsonl``.
        (templated)
    :param window_start: inclusive start; an ISO-8601 string with any UTC offset or ``Z`` (a string without
        one is read as UTC), or a datetime. Default: the run's ``data_interval_start``. (templated)
    :param window_end: exclusive end, likewise. Default: the run's ``data_interval_end``. (templated)
    :param orchestrator_conn_id: the ``orchestrator_audit`` connection.
    :param aws_conn_id: the AWS connection of the destination (its ``endpoint_url`` is honoured).
    :param compression: None or ``"gzip"``.
    :param compression_level: with ``compression="gzip"``, zlib's level from 1 (fastest) to 9 (smallest objects);
        default 3, the fastest levels' smallest output (level 9 makes objects about a fifth smaller for about
        4.5 times the compressing CPU).
    :param page_size: entries per request; default: 1,000, or fewer if the server gives fewer per page.
    :param max_concurrency: pages fetched at the same time.
    :param max_records_per_file: split the window into parts of at most this many records.
    :param s3_prefix: the first part of the default key. (templated)
    :param language: the ``language`` query parameter, e.g. ``en``.
    :param request_retry_policy: how each request to Orchestrator is retried (429, 5xx, resets, timeouts, garbled
        bodies): a :class:`~airflow_provider_orchestrator_audit.client.retry.RetryPolicy` or a dict of its
        fields, e.g. ``{"max_attempts": 4, "max_elapsed": 120}``. Default: ``RetryPolicy()``, up to 8
        attempts within 10 minutes; lower it where Airflow's own task retries should take over sooner. (Not
        to be confused with Airflow's ``retry_policy`` of the task itself, which this operator leaves alone.)
    :param encrypt: write every object with SSE-S3 (``x-amz-server-side-encryption: AES256``).
    :param acl_policy: a canned ACL for every object, e.g. ``"bucket-owner-full-control"``.
    :param s3_extra_args: more settings of every object, as ``PutObject`` names them: SSE-KMS
        (``{"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": ..., "BucketKeyEnabled": True}``), SSE-C,
        ``StorageClass``, ``Tagging`` (a string or a dict), ``Metadata``, ``ContentType``, ... They go with
        every write (``PutObject``, ``CreateMultipartUpload``, and where S3 needs them ``UploadPart``),
        over the S3 hook's own ``extra_args``. Objects are ``application/x-ndjson``, or ``application/gzip``
        with ``compression="gzip"``.
    :param min_age: export the window only once it is this old (a ``timedelta`` or seconds): until
        ``window_end + min_age`` the task waits by deferring, holding no worker slot, so that entries
        recorded late have arrived. Default: no wait for ``source="classic"``, 10 minutes
        (:data:`DEFAULT_EVENTS_MIN_AGE`) for the event sources and ``"orchestrator"``; None turns the wait off.
    :param source: ``"classic"`` (default: ``GET {org}/audit_/api/auditlogs``), ``"organization_events"``
        (the unified audit events, ``{org}/orgaudit_/api/query/events``) or ``"tenant_events"``
        (``{org}/{tenant}/tenantaudit_/api/query/events``). Event sources read the window as disjoint time
        slices, their cursor chains fetched ``max_concurrency`` at a time, and write each event's own JSON
        text once; ``page_size`` is their ``maxCount`` (default 200). ``"orchestrator"``: Orchestrator's own
        audit log of a tenant (``{org}/{tenant}/orchestrator_/odata/AuditLogs``, or a standalone
        Orchestrator's ``odata/AuditLogs`` with the connection's extra ``orchestrator_url``; scope
        ``OR.Audit.Read``), read as disjoint time slices paged by ``Id``, ``max_concurrency`` at a time;
        ``page_size`` is its ``$top`` (default and most: 1000).
    :param tenant: the tenant of ``source="tenant_events"`` and ``source="orchestrator"``, as in your
        Orchestrator URL; default: the connection's extra ``tenant``. (templated)
    :param include_entities: for ``source="orchestrator"``: ask for each entry's changed entities in the same
        request (``$expand=Entities``), written in its line.
    """

    template_fields: Sequence[str] = ("s3_bucket", "s3_key", "window_start", "window_end", "s3_prefix", "tenant")
    ui_color = "#fa4616"

    def __init__(
        self,
        *,
        s3_bucket: str,
        s3_key: str | None = None,
        window_start: str | datetime | date | None = None,
        window_end: str | datetime | date | None = None,
        orchestrator_conn_id: str = OrchestratorAuditHook.default_conn_name,
        aws_conn_id: str | None = "aws_default",
        compression: str | None = None,
        page_size: int | None = None,
        max_concurrency: int = 8,
        max_records_per_file: int | None = None,
        s3_prefix: str = DEFAULT_PREFIX,
        language: str | None = None,
        request_retry_policy: RetryPolicy | Mapping[str, Any] | None = None,
        encrypt: bool = False,
        acl_policy: str | None = None,
        s3_extra_args: Mapping[str, Any] | None = None,
        min_age: timedelta | float | None = _SOURCE_DEFAULT,
        source: str = "classic",
        tenant: str | None = None,
        include_entities: bool = True,
        compression_level: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # Checked here so that a DAG with a bad value fails to import, with the task named.
        if compression not in COMPRESSIONS:
            raise ValueError(f"{self.task_id}: compression must be None or 'gzip', got {compression!r}")
        checked_gzip_level(compression, compression_level, name=f"{self.task_id}: compression_level")
        for name, value in (("page_size", page_size), ("max_records_per_file", max_records_per_file)):
            if value is not None:
                checked_int(f"{self.task_id}: {name}", value)
        checked_int(f"{self.task_id}: max_concurrency", max_concurrency)
        self.s3_bucket = s3_bucket
        self.s3_key = s3_key
        self.window_start = window_start
        self.window_end = window_end
        self.orchestrator_conn_id = orchestrator_conn_id
        self.aws_conn_id = aws_conn_id
        self.compression = compression
        self.compression_level = compression_level
        self.page_size = page_size
        self.max_concurrency = max_concurrency
        self.max_records_per_file = max_records_per_file
        self.s3_prefix = s3_prefix
        self.language = language
        self.request_retry_policy = _request_retry_policy(self.task_id, request_retry_policy)
        self.encrypt = encrypt
        self.acl_policy = acl_policy
        self.s3_extra_args = dict(s3_extra_args) if isinstance(s3_extra_args, Mapping) else s3_extra_args
        self.object_settings()  # a bad value fails the DAG's import, naming the task
        if source not in SOURCES:
            raise ValueError(f"{self.task_id}: source must be one of {', '.join(map(repr, SOURCES))}, got {source!r}")
        if source == ORCHESTRATOR_SOURCE and page_size is not None and page_size > MAX_TOP:
            raise ValueError(f"{self.task_id}: page_size is $top for source='orchestrator': at most {MAX_TOP}")
        self.source = source
        if min_age is _SOURCE_DEFAULT:
            min_age = None if source == "classic" else DEFAULT_EVENTS_MIN_AGE
        self.min_age = _min_age(self.task_id, min_age)
        self.tenant = tenant
        self.include_entities = include_entities
        self._written: list[str] = []

    @cached_property
    def orchestrator_hook(self) -> OrchestratorAuditHook:
        """The source: one organization's audit log."""
        return OrchestratorAuditHook(
            self.orchestrator_conn_id, retry_policy=self.request_retry_policy, max_connections=self.max_concurrency * 2
        )

    @cached_property
    def s3_hook(self) -> S3Hook:
        """The destination, through the amazon provider."""
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        return S3Hook(aws_conn_id=self.aws_conn_id)

    def object_settings(self, hook_extra_args: Mapping[str, Any] | None = None) -> ObjectSettings:
        """What every object is written with: ``encrypt``, ``acl_policy`` and ``s3_extra_args`` over the hook's."""
        try:
            return ObjectSettings.build(
                encrypt=self.encrypt,
                acl_policy=self.acl_policy,
                s3_extra_args=self.s3_extra_args,
                compression=self.compression,
                hook_extra_args=hook_extra_args,
            )
        except ObjectSettingsError as error:
            raise ObjectSettingsError(f"{self.task_id}: {error}") from None

    def resolve_window(self, context: Context) -> AuditWindow:
        """
        The window to export: the explicit bounds, else the run's data interval.

        :raises WindowError: when neither gives a usable window, saying how to set one.
        """
        start, end = unset_to_none(self.window_start), unset_to_none(self.window_end)
        if (start is None) != (end is None):
            missing = "window_end" if end is None else "window_start"
            raise WindowError(f"{self.task_id}: {missing} is not set while the other bound is; set both or neither")
        if start is None:
            start, end = context.get("data_interval_start"), context.get("data_interval_end")
            if start is None or end is None:
                raise WindowError(f"{self.task_id}: this run has no data interval to export; {_MANUAL_RUN_ADVICE}")
            if start == end:
                raise WindowError(
                    f"{self.task_id}: this run's data interval is empty ({start} to {end}). Manual runs have no "
                    "interval, and neither do runs of schedule='@hourly' or a cron string in Airflow 3 (they use "
                    "CronTriggerTimetable): schedule the DAG with CronDataIntervalTimetable('0 * * * *', "
                    f"timezone='UTC') or DeltaDataIntervalTimetable(timedelta(hours=1)), or {_MANUAL_RUN_ADVICE}"
                )
        try:
            return AuditWindow.parse(start, end)
        except WindowError as error:
            raise WindowError(f"{self.task_id}: {error}") from None

    def execute(self, context: Context) -> dict[str, Any]:
        window = self.resolve_window(context)
        if not self.s3_bucket:
            raise OrchestratorConfigError(f"{self.task_id}: s3_bucket is empty")
        self._defer_until_old_enough(window)
        return self._export(window)

    def execute_after_wait(self, context: Context, event: Any = None) -> dict[str, Any]:
        """Resume after :meth:`_defer_until_old_enough`: the window is old enough now."""
        return self._export(self.resolve_window(context))

    def _defer_until_old_enough(self, window: AuditWindow) -> None:
        """
        With ``min_age``, wait in the triggerer (no worker slot held) until ``window_end + min_age``:
        entries recorded late into the window have then had that long to arrive.
        """
        if self.min_age is None:
            return
        ready_at = ticks_to_datetime(window.end) + self.min_age
        if datetime.now(UTC) >= ready_at:
            return
        self.log.info(
            "Window %s is younger than min_age (%s): waiting in the triggerer until %s",
            window,
            self.min_age,
            ready_at.isoformat(),
        )
        self.defer(trigger=datetime_trigger(ready_at), method_name="execute_after_wait")

    def _export(self, window: AuditWindow) -> dict[str, Any]:
        settings = self.orchestrator_hook.settings  # a bad connection fails here, before any request
        tenant = self._tenant()
        key = self.s3_key or default_key(
            settings.organization, window, self.compression, self.s3_prefix, source=self.source, tenant=tenant
        )
        reader = self._reader(window)
        # The sink checks the bucket first.
        with collect_only_new_objects(), closing(self.orchestrator_hook), self._sink(key) as sink:
            self.log.info(
                "Exporting %s of %r%s in %s to s3://%s/%s",
                {"classic": "audit entries", ORCHESTRATOR_SOURCE: "Orchestrator audit entries"}.get(
                    self.source, self.source.replace("_", " ")
                ),
                settings.organization,
                f", tenant {tenant!r}" if tenant else "",
                window,
                self.s3_bucket,
                key,
            )
            for batch in reader:
                sink.write(batch)
            self._log_read(reader, sink.records)
            objects, records = sink.finish(), sink.records
        self._written = objects
        self._report_lineage(self._source_url(), objects)
        self.log.info("Wrote %d records to %s", records, ", ".join(objects))
        return {
            "records": records,
            "objects": objects,
            "window_start": format_ticks(window.start),
            "window_end": format_ticks(window.end),
            "total_count": reader.stats.total_count,
        }

    def _tenant(self) -> str | None:
        """
        The tenant of ``source="tenant_events"`` or ``"orchestrator"``: the operator's, else the connection's
        extra ``tenant`` (a standalone Orchestrator needs none).

        :raises OrchestratorConfigError: for a tenant-level source without one, before any request.
        """
        if self.source not in ("tenant_events", ORCHESTRATOR_SOURCE):
            return None
        tenant = (unset_to_none(self.tenant) or self.orchestrator_hook.settings.tenant or "").strip().strip("/")
        if self.source == ORCHESTRATOR_SOURCE and not tenant:
            if self.orchestrator_hook.settings.orchestrator_url:
                return None
            raise OrchestratorConfigError(
                f"{self.task_id}: source='orchestrator' needs a tenant and neither the operator nor connection "
                f"{self.orchestrator_conn_id!r} names one: {ORCHESTRATOR_TENANT_ADVICE}"
            )
        if not tenant:
            raise OrchestratorConfigError(
                f"{self.task_id}: source='tenant_events' needs a tenant and neither the operator nor connection "
                f"{self.orchestrator_conn_id!r} names one: {TENANT_ADVICE}"
            )
        return tenant

    def _source_url(self) -> str:
        """The URL of what is exported, for lineage."""
        settings = self.orchestrator_hook.settings
        if self.source == "classic":
            return settings.audit_logs_url
        if self.source == ORCHESTRATOR_SOURCE:
            return orchestrator_audit_url(settings, self._tenant())
        return events_url(settings, SOURCE_LEVELS[self.source], self._tenant())

    def _reader(self, window: AuditWindow) -> WindowReader | EventWindowReader | OrchestratorWindowReader:
        """The source: the window's entries (or events) in batches, each exactly once."""
        if self.source == ORCHESTRATOR_SOURCE:
            return OrchestratorWindowReader(
                self._fetch_orchestrator, window, max_concurrency=self.max_concurrency, logger=self.log
            )
        if self.source != "classic":
            return EventWindowReader(self._fetch_events, window, max_concurrency=self.max_concurrency, logger=self.log)
        return WindowReader(
            self._fetch_page, window, page_size=self.page_size, max_concurrency=self.max_concurrency, logger=self.log
        )

    def _sink(self, key: str) -> S3JsonLinesSink:
        """The destination: the window's objects under ``key``, visible whole or not at all."""
        return S3JsonLinesSink(
            self.s3_hook,
            self.s3_bucket,
            key,
            settings=self.object_settings(self.s3_hook.extra_args),
            compression=self.compression,
            max_records_per_file=self.max_records_per_file,
            compression_level=self.compression_level,
        )

    def _log_read(self, reader: WindowReader | EventWindowReader | OrchestratorWindowReader, records: int) -> None:
        if isinstance(reader, OrchestratorWindowReader):
            read = reader.stats
            self.log.info(
                "Read %d entries in %d requests (%d time slices paged by Id, %d entries of the slices' margins "
                "skipped) in %.1fs",
                records,
                read.requests,
                read.slices,
                read.outside,
                read.seconds,
            )
            return
        if isinstance(reader, EventWindowReader):
            events = reader.stats
            self.log.info(
                "Read %d events in %d requests (%d time slices, %d repeated events skipped, %d refused cursors) "
                "in %.1fs",
                records,
                events.requests,
                events.slices,
                events.repeated,
                events.reanchors,
                events.seconds,
            )
            return
        stats = reader.stats
        self.log.info(
            "Read %d entries in %d requests (%d probes, %d pages, %d repairs) in %.1fs",
            records,
            stats.requests,
            stats.probe_requests,
            stats.page_requests,
            stats.repair_requests,
            stats.seconds,
        )

    def _fetch_page(self, skip: int, top: int) -> Any:
        return self.orchestrator_hook.get_audit_logs(top=top, skip=skip, language=self.language)

    def _fetch_events(self, request: EventsRequest) -> EventLinesPage:
        level, tenant = SOURCE_LEVELS[self.source], self._tenant()
        if request.cursor is not None:
            query = EventsQuery(level, tenant, cursor=request.cursor)
        else:
            assert request.query_from is not None and request.query_to is not None
            query = EventsQuery(
                level,
                tenant,
                from_=request.bound_text(request.query_from),
                to=request.bound_text(request.query_to),
                max_count=self.page_size or DEFAULT_EVENTS_PAGE_SIZE,
            )
        # Each event as the line the export writes, not a whole AuditEvent: the same lines for less CPU.
        return self.orchestrator_hook.client.fetch_event_lines(query)

    def _fetch_orchestrator(self, request: KeysetRequest) -> Any:
        return self.orchestrator_hook.get_orchestrator_audit_logs(
            self._tenant(),
            time_from=request.time_from,
            time_to=request.time_to,
            after_id=request.after_id,
            top=self.page_size or MAX_TOP,
            count=True,
            expand_entities=self.include_entities,
        )

    def _report_lineage(self, source_url: str, objects: list[str]) -> None:
        # The S3 hook reports the written objects itself; the source is ours to report.
        get_hook_lineage_collector().add_input_asset(context=self.orchestrator_hook, uri=source_url)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the organization's audit log in, the written S3 objects out."""
        from airflow.providers.common.compat.openlineage.facet import Dataset
        from airflow.providers.openlineage.extractors import OperatorLineage

        settings = self.orchestrator_hook.settings
        name = self._source_url().removeprefix(settings.base_url + "/")
        inputs = [Dataset(namespace=settings.base_url, name=name)]
        outputs = [
            Dataset(namespace=f"s3://{self.s3_bucket}", name=uri.removeprefix(f"s3://{self.s3_bucket}/"))
            for uri in self._written
        ]
        return OperatorLineage(inputs=inputs, outputs=outputs)
