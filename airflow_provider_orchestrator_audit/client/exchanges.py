"""
The audit API's request/response exchanges, free of I/O.

Each exchange is a generator. It yields the steps it needs (:class:`Send` a request, :class:`Sleep`,
:class:`NeedToken`) and receives their results; it returns the parsed answer or raises a clear error.
The synchronous and the asynchronous driver in :mod:`.drivers` only carry the steps out, so request
building, response parsing and the retry loops exist once; the errors that end a request and what they
advise are in :mod:`.advice`, the masking of secrets in quoted bodies in :mod:`.redaction`.

Driving an exchange by hand shows each step (this is how the unit tests use them)::

    exchange = fetch_audit_page(settings, RetryPolicy(), AuditLogQuery(top=100))
    step = next(exchange)                    # NeedToken(rejected=None)
    step = exchange.send("a-token")          # Send(request=<Request('GET', '.../auditlogs?top=100...')>)
    exchange.send(httpx.Response(200, content=b'{"totalCount": 0, "results": []}'))
    # raises StopIteration; its value is the AuditLogPage
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from pydantic import ValidationError

from airflow_provider_orchestrator_audit.client.advice import (
    api_refused,
    bad_body_error,
    token_answer_advice,
    token_refused,
)
from airflow_provider_orchestrator_audit.client.page_parser import PageFormatError, parse_page
from airflow_provider_orchestrator_audit.client.redaction import excerpt, token_body_excerpt
from airflow_provider_orchestrator_audit.client.retry import (
    RETRYABLE_STATUSES,
    RetryPolicy,
    RetryState,
    parse_retry_after,
)
from airflow_provider_orchestrator_audit.client.settings import ConnectionSettings
from airflow_provider_orchestrator_audit.exceptions import OrchestratorConfigError, OrchestratorRequestError
from airflow_provider_orchestrator_audit.models import AuditLogPage, TokenGrant
from airflow_provider_orchestrator_audit.validation import INT32_MAX, checked_int

__all__ = [
    "AuditLogQuery",
    "Exchange",
    "NeedToken",
    "Send",
    "Sleep",
    "fetch_audit_page",
    "get_with_token",
    "request_token",
    "status_failure",
]

log = logging.getLogger(__name__)
T = TypeVar("T")
_USER_AGENT = "airflow-provider-orchestrator-audit"


@dataclass(frozen=True)
class Send:
    """Send this request; the reply is the :class:`httpx.Response` (body read) or the :class:`httpx.TransportError`."""

    request: httpx.Request


@dataclass(frozen=True)
class Sleep:
    """
    Wait this many seconds; the reply is ``None``.

    :param shared: the server is throttling the client (429): hold back every request of the client
        until then, not only this one, so that concurrent pages back off together.
    """

    seconds: float
    shared: bool = False


@dataclass(frozen=True)
class NeedToken:
    """
    Provide a bearer token from the client's cache, fetching a new one if needed; the reply is the token.

    :param rejected: a token the server just refused with 401; never hand it out again.
    :param scope: the scopes the token must carry (tokens are cached per scope set); None for the
        connection's :attr:`~.settings.ConnectionSettings.scope`.
    """

    rejected: str | None = None
    scope: str | None = None


Step = Send | Sleep | NeedToken
Exchange = Generator[Step, Any, T]


@dataclass(frozen=True)
class AuditLogQuery:
    """The query parameters of one ``GET auditlogs`` call."""

    top: int
    skip: int = 0
    sort_by: str | None = "createdOn"
    sort_order: str | None = "desc"
    language: str | None = None
    api_version: str | None = None

    def __post_init__(self) -> None:
        for name in ("top", "skip"):
            checked_int(name, getattr(self, name), minimum=0, maximum=INT32_MAX, error=OrchestratorConfigError)
        if self.sort_order is not None and self.sort_order.lower() not in ("asc", "desc"):
            raise OrchestratorConfigError(f"sort_order must be 'asc' or 'desc', got {self.sort_order!r}")

    def params(self) -> dict[str, str]:
        """The query string, in the documented parameter names."""
        pairs = {
            "language": self.language,
            "top": str(self.top),
            "skip": str(self.skip),
            "sortBy": self.sort_by,
            "sortOrder": self.sort_order.lower() if self.sort_order else None,
            "api-version": self.api_version,
        }
        return {key: value for key, value in pairs.items() if value is not None}


def request_token(settings: ConnectionSettings, policy: RetryPolicy, scope: str | None = None) -> Exchange[TokenGrant]:
    """Ask the identity server for an access token with the client-credentials grant (``scope``: the connection's)."""
    retries = _Retries(settings, f"POST {settings.token_url}", policy.start())
    scope = scope or settings.scope
    while True:
        reply = yield Send(_token_request(settings, scope))
        if isinstance(reply, httpx.TransportError):
            yield from retries.wait_or_fail(_transport_problem(reply))
            continue
        if reply.status_code == 200:
            try:
                return TokenGrant.model_validate_json(reply.content)
            except ValidationError as exc:
                problem = _validation_problem(exc)
                damaged = any(error.get("type") == "json_invalid" for error in exc.errors(include_url=False))
            # Handled outside the except block: the validation error quotes the body, which holds the token,
            # and must not travel on as the context of the error raised.
            quoted = token_body_excerpt(reply.content, settings.secrets)
            # Asking again after a damaged answer only issues another token.
            yield from retries.unusable_body(
                reply, problem, damaged, quoted=quoted, advice=token_answer_advice(settings)
            )
            continue
        if reply.status_code in RETRYABLE_STATUSES:
            yield from retries.wait_as_asked(reply)
            continue
        raise token_refused(settings, reply, scope)


def fetch_audit_page(settings: ConnectionSettings, policy: RetryPolicy, query: AuditLogQuery) -> Exchange[AuditLogPage]:
    """``GET {baseURL}/audit_/api/auditlogs``: one page, retried as the policy allows."""
    return (
        yield from get_with_token(
            settings, policy, httpx.URL(settings.audit_logs_url, params=query.params()), parse_page
        )
    )


#: Builds the error that ends a request: ``(where, reply, tokens sent)``, e.g. ``("GET https://...", <401>, ("...",))``.
RequestFailure = Callable[[str, httpx.Response, tuple[str, ...]], Exception]


def status_failure(
    settings: ConnectionSettings, where: str, status: int, quoted: str, advice: str | None = None
) -> OrchestratorRequestError:
    """
    The error for an answer whose status ends the request, e.g. ``Connection 'c': GET https://... failed with HTTP
    404: 'Not Found'``, then ``.`` and ``advice`` when there is advice (``""``: the full stop alone).

    :param quoted: what the server said, already quoted with the secrets and the token sent masked.
    """
    tail = "" if advice is None else f".{advice}"
    return OrchestratorRequestError(
        f"Connection {settings.conn_id!r}: {where} failed with HTTP {status}: {quoted}{tail}"
    )


def get_with_token(
    settings: ConnectionSettings,
    policy: RetryPolicy,
    url: httpx.URL,
    parse: Callable[[bytes], T],
    *,
    refused: RequestFailure | None = None,
    failed: RequestFailure | None = None,
    scope: str | None = None,
) -> Exchange[T]:
    """
    ``GET url`` with a bearer token for ``scope`` (the connection's own scope by default), its body parsed by
    ``parse``; retried as the policy allows: after a failed connection, a 429 or 5xx, or a body ``parse``
    calls unusable (:class:`PageFormatError`). A 401 gets one fresh token and one more try (not with a personal
    access token, which cannot be renewed).

    :param refused: the error for a 403, or a 401 that a fresh token did not cure; by default
        :func:`~.advice.api_refused` (the audit API's error code and the scope to grant).
    :param failed: the error for any other status; by default an :class:`OrchestratorRequestError` quoting the
        body with the secrets and the token masked.
    """
    where = f"GET {url}"
    retries = _Retries(settings, where, policy.start())
    rejected: str | None = None
    refreshed = False
    while True:
        token = settings.access_token if settings.access_token else (yield NeedToken(rejected, scope))
        reply = yield Send(_audit_request(url, token))
        if isinstance(reply, httpx.TransportError):
            yield from retries.wait_or_fail(_transport_problem(reply))
            continue
        # The bearer token just sent is a secret too: a server that echoes the request must not get it quoted.
        sent = (token,)
        status = reply.status_code
        if status == 200:
            try:
                return parse(reply.content)
            except PageFormatError as exc:
                problem, damaged = str(exc), exc.damaged
            yield from retries.unusable_body(reply, problem, damaged, sent=sent)
            continue
        if status == 401 and not settings.uses_personal_access_token and not refreshed:
            # The token may have expired early or been revoked: one fresh token, one more try.
            log.info("%s answered 401; requesting a new access token and trying once more", where)
            rejected, refreshed = token, True
            continue
        if status in (401, 403):
            raise refused(where, reply, sent) if refused else api_refused(settings, where, reply, sent)
        if status in RETRYABLE_STATUSES:
            yield from retries.wait_as_asked(reply, sent)
            continue
        if failed:
            raise failed(where, reply, sent)
        raise status_failure(settings, where, status, excerpt(reply.content, (*settings.secrets, *sent)))


def _token_request(settings: ConnectionSettings, scope: str) -> httpx.Request:
    form = {
        "grant_type": "client_credentials",
        "client_id": settings.client_id or "",
        "client_secret": settings.client_secret or "",
        "scope": scope,
    }
    return httpx.Request(
        "POST", settings.token_url, data=form, headers={"Accept": "application/json", "User-Agent": _USER_AGENT}
    )


def _audit_request(url: httpx.URL, token: str) -> httpx.Request:
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json", "User-Agent": _USER_AGENT}
    return httpx.Request("GET", url, headers=headers)


@dataclass
class _Retries:
    """
    The retry decisions of one request: wait and try again, or fail saying why.

    :param where: the request as error messages name it, e.g. ``GET https://.../auditlogs?top=100``.
    :param state: the attempts made so far.
    """

    settings: ConnectionSettings
    where: str
    state: RetryState

    def wait_as_asked(self, reply: httpx.Response, sent: tuple[str, ...] = ()) -> Generator[Step, Any, None]:
        """A retryable status (429, 5xx): wait as long as its ``Retry-After`` asks, else back off."""
        retry_after = parse_retry_after(reply.headers.get("Retry-After"), reply.content)
        yield from self.wait_or_fail(f"HTTP {reply.status_code}", retry_after, reply, sent)

    def unusable_body(
        self,
        reply: httpx.Response,
        problem: str,
        damaged: bool,
        *,
        sent: tuple[str, ...] = (),
        quoted: str | None = None,
        advice: str | None = None,
    ) -> Generator[Step, Any, None]:
        """
        The damaged-body rule, for an HTTP 200 whose body cannot be used.

        Well-formed JSON of another shape is what the server meant to send: asking again would get the
        same document, so it fails at once. A body that is not JSON text at all (garbled, cut, not UTF-8,
        a proxy's page) was damaged on its way and is asked for again like a 5xx, until
        ``max_damaged_body_attempts`` answers came back damaged: a body that stays broken is not a hiccup.

        :param damaged: the body is not JSON text at all.
        :param sent: the bearer token sent, masked in quotes of the body like the connection's secrets.
        :param quoted: the excerpt to quote instead of the body with those secrets masked.
        :param advice: what to check, instead of :func:`~.advice.bad_body_error`'s.
        """
        settings, where, state = self.settings, self.where, self.state
        body = quoted or excerpt(reply.content, (*settings.secrets, *sent))
        if not damaged:
            raise bad_body_error(settings, where, reply, problem, body=body, advice=advice)
        state.damaged_bodies += 1
        if state.damaged_bodies >= state.policy.max_damaged_body_attempts:
            raise bad_body_error(
                settings, where, reply, problem, attempts=state.damaged_bodies, body=body, advice=advice
            )
        yield from self.wait_or_fail(f"HTTP 200 with a broken body ({problem})", None, reply, sent, quoted=quoted)

    def wait_or_fail(
        self,
        problem: str,
        retry_after: float | None = None,
        reply: httpx.Response | None = None,
        sent: tuple[str, ...] = (),
        *,
        quoted: str | None = None,
    ) -> Generator[Step, Any, None]:
        """Count a failed attempt; yield the wait before the next one, or raise when the policy says stop."""
        wait, reason = self.state.next_wait(retry_after)
        if wait is None:
            if quoted is None and reply is not None and reply.content:
                quoted = excerpt(reply.content, (*self.settings.secrets, *sent))
            detail = f": {quoted}" if quoted else ""
            raise OrchestratorRequestError(
                f"Connection {self.settings.conn_id!r}: {self.where} failed with {problem}; {reason}{detail}. "
                "The server may be down or throttling; raise the hook's retry limits or try again later."
            )
        log.warning("%s: %s; retrying in %.2fs (attempt %d)", self.where, problem, wait, self.state.attempts + 1)
        yield Sleep(wait, shared=reply is not None and reply.status_code == 429)


def _validation_problem(exc: ValidationError) -> str:
    first = exc.errors(include_url=False, include_input=False)[:3]
    parts = []
    for error in first:
        location = ".".join(str(part) for part in error.get("loc", ()))
        if error.get("type") == "json_invalid":
            parts.append(f"not valid JSON: {error.get('msg')}")
        else:
            parts.append(f"{location or 'body'}: {error.get('msg')}")
    more = exc.error_count() - len(first)
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _transport_problem(error: httpx.TransportError) -> str:
    kind = type(error).__name__
    return f"{kind} ({error})" if str(error) else kind
