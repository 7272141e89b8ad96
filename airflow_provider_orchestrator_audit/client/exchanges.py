"""
The audit API's request/response exchanges, free of I/O.

Each exchange is a generator. It yields the steps it needs (:class:`Send` a request, :class:`Sleep`,
:class:`NeedToken`) and receives their results; it returns the parsed answer or raises a clear error.
The synchronous and the asynchronous driver in :mod:`.drivers` only carry the steps out, so request
building, response parsing, the retry policy and the error messages exist once.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from pydantic import ValidationError

from airflow_provider_orchestrator_audit.client.page_parser import PageFormatError, parse_page
from airflow_provider_orchestrator_audit.client.retry import RETRYABLE_STATUSES, RetryPolicy, parse_retry_after
from airflow_provider_orchestrator_audit.client.settings import ConnectionSettings
from airflow_provider_orchestrator_audit.exceptions import (
    OrchestratorAuthError,
    OrchestratorConfigError,
    OrchestratorRequestError,
    OrchestratorResponseError,
)
from airflow_provider_orchestrator_audit.models import AuditLogPage, TokenGrant

__all__ = [
    "AuditLogQuery",
    "Exchange",
    "NeedToken",
    "Send",
    "Sleep",
    "fetch_audit_page",
    "request_token",
]

log = logging.getLogger(__name__)
T = TypeVar("T")
_INT32_MAX = 2**31 - 1
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
    """

    rejected: str | None = None


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
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _INT32_MAX:
                raise OrchestratorConfigError(f"{name} must be an integer from 0 to {_INT32_MAX}, got {value!r}")
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


def request_token(settings: ConnectionSettings, policy: RetryPolicy) -> Exchange[TokenGrant]:
    """Ask the identity server for an access token with the client-credentials grant."""
    form = {
        "grant_type": "client_credentials",
        "client_id": settings.client_id or "",
        "client_secret": settings.client_secret or "",
        "scope": settings.scope,
    }
    state = policy.start()
    damaged_bodies = 0
    while True:
        request = httpx.Request(
            "POST", settings.token_url, data=form, headers={"Accept": "application/json", "User-Agent": _USER_AGENT}
        )
        reply = yield Send(request)
        where = f"POST {settings.token_url}"
        if isinstance(reply, httpx.TransportError):
            yield from _wait_or_fail(state, None, where, _transport_problem(reply), settings)
            continue
        if reply.status_code == 200:
            try:
                return TokenGrant.model_validate_json(reply.content)
            except ValidationError as exc:
                problem = _validation_problem(exc)
                damaged = any(error.get("type") == "json_invalid" for error in exc.errors(include_url=False))
            # Handled outside the except block: the validation error quotes the body, which holds the token,
            # and must not travel on as the context of the error raised.
            quoted = _token_body_excerpt(reply.content, settings)
            if damaged:
                damaged_bodies += 1
            if damaged and damaged_bodies < policy.max_damaged_body_attempts:
                # Not JSON text at all: damaged on its way. Asking again only issues another token.
                broken = f"HTTP 200 with a broken body ({problem})"
                yield from _wait_or_fail(state, None, where, broken, settings, reply, quoted=quoted)
                continue
            raise _response_error(
                settings,
                where,
                reply,
                problem,
                attempts=damaged_bodies,
                body=quoted,
                advice=(
                    f"Check that the token URL ({settings.token_url}) is the identity server's token endpoint "
                    "(set extra 'token_url' for a standalone Orchestrator) and that nothing in between rewrites "
                    "its answers"
                ),
            )
        if reply.status_code in RETRYABLE_STATUSES:
            retry_after = parse_retry_after(reply.headers.get("Retry-After"), reply.content)
            yield from _wait_or_fail(state, retry_after, where, f"HTTP {reply.status_code}", settings, reply)
            continue
        raise _token_refused(settings, reply)


