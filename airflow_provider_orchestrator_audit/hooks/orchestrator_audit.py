"""Airflow hooks for UiPath Orchestrator's audit-log API."""

from __future__ import annotations

import asyncio
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_orchestrator_audit.client.drivers import AsyncOrchestratorAuditClient, OrchestratorAuditClient
from airflow_provider_orchestrator_audit.client.exchanges import AuditLogQuery
from airflow_provider_orchestrator_audit.client.retry import RetryPolicy
from airflow_provider_orchestrator_audit.client.settings import CONN_TYPE, ConnectionSettings
from airflow_provider_orchestrator_audit.compat import (
    BaseHook,
    aget_connection,
    amask_secret,
    connection_form_widgets,
    mask_secret,
)
from airflow_provider_orchestrator_audit.exceptions import OrchestratorAuditError
from airflow_provider_orchestrator_audit.models import AuditLogPage

if TYPE_CHECKING:
    from datetime import datetime

    from airflow_provider_orchestrator_audit.event_models import AuditEventsPage, EventLevel
    from airflow_provider_orchestrator_audit.orchestrator_models import OrchestratorAuditPage

__all__ = ["TEST_CONNECTION_RETRY_POLICY", "OrchestratorAuditAsyncHook", "OrchestratorAuditHook"]

#: The connection form's Test button should answer within seconds, not ride out a long outage.
TEST_CONNECTION_RETRY_POLICY = RetryPolicy(max_attempts=2, max_elapsed=20.0, max_retry_after=5.0)


def _mask(secret: str) -> None:
    mask_secret(secret)


async def _amask(secret: str) -> None:
    await amask_secret(secret)


