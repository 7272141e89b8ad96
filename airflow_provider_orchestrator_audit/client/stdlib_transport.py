"""
An :class:`httpx.BaseTransport` on the standard library's :mod:`http.client`: the synchronous client's own.

An export is a few hundred requests whose answers are pages of up to a few hundred kilobytes, sent from
a handful of threads. httpx's default transport (httpcore and h11) reads each answer through several
layers of Python per chunk; ``http.client`` reads a body of known length in one call into C. The
synchronous client calls this transport directly (httpx's client would only add cookies, authentication
and redirects, which these requests never use). An export of 86,400 tenant audit events spends 14-19%
less CPU than through httpx's client and transport (``benchmarks/export_cpu.py``, README: Performance).

What it keeps from httpx: requests and answers are :class:`httpx.Request` and :class:`httpx.Response`
(compressed bodies decoded by httpx), the timeouts are the client's (``connect``, ``read``, ``write``,
``pool``), TLS is verified as httpx verifies it (:func:`ssl_context`: the default CA bundle,
``SSL_CERT_FILE``/``SSL_CERT_DIR``, or the connection's own), and every failure is the
:class:`httpx.TransportError` httpx would raise, so the retry policy treats both transports alike. It
speaks HTTP/1.1 only, with keep-alive. A proxy is httpx's business: :func:`stdlib_transport_unless_proxied`
gives no transport (httpx's own, which reads the proxy variables) when any proxy is configured in the
environment.
"""

from __future__ import annotations

import http.client
import logging
import os
import select
import ssl
import threading
import urllib.request
from typing import Any

import httpx

__all__ = ["StdlibTransport", "ssl_context", "stdlib_transport_unless_proxied"]

log = logging.getLogger(__name__)

# An idle connection found readable has been closed by the server (or holds bytes nobody asked for): it
# is dropped before use, as httpcore does. One the server closes in the instant after that check fails the
# request with a TransportError, which the retry policy retries like any other.
_POLL_READABLE = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP


def ssl_context(verify: ssl.SSLContext | str | bool) -> ssl.SSLContext:
    """
    The TLS context of a connection's ``verify``: True (``SSL_CERT_FILE``/``SSL_CERT_DIR`` when set, else
    httpx's CA bundle), False (no verification), or the path of a CA bundle file or directory.

    :raises FileNotFoundError: when the path does not exist.
    """
    if isinstance(verify, ssl.SSLContext):
        return verify
    if not isinstance(verify, str):
        return httpx.create_ssl_context(verify=verify, trust_env=True)
    if os.path.isdir(verify):
        return ssl.create_default_context(capath=verify)
    if os.path.isfile(verify):
        return ssl.create_default_context(cafile=verify)
    raise FileNotFoundError(
        f"The CA bundle {verify!r} (the connection's 'verify') does not exist: give the path of a PEM file or of "
        "a directory of certificates, or true or false"
    )


def stdlib_transport_unless_proxied(
    verify: ssl.SSLContext | str | bool, max_connections: int
) -> StdlibTransport | None:
    """A :class:`StdlibTransport`, or None (httpx's own transport) when the environment configures a proxy."""
    if urllib.request.getproxies():
        return None
    return StdlibTransport(verify=verify, max_connections=max_connections)