def fetch_audit_page(settings: ConnectionSettings, policy: RetryPolicy, query: AuditLogQuery) -> Exchange[AuditLogPage]:
    """``GET {baseURL}/audit_/api/auditlogs``: one page, retried as the policy allows."""
    url = httpx.URL(settings.audit_logs_url, params=query.params())
    where = f"GET {url}"
    state = policy.start()
    rejected: str | None = None
    refreshed = False
    damaged_bodies = 0
    while True:
        token = settings.access_token if settings.access_token else (yield NeedToken(rejected))
        request = httpx.Request(
            "GET",
            url,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json", "User-Agent": _USER_AGENT},
        )
        reply = yield Send(request)
        if isinstance(reply, httpx.TransportError):
            yield from _wait_or_fail(state, None, where, _transport_problem(reply), settings)
            continue
        # The bearer token just sent is a secret too: a server that echoes the request must not get it quoted.
        sent = (token,)
        status = reply.status_code
        if status == 200:
            try:
                return parse_page(reply.content)
            except PageFormatError as exc:
                problem, damaged = str(exc), exc.damaged
            if not damaged:
                # Well-formed JSON of another shape is what the server meant to send: asking again
                # would get the same document, so say at once what came back.
                raise _response_error(settings, where, reply, problem, body=excerpt(reply.content, settings, sent))
            damaged_bodies += 1
            if damaged_bodies >= policy.max_damaged_body_attempts:
                raise _response_error(
                    settings,
                    where,
                    reply,
                    problem,
                    attempts=damaged_bodies,
                    body=excerpt(reply.content, settings, sent),
                )
            # Not JSON text at all: a body damaged on its way (or a proxy's page); a GET can be sent again.
            broken = f"HTTP 200 with a broken body ({problem})"
            yield from _wait_or_fail(state, None, where, broken, settings, reply, sent)
            continue
        if status == 401 and not settings.uses_personal_access_token and not refreshed:
            # The token may have expired early or been revoked: one fresh token, one more try.
            log.info("%s answered 401; requesting a new access token and trying once more", where)
            rejected, refreshed = token, True
            continue
        if status in (401, 403):
            raise _api_refused(settings, where, reply)
        if status in RETRYABLE_STATUSES:
            retry_after = parse_retry_after(reply.headers.get("Retry-After"), reply.content)
            yield from _wait_or_fail(state, retry_after, where, f"HTTP {status}", settings, reply, sent)
            continue
        raise OrchestratorRequestError(
            f"Connection {settings.conn_id!r}: {where} failed with HTTP {status}: "
            f"{excerpt(reply.content, settings, sent)}"
        )


def _wait_or_fail(
    state: Any,
    retry_after: float | None,
    where: str,
    problem: str,
    settings: ConnectionSettings,
    reply: httpx.Response | None = None,
    sent_secrets: tuple[str, ...] = (),
    *,
    quoted: str | None = None,
) -> Generator[Step, Any, None]:
    wait, reason = state.next_wait(retry_after)
    if wait is None:
        if quoted is None and reply is not None and reply.content:
            quoted = excerpt(reply.content, settings, sent_secrets)
        detail = f": {quoted}" if quoted else ""
        raise OrchestratorRequestError(
            f"Connection {settings.conn_id!r}: {where} failed with {problem}; {reason}{detail}. "
            "The server may be down or throttling; raise the hook's retry limits or try again later."
        )
    log.warning("%s: %s; retrying in %.2fs (attempt %d)", where, problem, wait, state.attempts + 1)
    yield Sleep(wait, shared=reply is not None and reply.status_code == 429)


def _response_error(
    settings: ConnectionSettings,
    where: str,
    reply: httpx.Response,
    problem: str,
    *,
    attempts: int = 1,
    body: str | None = None,
    advice: str | None = None,
) -> OrchestratorResponseError:
    times = f" on each of {attempts} attempts" if attempts > 1 else ""
    if advice is None and attempts > 1:
        advice = (
            f"Check that Host ({settings.base_url}) reaches Orchestrator itself, not a proxy, firewall or "
            "sign-in page; if it does, the service keeps sending broken answers: try again later or report it "
            "to UiPath"
        )
    elif advice is None:
        advice = (
            f"Check that Host ({settings.base_url}) and extra 'organization' ({settings.organization!r}) name an "
            "Orchestrator deployment and that nothing in between rewrites its answers; if they do, the service "
            "answered in an undocumented form: report this message to UiPath"
        )
    return OrchestratorResponseError(
        f"Connection {settings.conn_id!r}: {where} returned HTTP {reply.status_code}{times} with a body that is "
        f"not the documented response ({problem}). Body starts: {body or excerpt(reply.content, settings)}. "
        f"{advice}."
    )


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


