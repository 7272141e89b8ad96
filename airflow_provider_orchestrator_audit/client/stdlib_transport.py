"""
An :class:`httpx.BaseTransport` on the standard library's sockets: the synchronous client's own HTTP/1.1.

An export is a few hundred requests whose answers are pages of up to a few hundred kilobytes, sent from
a handful of threads. httpx's default transport (httpcore and h11) reads each answer through several
layers of Python per chunk, and :mod:`http.client` parses every answer's head with the :mod:`email`
package; this transport writes a request in one call, reads the head line by line from its own buffer and
a body of known length straight into one buffer. The synchronous client calls it directly (httpx's client
would only add cookies, authentication and redirects, which these requests never use). README:
Performance gives what it saves (``benchmarks/export_cpu.py``).

What it keeps from httpx: requests and answers are :class:`httpx.Request` and :class:`httpx.Response`
(compressed bodies decoded by httpx), the timeouts are the client's (``connect``, ``read``, ``write``,
``pool``), TLS is verified as httpx verifies it (:func:`ssl_context`: the default CA bundle,
``SSL_CERT_FILE``/``SSL_CERT_DIR``, or the connection's own), and every failure is the
:class:`httpx.TransportError` httpx would raise, so the retry policy treats both transports alike. It
speaks HTTP/1.1 only, with keep-alive, and frames bodies as RFC 9112 says (``Content-Length``, chunked, or
to the end of the connection). A proxy is httpx's business: :func:`stdlib_transport_unless_proxied`
gives no transport (httpx's own, which reads the proxy variables) when any proxy is configured in the
environment.
"""

from __future__ import annotations

import logging
import os
import re
import select
import socket
import ssl
import threading
import urllib.request
from dataclasses import dataclass
from typing import Any

import httpx

__all__ = ["StdlibTransport", "ssl_context", "stdlib_transport_unless_proxied"]

log = logging.getLogger(__name__)

# An idle connection found readable has been closed by the server (or holds bytes nobody asked for): it
# is dropped before use, as httpcore does. One the server closes in the instant after that check fails the
# request with a TransportError, which the retry policy retries like any other.
_POLL_READABLE = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP

# Limits on an answer's head, as http.client and h11 keep them: a server that sends more is not speaking HTTP.
_MAX_LINE = 65536
_MAX_HEADERS = 100
_READ_SIZE = 65536

_STATUS_LINE = re.compile(rb"HTTP/1\.(\d) (\d{3})(?: ([^\r\n]*))?\r?\n")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FIELD_VALUE_FORBIDDEN = re.compile(rb"[\x00\r\n]")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")
#: An empty line: the end of a head (or of trailers), and what follows a chunk's data.
_EMPTY_LINE = (b"\r\n", b"\n")


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
    HTTP/1.1 with keep-alive on plain sockets (TLS through :mod:`ssl`); thread-safe.

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
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
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
        message = _request_bytes(request)
        connection = self._connection(request, origin, timeouts)
        try:
            connection.send(message, timeouts.get("write"))
        except TimeoutError as error:
            connection.close()
            raise httpx.WriteTimeout(
                "the request could not be sent within the write timeout", request=request
            ) from error
        except OSError as error:  # reset, broken pipe
            connection.close()
            raise httpx.WriteError(_describe(error), request=request) from error
        try:
            answer = connection.read_answer(request.method, timeouts.get("read"))
        except TimeoutError as error:
            connection.close()
            raise httpx.ReadTimeout("no answer within the read timeout", request=request) from error
        except _BrokenAnswer as error:  # no answer, not HTTP, a cut-short body, a malformed head
            connection.close()
            raise httpx.RemoteProtocolError(str(error), request=request) from error
        except OSError as error:  # reset
            connection.close()
            raise httpx.ReadError(_describe(error), request=request) from error
        if answer.will_close or connection.holds_more:
            connection.close()
        else:
            self._keep(origin, connection)
        # The request line and the status only: the headers carry the bearer token, the bodies secrets.
        log.debug("%s %s: HTTP %d, %d bytes", request.method, url, answer.status, len(answer.content))
        return httpx.Response(
            answer.status,
            headers=answer.headers,
            content=answer.content,
            request=request,
            extensions={"http_version": answer.version, "reason_phrase": answer.reason},
        )

    def _connection(
        self, request: httpx.Request, origin: tuple[str, str, int], timeouts: dict[str, Any]
    ) -> _Connection:
        """An idle connection to ``origin`` that the server has not closed, else a new one."""
        with self._lock:
            idle = self._idle.get(origin, [])
            while idle:
                kept = idle.pop()
                if not _readable(kept.sock):
                    return kept
                kept.close()
        scheme, host, port = origin
        if scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"the URL scheme {scheme!r} is not http or https", request=request)
        sock: socket.socket | None = None
        try:
            sock = socket.create_connection((host, port), timeout=timeouts.get("connect"))
            # The request goes out in one write and the answer is waited for: no small segment to hold back.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":
                sock = self._ssl_context.wrap_socket(sock, server_hostname=host)
        except TimeoutError as error:
            if sock is not None:
                sock.close()
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out", request=request) from error
        except OSError as error:  # refused, unreachable, name not found, TLS handshake or certificate
            if sock is not None:
                sock.close()
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {error}", request=request) from error
        return _Connection(sock)

    def _keep(self, origin: tuple[str, str, int], connection: _Connection) -> None:
        with self._lock:
            idle = self._idle.setdefault(origin, [])
            if not self._closed and len(idle) < self._max_connections:
                idle.append(connection)
                return
        connection.close()


