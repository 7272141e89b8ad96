"""
Orchestrator's own audit log, ``GET .../odata/AuditLogs``: the request/response exchange, free of I/O.

Automation Cloud and Automation Suite serve it at ``{host}/{org}/{tenant}/orchestrator_/odata/AuditLogs``,
a standalone Orchestrator at ``{orchestrator_url}/odata/AuditLogs`` (extra ``orchestrator_url``). The
token must carry ``OR.Audit.Read`` (or ``OR.Audit``), and the identity it stands for the ``Audit.View``
permission. Tokens, retries (429, 5xx, transport errors, damaged bodies) and their errors are those of
the classic audit log (:mod:`.exchanges`); OData errors (``{"message", "errorCode", "traceId"}``) are
quoted field by field.

Driving it by hand::

    exchange = fetch_orchestrator_page(settings, RetryPolicy(), OdataQuery("DefaultTenant", top=1000, after_id=41))
    next(exchange)                       # NeedToken(rejected=None, scope='OR.Audit.Read')
    exchange.send("a-token")             # Send(request=<Request('GET', '.../odata/AuditLogs?%24filter=Id+gt+41...')>)
    exchange.send(httpx.Response(200, content=b'{"@odata.count": 0, "value": []}'))
    # raises StopIteration; its value is the OrchestratorAuditPage
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import msgspec

from airflow_provider_orchestrator_audit.client.exchanges import Exchange, get_with_token, status_failure
from airflow_provider_orchestrator_audit.client.page_parser import PageFormatError, read_json_text
from airflow_provider_orchestrator_audit.client.redaction import excerpt
from airflow_provider_orchestrator_audit.client.retry import RetryPolicy
from airflow_provider_orchestrator_audit.client.settings import ORCHESTRATOR_SCOPE, ConnectionSettings
from airflow_provider_orchestrator_audit.event_models import created_on_ticks
from airflow_provider_orchestrator_audit.exceptions import (
    OrchestratorAuthError,
    OrchestratorConfigError,
    OrchestratorRequestError,
)
from airflow_provider_orchestrator_audit.orchestrator_models import (
    OrchestratorAuditEntry,
    OrchestratorAuditPage,
    entry_id_of,
)
from airflow_provider_orchestrator_audit.timestamps import Ticks, TimestampError, parse_seven_digit_timestamps
from airflow_provider_orchestrator_audit.validation import checked_int
from airflow_provider_orchestrator_audit.verbatim import utf8_line

__all__ = [
    "MAX_TOP",
    "ORCHESTRATOR_TENANT_ADVICE",
    "OdataQuery",
    "fetch_orchestrator_page",
    "orchestrator_audit_url",
    "parse_orchestrator_page",
]

#: The most entries one ``$top`` may ask for (the documented limit).
MAX_TOP = 1000
ORCHESTRATOR_TENANT_ADVICE = (
    "set tenant='<tenant name>' on the operator (templated) or the connection's extra 'tenant', e.g. "
    '{"organization": "acme", "tenant": "DefaultTenant"}: the name that follows the organization in your '
    "Orchestrator URL (a standalone Orchestrator, extra 'orchestrator_url', needs none)"
)


_INT64_MAX = 2**63 - 1


class _Head(msgspec.Struct, gc=False):
    """
    Of an ordinary entry, only ``Id`` (a JSON number that is an int64 >= 0) and ``ExecutionTime`` (a string)
    are decoded; msgspec checks their types, and the rest while skipping it. A page with any other entry is
    read through :class:`_EntryHead`, which takes any value, so that :func:`_entries` says what is wrong.
    (Not tracked by the garbage collector: a page makes a thousand of them, and none can form a cycle.)
    """

    Id: Annotated[int, msgspec.Meta(ge=0, le=_INT64_MAX)]
    ExecutionTime: str


class _EntryHead(msgspec.Struct, gc=False):
    """Of an entry, only ``Id`` and ``ExecutionTime`` are decoded, as any JSON values (or None when missing)."""

    Id: Any = None
    ExecutionTime: Any = None


class _OrdinaryPage(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """
    An ordinary page: these members and no others, each of its type (msgspec checks the UTF-8 of the strings
    it decodes, not of the values it skips, so none is skipped); the entries as their raw spans.
    """

    value: list[msgspec.Raw]
    context: str | None = msgspec.field(name="@odata.context", default=None)
    count: Annotated[int, msgspec.Meta(ge=0)] | None = msgspec.field(name="@odata.count", default=None)
    next_link: str | None = msgspec.field(name="@odata.nextLink", default=None)


class _OrdinaryHeads(msgspec.Struct, gc=False):
    """The heads of an ordinary page's entries (its other members skipped: :class:`_OrdinaryPage` checked them)."""

    value: list[_Head]


