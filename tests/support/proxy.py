"""
A TCP proxy on loopback that passes traffic through, cuts requests short, denies them, or refuses connections.

Put it between a client and a server (typically an S3 client and :class:`~.s3.LocalS3Server`) to
simulate a network that fails in the middle of an upload. It reads the client's side as HTTP/1.1
(request heads, ``Content-Length`` and chunked bodies, keep-alive), so a cut can target one kind of
request, e.g. every S3 ``UploadPart``, after a given number of its bytes went through::

    with LocalS3Server() as s3, CuttingProxy.to(s3.endpoint_url) as proxy:
        proxy.cut_after(64 * 1024, operations={"UploadPart"}, times=1)
        client = boto3.client("s3", endpoint_url=proxy.url, ...)
        ...
        assert proxy.cuts == 1

A cut sends the client a TCP reset and closes the upstream side after exactly the bytes let through,
so the server receives a truncated request and the client sees its connection reset mid-request, as
when a load balancer or a NAT gateway drops a connection. :meth:`CuttingProxy.refuse` makes the port
refuse connections (and resets the open ones), as a crashed endpoint does, while keeping the port
reserved for :meth:`CuttingProxy.pass_through`. :meth:`CuttingProxy.deny` answers chosen requests with
an S3 error in the server's place, as a bucket policy does, e.g. every upload without an encryption
header (:func:`lacks_header`). The answers (server to client) are relayed untouched.
"""

from __future__ import annotations

import socket
import struct
import threading
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from types import TracebackType
from typing import Literal, Self
from urllib.parse import parse_qsl, urlsplit
from xml.sax.saxutils import escape

__all__ = ["CuttingProxy", "ProxiedRequest", "RequestFramer", "RequestHead", "lacks_header", "s3_operation"]

#: The longest request head accepted; a longer one makes the rest of the connection an opaque stream.
MAX_HEAD_BYTES = 64 * 1024
_RECV_BYTES = 256 * 1024
_ACCEPT_POLL_SECONDS = 0.05
_CONNECT_TIMEOUT_SECONDS = 5.0
# How long a request whose answer is to be lost waits for that answer before the client is reset anyway.
_ANSWER_WAIT_SECONDS = 30.0


