"""
A local stand-in for Orchestrator's audit API and identity server, for tests, demos and benchmarks.

It serves ``GET /{org}/audit_/api/auditlogs`` from an :class:`~.dataset.AuditDataset`, the unified audit
events ``GET /{org}/orgaudit_/api/query/events`` and ``GET /{org}/{tenant}/tenantaudit_/api/query/events``
from an :class:`~.events_dataset.EventsDataset` (answered by :class:`~.events_dataset.EventListing`,
whose switches cover the events API's unknowns), Orchestrator's own audit log
``GET /{org}/{tenant}/orchestrator_/odata/AuditLogs`` (and a standalone Orchestrator's ``GET /odata/AuditLogs``)
from an :class:`~.orchestrator_dataset.OrchestratorDataset` (answered by
:class:`~.orchestrator_dataset.OdataListing`), and issues
client-credentials tokens at the identity server's token endpoints, over real HTTP/1.1 sockets with
keep-alive. Everything the real service leaves undocumented is a knob here: page-size caps, latency,
data arriving and expiring while a client pages, token expiry, throttling and broken responses
(:mod:`.faults`).

Choices this simulator makes where the API documentation is silent:

* ``sortBy`` absent means ``createdOn``; ``sortOrder`` absent means ``desc``.
* ``top`` absent returns every entry from ``skip`` on (up to ``page_size_cap``).
* Query parameter names and ``sortBy`` values are matched case-insensitively, as ASP.NET binds them.
* A request for the token without ``scope`` is granted every scope the client has.
* Validation errors answer 400 with an RFC 9457 problem document; token errors follow RFC 6749.
"""

from __future__ import annotations

import hmac
import itertools
import json
import math
import random
import secrets
import socket
import socketserver
import struct
import threading
import time
import traceback
from base64 import b64decode
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import Message
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import parse_qsl, unquote

from airflow_provider_orchestrator_audit.testing.dataset import DOCUMENTED_FIELDS, AuditDataset, SortTooLargeError
from airflow_provider_orchestrator_audit.testing.events_dataset import (
    ORGANIZATION_STREAM,
    EventListing,
    EventsDataset,
    ListingSwitches,
)
from airflow_provider_orchestrator_audit.testing.faults import MUTATING_KINDS, Endpoint, Fault, FaultSchedule
from airflow_provider_orchestrator_audit.testing.orchestrator_dataset import (
    OdataListing,
    OdataSwitches,
    OrchestratorDataset,
)
from airflow_provider_orchestrator_audit.timestamps import TICKS_PER_SECOND

__all__ = ["AUDIT_SCOPES", "ORCHESTRATOR_SCOPES", "AuditRequest", "LocalOrchestratorServer", "ServerStats"]

#: Either scope lets a token read the audit log and the audit events.
AUDIT_SCOPES: frozenset[str] = frozenset({"PM.Audit.Read", "PM.Audit"})
#: Either scope lets a token read Orchestrator's own audit log (``odata/AuditLogs``).
ORCHESTRATOR_SCOPES: frozenset[str] = frozenset({"OR.Audit.Read", "OR.Audit"})

_JSON = "application/json; charset=utf-8"
_PROBLEM_JSON = "application/problem+json; charset=utf-8"
_FORM = "application/x-www-form-urlencoded"
_INT32_MAX = 2**31 - 1
_MAX_REQUEST_BODY = 1 << 20
# A truncated answer announces this many bytes more than it sends.
_TRUNCATED_SHORTFALL = 4096
# Bytes that are not UTF-8 anywhere: a lone continuation byte, an invalid lead byte, a cut sequence.
_NOT_UTF8 = b"caf\xe9 \xff\xfe \xc3("
_NOT_UTF8_MARK = "@@not-utf-8@@"
_SORT_FIELDS: dict[str, str] = {name.lower(): name for name in DOCUMENTED_FIELDS}
# The timeline of audit requests keeps the first this many (long benchmark runs make millions).
_TIMELINE_LIMIT = 100_000
# Keeps the random lags of late entries independent of the tie order drawn for the same request.
_LATE_SALT = 0x1A7E_E27


@dataclass(frozen=True)
class AuditRequest:
    """
    One request to the audit endpoint as the server saw it.

    :param arrived: when it arrived, in :func:`time.monotonic` seconds.
    :param query: its query string, e.g. ``top=100&skip=3800&sortBy=createdOn&sortOrder=desc``.
    :param status: the HTTP status answered, or None when the connection was reset instead.
    """

    arrived: float
    query: str
    status: int | None