_FIELDS = msgspec.json.Decoder(dict[str, msgspec.Raw])
_SPANS = msgspec.json.Decoder(list[msgspec.Raw])
_VALUE = msgspec.json.Decoder()
_HEAD = msgspec.json.Decoder(_EntryHead)
_HEADS = msgspec.json.Decoder(list[_EntryHead])
_ORDINARY_PAGE = msgspec.json.Decoder(_OrdinaryPage)
_ORDINARY_HEADS = msgspec.json.Decoder(_OrdinaryHeads)


@dataclass(frozen=True)
class OdataQuery:
    """
    One ``GET odata/AuditLogs`` call.

    :param tenant: the tenant (as in the URL); ignored for a standalone Orchestrator.
    :param time_from: ``ExecutionTime ge`` this OData DateTimeOffset literal, e.g. ``2026-01-31T13:00:00Z``.
    :param time_to: ``ExecutionTime lt`` this literal.
    :param after_id: ``Id gt`` this (keyset paging).
    :param top: ``$top``, at most :data:`MAX_TOP`.
    :param skip: ``$skip`` (only the naive scan uses it; the export pages by ``Id``).
    :param count: send ``$count=true`` to get ``@odata.count``.
    :param expand_entities: send ``$expand=Entities``.
    :param orderby: ``$orderby``.
    """

    tenant: str | None = None
    time_from: str | None = None
    time_to: str | None = None
    after_id: int | None = None
    top: int | None = None
    skip: int | None = None
    count: bool = False
    expand_entities: bool = False
    orderby: str = "Id asc"

    def __post_init__(self) -> None:
        if self.top is not None:
            checked_int("top", self.top, minimum=1, maximum=MAX_TOP, error=OrchestratorConfigError)
        if self.skip is not None:
            checked_int("skip", self.skip, minimum=0, error=OrchestratorConfigError)
        if self.after_id is not None:
            checked_int("after_id", self.after_id, minimum=0, error=OrchestratorConfigError)

    def filter(self) -> str | None:
        """The ``$filter`` expression, e.g. ``ExecutionTime ge 2026-01-31T13:00:00Z and Id gt 41``."""
        terms = []
        if self.time_from is not None:
            terms.append(f"ExecutionTime ge {self.time_from}")
        if self.time_to is not None:
            terms.append(f"ExecutionTime lt {self.time_to}")
        if self.after_id is not None:
            terms.append(f"Id gt {self.after_id}")
        return " and ".join(terms) or None

    def params(self) -> dict[str, str]:
        """The query string, in OData's system query option names."""
        pairs = {
            "$filter": self.filter(),
            "$orderby": self.orderby or None,
            "$top": None if self.top is None else str(self.top),
            "$skip": None if self.skip is None else str(self.skip),
            "$count": "true" if self.count else None,
            "$expand": "Entities" if self.expand_entities else None,
        }
        return {key: value for key, value in pairs.items() if value is not None}


def orchestrator_audit_url(settings: ConnectionSettings, tenant: str | None) -> str:
    """The audit log of a tenant, or of the standalone Orchestrator the connection names."""
    if settings.orchestrator_url:
        return f"{settings.orchestrator_url}/odata/AuditLogs"
    if not (tenant or "").strip():
        raise OrchestratorConfigError(
            f"Connection {settings.conn_id!r}: Orchestrator's audit log needs a tenant: {ORCHESTRATOR_TENANT_ADVICE}"
        )
    organization = quote(settings.organization, safe="")
    return f"{settings.base_url}/{organization}/{quote((tenant or '').strip(), safe='')}/orchestrator_/odata/AuditLogs"


