"""The thin synchronous and asynchronous clients: they carry out the steps of :mod:`.exchanges`."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, Self, TypeVar, cast

import httpx

from airflow_provider_orchestrator_audit.client.events import EventsQuery, fetch_event_lines_page, fetch_events_page
from airflow_provider_orchestrator_audit.client.exchanges import (
    AuditLogQuery,
    Exchange,
    NeedToken,
    Send,
    Sleep,
    fetch_audit_page,
    request_token,
)
from airflow_provider_orchestrator_audit.client.odata import OdataQuery, fetch_orchestrator_page
from airflow_provider_orchestrator_audit.client.retry import RetryPolicy
from airflow_provider_orchestrator_audit.client.settings import ConnectionSettings
from airflow_provider_orchestrator_audit.client.stdlib_transport import (
    StdlibTransport,
    ssl_context,
    stdlib_transport_unless_proxied,
)
from airflow_provider_orchestrator_audit.client.tokens import TokenCache
from airflow_provider_orchestrator_audit.event_models import AuditEventsPage, EventLinesPage
from airflow_provider_orchestrator_audit.models import AuditLogPage
from airflow_provider_orchestrator_audit.orchestrator_models import OrchestratorAuditPage
from airflow_provider_orchestrator_audit.validation import checked_int

__all__ = ["AsyncOrchestratorAuditClient", "OrchestratorAuditClient"]

T = TypeVar("T")
SecretSink = Callable[[str], None]


def _limits(max_connections: int) -> httpx.Limits:
    checked_int("max_connections", max_connections)
    return httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)


def _timeout(settings: ConnectionSettings) -> httpx.Timeout:
    return httpx.Timeout(settings.timeout, connect=min(settings.timeout, 30.0))


class OrchestratorAuditClient:
    """
    A thread-safe synchronous client for one organization's audit API.

    :param settings: the checked connection settings.
    :param retry_policy: retries for every request; the default retries 429, 5xx and transport errors.
    :param max_connections: connections kept to the server; as many threads may share the client.
    :param on_new_secret: called with every new access token before it is used, so that it can be
        registered with a log masker.
    :param transport: the httpx transport to send through; by default the client's own
        :class:`~.stdlib_transport.StdlibTransport` (called directly), or httpx's when the environment
        configures a proxy.
    """

    def __init__(
        self,
        settings: ConnectionSettings,
        retry_policy: RetryPolicy | None = None,
        *,
        max_connections: int = 16,
        on_new_secret: SecretSink | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.retry_policy = retry_policy or RetryPolicy()
        self._on_new_secret = on_new_secret
        limits, tls, timeout = _limits(max_connections), ssl_context(settings.verify), _timeout(settings)
        transport = transport or stdlib_transport_unless_proxied(tls, max_connections)
        self._http = httpx.Client(verify=tls, timeout=timeout, limits=limits, transport=transport)
        # The stdlib transport is called directly: httpx's client would only add cookies, authentication and
        # redirects, none of which these requests use, at about a third of the CPU of a whole request.
        self._direct = transport if isinstance(transport, StdlibTransport) else None
        self._timeouts = timeout.as_dict()
        # One cached token per scope set: the platform sources and Orchestrator's own audit log need different ones.
        self._tokens: dict[str, TokenCache] = {}
        # One lock around "read cache, else request a token": concurrent callers share one token request.
        self._token_lock = threading.Lock()
        # After a 429 no request of this client goes out before this moment (time.monotonic()).
        self._resume_at = 0.0

    def fetch_page(self, query: AuditLogQuery) -> AuditLogPage:
        """The page ``query`` asks for, retried as the client's policy allows."""
        return self._run(fetch_audit_page(self.settings, self.retry_policy, query))

    def fetch_events(self, query: EventsQuery) -> AuditEventsPage:
        """The page of unified audit events ``query`` asks for, retried as the client's policy allows."""
        return self._run(fetch_events_page(self.settings, self.retry_policy, query))

    def fetch_event_lines(self, query: EventsQuery) -> EventLinesPage:
        """:meth:`fetch_events`, each event as the :class:`~.event_models.EventLine` an export writes."""
        return self._run(fetch_event_lines_page(self.settings, self.retry_policy, query))

    def fetch_orchestrator(self, query: OdataQuery) -> OrchestratorAuditPage:
        """The page of Orchestrator's own audit log ``query`` asks for, retried as the client's policy allows."""
        return self._run(fetch_orchestrator_page(self.settings, self.retry_policy, query))

    def access_token(self) -> str:
        """The bearer token the next request will carry (the personal access token in PAT mode)."""
        return self.settings.access_token or self._bearer(None)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, exchange: Exchange[T]) -> T:
        reply: Any = None
        while True:
            try:
                step = exchange.send(reply)
            except StopIteration as done:
                return cast(T, done.value)
            if isinstance(step, Send):
                hold = self._resume_at - time.monotonic()
                if hold > 0:
                    time.sleep(hold)
                try:
                    reply = self._send(step.request)
                except httpx.TransportError as error:
                    reply = error
            elif isinstance(step, Sleep):
                if step.shared:
                    self._resume_at = max(self._resume_at, time.monotonic() + step.seconds)
                time.sleep(step.seconds)
                reply = None
            elif isinstance(step, NeedToken):
                reply = self._bearer(step.rejected, step.scope)

    def _send(self, request: httpx.Request) -> httpx.Response:
        if self._direct is None:
            return self._http.send(request)
        request.extensions["timeout"] = self._timeouts  # what the client's send would have set
        return self._direct.handle_request(request)

    def _bearer(self, rejected: str | None, scope: str | None = None) -> str:
        scope = scope or self.settings.scope
        with self._token_lock:
            cache = self._tokens.setdefault(scope, TokenCache())
            token = cache.get(unless=rejected)
            if token is None:
                grant = self._run(request_token(self.settings, self.retry_policy, scope))
                if self._on_new_secret:
                    self._on_new_secret(grant.access_token)
                cache.store(grant.access_token, grant.expires_in)
                token = grant.access_token
            return token