class ServerStats:
    """What the server has seen since it started or :meth:`reset`; thread-safe, read as copies."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._audit_requests = 0
        self._token_requests = 0
        self._responses_by_status: dict[int, int] = {}
        self._pages: list[tuple[int, int | None]] = []
        self._timeline: list[AuditRequest] = []
        self._connection_resets = 0

    def __repr__(self) -> str:
        return (
            f"ServerStats(audit_requests={self.audit_requests}, token_requests={self.token_requests}, "
            f"responses_by_status={self.responses_by_status}, connection_resets={self.connection_resets})"
        )

    @property
    def audit_requests(self) -> int:
        """Requests that reached the audit-log endpoint, faulted ones included."""
        with self._lock:
            return self._audit_requests

    @property
    def token_requests(self) -> int:
        """Requests that reached a token endpoint, faulted ones included."""
        with self._lock:
            return self._token_requests

    @property
    def responses_by_status(self) -> dict[int, int]:
        """How many responses went out with each HTTP status (any endpoint)."""
        with self._lock:
            return dict(self._responses_by_status)

    @property
    def pages(self) -> list[tuple[int, int | None]]:
        """``(skip, top)`` of each audit page served, in order; ``top`` is None when not sent."""
        with self._lock:
            return list(self._pages)

    @property
    def audit_timeline(self) -> list[AuditRequest]:
        """Every audit request in order of arrival with its answer (the first 100,000), faulted ones included."""
        with self._lock:
            return list(self._timeline)

    @property
    def connection_resets(self) -> int:
        """Connections reset instead of answered."""
        with self._lock:
            return self._connection_resets

    def reset(self) -> None:
        """Start counting from zero."""
        with self._lock:
            self._audit_requests = 0
            self._token_requests = 0
            self._responses_by_status.clear()
            self._pages.clear()
            self._timeline.clear()
            self._connection_resets = 0

    def count_request(self, endpoint: Endpoint) -> None:
        """
        Count a request arriving at an endpoint.

        :param endpoint: ``"audit"`` or ``"token"``.
        """
        with self._lock:
            if endpoint == "audit":
                self._audit_requests += 1
            else:
                self._token_requests += 1

    def count_response(self, status: int | None) -> None:
        """
        Count a response sent, or a connection reset when ``status`` is None.

        :param status: the HTTP status sent.
        """
        with self._lock:
            if status is None:
                self._connection_resets += 1
            else:
                self._responses_by_status[status] = self._responses_by_status.get(status, 0) + 1

    def record_audit(self, request: AuditRequest) -> None:
        """
        Add an answered audit request to :attr:`audit_timeline`.

        :param request: the request and its answer.
        """
        with self._lock:
            if len(self._timeline) < _TIMELINE_LIMIT:
                self._timeline.append(request)

    def count_page(self, skip: int, top: int | None) -> None:
        """
        Record an audit page served.

        :param skip: the ``skip`` asked for.
        :param top: the ``top`` asked for, None when absent.
        """
        with self._lock:
            self._pages.append((skip, top))


@dataclass
class _Reply:
    """An answer to send; ``action`` says whether to send it whole, cut it short or reset instead."""

    status: int
    body: bytes = b""
    content_type: str = _JSON
    headers: list[tuple[str, str]] = field(default_factory=list)
    action: Literal["send", "truncate", "reset"] = "send"


@dataclass
class _Page:
    """A page as served, kept so a fault can damage it afterwards."""

    total: int
    entries: list[bytes]
    newest: int  # the newest visible index, whose entry stands in when the page is empty


def _json_reply(
    status: int, document: Any, *, content_type: str = _JSON, headers: list[tuple[str, str]] | None = None
) -> _Reply:
    body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return _Reply(status, body, content_type, headers or [])


def _problem(status: int, title: str, detail: str | None = None, errors: dict[str, list[str]] | None = None) -> _Reply:
    # ASP.NET answers failed validation with an RFC 9457 problem document.
    document: dict[str, Any] = {"title": title, "status": status}
    if detail:
        document["detail"] = detail
    if errors:
        document["errors"] = errors
    return _json_reply(status, document, content_type=_PROBLEM_JSON)


def _oauth_error(error: str, description: str) -> _Reply:
    return _json_reply(
        400,
        {"error": error, "error_description": description},
        headers=[("Cache-Control", "no-store"), ("Pragma", "no-cache")],
    )


def _bearer_challenge(status: int, error: str, description: str, extra: str = "") -> _Reply:
    challenge = f'Bearer error="{error}", error_description="{description}"{extra}'
    return _json_reply(
        status, {"error": error, "error_description": description}, headers=[("WWW-Authenticate", challenge)]
    )


def _int32(params: dict[str, str], name: str, label: str, errors: dict[str, list[str]]) -> int | None:
    value = params.get(name, "").strip()
    if not value:
        return None
    if not value.isascii() or not value.isdigit() or int(value) > _INT32_MAX:
        errors[label] = [f"The value '{value}' is not valid for {label}: expected an integer from 0 to {_INT32_MAX}."]
        return None
    return int(value)


def _page_body(total: int | None, entries: Iterable[bytes]) -> bytes:
    head = b'{"results":[' if total is None else b'{"totalCount":%d,"results":[' % total
    return head + b",".join(entries) + b"]}"


def _compact(document: dict[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class _HTTPServer(ThreadingHTTPServer):
    """The socket server: one daemon thread per connection, and a record of open connections."""

    daemon_threads = True
    block_on_close = False
    # Benchmarks open many connections at once; the default backlog of 5 would refuse some.
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], simulator: LocalOrchestratorServer) -> None:
        self.simulator = simulator
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can stall for seconds on a host
        # without working reverse DNS; the name is never used here.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_open_connections(self) -> None:
        """Shut down every connection still open, so idle keep-alive threads end and stale clients fail."""
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out or hang up mid-answer are part of the job; stay quiet about them.
        if self.simulator.verbose:
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """Reads one request at a time off a keep-alive connection and sends the simulator's answer."""

    protocol_version = "HTTP/1.1"
    server_version = "LocalOrchestrator/1.0"
    sys_version = ""
    # An idle keep-alive connection is dropped after this many seconds.
    timeout = 300
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle's algorithm and delayed ACKs
        # add tens of milliseconds to each keep-alive request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.simulator.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def _serve(self, method: str) -> None:
        simulator = self.server.simulator
        try:
            body = self._read_body()
        except ValueError as exc:
            self.close_connection = True  # the rest of the stream cannot be trusted
            reply = _problem(400, "Bad request body", str(exc))
        else:
            try:
                reply = simulator.answer(method, self.path, self.headers, body)
            except Exception as exc:  # noqa: BLE001 - a simulator bug: answer 500 rather than drop the connection
                if simulator.verbose:
                    traceback.print_exc()
                reply = _problem(500, "Simulator error", f"{type(exc).__name__}: {exc}")
        try:
            self._send(reply)
        except OSError:
            # The client hung up (e.g. its read timeout fired during a stall).
            self.close_connection = True

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        try:
            size = int(length)
        except ValueError:
            raise ValueError(f"Content-Length {length!r} is not a number") from None
        if not 0 <= size <= _MAX_REQUEST_BODY:
            raise ValueError(f"Content-Length {size} is out of range (at most {_MAX_REQUEST_BODY})")
        return self.rfile.read(size)

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(65_537)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise ValueError(f"bad chunk size line {line[:40]!r}") from None
            if size == 0:
                while self.rfile.readline(65_537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers carry nothing this server uses
                return b"".join(chunks)
            total += size
            if total > _MAX_REQUEST_BODY:
                raise ValueError(f"request body is larger than {_MAX_REQUEST_BODY} bytes")
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    def _send(self, reply: _Reply) -> None:
        stats = self.server.simulator.stats
        if reply.action == "reset":
            stats.count_response(None)
            self._reset_connection()
            return
        stats.count_response(reply.status)
        declared = len(reply.body) + (_TRUNCATED_SHORTFALL if reply.action == "truncate" else 0)
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(declared))
        for name, value in reply.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)
        if reply.action == "truncate":
            self.close_connection = True

    def _reset_connection(self) -> None:
        self.close_connection = True
        try:
            # Linger 0: close() sends RST instead of FIN, so the client sees a reset, not an empty answer.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        # The read buffer holds a reference to the socket; close() only takes effect without it.
        self.rfile.close()
        self.connection.close()