def fetch_orchestrator_page(
    settings: ConnectionSettings, policy: RetryPolicy, query: OdataQuery
) -> Exchange[OrchestratorAuditPage]:
    """``GET .../odata/AuditLogs``: one page, retried as the policy allows, with a token carrying ``OR.Audit.Read``."""
    scope = settings.scope_for(ORCHESTRATOR_SCOPE)
    return (
        yield from get_with_token(
            settings,
            policy,
            httpx.URL(orchestrator_audit_url(settings, query.tenant), params=query.params()),
            parse_orchestrator_page,
            refused=lambda where, reply, sent: _refused(settings, where, reply, scope, sent),
            failed=lambda where, reply, sent: _failed(settings, where, reply, query, sent),
            scope=scope,
        )
    )


def odata_error(reply: httpx.Response) -> str | None:
    """An OData error body in words: ``message (errorCode 1015, traceId ...)``; None for any other body."""
    try:
        document = json.loads(reply.content)
    except ValueError:
        return None
    if isinstance(document, dict) and isinstance(document.get("error"), dict):
        document = document["error"]  # OData v4's own envelope: {"error": {"code", "message"}}
    if not isinstance(document, dict) or not isinstance(document.get("message"), str):
        return None
    details = [
        f"{label} {document[name]}"
        for name, label in (("errorCode", "errorCode"), ("code", "code"), ("traceId", "traceId"))
        if document.get(name) not in (None, "")
    ]
    return document["message"][:300] + (f" ({', '.join(details)})" if details else "")


def _quoted(settings: ConnectionSettings, reply: httpx.Response, sent: tuple[str, ...]) -> str:
    # The server's own words, with the connection's secrets and the token sent masked like any quoted body.
    said = odata_error(reply)
    if said is not None:
        return excerpt(said.encode("utf-8"), (*settings.secrets, *sent))
    return excerpt(reply.content, (*settings.secrets, *sent))


def _refused(
    settings: ConnectionSettings, where: str, reply: httpx.Response, scope: str, sent: tuple[str, ...]
) -> OrchestratorAuthError:
    said = _quoted(settings, reply, sent)
    if reply.status_code == 403:
        asked = "a personal access token" if settings.uses_personal_access_token else f"a token for scope {scope!r}"
        advice = (
            f"Orchestrator's audit log needs scope OR.Audit.Read (or OR.Audit) and the Audit.View permission; "
            f"{asked} was refused. Add the Orchestrator API scope OR.Audit.Read to the external application "
            f"(client id {settings.client_id!r}) in Admin > External Applications"
            + (" and remove or extend the connection's extra 'scope'" if settings.scope_pinned else "")
            + ", and give it (or the token's user) a role with Audit View in the tenant"
        )
    elif settings.uses_personal_access_token:
        advice = "the personal access token in extra 'access_token' is expired, revoked or for another organization"
    else:
        advice = (
            f"a fresh token from {settings.token_url} was refused too: check that Host, extra 'organization', the "
            "tenant, extra 'orchestrator_url' and extra 'token_url' belong to the same Orchestrator deployment"
        )
    return OrchestratorAuthError(
        f"Connection {settings.conn_id!r}: {where} answered HTTP {reply.status_code}: {said}. {advice}."
    )


def _failed(
    settings: ConnectionSettings, where: str, reply: httpx.Response, query: OdataQuery, sent: tuple[str, ...]
) -> OrchestratorRequestError:
    status = reply.status_code
    advice = ""
    if status == 400:
        advice = (
            " The server refused the query itself: it may not support this $filter (ExecutionTime ge/lt and "
            "Id gt, joined by 'and'), $orderby=Id or $top up to 1000; check the Orchestrator version"
        )
    elif status == 404:
        advice = (
            f" Check extra 'orchestrator_url' ({settings.orchestrator_url!r}): a standalone Orchestrator's own URL"
            if settings.orchestrator_url
            else f" Check the connection's extra 'organization' ({settings.organization!r}) and the tenant "
            f"({query.tenant!r}): the names that follow the host in your Orchestrator URL"
        )
    return status_failure(settings, where, status, _quoted(settings, reply, sent), advice)