class AsyncOrchestratorAuditClient:
    """
    The asyncio twin of :class:`OrchestratorAuditClient`, for triggers and concurrent exports.

    :param on_new_secret: as for the synchronous client; may be a coroutine function.
    """

    def __init__(
        self,
        settings: ConnectionSettings,
        retry_policy: RetryPolicy | None = None,
        *,
        max_connections: int = 16,
        on_new_secret: Callable[[str], Awaitable[None] | None] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.retry_policy = retry_policy or RetryPolicy()
        self._on_new_secret = on_new_secret
        self._http = httpx.AsyncClient(
            verify=ssl_context(settings.verify),
            timeout=_timeout(settings),
            limits=_limits(max_connections),
            transport=transport,
        )
        self._tokens: dict[str, TokenCache] = {}  # per scope set, as in the synchronous client
        self._token_lock: asyncio.Lock | None = None
        self._resume_at = 0.0  # as in the synchronous client: after a 429, everyone waits

    async def fetch_page(self, query: AuditLogQuery) -> AuditLogPage:
        """The page ``query`` asks for, retried as the client's policy allows."""
        return await self._run(fetch_audit_page(self.settings, self.retry_policy, query))

    async def fetch_events(self, query: EventsQuery) -> AuditEventsPage:
        """The page of unified audit events ``query`` asks for, retried as the client's policy allows."""
        return await self._run(fetch_events_page(self.settings, self.retry_policy, query))

    async def fetch_orchestrator(self, query: OdataQuery) -> OrchestratorAuditPage:
        """The page of Orchestrator's own audit log ``query`` asks for, retried as the client's policy allows."""
        return await self._run(fetch_orchestrator_page(self.settings, self.retry_policy, query))

    async def access_token(self) -> str:
        """The bearer token the next request will carry (the personal access token in PAT mode)."""
        return self.settings.access_token or await self._bearer(None)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _run(self, exchange: Exchange[T]) -> T:
        reply: Any = None
        while True:
            try:
                step = exchange.send(reply)
            except StopIteration as done:
                return cast(T, done.value)
            if isinstance(step, Send):
                hold = self._resume_at - time.monotonic()
                if hold > 0:
                    await asyncio.sleep(hold)
                try:
                    reply = await self._http.send(step.request)
                except httpx.TransportError as error:
                    reply = error
            elif isinstance(step, Sleep):
                if step.shared:
                    self._resume_at = max(self._resume_at, time.monotonic() + step.seconds)
                await asyncio.sleep(step.seconds)
                reply = None
            elif isinstance(step, NeedToken):
                reply = await self._bearer(step.rejected, step.scope)

    async def _bearer(self, rejected: str | None, scope: str | None = None) -> str:
        scope = scope or self.settings.scope
        if self._token_lock is None:  # created lazily: it must belong to the running event loop
            self._token_lock = asyncio.Lock()
        async with self._token_lock:
            cache = self._tokens.setdefault(scope, TokenCache())
            token = cache.get(unless=rejected)
            if token is None:
                grant = await self._run(request_token(self.settings, self.retry_policy, scope))
                if self._on_new_secret:
                    result = self._on_new_secret(grant.access_token)
                    if isinstance(result, Awaitable):
                        await result
                cache.store(grant.access_token, grant.expires_in)
                token = grant.access_token
            return token