class LocalOrchestratorServer:
    """
    Orchestrator's audit-log API and identity server on a local port.

    Use as a context manager (``with LocalOrchestratorServer() as server: ...``) or call
    :meth:`start` and :meth:`stop`. The attributes ``latency_seconds``, ``page_size_cap``,
    ``arrivals_per_request``, ``removals_per_request``, the ``late_*`` settings and
    ``token_lifetime_seconds`` may be changed while it runs; each request reads them when it arrives.

    :param dataset: the audit log served; a default :class:`AuditDataset` when None.
    :param host: the interface to listen on.
    :param port: the port; 0 picks a free one (see :attr:`port` once started).
    :param organization: the organization name in the URL path.
    :param client_id: the external application's client id accepted at the token endpoint.
    :param client_secret: its client secret.
    :param personal_access_tokens: tokens accepted as bearer tokens without a token request.
    :param granted_scopes: the scopes the client may ask for; the audit log and the events need PM.Audit.Read
        or PM.Audit, Orchestrator's own audit log OR.Audit.Read or OR.Audit.
    :param token_lifetime_seconds: ``expires_in`` of issued tokens, and when they stop working.
    :param latency_seconds: delay before each audit answer (slept in the request's own thread).
    :param page_size_cap: the most entries one audit page holds, whatever ``top`` says; None for no cap.
    :param arrivals_per_request: entries that arrive at the newest end before each audit page.
    :param removals_per_request: entries that expire at the oldest end before each audit page.
    :param late_per_request: entries recorded late before each audit page: their ``createdOn`` lies
        between ``late_min_lag_seconds`` and ``late_max_lag_seconds`` below the newest entry, so they
        land inside the listing and move only what is older (see :meth:`AuditDataset.record_late`).
    :param late_max_lag_seconds: the most a late entry's ``createdOn`` lies below the newest entry.
    :param late_min_lag_seconds: the least.
    :param late_burst_every: every Nth audit request also records ``late_burst_size`` late entries at once.
    :param late_burst_size: the size of such a burst.
    :param throttle_every: every Nth audit request gets 429 with ``Retry-After``.
    :param error_every: every Nth audit request gets a 503 with an HTML body.
    :param reset_every: every Nth audit request has its connection reset.
    :param seed: seeds the per-request order of tie groups, so runs are reproducible.
    :param verbose: log each request and connection error to stderr.
    :param events: the unified audit events served (organization and tenants); a small default
        :class:`EventsDataset` when None.
    :param event_switches: how the events listing answers the API's unknowns (see :class:`ListingSwitches`;
        also reachable as ``server.event_listing.switches`` while it runs).
    :param event_arrivals_per_request: events that arrive at the newest end of the queried stream before
        each events page.
    :param event_late_per_request: events recorded late in the queried stream before each events page,
        ``event_late_min_lag_seconds`` to ``event_late_max_lag_seconds`` below its newest event.

    :param orchestrator_audit: Orchestrator's own audit logs per tenant, served at ``odata/AuditLogs``; a small
        default :class:`OrchestratorDataset` when None.
    :param odata_switches: how that listing answers the API's unknowns (see :class:`OdataSwitches`; also
        reachable as ``server.odata_listing.switches`` while it runs).
    :param odata_arrivals_per_request: entries recorded at the newest end of the queried tenant's log before
        each ``odata/AuditLogs`` page.
    :param odata_late_per_request: entries recorded late (``ExecutionTime`` ``odata_late_lag_seconds`` below
        the newest, a new Id) before each such page.
    :param standalone_tenant: the tenant a standalone Orchestrator's ``/odata/AuditLogs`` serves.

    The fault schedule's ``"audit"`` queue applies to the events and OData endpoints too.
    """

    def __init__(
        self,
        dataset: AuditDataset | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        organization: str = "acme",
        client_id: str = "local-client",
        client_secret: str = "local-secret",
        personal_access_tokens: Iterable[str] = ("local-pat",),
        granted_scopes: Iterable[str] = ("PM.Audit.Read", "PM.Audit", "OR.Audit.Read", "OR.Audit"),
        token_lifetime_seconds: float = 3600,
        latency_seconds: float = 0.0,
        page_size_cap: int | None = None,
        arrivals_per_request: int = 0,
        removals_per_request: int = 0,
        late_per_request: int = 0,
        late_max_lag_seconds: float = 3600.0,
        late_min_lag_seconds: float = 0.0,
        late_burst_every: int | None = None,
        late_burst_size: int = 0,
        throttle_every: int | None = None,
        error_every: int | None = None,
        reset_every: int | None = None,
        seed: int = 0,
        verbose: bool = False,
        events: EventsDataset | None = None,
        event_switches: ListingSwitches | None = None,
        event_arrivals_per_request: int = 0,
        event_late_per_request: int = 0,
        event_late_min_lag_seconds: float = 0.0,
        event_late_max_lag_seconds: float = 3600.0,
        orchestrator_audit: OrchestratorDataset | None = None,
        odata_switches: OdataSwitches | None = None,
        odata_arrivals_per_request: int = 0,
        odata_late_per_request: int = 0,
        odata_late_lag_seconds: float = 1800.0,
        standalone_tenant: str = "DefaultTenant",
    ) -> None:
        if page_size_cap is not None and page_size_cap < 1:
            raise ValueError(f"page_size_cap must be >= 1 or None, got {page_size_cap}")
        self.dataset = dataset if dataset is not None else AuditDataset()
        self.host = host
        self.organization = organization
        self.client_id = client_id
        self.client_secret = client_secret
        self.personal_access_tokens = frozenset(personal_access_tokens)
        self.granted_scopes = tuple(granted_scopes)
        self.token_lifetime_seconds = token_lifetime_seconds
        self.latency_seconds = latency_seconds
        self.page_size_cap = page_size_cap
        self.arrivals_per_request = arrivals_per_request
        self.removals_per_request = removals_per_request
        self.late_per_request = late_per_request
        self.late_max_lag_seconds = late_max_lag_seconds
        self.late_min_lag_seconds = late_min_lag_seconds
        self.late_burst_every = late_burst_every
        self.late_burst_size = late_burst_size
        self.seed = seed
        self.verbose = verbose
        self.faults = FaultSchedule(throttle_every=throttle_every, error_every=error_every, reset_every=reset_every)
        self.event_listing = EventListing(
            events if events is not None else EventsDataset(size=1000, organization=organization, seed=seed),
            event_switches,
        )
        self.event_arrivals_per_request = event_arrivals_per_request
        self.event_late_per_request = event_late_per_request
        self.event_late_min_lag_seconds = event_late_min_lag_seconds
        self.event_late_max_lag_seconds = event_late_max_lag_seconds
        self.odata_listing = OdataListing(
            orchestrator_audit if orchestrator_audit is not None else OrchestratorDataset(size=1000, seed=seed),
            odata_switches,
        )
        self.odata_arrivals_per_request = odata_arrivals_per_request
        self.odata_late_per_request = odata_late_per_request
        self.odata_late_lag_seconds = odata_late_lag_seconds
        self.standalone_tenant = standalone_tenant
        self.stats = ServerStats()
        self._requested_port = port
        self._tokens: dict[str, tuple[float, frozenset[str]]] = {}
        self._issued_tokens: list[str] = []
        self._token_scopes: list[str] = []
        self._tokens_lock = threading.Lock()
        # Numbers requests for their random tie order; unlike the stats it is never reset.
        self._serial = itertools.count(1)
        self._serial_lock = threading.Lock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # --- life cycle ----------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind the port and serve in a daemon thread; returns the server itself."""
        if self._httpd is not None:
            raise RuntimeError("the server is already running")
        self._stopping = threading.Event()
        httpd = _HTTPServer((self.host, self._requested_port), self)
        thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="local-orchestrator", daemon=True
        )
        self._httpd, self._thread = httpd, thread
        thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close every open connection and the listening socket, and join the serving thread."""
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        self._stopping.set()  # wakes requests sleeping in a latency or a stall
        # shutdown() waits for the serving loop's next poll; a connection attempt wakes it at once.
        closer = threading.Thread(target=httpd.shutdown, name="local-orchestrator-stop", daemon=True)
        closer.start()
        while closer.is_alive():
            try:
                socket.create_connection(self._connect_address(httpd), timeout=0.5).close()
            except OSError:
                pass
            closer.join(0.01)
        httpd.close_open_connections()
        httpd.server_close()
        thread.join()
        self._httpd = self._thread = None

    def _client_host(self) -> str:
        # A wildcard address is where the server listens, not where a client connects.
        return {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)

    def _connect_address(self, httpd: _HTTPServer) -> tuple[str, int]:
        return self._client_host(), int(httpd.server_address[1])

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port listened on (known once started)."""
        if self._httpd is None:
            raise RuntimeError("the server is not running: call start() or use it as a context manager")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:8123``; the audit API is at ``{url}/{organization}/audit_/api/auditlogs``."""
        host = self._client_host()
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def audit_url(self) -> str:
        """The audit-log endpoint's full URL."""
        return f"{self.url}/{self.organization}/audit_/api/auditlogs"

    @property
    def events(self) -> EventsDataset:
        """The unified audit events served."""
        return self.event_listing.dataset

    def events_url(self, tenant: str | None = None) -> str:
        """The events endpoint's full URL: the organization's, or a tenant's."""
        return self.url + self.event_listing.path(tenant or ORGANIZATION_STREAM)

    @property
    def orchestrator_audit(self) -> OrchestratorDataset:
        """Orchestrator's own audit logs served at ``odata/AuditLogs``."""
        return self.odata_listing.dataset

    def orchestrator_audit_url(self, tenant: str | None = None) -> str:
        """Orchestrator's audit log of a tenant (Automation Cloud's form), or the standalone form when None."""
        if tenant is None:
            return f"{self.url}/odata/AuditLogs"
        return f"{self.url}/{self.organization}/{tenant}/orchestrator_/odata/AuditLogs"

    @property
    def token_url(self) -> str:
        """The token endpoint's full URL (``/identity_/connect/token``)."""
        return f"{self.url}/identity_/connect/token"

    # --- helpers for tests ---------------------------------------------------------------------

    def reset_stats(self) -> None:
        """Start the request and response counts, and the record of :attr:`issued_tokens`, from zero."""
        self.stats.reset()
        with self._tokens_lock:
            self._issued_tokens.clear()
            self._token_scopes.clear()

    @property
    def token_scopes(self) -> tuple[str, ...]:
        """The ``scope`` of every granted token request since the server started or :meth:`reset_stats`, in order."""
        with self._tokens_lock:
            return tuple(self._token_scopes)

    @property
    def issued_tokens(self) -> tuple[str, ...]:
        """
        Every access token issued since the server started or :meth:`reset_stats`, in order, revoked and
        expired ones included: the values a test checks never reach a log line.
        """
        with self._tokens_lock:
            return tuple(self._issued_tokens)

    def revoke_tokens(self) -> None:
        """Invalidate every access token issued so far (personal access tokens keep working)."""
        with self._tokens_lock:
            self._tokens.clear()

    def issue_token(self, scopes: Iterable[str] | None = None, lifetime_seconds: float | None = None) -> str:
        """
        Issue an access token without a token request.

        :param scopes: its scopes; every granted scope when None.
        :param lifetime_seconds: how long it works; ``token_lifetime_seconds`` when None.
        """
        lifetime = self.token_lifetime_seconds if lifetime_seconds is None else lifetime_seconds
        token = secrets.token_urlsafe(32)
        granted = frozenset(self.granted_scopes if scopes is None else scopes)
        with self._tokens_lock:
            now = time.monotonic()
            if len(self._tokens) > 10_000:  # long runs: forget tokens that can no longer be used
                self._tokens = {key: value for key, value in self._tokens.items() if value[0] > now}
            self._tokens[token] = (now + lifetime, granted)
            if len(self._issued_tokens) < 100_000:  # long runs: the record stays bounded
                self._issued_tokens.append(token)
        return token

    def airflow_connection(
        self,
        conn_type: str = "orchestrator_audit",
        *,
        personal_access_token: bool = False,
        tenant: str | None = None,
        standalone: bool = False,
    ) -> dict[str, Any]:
        """
        An Airflow connection for this server, as the JSON of an ``AIRFLOW_CONN_...`` variable.

        :param conn_type: the connection type.
        :param tenant: the connection's ``tenant`` extra, for tenant-level audit events.
        :param personal_access_token: authenticate with the first personal access token instead of
            the client credentials.
        :param standalone: address the server as a standalone Orchestrator: extra ``orchestrator_url`` only,
            no Host, no organization (its audit log is ``/odata/AuditLogs``, its tokens ``/identity/connect/token``).
        """
        if standalone:
            connection: dict[str, Any] = {"conn_type": conn_type}
            extra: dict[str, Any] = {"orchestrator_url": self.url}
        else:
            connection = {"conn_type": conn_type, "host": self.url}
            extra = {"organization": self.organization}
        if tenant is not None:
            extra["tenant"] = tenant
        if personal_access_token:
            if not self.personal_access_tokens:
                raise ValueError("this server accepts no personal access tokens")
            extra["access_token"] = min(self.personal_access_tokens)
        else:
            connection["login"] = self.client_id
            connection["password"] = self.client_secret
        connection["extra"] = extra
        return connection

    # --- answering -----------------------------------------------------------------------------

    def _pause(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def answer(self, method: str, target: str, headers: Message, body: bytes) -> _Reply:
        """
        The answer to one request (called by the HTTP handler, one thread per connection).

        :param method: the HTTP method.
        :param target: the request target, path and query.
        :param headers: the request headers.
        :param body: the request body.
        """
        path, _, query = target.partition("?")
        segments = [unquote(segment) for segment in path.split("/") if segment]
        lowered = [segment.lower() for segment in segments]
        if lowered in (["identity_", "connect", "token"], ["identity", "connect", "token"]) or (
            len(segments) == 4 and lowered[1:] == ["identity_", "connect", "token"] and segments[0] == self.organization
        ):
            if method != "POST":
                reply = _problem(405, "Method Not Allowed", "the token endpoint takes POST")
                reply.headers.append(("Allow", "POST"))
                return reply
            return self._token(headers, body)
        if len(segments) == 4 and lowered[1:] == ["audit_", "api", "auditlogs"]:
            if method != "GET":
                reply = _problem(405, "Method Not Allowed", "the audit log endpoint takes GET")
                reply.headers.append(("Allow", "GET"))
                return reply
            return self._audit(segments[0], query, headers)
        if lowered[-3:] == ["api", "query", "events"] and (
            (len(segments) == 5 and lowered[1] == "orgaudit_") or (len(segments) == 6 and lowered[2] == "tenantaudit_")
        ):
            if method != "GET":
                reply = _problem(405, "Method Not Allowed", "the audit events endpoint takes GET")
                reply.headers.append(("Allow", "GET"))
                return reply
            stream = ORGANIZATION_STREAM if len(segments) == 5 else segments[1]
            return self._events(segments[0], stream, path, query, headers)
        standalone = lowered == ["odata", "auditlogs"]
        if standalone or (len(segments) == 5 and lowered[2:] == ["orchestrator_", "odata", "auditlogs"]):
            if method != "GET":
                reply = _problem(405, "Method Not Allowed", "the audit log endpoint takes GET")
                reply.headers.append(("Allow", "GET"))
                return reply
            if standalone:
                return self._odata(None, self.standalone_tenant, path, query, headers)
            return self._odata(segments[0], segments[1], path, query, headers)
        return _problem(404, "Not Found", f"no such endpoint: {method} {path}")

    def _fault_reply(self, fault: Fault, endpoint: Endpoint) -> _Reply:
        kind = fault.kind
        if kind in ("status", "server_error"):
            return _Reply(fault.status_code, fault.body, fault.content_type, list(fault.headers))
        if kind == "throttle":
            wait = fault.retry_after_seconds
            if fault.style == "body":
                number: float = int(wait) if float(wait).is_integer() else wait
                return _json_reply(429, {"retry_after": number, "message": "Too many requests"})
            if fault.style == "header-date":
                # An HTTP-date has whole seconds: round up so the wait is never shorter than asked.
                now = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
                value = format_datetime(now + timedelta(seconds=math.ceil(wait)), usegmt=True)
            else:
                value = str(math.ceil(wait))
            return _json_reply(429, {"message": "Too many requests"}, headers=[("Retry-After", value)])
        if kind == "reset":
            return _Reply(0, action="reset")
        if kind == "malformed_json":
            if endpoint == "token":
                return _Reply(200, b'{"access_token": local-token, "token_type": "Bearer", "expires_in": 3600')
            return _Reply(
                200,
                b'{"totalCount": 3, "results": [{"createdOn": "2026-01-01T00:00:00.0000000+00:00", "category": User}',
            )
        if kind == "truncated":
            if endpoint == "token":
                return _Reply(200, b'{"access_token":"', action="truncate")
            created_on = self.dataset.entry(0)["createdOn"]
            return _Reply(
                200,
                f'{{"totalCount":1000,"results":[{{"createdOn":"{created_on}","category":"User"'.encode(),
                action="truncate",
            )
        if kind == "wrong_shape":
            return _Reply(200, fault.body)
        if kind == "non_utf8":  # only reaches here for the token endpoint; an audit page is damaged instead
            return _Reply(200, b'{"access_token":"' + _NOT_UTF8 + b'","token_type":"Bearer","expires_in":3600}')
        raise ValueError(f"fault {kind!r} has no fixed answer")

    # --- identity server -----------------------------------------------------------------------

    def _token(self, headers: Message, body: bytes) -> _Reply:
        self.stats.count_request("token")
        fault = self.faults.take("token")
        if fault is not None:
            if fault.kind == "stall":
                self._pause(fault.seconds)
            else:
                return self._fault_reply(fault, "token")
        content_type = (headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if content_type != _FORM:
            return _oauth_error(
                "invalid_request", f"the token request must be sent as {_FORM}, not {content_type or 'no content type'}"
            )
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body))
        except (UnicodeDecodeError, ValueError):
            return _oauth_error("invalid_request", "the request body is not valid form encoding")
        form: dict[str, str] = {}
        for name, value in pairs:
            if name in form:
                return _oauth_error("invalid_request", f"parameter {name!r} is repeated")
            form[name] = value
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        basic = _basic_credentials(headers.get("Authorization"))
        if basic is not None:
            if client_secret is not None:
                return _oauth_error("invalid_request", "send the client credentials once: in the body or in Basic auth")
            client_id, client_secret = basic
        if client_id != self.client_id or not hmac.compare_digest(
            (client_secret or "").encode("utf-8"), self.client_secret.encode("utf-8")
        ):
            return _oauth_error(
                "invalid_client", "client authentication failed: unknown client_id or wrong client_secret"
            )
        grant_type = form.get("grant_type")
        if not grant_type:
            return _oauth_error("invalid_request", "grant_type is missing")
        if grant_type != "client_credentials":
            return _oauth_error(
                "unsupported_grant_type", f"grant_type {grant_type!r} is not supported; use client_credentials"
            )
        requested = form.get("scope", "").split() or list(self.granted_scopes)
        refused = [scope for scope in requested if scope not in self.granted_scopes]
        if refused:
            return _oauth_error("invalid_scope", f"the client may not request scope(s) {' '.join(refused)}")
        lifetime = self.token_lifetime_seconds
        token = self.issue_token(requested, lifetime)
        with self._tokens_lock:
            if len(self._token_scopes) < 100_000:
                self._token_scopes.append(form.get("scope", ""))
        return _json_reply(
            200,
            {
                "access_token": token,
                "expires_in": math.ceil(lifetime),
                "token_type": "Bearer",
                "scope": " ".join(requested),
            },
            headers=[("Cache-Control", "no-store"), ("Pragma", "no-cache")],
        )

    # --- audit log -----------------------------------------------------------------------------

    def _audit(self, organization: str, query: str, headers: Message) -> _Reply:
        arrived = time.monotonic()
        self.stats.count_request("audit")
        reply = self._audit_reply(organization, query, headers)
        status = None if reply.action == "reset" else reply.status
        self.stats.record_audit(AuditRequest(arrived, query, status))
        return reply

    def _audit_reply(self, organization: str, query: str, headers: Message) -> _Reply:
        with self._serial_lock:
            serial = next(self._serial)
        self._pause(self.latency_seconds)
        fault = self.faults.take("audit")
        damage: Fault | None = None
        if fault is not None:
            if fault.kind == "stall":
                self._pause(fault.seconds)
            elif fault.kind in MUTATING_KINDS:
                damage = fault
            else:
                return self._fault_reply(fault, "audit")
        reply, page = self._audit_page(organization, query, headers, serial)
        if damage is not None:
            if page is None:
                self.faults.give_back(damage, "audit")  # wait for a request that gets a page
            else:
                reply = _Reply(200, self._damage(damage, page))
        return reply

    def _authorize(self, headers: Message, scopes: frozenset[str] = AUDIT_SCOPES) -> _Reply | None:
        value = headers.get("Authorization") or ""
        scheme, _, token = value.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return _bearer_challenge(401, "invalid_token", "no bearer token: send Authorization: Bearer <access token>")
        if token in self.personal_access_tokens:
            return None
        with self._tokens_lock:
            grant = self._tokens.get(token)
        if grant is None:
            return _bearer_challenge(401, "invalid_token", "the access token is unknown or was revoked")
        expires = grant[0]
        if time.monotonic() >= expires:
            return _bearer_challenge(401, "invalid_token", "the access token expired")
        granted = grant[1]
        if not granted & scopes:
            needed = min(scopes, key=len), max(scopes, key=len)  # e.g. PM.Audit.Read (or PM.Audit)
            return _bearer_challenge(
                403,
                "insufficient_scope",
                f"the access token lacks scope {needed[1]} (or {needed[0]})",
                f', scope="{needed[1]}"',
            )
        return None

    def _audit_page(self, organization: str, query: str, headers: Message, serial: int) -> tuple[_Reply, _Page | None]:
        if organization != self.organization:
            return _problem(404, "Not Found", f"organization {organization!r} does not exist"), None
        refusal = self._authorize(headers)
        if refusal is not None:
            return refusal, None
        params = {name.lower(): value for name, value in parse_qsl(query, keep_blank_values=True)}
        errors: dict[str, list[str]] = {}
        top = _int32(params, "top", "top", errors)
        skip = _int32(params, "skip", "skip", errors) or 0
        sort_name = params.get("sortby", "").strip() or "createdOn"
        sort_field = _SORT_FIELDS.get(sort_name.lower())
        if sort_field is None:
            errors["sortBy"] = [
                f"'{sort_name}' is not a property of an audit log entry; use one of {', '.join(DOCUMENTED_FIELDS)}."
            ]
        sort_order = params.get("sortorder", "").strip().lower() or "desc"
        if sort_order not in ("asc", "desc"):
            errors["sortOrder"] = [f"The value '{params['sortorder']}' is not valid for sortOrder: use asc or desc."]
        if errors or sort_field is None:
            return _problem(400, "One or more validation errors occurred.", errors=errors), None

        # The log moves while a client pages: new activity at the head, retention at the tail.
        if self.arrivals_per_request > 0:
            self.dataset.append(self.arrivals_per_request)
        late = self.late_per_request
        if self.late_burst_every and serial % self.late_burst_every == 0:
            late += self.late_burst_size
        if late > 0:
            # Entries recorded late: below the newest one, anywhere in the listing, as a pipeline
            # catching up after a delay writes them.
            self.dataset.record_late(
                late,
                max_lag_ticks=round(self.late_max_lag_seconds * TICKS_PER_SECOND),
                min_lag_ticks=round(min(self.late_min_lag_seconds, self.late_max_lag_seconds) * TICKS_PER_SECOND),
                rng=random.Random((self.seed * 2**32 + serial) ^ _LATE_SALT),
            )
        if self.removals_per_request > 0:
            self.dataset.expire(self.removals_per_request)
        view = self.dataset.view()
        high = view.high
        total = view.total
        count = max(0, total - skip) if top is None else top
        cap = self.page_size_cap
        if cap is not None:
            count = min(count, cap)
        descending = sort_order == "desc"
        if sort_field == "createdOn":
            rng = random.Random(self.seed * 2**32 + serial)
            entries = self.dataset.page_json(skip, count, descending, rng, view=view)
        else:
            try:
                order = self.dataset.sorted_indices(sort_field, descending, view=view)
            except SortTooLargeError as exc:
                return _problem(400, f"Cannot sort by {sort_field}", str(exc)), None
            entries = [self.dataset.entry_json(i) for i in order[skip : skip + count]]
        self.stats.count_page(skip, top)
        page = _Page(total, entries, max(0, high - 1))
        return _Reply(200, _page_body(total, entries)), page

    # --- unified audit events --------------------------------------------------------------------

    def _events(self, organization: str, stream: str, path: str, query: str, headers: Message) -> _Reply:
        arrived = time.monotonic()
        self.stats.count_request("audit")
        reply = self._events_reply(organization, stream, query, headers)
        status = None if reply.action == "reset" else reply.status
        self.stats.record_audit(AuditRequest(arrived, f"{path}?{query}", status))
        return reply

    def _events_reply(self, organization: str, stream: str, query: str, headers: Message) -> _Reply:
        with self._serial_lock:
            serial = next(self._serial)
        self._pause(self.latency_seconds)
        fault = self.faults.take("audit")
        damage: Fault | None = None
        if fault is not None:
            if fault.kind == "stall":
                self._pause(fault.seconds)
            elif fault.kind in MUTATING_KINDS:
                damage = fault
            else:
                return self._fault_reply(fault, "audit")
        if organization != self.organization:
            return _problem(404, "Not Found", f"organization {organization!r} does not exist")
        events = self.events
        if stream != ORGANIZATION_STREAM and stream not in events.tenants:
            return _problem(404, "Not Found", f"tenant {stream!r} does not exist in organization {organization!r}")
        refusal = self._authorize(headers)
        if refusal is not None:
            return refusal
        if self.event_arrivals_per_request > 0:
            events.append(stream, self.event_arrivals_per_request)
        if self.event_late_per_request > 0:
            events.record_late(
                stream,
                self.event_late_per_request,
                min_lag=round(self.event_late_min_lag_seconds * TICKS_PER_SECOND),
                max_lag=round(self.event_late_max_lag_seconds * TICKS_PER_SECOND),
                rng=random.Random((self.seed * 2**32 + serial) ^ _LATE_SALT),
            )
        params = {name.lower(): value for name, value in parse_qsl(query, keep_blank_values=True)}
        answer = self.event_listing.answer(stream, params, time.monotonic())
        content_type = _JSON if answer.status == 200 else _PROBLEM_JSON
        if damage is not None:
            if answer.status != 200:
                self.faults.give_back(damage, "audit")  # wait for a request that gets a page
            else:
                return _Reply(200, _damage_events(damage, answer.body))
        return _Reply(answer.status, answer.body, content_type)

    # --- Orchestrator's own audit log (OData) ---------------------------------------------------------

    def _odata(self, organization: str | None, tenant: str, path: str, query: str, headers: Message) -> _Reply:
        arrived = time.monotonic()
        self.stats.count_request("audit")
        reply = self._odata_reply(organization, tenant, query, headers)
        status = None if reply.action == "reset" else reply.status
        self.stats.record_audit(AuditRequest(arrived, f"{path}?{query}", status))
        return reply

    def _odata_reply(self, organization: str | None, tenant: str, query: str, headers: Message) -> _Reply:
        with self._serial_lock:
            serial = next(self._serial)
        self._pause(self.latency_seconds)
        fault = self.faults.take("audit")
        damage: Fault | None = None
        if fault is not None:
            if fault.kind == "stall":
                self._pause(fault.seconds)
            elif fault.kind in MUTATING_KINDS:
                damage = fault
            else:
                return self._fault_reply(fault, "audit")
        if organization is not None and organization != self.organization:
            return _odata_error(404, f"Organization '{organization}' does not exist.")
        dataset = self.orchestrator_audit
        if tenant not in dataset.tenants:
            return _odata_error(404, f"Tenant '{tenant}' does not exist.")
        refusal = self._authorize(headers, ORCHESTRATOR_SCOPES)
        if refusal is not None:
            return refusal
        if self.odata_arrivals_per_request > 0:
            dataset.append(tenant, self.odata_arrivals_per_request)
        if self.odata_late_per_request > 0:
            rng = random.Random((self.seed * 2**32 + serial) ^ _LATE_SALT)
            lag = round(self.odata_late_lag_seconds * TICKS_PER_SECOND)
            lags = [rng.randint(0, lag) for _ in range(self.odata_late_per_request)]
            dataset.record_late(tenant, self.odata_late_per_request, lags)
        params = dict(parse_qsl(query, keep_blank_values=True))
        base = self.url if organization is None else f"{self.url}/{organization}/{tenant}/orchestrator_"
        answer = self.odata_listing.answer(tenant, params, serial, context=base)
        if damage is not None:
            if answer.status != 200:
                self.faults.give_back(damage, "audit")  # wait for a request that gets a page
            else:
                return _Reply(200, _damage_odata(damage, answer.body))
        return _Reply(answer.status, answer.body)

    def _damage(self, fault: Fault, page: _Page) -> bytes:
        if fault.kind == "missing_total_count":
            return _page_body(None, page.entries)
        entries = list(page.entries)
        first: dict[str, Any] = json.loads(entries[0]) if entries else self.dataset.entry(page.newest)
        if fault.kind == "bad_created_on":
            first["createdOn"] = "yesterday"
            damaged = _compact(first)
        else:  # non_utf8: invalid bytes inside the message string
            first["message"] = f"{first.get('message', '')} {_NOT_UTF8_MARK}"
            damaged = _compact(first).replace(_NOT_UTF8_MARK.encode("ascii"), _NOT_UTF8)
        return _page_body(page.total, [damaged, *entries[1:]])