@dataclass(frozen=True)
class RequestHead:
    """
    The request line and headers of one HTTP request.

    :param method: e.g. ``PUT``.
    :param target: the request target, path and query, e.g. ``/bucket/key?partNumber=1&uploadId=x``.
    :param headers: ``(name, value)`` pairs in the order sent.
    """

    method: str
    target: str
    # Left out of the repr: the Authorization header names the access key id.
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @property
    def path(self) -> str:
        """The target without its query."""
        return self.target.partition("?")[0]

    @property
    def query(self) -> dict[str, str]:
        """The query parameters (a name without a value maps to ``""``)."""
        return dict(parse_qsl(self.target.partition("?")[2], keep_blank_values=True))

    def header(self, name: str) -> str | None:
        """The first header called ``name`` (case-insensitive), or None."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key.lower() == wanted), None)

    @classmethod
    def parse(cls, raw: bytes) -> RequestHead:
        """
        Parse a request head, request line to the blank line included.

        :raises ValueError: when the request line is not ``METHOD TARGET HTTP/x.y``.
        """
        lines = raw.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            raise ValueError(f"not an HTTP request line: {lines[0][:80]!r}")
        headers = []
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if sep:
                headers.append((name.strip(), value.strip()))
        return cls(parts[0].upper(), parts[1], tuple(headers))


def s3_operation(head: RequestHead) -> str:
    """
    The S3 API operation a path-style request performs, e.g. ``"UploadPart"``; ``"Other"`` when unknown.

    Recognised: ``PutObject``, ``CopyObject``, ``UploadPart``, ``CreateMultipartUpload``,
    ``CompleteMultipartUpload``, ``AbortMultipartUpload``, ``ListMultipartUploads``, ``ListParts``,
    ``DeleteObjects``, ``DeleteObject``, ``GetObject``, ``HeadObject``, ``HeadBucket``, ``ListObjects``
    (v1 and v2), ``ListBuckets``, ``CreateBucket``.
    """
    query = head.query
    bucket, _, key = head.path.lstrip("/").partition("/")
    method = head.method
    if not bucket:
        return "ListBuckets" if method == "GET" else "Other"
    if not key:
        if method == "HEAD":
            return "HeadBucket"
        if method == "GET":
            return "ListMultipartUploads" if "uploads" in query else "ListObjects"
        if method == "POST" and "delete" in query:
            return "DeleteObjects"
        if method == "PUT" and not query:
            return "CreateBucket"
        return "Other"
    if "uploadId" in query:
        return {
            "PUT": "UploadPart",
            "POST": "CompleteMultipartUpload",
            "DELETE": "AbortMultipartUpload",
            "GET": "ListParts",
        }.get(method, "Other")
    if method == "POST" and "uploads" in query:
        return "CreateMultipartUpload"
    if method == "PUT":
        return "CopyObject" if head.header("x-amz-copy-source") else "PutObject"
    return {"GET": "GetObject", "HEAD": "HeadObject", "DELETE": "DeleteObject"}.get(method, "Other")


@dataclass
class ProxiedRequest:
    """
    One request seen by the proxy.

    :param head: its request line and headers.
    :param operation: :func:`s3_operation` of the head.
    :param length: head plus body in bytes, when the body's length was announced (None for chunked).
    :param forwarded: bytes of it sent upstream so far.
    :param cut: whether the proxy cut the connection in its middle.
    :param denied: whether the proxy answered it with an error instead of forwarding it (:meth:`CuttingProxy.deny`).
    :param answer_lost: whether the server got all of it but its answer was dropped (:meth:`CuttingProxy.lose_answers`).
    """

    head: RequestHead
    operation: str
    length: int | None
    forwarded: int = 0
    cut: bool = False
    denied: bool = False
    answer_lost: bool = False


def lacks_header(name: str) -> Callable[[RequestHead], bool]:
    """
    A ``match`` for :meth:`CuttingProxy.deny`: requests without header ``name``, e.g. a bucket policy's
    ``"Null": {"s3:x-amz-server-side-encryption": "true"}`` with ``lacks_header("x-amz-server-side-encryption")``.
    """
    return lambda head: head.header(name) is None


@dataclass
class _LoseRule:
    operations: frozenset[str] | None
    match: Callable[[RequestHead], bool] | None
    times: int | None  # answers left to lose; None for every matching request


@dataclass(frozen=True)
class _DenyRule:
    status: int
    code: str
    message: str
    operations: frozenset[str] | None
    match: Callable[[RequestHead], bool] | None

    def applies(self, request: ProxiedRequest) -> bool:
        if self.operations is not None and request.operation not in self.operations:
            return False
        return self.match is None or self.match(request.head)

    def answer(self, head: RequestHead) -> bytes:
        """The S3 error answer, closing the connection (the request's body, if any, is read and dropped)."""
        request_id = uuid.uuid4().hex[:16].upper()
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{escape(self.code)}</Code><Message>{escape(self.message)}</Message>"
            f"<Resource>{escape(head.path)}</Resource><RequestId>{request_id}</RequestId></Error>"
        ).encode()
        lines = [
            f"HTTP/1.1 {self.status} {HTTPStatus(self.status).phrase}",
            "Content-Type: application/xml",
            f"Content-Length: {len(body)}",
            f"Date: {formatdate(usegmt=True)}",
            f"x-amz-request-id: {request_id}",
            "Connection: close",
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head.method == "HEAD" else body)


@dataclass
class _Segment:
    """Bytes of one request, in order; ``request`` is None for bytes that are not HTTP."""

    request: ProxiedRequest | None
    data: bytes
    starts: bool = False
    ends: bool = False