# --- the body: each entry's own text kept -----------------------------------------------------------


def parse_orchestrator_page(body: bytes) -> OrchestratorAuditPage:
    """
    Parse ``{"@odata.context": ..., "@odata.count": N, "value": [...]}``, keeping each entry's exact text.

    Read with msgspec (each entry as its raw span, only ``Id`` and ``ExecutionTime`` decoded); a body
    that is not an ordinary page is read again with Python's :mod:`json` to say what is wrong and where.

    :raises PageFormatError: e.g. ``value: Field required``; ``damaged`` when the body is not JSON at all.
    """
    # An ordinary page takes two passes in C over the body, one for the envelope and the entries' spans and
    # one for the entries' Id and ExecutionTime, and a few steps over all entries at once.
    try:
        page = _ORDINARY_PAGE.decode(body)
        heads = _ORDINARY_HEADS.decode(body).value
    except (msgspec.MsgspecError, ValueError):
        pass
    else:
        entries = _ordinary_entries(body, page.value, heads)
        if entries is not None:
            return OrchestratorAuditPage(entries, count=page.count, next_link=page.next_link or None)
    return _read_page(body)


def _read_page(body: bytes) -> OrchestratorAuditPage:
    """Any page, an entry at a time, saying what is wrong with one that is not a page."""
    try:
        return _read_entry_by_entry(body)
    except PageFormatError as error:
        if not error.damaged:
            # Whatever else is wrong, a body that is not JSON text at all was damaged on the way (and is asked
            # for again): the count, say, is read before the entries' text is checked.
            read_json_text(body, json.loads)
        raise


def _read_entry_by_entry(body: bytes) -> OrchestratorAuditPage:
    try:
        fields = _FIELDS.decode(body)
    except (msgspec.MsgspecError, ValueError):
        return _explain(body)
    value_span = fields.get("value")
    if value_span is None:
        raise PageFormatError("value: Field required")
    try:
        for name, span in fields.items():
            if name != "value":
                str(span, "utf-8")  # msgspec skips other values without checking their UTF-8
        count = _count(fields.get("@odata.count"))
        next_link = None if fields.get("@odata.nextLink") is None else _VALUE.decode(fields["@odata.nextLink"])
        spans = _SPANS.decode(value_span)
    except PageFormatError:
        raise
    except (msgspec.MsgspecError, ValueError):
        return _explain(body)
    try:
        heads = _HEADS.decode(value_span)
    except (msgspec.MsgspecError, ValueError):
        heads = [_entry_head(body, span, position) for position, span in enumerate(spans)]
    entries = _entries(body, value_span, spans, heads)
    link = next_link if isinstance(next_link, str) and next_link else None
    return OrchestratorAuditPage(entries, count=count, next_link=link)


def _entry_head(body: bytes, span: msgspec.Raw, position: int) -> _EntryHead:
    """The head of one entry, or the :class:`PageFormatError` that says why it has none."""
    try:
        return _HEAD.decode(span)
    except (msgspec.MsgspecError, ValueError):
        read_json_text(body, json.loads)  # bytes that are not UTF-8 (or not JSON) were damaged on the way
        raise PageFormatError(f"value[{position}]: must be an object") from None