def _damage_events(fault: Fault, body: bytes) -> bytes:
    document = json.loads(body)
    if fault.kind == "missing_total_count":  # the events' counterpart: the list itself is missing
        document.pop("auditEvents", None)
        return _compact(document)
    events = document["auditEvents"] or [{"id": "00000000-0000-4000-a000-000000000000", "createdOn": ""}]
    if fault.kind == "bad_created_on":
        events[0]["createdOn"] = "yesterday"
        document["auditEvents"] = events
        return _compact(document)
    events[0]["eventSummary"] = f"{events[0].get('eventSummary', '')} {_NOT_UTF8_MARK}"
    document["auditEvents"] = events
    return _compact(document).replace(_NOT_UTF8_MARK.encode("ascii"), _NOT_UTF8)


def _odata_error(status: int, message: str) -> _Reply:
    return _json_reply(status, {"message": message, "errorCode": 0, "traceId": secrets.token_hex(16)})


def _damage_odata(fault: Fault, body: bytes) -> bytes:
    document = json.loads(body)
    if fault.kind == "missing_total_count":  # the OData counterpart: the list itself is missing
        document.pop("value", None)
        return _compact(document)
    entries = document["value"] or [{"Id": 1, "ExecutionTime": ""}]
    if fault.kind == "bad_created_on":
        entries[0]["ExecutionTime"] = "yesterday"
        document["value"] = entries
        return _compact(document)
    entries[0]["OperationText"] = f"{entries[0].get('OperationText', '')} {_NOT_UTF8_MARK}"
    document["value"] = entries
    return _compact(document).replace(_NOT_UTF8_MARK.encode("ascii"), _NOT_UTF8)


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    # OAuth2 clients may authenticate with HTTP Basic (client_secret_basic) instead of the form.
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = b64decode(value.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    client_id, separator, client_secret = decoded.partition(":")
    if not separator:
        return None
    return unquote(client_id.replace("+", " ")), unquote(client_secret.replace("+", " "))