class RequestFramer:
    """
    Splits the byte stream a client sends into its HTTP/1.1 requests, as the bytes arrive.

    :meth:`feed` returns segments, each belonging to one request: its head as soon as the blank line
    arrived, then its body as it comes (``Content-Length`` or chunked), so that a request can be
    judged by its head before any of its bytes are forwarded. Bytes that do not parse as HTTP make the
    rest of the stream opaque (segments without a request).
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._state: Literal["head", "body", "chunk-size", "chunk-data", "trailers", "opaque"] = "head"
        self._remaining = 0
        self._current: ProxiedRequest | None = None

    def feed(self, data: bytes) -> list[_Segment]:
        """The segments that ``data`` (the next bytes of the stream) completes."""
        self._buffer += data
        segments: list[_Segment] = []
        while self._buffer:
            before = len(segments), len(self._buffer), self._state
            self._step(segments)
            if (len(segments), len(self._buffer), self._state) == before:
                break  # waiting for more bytes
        return segments

    def _step(self, out: list[_Segment]) -> None:
        state = self._state
        if state == "opaque":
            out.append(_Segment(None, self._take(len(self._buffer))))
        elif state == "head":
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_HEAD_BYTES:
                    self._state = "opaque"
                return
            raw = self._take(end + 4)
            try:
                head = RequestHead.parse(raw)
            except ValueError:
                self._state = "opaque"
                out.append(_Segment(None, raw))
                return
            length = self._body_length(head)
            total = None if length is None else len(raw) + length
            request = ProxiedRequest(head, s3_operation(head), total)
            self._current = request
            if length is None:
                self._state = "chunk-size"
                out.append(_Segment(request, raw, starts=True))
            elif length == 0:
                out.append(_Segment(request, raw, starts=True, ends=True))
                self._current = None
            else:
                self._state, self._remaining = "body", length
                out.append(_Segment(request, raw, starts=True))
        elif state == "body":
            data = self._take(min(self._remaining, len(self._buffer)))
            self._remaining -= len(data)
            out.append(self._segment(data, ends=self._remaining == 0))
        elif state == "chunk-size":
            end = self._buffer.find(b"\r\n")
            if end < 0:
                return
            line = self._take(end + 2)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self._state = "opaque"
                out.append(self._segment(line))
                return
            if size == 0:
                self._state = "trailers"
            else:
                self._state, self._remaining = "chunk-data", size + 2  # the data and its CRLF
            out.append(self._segment(line))
        elif state == "chunk-data":
            data = self._take(min(self._remaining, len(self._buffer)))
            self._remaining -= len(data)
            if self._remaining == 0:
                self._state = "chunk-size"
            out.append(self._segment(data))
        else:  # trailers: header lines, then a blank line
            end = self._buffer.find(b"\r\n")
            if end < 0:
                return
            line = self._take(end + 2)
            done = line == b"\r\n"
            out.append(self._segment(line, ends=done))
            if done:
                self._state = "head"

    def _segment(self, data: bytes, *, ends: bool = False) -> _Segment:
        segment = _Segment(self._current, data, ends=ends)
        if ends:
            self._current = None
            self._state = "head"
        return segment

    def _take(self, n: int) -> bytes:
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    @staticmethod
    def _body_length(head: RequestHead) -> int | None:
        if "chunked" in (head.header("Transfer-Encoding") or "").lower():
            return None
        try:
            return max(0, int(head.header("Content-Length") or 0))
        except ValueError:
            return 0


@dataclass
class _CutRule:
    after_bytes: int
    body_only: bool
    operations: frozenset[str] | None
    match: Callable[[RequestHead], bool] | None
    times: int | None  # cuts left; None for every matching request

    def cut_point(self, request: ProxiedRequest, head_bytes: int) -> int | None:
        """Bytes of ``request`` to forward before cutting it, or None to let it through."""
        if self.operations is not None and request.operation not in self.operations:
            return None
        if self.match is not None and not self.match(request.head):
            return None
        point = self.after_bytes + (head_bytes if self.body_only else 0)
        # A request that ends before the cut point passes untouched and uses up nothing. A chunked one
        # announces no length: it uses up one of ``times`` only if it reaches the point (see _forward).
        if request.length is not None and request.length <= point:
            return None
        return point


@dataclass(eq=False)
class _Connection:
    client: socket.socket
    upstream: socket.socket | None = None
    closed: bool = False
    cut: bool = False  # the client is gone; what the server still says is drained and dropped
    threads: list[threading.Thread] = field(default_factory=list)
    denying: _DenyRule | None = None  # the rule answering the request in progress, not forwarded
    losing: bool = False  # the request in progress goes through whole, but its answer is dropped
    answer_dropped: threading.Event = field(default_factory=threading.Event)  # the server answered it
    answered: bool = False  # whether that answer was sent


def _close_socket(sock: socket.socket | None, *, reset: bool) -> None:
    """Close ``sock``, with a TCP reset (linger 0) instead of an orderly FIN when ``reset``."""
    if sock is None:
        return
    try:
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # Wakes a thread blocked reading it (close alone does not), without sending anything.
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class CuttingProxy:
    """
    A threaded TCP proxy from a free loopback port to ``upstream``, with switches for failures.

    Modes (switch at any time, from any thread):

    * :meth:`pass_through` — relay everything (the initial mode);
    * :meth:`cut_after` — cut requests after their first N bytes went upstream;
    * :meth:`refuse` — refuse new connections and reset the open ones;
    * :meth:`deny` — answer chosen requests with an S3 error instead of forwarding them (alongside a cut rule);
    * :meth:`lose_answers` — forward chosen requests whole, then reset the client before the answer arrives.

    :param upstream_host: where to connect.
    :param upstream_port: its port.
    :param host: the loopback address to listen on.
    :param on_request: called with each request's head before any of its bytes are forwarded, in the
        thread relaying it (the request waits until it returns): a deterministic point to act on, e.g.
        to stop the server when the second ``UploadPart`` begins.
    """

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        host: str = "127.0.0.1",
        on_request: Callable[[ProxiedRequest], None] | None = None,
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.host = host
        self.on_request = on_request
        self._lock = threading.Lock()
        self._rule: _CutRule | None = None
        self._deny: _DenyRule | None = None
        self._lose: _LoseRule | None = None
        self._refusing = False
        self._listener: socket.socket | None = None
        self._accepting: threading.Thread | None = None
        self._stop_accepting = threading.Event()
        self._connections: set[_Connection] = set()
        # Every relaying thread started, closed connections' too: stop() joins them all.
        self._threads: list[threading.Thread] = []
        #: Exceptions raised in relaying threads (by ``on_request``, say); each reset its connection.
        self.errors: list[BaseException] = []
        self._requests: list[ProxiedRequest] = []
        self._connections_made = 0
        self._refused = 0
        self._port = 0

    @classmethod
    def to(cls, url: str, **kwargs: object) -> CuttingProxy:
        """
        A proxy to the host and port of ``url``, e.g. ``CuttingProxy.to(s3.endpoint_url)``.

        :raises ValueError: when the URL names no port.
        """
        parts = urlsplit(url)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"{url!r} names no host and port to proxy to")
        return cls(parts.hostname, parts.port, **kwargs)  # type: ignore[arg-type]

    # --- life cycle ----------------------------------------------------------------------------

    def start(self) -> Self:
        """Listen on a free port and relay in daemon threads; returns the proxy itself."""
        if self._listener is not None:
            raise RuntimeError("the proxy is already running")
        listener = self._bound_socket(0)
        self._port = int(listener.getsockname()[1])
        self._listener = listener
        self._listen()
        return self

    def stop(self) -> None:
        """Stop accepting, reset every open connection and join the relaying threads."""
        self._stop_listening()
        with self._lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        self._reset_connections()
        with self._lock:
            threads, self._threads = self._threads, []
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port listened on (the same in every mode)."""
        if not self._port:
            raise RuntimeError("the proxy is not running: call start() or use it as a context manager")
        return self._port

    @property
    def url(self) -> str:
        """``http://host:port`` of the proxy, to use as a client's endpoint URL."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # --- switches ------------------------------------------------------------------------------

    def pass_through(self) -> None:
        """Relay everything: no more cuts or denials, and connections are accepted again."""
        with self._lock:
            self._rule = None
            self._deny = None
            self._lose = None
            refusing, self._refusing = self._refusing, False
        if refusing:
            self._listen()

    def cut_after(
        self,
        after_bytes: int,
        *,
        operations: Collection[str] | None = None,
        match: Callable[[RequestHead], bool] | None = None,
        times: int | None = None,
        body_only: bool = False,
    ) -> None:
        """
        Cut requests after ``after_bytes`` of them went upstream; replaces any cut rule.

        The client's connection is reset; the upstream connection is closed for writing after exactly
        the bytes let through (the server sees the request end there) and its answer is dropped. A
        request that ends before the cut point passes untouched and does not count towards ``times``,
        whether its length was announced (``Content-Length``) or not (chunked: such a request is counted
        when it reaches the cut point, so a rule replaced meanwhile no longer cuts it).

        :param after_bytes: bytes of the request (head and body) forwarded before the cut; 0 cuts
            before anything, not even the head, goes through.
        :param operations: only requests whose :func:`s3_operation` is one of these; None for any.
        :param match: only requests whose head this returns True for.
        :param times: how many requests to cut, then relay everything again; None for every one.
        :param body_only: count ``after_bytes`` from the end of the head: the head always goes through.
        """
        if after_bytes < 0:
            raise ValueError(f"after_bytes must be >= 0, got {after_bytes}")
        if times is not None and times < 1:
            raise ValueError(f"times must be >= 1 or None, got {times}")
        operation_set = None if operations is None else frozenset(operations)
        rule = _CutRule(after_bytes, body_only, operation_set, match, times)
        with self._lock:
            self._rule = rule

    def deny(
        self,
        *,
        operations: Collection[str] | None = None,
        match: Callable[[RequestHead], bool] | None = None,
        status: int = 403,
        code: str = "AccessDenied",
        message: str = "Access Denied",
    ) -> None:
        """
        Answer matching requests with an S3 error in the server's place; replaces any earlier deny rule.

        The server never sees a denied request. Its body is read and dropped (an ``Expect: 100-continue``
        request is answered at once, so the client sends none), and the answer closes the connection.

        :param operations: only requests whose :func:`s3_operation` is one of these; None for any.
        :param match: only requests whose head this returns True for, e.g. :func:`lacks_header`.
        :param status: the HTTP status of the answer.
        :param code: the S3 error code, e.g. ``AccessDenied``.
        :param message: the error message.
        """
        operation_set = None if operations is None else frozenset(operations)
        with self._lock:
            self._deny = _DenyRule(status, code, message, operation_set, match)

    def lose_answers(
        self,
        *,
        operations: Collection[str] | None = None,
        match: Callable[[RequestHead], bool] | None = None,
        times: int | None = None,
    ) -> None:
        """
        Let matching requests reach the server whole, and reset the client's connection when the server's
        answer arrives, dropping it: the server has carried the request out, and the client cannot know.
        Replaces any earlier rule.

        :param operations: only requests whose :func:`s3_operation` is one of these; None for any.
        :param match: only requests whose head this returns True for.
        :param times: how many answers to lose, then relay everything again; None for every one.
        """
        if times is not None and times < 1:
            raise ValueError(f"times must be >= 1 or None, got {times}")
        operation_set = None if operations is None else frozenset(operations)
        with self._lock:
            self._lose = _LoseRule(operation_set, match, times)

    def refuse(self) -> None:
        """Refuse new connections (the port stays reserved) and reset the open ones, as a crashed server."""
        with self._lock:
            if self._refusing:
                return
            self._refusing = True
        self._stop_listening()
        with self._lock:
            old, self._listener = self._listener, None
        if old is not None:
            old.close()
        # Bound but not listening: connection attempts are refused, and no one else can take the port.
        listener = self._bound_socket(self._port)
        with self._lock:
            self._listener = listener
        self._reset_connections()

    def reset_connections(self) -> None:
        """Reset every connection open now (new ones are still accepted)."""
        self._reset_connections()

    # --- what happened -------------------------------------------------------------------------

    @property
    def requests(self) -> list[ProxiedRequest]:
        """Every request seen, in the order their heads arrived."""
        with self._lock:
            return list(self._requests)

    @property
    def cuts(self) -> int:
        """Requests cut so far."""
        with self._lock:
            return sum(1 for request in self._requests if request.cut)

    @property
    def denials(self) -> list[ProxiedRequest]:
        """The requests answered by :meth:`deny`'s rule, in order."""
        with self._lock:
            return [request for request in self._requests if request.denied]

    @property
    def connections(self) -> int:
        """Client connections accepted so far."""
        with self._lock:
            return self._connections_made

    def operations(self, *, cut: bool | None = None) -> list[str]:
        """
        The S3 operations of the requests seen, in order.

        :param cut: only the cut ones (True), only the others (False), or all (None).
        """
        return [request.operation for request in self.requests if cut is None or request.cut is cut]

    def clear_log(self) -> None:
        """Forget the requests seen so far."""
        with self._lock:
            self._requests.clear()

    # --- internals -----------------------------------------------------------------------------

    def _bound_socket(self, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, port))
        except OSError:
            sock.close()
            raise
        return sock

    def _listen(self) -> None:
        with self._lock:
            listener = self._listener
        assert listener is not None
        listener.listen(128)
        listener.settimeout(_ACCEPT_POLL_SECONDS)
        self._stop_accepting = threading.Event()
        thread = threading.Thread(
            target=self._accept_loop, args=(listener, self._stop_accepting), name="cutting-proxy-accept", daemon=True
        )
        self._accepting = thread
        thread.start()

    def _stop_listening(self) -> None:
        self._stop_accepting.set()
        thread, self._accepting = self._accepting, None
        if thread is not None:
            thread.join(timeout=5)

    def _accept_loop(self, listener: socket.socket, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            connection = _Connection(client)
            with self._lock:
                self._connections.add(connection)
                self._connections_made += 1
            thread = threading.Thread(target=self._relay, args=(connection,), name="cutting-proxy-relay", daemon=True)
            connection.threads.append(thread)
            self._track(thread)
            thread.start()

    def _track(self, thread: threading.Thread) -> None:
        with self._lock:
            self._threads = [known for known in self._threads if known.is_alive()]
            self._threads.append(thread)

    def _reset_connections(self) -> list[threading.Thread]:
        with self._lock:
            connections = list(self._connections)
        threads: list[threading.Thread] = []
        for connection in connections:
            self._close(connection, reset=True)
            threads.extend(connection.threads)
        return [thread for thread in threads if thread is not threading.current_thread()]

    def _close(self, connection: _Connection, *, reset: bool) -> None:
        with self._lock:
            if connection.closed:
                return
            connection.closed = True
            self._connections.discard(connection)
        _close_socket(connection.client, reset=reset)
        _close_socket(connection.upstream, reset=reset)

    def _cut(self, connection: _Connection) -> None:
        """Reset the client now; end the request stream to the server where it is, and let it answer into the void."""
        connection.cut = True
        _close_socket(connection.client, reset=True)
        try:
            assert connection.upstream is not None
            connection.upstream.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(connection, reset=True)
        # The answers thread reads the server's side until it closes, then closes the connection.

    def _relay(self, connection: _Connection) -> None:
        """Client to upstream, request by request; a second thread relays the answers."""
        try:
            self._relay_requests(connection)
        except OSError:
            self._close(connection, reset=True)
        except BaseException as error:  # noqa: BLE001 - e.g. from on_request: kept for the test to see
            with self._lock:
                self.errors.append(error)
            self._close(connection, reset=True)

    def _relay_requests(self, connection: _Connection) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=_CONNECT_TIMEOUT_SECONDS)
        except OSError:
            # The server is down: the client sees its connection reset, as behind a load balancer.
            self._close(connection, reset=True)
            return
        upstream.settimeout(None)
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection.upstream = upstream
        with self._lock:
            closed = connection.closed
        if closed:  # reset while connecting
            _close_socket(upstream, reset=True)
            return
        answers = threading.Thread(
            target=self._relay_answers, args=(connection,), name="cutting-proxy-answers", daemon=True
        )
        connection.threads.append(answers)
        self._track(answers)
        answers.start()
        framer = RequestFramer()
        cut_at: dict[int, tuple[int, _CutRule | None]] = {}  # id(request) -> (bytes after which to cut, its rule
        # while the cut is not claimed yet: a chunked request claims one of the rule's ``times`` at the point)
        while True:
            data = connection.client.recv(_RECV_BYTES)
            if not data:
                upstream.shutdown(socket.SHUT_WR)
                return
            for segment in framer.feed(data):
                if not self._forward(connection, segment, cut_at):
                    return

    def _claim(self, rule: _CutRule) -> bool:
        """Use up one cut of ``rule``; False if it was replaced, or another request used up its last cut."""
        with self._lock:
            if self._rule is not rule or (rule.times is not None and rule.times <= 0):
                return False
            if rule.times is not None:
                rule.times -= 1
                if rule.times == 0:
                    self._rule = None
            return True

    def _forward(
        self, connection: _Connection, segment: _Segment, cut_at: dict[int, tuple[int, _CutRule | None]]
    ) -> bool:
        """Send one segment upstream, or the part of it before a cut; False once the connection is cut."""
        request = segment.request
        assert connection.upstream is not None
        if request is None:
            connection.upstream.sendall(segment.data)
            return True
        rule: _CutRule | None = None
        if segment.starts:
            with self._lock:
                self._requests.append(request)
            if self.on_request is not None:
                self.on_request(request)
            with self._lock:
                rule, deny, lose = self._rule, self._deny, self._lose
            if lose is not None and self._loses(lose, request):
                connection.losing = True
            # Judged outside the lock, as the cut rule below: ``match`` is the caller's code.
            if deny is not None and deny.applies(request):
                with self._lock:
                    request.denied = True
                connection.denying, connection.answered = deny, False
        if connection.denying is not None:
            return self._answer_denied(connection, segment)
        if connection.losing:
            if segment.ends:
                # Marked before the last bytes go out, so that no byte of the answer reaches the client.
                connection.cut = True
                with self._lock:
                    request.answer_lost = True
            connection.upstream.sendall(segment.data)
            request.forwarded += len(segment.data)
            if not segment.ends:
                return True
            # The client is reset once the server has answered (the answers thread drops the answer): by then
            # the server has carried the request out, as when an answer is lost on its way back.
            connection.answer_dropped.wait(_ANSWER_WAIT_SECONDS)
            _close_socket(connection.client, reset=True)
            return False
        if segment.starts:
            # Judged outside the lock: ``match`` is the caller's code and may look at the proxy.
            point = None if rule is None else rule.cut_point(request, len(segment.data))
            if rule is not None and point is not None:
                if request.length is None:
                    cut_at[id(request)] = (point, rule)  # chunked: claimed only if it reaches the point
                elif self._claim(rule):  # another connection may have used up the last cut meanwhile
                    cut_at[id(request)] = (point, None)
        limit, unclaimed = cut_at.get(id(request), (None, None))
        data = segment.data
        reaches = (
            limit is not None
            and request.forwarded + len(data) >= limit
            and not (segment.ends and request.forwarded + len(data) == limit)
        )
        if reaches and unclaimed is not None and not self._claim(unclaimed):
            del cut_at[id(request)]  # the rule was replaced, or its last cut used up, meanwhile: it passes
            reaches = False
        if reaches:
            assert limit is not None
            head = data[: max(0, limit - request.forwarded)]
            if head:
                connection.upstream.sendall(head)
                request.forwarded += len(head)
            with self._lock:
                request.cut = True
            self._cut(connection)
            return False
        connection.upstream.sendall(data)
        request.forwarded += len(data)
        if segment.ends:
            cut_at.pop(id(request), None)
        return True

    def _loses(self, rule: _LoseRule, request: ProxiedRequest) -> bool:
        """Whether ``rule`` loses the answer to ``request``, using up one of its ``times``."""
        if rule.operations is not None and request.operation not in rule.operations:
            return False
        if rule.match is not None and not rule.match(request.head):
            return False
        with self._lock:
            if self._lose is not rule:
                return False
            if rule.times is not None:
                rule.times -= 1
                if rule.times == 0:
                    self._lose = None
            return True

    def _answer_denied(self, connection: _Connection, segment: _Segment) -> bool:
        """Drop a segment of a denied request; answer it (at its end, or at once if it expects a 100-continue)."""
        rule = connection.denying
        assert rule is not None and segment.request is not None
        head = segment.request.head
        expects_continue = (head.header("Expect") or "").lower() == "100-continue"
        if not connection.answered and (segment.ends or expects_continue):
            connection.client.sendall(rule.answer(head))
            connection.answered = True
        if not segment.ends:
            return True
        # Every byte of the request was read: closing now sends a FIN after the answer, not a reset.
        self._close(connection, reset=False)
        return False

    def _relay_answers(self, connection: _Connection) -> None:
        upstream = connection.upstream
        assert upstream is not None
        try:
            while True:
                data = upstream.recv(_RECV_BYTES)
                if not data:
                    # The server closed its side: pass the close on; the connection is over.
                    self._close(connection, reset=False)
                    return
                if not connection.cut:
                    connection.client.sendall(data)
                else:
                    connection.answer_dropped.set()
        except OSError:
            self._close(connection, reset=True)