class _OrchestratorAuditHookBase(BaseHook):
    """What both hooks share: the connection they read, the retry policy, the pool size, the page query."""

    conn_name_attr = "orchestrator_conn_id"
    default_conn_name = "orchestrator_audit_default"
    conn_type = CONN_TYPE
    hook_name = "UiPath Orchestrator Audit"

    def __init__(
        self,
        orchestrator_conn_id: str = default_conn_name,
        *,
        retry_policy: RetryPolicy | None = None,
        max_connections: int = 16,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.orchestrator_conn_id = orchestrator_conn_id
        self.retry_policy = retry_policy or RetryPolicy()
        self.max_connections = max_connections


class OrchestratorAuditHook(_OrchestratorAuditHookBase):
    """
    Reads an organization's audit log through ``GET {host}/{organization}/audit_/api/auditlogs``.

    Authenticates with the client-credentials grant of an external application (Login = client id,
    Password = client secret) or with a personal access token (extra ``access_token``). Tokens are
    cached until shortly before they expire and shared by all threads using the hook; a 401 triggers
    one refresh and one retry. 429 (honouring ``Retry-After``), 5xx and transport errors are retried
    with exponential backoff and jitter, within ``retry_policy``'s bounds.

    :param orchestrator_conn_id: the ``orchestrator_audit`` connection to use.
    :param retry_policy: attempts, backoff and time budget of each request.
    :param max_connections: HTTP connections kept open, the most concurrent requests.
    """

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """
        The connection form's own fields, for Airflow 2.11, 3.0 and 3.1.

        Airflow 3.2 and later read the same fields from the provider info (``conn-fields``) instead.
        """
        from airflow_provider_orchestrator_audit.get_provider_info import CONN_FIELDS

        return connection_form_widgets(CONN_FIELDS)

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Labels, placeholders and hidden fields of the connection form, for Airflow 2.11, 3.0 and 3.1."""
        from airflow_provider_orchestrator_audit.get_provider_info import UI_FIELD_BEHAVIOUR

        return {
            "hidden_fields": list(UI_FIELD_BEHAVIOUR["hidden-fields"]),
            "relabeling": dict(UI_FIELD_BEHAVIOUR["relabeling"]),
            "placeholders": dict(UI_FIELD_BEHAVIOUR["placeholders"]),
        }

    @cached_property
    def settings(self) -> ConnectionSettings:
        """The connection, read once and checked."""
        settings = ConnectionSettings.from_connection(self.get_connection(self.orchestrator_conn_id))
        for secret in settings.secrets:
            _mask(secret)
        return settings

    @cached_property
    def client(self) -> OrchestratorAuditClient:
        """The thread-safe HTTP client; it holds the token cache and the connection pool."""
        return OrchestratorAuditClient(
            self.settings, self.retry_policy, max_connections=self.max_connections, on_new_secret=_mask
        )

    def get_conn(self) -> OrchestratorAuditClient:
        """The HTTP client (Airflow's generic hook accessor)."""
        return self.client

    def get_audit_logs(
        self,
        top: int,
        skip: int = 0,
        sort_by: str | None = "createdOn",
        sort_order: str | None = "desc",
        language: str | None = None,
        api_version: str | None = None,
    ) -> AuditLogPage:
        """
        One page of audit entries.

        :param top: at most this many entries (the server may return fewer).
        :param skip: skip the first ``skip`` entries of the ordering.
        :param sort_by: the entry property to sort by; ``createdOn`` is the one that pages reliably.
        :param sort_order: ``asc`` or ``desc``.
        :param language: display language, e.g. ``en``.
        :param api_version: sent as ``api-version`` when given.
        :return: ``total_count`` and the entries, every field kept.
        """
        return self.client.fetch_page(AuditLogQuery(top, skip, sort_by, sort_order, language, api_version))

    def get_audit_events(
        self,
        level: EventLevel = "organization",
        *,
        tenant: str | None = None,
        from_: str | datetime | None = None,
        to: str | datetime | None = None,
        max_count: int | None = None,
        cursor: str | None = None,
    ) -> AuditEventsPage:
        """
        One page of UiPath's unified audit events, organization or tenant level, newest first.

        ``GET {host}/{organization}/orgaudit_/api/query/events`` or
        ``GET {host}/{organization}/{tenant}/tenantaudit_/api/query/events``. Follow ``page.previous``
        (pass it as ``cursor``) until it is None to read older events::

            page = hook.get_audit_events("tenant", tenant="DefaultTenant", from_="2026-01-31T13:00:00Z",
                                         to="2026-01-31T14:00:00Z", max_count=200)
            while True:
                for event in page.events:
                    event.event_id, event.created_on, event.raw.get("clientInfo")
                if page.previous is None:
                    break
                page = hook.get_audit_events("tenant", tenant="DefaultTenant", cursor=page.previous)

        :param level: ``"organization"`` or ``"tenant"``.
        :param tenant: the tenant's name for the tenant level; default: the connection's extra ``tenant``.
        :param from_: the ``from`` bound (ISO-8601 text sent as it is, or a datetime).
        :param to: the ``to`` bound, likewise. Whether the server treats either as inclusive is not documented.
        :param max_count: ``maxCount``; the server caps it (200 is reported).
        :param cursor: a ``previous`` URL of an earlier page; the bounds are then the cursor's own.
        :raises CursorRejectedError: when the server refuses ``cursor`` (expired or unknown).
        """
        from airflow_provider_orchestrator_audit.client.events import EventsQuery

        query = EventsQuery(level, tenant or self.settings.tenant, from_, to, max_count, cursor)
        return self.client.fetch_events(query)

    def get_orchestrator_audit_logs(
        self,
        tenant: str | None = None,
        *,
        time_from: str | None = None,
        time_to: str | None = None,
        after_id: int | None = None,
        top: int | None = None,
        skip: int | None = None,
        count: bool = False,
        expand_entities: bool = False,
        orderby: str = "Id asc",
    ) -> OrchestratorAuditPage:
        """
        One page of Orchestrator's own audit log: ``GET {host}/{organization}/{tenant}/orchestrator_/odata/AuditLogs``,
        or ``{orchestrator_url}/odata/AuditLogs`` for a standalone Orchestrator. The token asks for
        ``OR.Audit.Read`` (unless the connection pins its scope) and is cached apart from the platform's.

        Paging by ``Id`` reads a time range without offsets that shift under new entries::

            page = hook.get_orchestrator_audit_logs("DefaultTenant", time_from="2026-01-31T13:00:00Z",
                                                   time_to="2026-01-31T14:00:00Z", top=1000, count=True)
            while page.entries:
                for entry in page.entries:
                    entry.entry_id, entry.execution_time, entry.raw["Action"]
                page = hook.get_orchestrator_audit_logs("DefaultTenant", time_from=..., time_to=...,
                                                       after_id=page.entries[-1].entry_id, top=1000)

        :param tenant: the tenant (as in the URL); default: the connection's extra ``tenant``.
        :param time_from: ``ExecutionTime ge`` this OData DateTimeOffset literal, e.g. ``2026-01-31T13:00:00Z``.
        :param time_to: ``ExecutionTime lt`` this literal.
        :param after_id: ``Id gt`` this.
        :param top: ``$top``, at most 1000.
        :param skip: ``$skip``.
        :param count: ask for ``@odata.count`` (``page.count``).
        :param expand_entities: ``$expand=Entities``: each entry's changed entities in the same answer.
        :param orderby: ``$orderby``.
        """
        from airflow_provider_orchestrator_audit.client.odata import OdataQuery

        query = OdataQuery(
            tenant or self.settings.tenant, time_from, time_to, after_id, top, skip, count, expand_entities, orderby
        )
        return self.client.fetch_orchestrator(query)

    def test_connection(self) -> tuple[bool, str]:
        """
        Get a token and one audit entry; used by the Test button of the connection form.

        Retries are cut to :data:`TEST_CONNECTION_RETRY_POLICY` so that the button answers in seconds.
        """
        try:
            client = OrchestratorAuditClient(
                self.settings, TEST_CONNECTION_RETRY_POLICY, max_connections=1, on_new_secret=_mask
            )
            with client:
                page = client.fetch_page(AuditLogQuery(top=1))
        except (OrchestratorAuditError, ValueError) as error:
            # The form tests a copy of the connection under a random id: naming it would only confuse.
            message = str(error).removeprefix(f"Connection {self.orchestrator_conn_id!r}: ")
            return False, message[:1].upper() + message[1:]
        settings = self.settings
        return True, (
            f"Connected to organization {settings.organization!r} at {settings.base_url}: "
            f"{page.total_count} audit entries"
        )

    def close(self) -> None:
        """Close the HTTP connections (the token cache goes with them)."""
        client = self.__dict__.pop("client", None)
        if client is not None:
            client.close()


class OrchestratorAuditAsyncHook(_OrchestratorAuditHookBase):
    """
    The asyncio twin of :class:`OrchestratorAuditHook`, for triggers.

    Reads its connection without blocking the triggerer's event loop (``aget_connection`` where Airflow
    has a non-blocking one, else in a worker thread), and
    shares request building, parsing, retries and error messages with the synchronous hook.

    :param orchestrator_conn_id: the ``orchestrator_audit`` connection to use.
    :param retry_policy: attempts, backoff and time budget of each request.
    :param max_connections: HTTP connections kept open, the most concurrent requests.
    """

    def __init__(
        self,
        orchestrator_conn_id: str = _OrchestratorAuditHookBase.default_conn_name,
        *,
        retry_policy: RetryPolicy | None = None,
        max_connections: int = 16,
        **kwargs: Any,
    ) -> None:
        super().__init__(orchestrator_conn_id, retry_policy=retry_policy, max_connections=max_connections, **kwargs)
        self._client: AsyncOrchestratorAuditClient | None = None
        self._client_lock: asyncio.Lock | None = None

    async def get_settings(self) -> ConnectionSettings:
        """The connection, read without blocking the event loop, and checked."""
        settings = ConnectionSettings.from_connection(await aget_connection(self, self.orchestrator_conn_id))
        for secret in settings.secrets:
            await _amask(secret)
        return settings

    async def get_client(self) -> AsyncOrchestratorAuditClient:
        """The asynchronous HTTP client, created on first use (once, however many callers race for it)."""
        if self._client is not None:
            return self._client
        if self._client_lock is None:  # created lazily: it must belong to the running event loop
            self._client_lock = asyncio.Lock()
        async with self._client_lock:
            if self._client is None:
                self._client = AsyncOrchestratorAuditClient(
                    await self.get_settings(),
                    self.retry_policy,
                    max_connections=self.max_connections,
                    on_new_secret=_amask,
                )
        return self._client

    async def get_audit_logs(
        self,
        top: int,
        skip: int = 0,
        sort_by: str | None = "createdOn",
        sort_order: str | None = "desc",
        language: str | None = None,
        api_version: str | None = None,
    ) -> AuditLogPage:
        """One page of audit entries; the parameters are those of :meth:`OrchestratorAuditHook.get_audit_logs`."""
        client = await self.get_client()
        return await client.fetch_page(AuditLogQuery(top, skip, sort_by, sort_order, language, api_version))

    async def get_audit_events(
        self,
        level: EventLevel = "organization",
        *,
        tenant: str | None = None,
        from_: str | datetime | None = None,
        to: str | datetime | None = None,
        max_count: int | None = None,
        cursor: str | None = None,
    ) -> AuditEventsPage:
        """One page of unified audit events; the parameters are those of :meth:`OrchestratorAuditHook.get_audit_events`."""
        from airflow_provider_orchestrator_audit.client.events import EventsQuery

        client = await self.get_client()
        query = EventsQuery(level, tenant or client.settings.tenant, from_, to, max_count, cursor)
        return await client.fetch_events(query)

    async def get_orchestrator_audit_logs(
        self,
        tenant: str | None = None,
        *,
        time_from: str | None = None,
        time_to: str | None = None,
        after_id: int | None = None,
        top: int | None = None,
        skip: int | None = None,
        count: bool = False,
        expand_entities: bool = False,
        orderby: str = "Id asc",
    ) -> OrchestratorAuditPage:
        """One page of Orchestrator's own audit log; the parameters are those of the synchronous hook's."""
        from airflow_provider_orchestrator_audit.client.odata import OdataQuery

        client = await self.get_client()
        query = OdataQuery(
            tenant or client.settings.tenant, time_from, time_to, after_id, top, skip, count, expand_entities, orderby
        )
        return await client.fetch_orchestrator(query)

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None