class StdlibTransport(httpx.BaseTransport):
    """
    HTTP/1.1 with keep-alive through :mod:`http.client`; thread-safe.

    :param verify: as httpx's ``verify``: True (the default CA bundle), False, a CA bundle's path, or an
        :class:`ssl.SSLContext`.
    :param max_connections: requests in flight at once (more wait up to the ``pool`` timeout) and idle
        connections kept per origin.
    """

    def __init__(self, *, verify: ssl.SSLContext | str | bool = True, max_connections: int = 16) -> None:
        # Made now, as httpx's own transport does: a CA bundle that is not there fails the client's creation.
        self._ssl_context = ssl_context(verify)
        self._max_connections = max_connections
        self._slots = threading.BoundedSemaphore(max_connections)
        self._lock = threading.Lock()
        self._idle: dict[tuple[str, str, int], list[http.client.HTTPConnection]] = {}
        self._closed = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        if not self._slots.acquire(timeout=timeouts.get("pool")):
            raise httpx.PoolTimeout("no connection became free within the pool timeout", request=request)
        try:
            return self._exchange(request, timeouts)
        finally:
            self._slots.release()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()

    def _exchange(self, request: httpx.Request, timeouts: dict[str, Any]) -> httpx.Response:
        url = request.url
        # The host as sent (an internationalised name in its ASCII form), for the socket and the TLS name check.
        origin = (url.scheme, url.raw_host.decode("ascii"), url.port or (443 if url.scheme == "https" else 80))
        connection = self._connection(request, origin, timeouts)
        try:
            answer = _send(connection, request, request.read() or None, timeouts)
            content = answer.read()
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            raise _transport_error(error, request) from error
        if answer.will_close:
            connection.close()
        else:
            self._keep(origin, connection)
        # The request line and the status only: the headers carry the bearer token, the bodies secrets.
        log.debug("%s %s: HTTP %d, %d bytes", request.method, url, answer.status, len(content))
        return httpx.Response(
            answer.status,
            # As bytes: http.client decoded them as Latin-1, and httpx would encode text headers as ASCII.
            headers=[(name.encode("latin-1"), value.encode("latin-1")) for name, value in answer.getheaders()],
            content=content,
            request=request,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": answer.reason.encode("latin-1", "replace")},
        )

    def _connection(
        self, request: httpx.Request, origin: tuple[str, str, int], timeouts: dict[str, Any]
    ) -> http.client.HTTPConnection:
        """An idle connection to ``origin`` that the server has not closed, else a new one."""
        with self._lock:
            idle = self._idle.get(origin, [])
            while idle:
                kept = idle.pop()
                if kept.sock is not None and not _readable(kept.sock):
                    return kept
                kept.close()
        scheme, host, port = origin
        connect_timeout = timeouts.get("connect")
        connection: http.client.HTTPConnection
        if scheme == "https":
            connection = http.client.HTTPSConnection(host, port, timeout=connect_timeout, context=self._ssl_context)
        elif scheme == "http":
            connection = http.client.HTTPConnection(host, port, timeout=connect_timeout)
        else:
            raise httpx.UnsupportedProtocol(f"the URL scheme {scheme!r} is not http or https", request=request)
        try:
            connection.connect()
        except TimeoutError as error:
            connection.close()
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out", request=request) from error
        except OSError as error:  # refused, unreachable, name not found, TLS handshake or certificate
            connection.close()
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {error}", request=request) from error
        return connection

    def _keep(self, origin: tuple[str, str, int], connection: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(origin, [])
            if not self._closed and len(idle) < self._max_connections:
                idle.append(connection)
                return
        connection.close()


def _send(
    connection: http.client.HTTPConnection, request: httpx.Request, body: bytes | None, timeouts: dict[str, Any]
) -> http.client.HTTPResponse:
    """Send ``request`` (its own headers, Host among them, as httpx put them) and read the answer's head."""
    sock = connection.sock
    if sock is not None:
        sock.settimeout(timeouts.get("write"))
    connection.putrequest(
        request.method, request.url.raw_path.decode("ascii"), skip_host=True, skip_accept_encoding=True
    )
    for name, value in request.headers.raw:
        connection.putheader(name, value)
    connection.endheaders(body)
    if connection.sock is not None:
        connection.sock.settimeout(timeouts.get("read"))
    return connection.getresponse()


def _readable(sock: Any) -> bool:
    poller = select.poll()
    poller.register(sock, _POLL_READABLE)
    return bool(poller.poll(0))


def _transport_error(error: BaseException, request: httpx.Request) -> httpx.TransportError:
    """The :class:`httpx.TransportError` httpx's own transport raises for the same failure."""
    if isinstance(error, TimeoutError):
        return httpx.ReadTimeout("no answer within the read timeout", request=request)
    if isinstance(error, http.client.HTTPException):  # no answer, a cut-short body, a malformed head
        return httpx.RemoteProtocolError(_describe(error), request=request)
    return httpx.ReadError(_describe(error), request=request)  # reset, broken pipe


def _describe(error: BaseException) -> str:
    if isinstance(error, http.client.IncompleteRead):  # its text gives the lengths only
        missing = "" if error.expected is None else f" {error.expected} bytes"
        return f"the server closed the connection{missing} before the end of the answer"
    return str(error) or type(error).__name__