def _token_refused(settings: ConnectionSettings, reply: httpx.Response) -> OrchestratorAuthError:
    code, description = _oauth_error(reply)
    where = f"the identity server at {settings.token_url}"
    if code == "invalid_client":
        advice = "check the connection's Login (client id) and Password (client secret) of the external application"
    elif code == "invalid_scope":
        advice = (
            f"the external application is not allowed scope {settings.scope!r}: add the Orchestrator API "
            "scope PM.Audit.Read (or PM.Audit) to it, or change the connection's extra 'scope'"
        )
    elif code == "unauthorized_client":
        advice = "the external application may not use the client-credentials grant; make it a confidential application"
    else:
        advice = "check the connection's credentials and extra 'token_url'"
    detail = f" ({description})" if description else ""
    return OrchestratorAuthError(
        f"Connection {settings.conn_id!r}: {where} refused the token request with HTTP {reply.status_code}, "
        f"error {code or 'unknown'}{detail}: {advice}."
    )


def _api_refused(settings: ConnectionSettings, where: str, reply: httpx.Response) -> OrchestratorAuthError:
    code, _ = _oauth_error(reply)
    code = code or _www_authenticate_error(reply) or "none given"
    if reply.status_code == 403:
        advice = (
            "the credentials lack permission to read audit logs: grant the external application the scope "
            f"PM.Audit.Read (asked for: {settings.scope!r}), or give the token's user the Audit View permission"
        )
    elif settings.uses_personal_access_token:
        advice = "the personal access token in extra 'access_token' is expired, revoked or for another organization"
    else:
        advice = (
            f"a fresh token from {settings.token_url} was refused too: check that Host, extra 'organization' and "
            "extra 'token_url' belong to the same Orchestrator deployment"
        )
    return OrchestratorAuthError(
        f"Connection {settings.conn_id!r}: {where} answered HTTP {reply.status_code} (error code: {code}): {advice}."
    )


def _oauth_error(reply: httpx.Response) -> tuple[str | None, str | None]:
    try:
        document = reply.json()
    except ValueError:
        return None, None
    if not isinstance(document, dict):
        return None, None
    code, description = document.get("error"), document.get("error_description")
    return (str(code) if code else None), (str(description)[:200] if description else None)


def _www_authenticate_error(reply: httpx.Response) -> str | None:
    match = re.search(r'error="([^"]+)"', reply.headers.get("WWW-Authenticate", ""))
    return match.group(1) if match else None


def _transport_problem(error: httpx.TransportError) -> str:
    kind = type(error).__name__
    return f"{kind} ({error})" if str(error) else kind


# A token endpoint's answer carries the access token (and may carry others) in these fields.
_TOKEN_FIELDS = re.compile(r'("(?:access_token|refresh_token|id_token)"\s*:\s*")[^"]*("?)')
# An answer that could not be used may carry a token anywhere else: under another name ("token",
# "accessToken"), form-encoded (access_token=...), or bare. Tokens are long runs of these characters;
# what an error needs to show (field names, token_type, scopes, numbers) is shorter.
_OPAQUE_RUN = re.compile(r"[A-Za-z0-9_.~+/-]{24,}=*")


def _token_body_excerpt(body: bytes, settings: ConnectionSettings) -> str:
    """An excerpt of a token endpoint's answer with every token value, wherever it stands, replaced by ``***``."""
    text = body.decode("utf-8", errors="replace")
    redacted = _TOKEN_FIELDS.sub(lambda match: f"{match.group(1)}***{match.group(2)}", text)
    redacted = _OPAQUE_RUN.sub("***", redacted)
    return excerpt(redacted.encode("utf-8"), settings)


_TAG = re.compile(r"<[^>]*>")
# Secrets up to this many bytes that start inside the quoted stretch are masked whole.
_LONGEST_MASKED = 8192
_SPACE = re.compile(r"\s+")


def excerpt(
    body: bytes, settings: ConnectionSettings | None = None, also_secret: Iterable[str] = (), limit: int = 200
) -> str:
    """
    A short, single-line, quoted excerpt of a response body for error messages.

    HTML tags are dropped (gateway error pages), and the connection's secrets and ``also_secret`` (the
    bearer token sent) are masked in case a server echoes the request back. Masking comes before any
    cut, so no part of a secret can show either.
    """
    scanned = limit * 8
    text = body[: scanned + _LONGEST_MASKED].decode("utf-8", errors="replace")
    for secret in (*(settings.secrets if settings else ()), *also_secret):
        if secret:
            text = text.replace(secret, "***")
    text = text[:scanned]
    if "<" in text and ">" in text:
        text = _TAG.sub(" ", text)
    text = _SPACE.sub(" ", text).strip()
    if not text:
        return "(empty body)"
    return repr(text[:limit] + ("…" if len(text) > limit else ""))