def _request_bytes(request: httpx.Request) -> bytes:
    """
    The request line, ``request``'s own headers (Host among them, as httpx put them) and its body, as sent.

    :raises httpx.LocalProtocolError: for a header that would break the message (a line break in a value).
    """
    lines = [b"%s %s HTTP/1.1" % (request.method.encode("ascii"), request.url.raw_path)]
    for name, value in request.headers.raw:
        if not _TOKEN.fullmatch(name) or _FIELD_VALUE_FORBIDDEN.search(value):
            # The value is not shown: it may be a credential.
            raise httpx.LocalProtocolError(f"the header {name[:40]!r} cannot be sent: a bad name or a line break in it")
        lines.append(name + b": " + value)
    lines.append(b"")
    lines.append(request.read())
    return b"\r\n".join(lines)


class _BrokenAnswer(Exception):
    """The server's answer is not HTTP/1.1 as RFC 9112 frames it, or ended before it was whole."""


@dataclass
class _Answer:
    status: int
    version: bytes
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    content: bytes
    will_close: bool


class _Connection:
    """One connection: its socket and the bytes read from it that the current answer has not used yet."""

    __slots__ = ("_buffer", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = bytearray()

    @property
    def holds_more(self) -> bool:
        """Bytes came after the answer, which nobody asked for: the connection is not used again."""
        return bool(self._buffer)

    def close(self) -> None:
        self.sock.close()

    def send(self, message: bytes, timeout: float | None) -> None:
        self.sock.settimeout(timeout)
        self.sock.sendall(message)

    def read_answer(self, method: str, timeout: float | None) -> _Answer:
        """
        The final answer to the request just sent (interim 1xx answers skipped).

        :raises _BrokenAnswer: when it is not HTTP/1.x, or the connection closes before its end.
        """
        self.sock.settimeout(timeout)
        while True:
            line = self._line()
            if not line:
                raise _BrokenAnswer("the server closed the connection without response")
            match = _STATUS_LINE.fullmatch(line)
            if match is None:
                raise _BrokenAnswer(f"the server's answer is not HTTP/1.1: {line[:80]!r}")
            minor, status = match.group(1), int(match.group(2))
            headers = self._headers()
            if not 100 <= status < 200 or status == 101:
                break
        fields = _Fields(headers)
        will_close = b"close" in fields.connection or (minor == b"0" and b"keep-alive" not in fields.connection)
        if method == "HEAD" or 100 <= status < 200 or status in (204, 304):
            content = b""
        elif fields.transfer_coding is not None:
            if fields.transfer_coding == b"chunked":
                content = self._chunked()
            else:  # another coding last: the body runs to the end of the connection
                content, will_close = self._to_close(), True
        elif fields.content_length is not None:
            content = self._exactly(fields.content_length)
        else:
            content, will_close = self._to_close(), True
        return _Answer(status, b"HTTP/1." + minor, match.group(3) or b"", headers, content, will_close)

    def _fill(self) -> bool:
        chunk = self.sock.recv(_READ_SIZE)
        self._buffer += chunk
        return bool(chunk)

    def _line(self) -> bytes:
        """The next line with its end, or what is left (perhaps nothing) when the connection closes first."""
        buffer = self._buffer
        searched = 0
        while True:
            end = buffer.find(b"\n", searched)
            if end >= 0:
                line = bytes(buffer[: end + 1])
                del buffer[: end + 1]
                return line
            if len(buffer) > _MAX_LINE:
                raise _BrokenAnswer(f"a line of the server's answer is longer than {_MAX_LINE} bytes")
            searched = len(buffer)
            if not self._fill():
                line = bytes(buffer)
                buffer.clear()
                return line

    def _headers(self) -> list[tuple[bytes, bytes]]:
        headers: list[tuple[bytes, bytes]] = []
        while True:
            line = self._line()
            if line in _EMPTY_LINE:
                return headers
            if not line.endswith(b"\n"):
                raise _BrokenAnswer("the server closed the connection in the middle of the answer's head")
            if line[0] in b" \t" and headers:  # a folded line (obsolete) continues the value above
                name, value = headers[-1]
                headers[-1] = (name, value + b" " + line.strip())
                continue
            name, colon, value = line.partition(b":")
            if not colon or not _TOKEN.fullmatch(name):
                raise _BrokenAnswer(f"a line of the server's answer head is not a header: {line[:80]!r}")
            headers.append((name, value.strip()))
            if len(headers) > _MAX_HEADERS:
                raise _BrokenAnswer(f"the server's answer has more than {_MAX_HEADERS} headers")

    def _exactly(self, size: int) -> bytes:
        buffer = self._buffer
        if len(buffer) >= size:
            data = bytes(buffer[:size])
            del buffer[:size]
            return data
        # The rest goes straight into one buffer of the whole size: no list of pieces to join.
        whole = bytearray(size)
        view = memoryview(whole)
        have = len(buffer)
        view[:have] = buffer
        buffer.clear()
        while have < size:
            received = self.sock.recv_into(view[have:])
            if not received:
                raise _BrokenAnswer(
                    f"the server closed the connection {size - have} bytes before the end of the answer"
                )
            have += received
        return bytes(whole)

    def _chunked(self) -> bytes:
        pieces: list[bytes] = []
        while True:
            line = self._line()
            if not line.endswith(b"\n"):
                raise _BrokenAnswer("the server closed the connection before the end of the answer (chunked)")
            size_text = line.split(b";", 1)[0].strip()
            if not _CHUNK_SIZE.fullmatch(size_text):
                raise _BrokenAnswer(f"the server sent a chunk size that is not hexadecimal: {line[:40]!r}")
            size = int(size_text, 16)
            if not size:
                break
            pieces.append(self._exactly(size))
            if self._line() not in _EMPTY_LINE:
                raise _BrokenAnswer("the server sent a chunk longer than its size")
        self._headers()  # trailers, not kept
        return b"".join(pieces)

    def _to_close(self) -> bytes:
        pieces = [bytes(self._buffer)]
        self._buffer.clear()
        while chunk := self.sock.recv(_READ_SIZE):
            pieces.append(chunk)
        return b"".join(pieces)


class _Fields:
    """What the framing of a body needs from an answer's headers."""

    def __init__(self, headers: list[tuple[bytes, bytes]]) -> None:
        values: dict[bytes, list[bytes]] = {}
        for name, value in headers:
            values.setdefault(name.lower(), []).append(value)
        #: The ``Connection`` options, lower case (``close``, ``keep-alive``).
        self.connection = set(_list_items(values, b"connection"))
        codings = _list_items(values, b"transfer-encoding")
        #: The last transfer coding (it frames the body), None without any.
        self.transfer_coding: bytes | None = codings[-1] if codings else None
        # Every item kept, empty ones too: a list such as "5," is not a length.
        lengths = {item.strip() for value in values.get(b"content-length", []) for item in value.split(b",")}
        self.content_length: int | None = None
        if lengths:
            length = lengths.pop()
            if lengths or not length.isdigit():
                raise _BrokenAnswer(f"the server sent an unusable Content-Length: {values[b'content-length']!r}")
            self.content_length = int(length)


def _list_items(values: dict[bytes, list[bytes]], name: bytes) -> list[bytes]:
    """The items of a comma-separated header, over all its lines, lower case, empty items left out."""
    items = (item.strip().lower() for value in values.get(name, []) for item in value.split(b","))
    return [item for item in items if item]


def _readable(sock: Any) -> bool:
    poller = select.poll()
    poller.register(sock, _POLL_READABLE)
    return bool(poller.poll(0))


def _describe(error: BaseException) -> str:
    return str(error) or type(error).__name__