def _ordinary_entries(body: bytes, spans: list[msgspec.Raw], heads: list[_Head]) -> list[OrchestratorAuditEntry] | None:
    """
    The entries of an ordinary page, a step at a time over all of them rather than an entry at a time: each
    one's text UTF-8 and one line (the body not pretty-printed), its ExecutionTime a timestamp. None for any
    other page, which :func:`_read_page` reads, entry by entry, and says what is wrong with.
    """
    lines = list(map(bytes, spans))
    # Raw line breaks can only stand between tokens: entries pretty-printed are read entry by entry (looked
    # for in each entry only when the body has one, which may as well end the body).
    if (b"\n" in body or b"\r" in body) and any(b"\n" in line or b"\r" in line for line in lines):
        return None
    # An all-ASCII body is valid UTF-8 and holds no U+2028/U+2029; otherwise each entry that is not ASCII is
    # checked on its own (decoding the whole body at once builds a wide string: more work than a few checks).
    # The envelope's own strings msgspec checked while decoding them.
    if not body.isascii():
        try:
            for position, line in enumerate(lines):
                if not line.isascii():
                    lines[position] = utf8_line(line)  # raw U+2028/U+2029 escaped, the rest as sent
        except UnicodeDecodeError:
            return None
    execution_times = [head.ExecutionTime for head in heads]
    try:
        ticks = parse_seven_digit_timestamps(execution_times)
    except TimestampError:
        return None
    return OrchestratorAuditEntry.from_lines(lines, [head.Id for head in heads], execution_times, ticks)


def _entries(
    body: bytes, value_span: msgspec.Raw, spans: list[msgspec.Raw], heads: list[_EntryHead]
) -> list[OrchestratorAuditEntry]:
    """The page's entries, each keeping its UTF-8 bytes as sent (one line of JSON) or, failing that, its text."""
    value = bytes(value_span)
    # Raw line breaks can only stand between tokens (a pretty-printed page): looked for per entry only then.
    pretty = b"\n" in value or b"\r" in value
    # An all-ASCII value is valid UTF-8 and holds no U+2028/U+2029; otherwise each entry that is not ASCII is
    # checked on its own (decoding the whole value at once builds a wide string: more work than a few checks).
    ascii_only = value.isascii()
    entries: list[OrchestratorAuditEntry] = []
    append, from_line = entries.append, OrchestratorAuditEntry.from_line
    for position, (head, span) in enumerate(zip(heads, spans, strict=True)):
        entry_id, execution_time = entry_id_of(head.Id), head.ExecutionTime
        if entry_id is None:
            raise PageFormatError(f"value[{position}].Id: must be a non-negative int64, got {head.Id!r}"[:200])
        if type(execution_time) is not str:
            raise PageFormatError(f"value[{position}].ExecutionTime: must be a timestamp string")
        line = bytes(span)
        if not ascii_only and not line.isascii():
            try:
                line = utf8_line(line)  # raw U+2028/U+2029 escaped, the rest as sent
            except UnicodeDecodeError:
                read_json_text(body, json.loads)  # the body is not UTF-8: says so, as damaged on the way
                raise PageFormatError(f"value[{position}]: not UTF-8", damaged=True) from None
        try:
            if pretty and (b"\n" in line or b"\r" in line):
                text = str(line, "utf-8")
                append(OrchestratorAuditEntry(json.loads(text), text))  # re-encoded as one line when written
            else:
                append(from_line(line, entry_id, execution_time, _execution_time_ticks(execution_time)))
        except ValueError as error:
            raise PageFormatError(f"value[{position}]: {error}"[:300]) from None
    return entries


def _execution_time_ticks(text: str) -> Ticks:
    try:
        return created_on_ticks(text)
    except TimestampError as error:
        raise ValueError(f"ExecutionTime is not a timestamp: {error}") from None


def _count(span: msgspec.Raw | None) -> int | None:
    if span is None:
        return None
    value = _VALUE.decode(span)
    if value is None:
        return None
    if type(value) is not int or value < 0:
        raise PageFormatError(f"@odata.count: must be a non-negative integer, got {value!r}"[:200])
    return value


def _explain(body: bytes) -> OrchestratorAuditPage:
    """A body msgspec refused: say why, on Python's json (which also tells damaged text from another shape)."""
    document = read_json_text(body, json.loads)
    if not isinstance(document, dict):
        raise PageFormatError(f"must be a JSON object, got {type(document).__name__}")
    if not isinstance(document.get("value"), list):
        raise PageFormatError("value: must be a list" if "value" in document else "value: Field required")
    raise PageFormatError("not an OData page msgspec could read")
