"""CuttingProxy: HTTP request framing, S3 operation names, and the pass / cut / deny / lose / refuse switches over real sockets."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.support.proxy import (
    CuttingProxy,
    ProxiedRequest,
    RequestFramer,
    RequestHead,
    lacks_header,
    s3_operation,
)

# --- framing --------------------------------------------------------------------------------------


def request(method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: example"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body and "Transfer-Encoding" not in (headers or {}):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def frame(stream: bytes, chunk: int) -> list[tuple[str | None, bytes, bool, bool]]:
    """Feed ``stream`` ``chunk`` bytes at a time; merge the segments of each request."""
    framer = RequestFramer()
    merged: list[tuple[str | None, bytes, bool, bool]] = []
    for start in range(0, len(stream), chunk):
        for segment in framer.feed(stream[start : start + chunk]):
            target = segment.request.head.target if segment.request else None
            if segment.starts or not merged or merged[-1][0] != target or merged[-1][3]:
                merged.append((target, segment.data, segment.starts, segment.ends))
            else:
                last = merged[-1]
                merged[-1] = (target, last[1] + segment.data, last[2], segment.ends)
    return merged


@pytest.mark.parametrize("chunk", [1, 7, 100, 1 << 20])
def test_keep_alive_requests_are_split_at_their_boundaries_however_the_bytes_arrive(chunk):
    first = request("PUT", "/b/k?partNumber=1&uploadId=u", b"x" * 300)
    second = request("GET", "/b?list-type=2")
    third = request("POST", "/b/k?uploadId=u", b"<Complete/>")
    segments = frame(first + second + third, chunk)
    assert segments == [
        ("/b/k?partNumber=1&uploadId=u", first, True, True),
        ("/b?list-type=2", second, True, True),
        ("/b/k?uploadId=u", third, True, True),
    ]


@pytest.mark.parametrize("chunk", [1, 5, 1000])
def test_chunked_bodies_with_trailers_end_where_the_last_chunk_and_trailers_end(chunk):
    body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-amz-checksum-crc32: AAAA\r\n\r\n"
    chunked = request("PUT", "/b/k", body, {"Transfer-Encoding": "chunked"})
    after = request("HEAD", "/b")
    segments = frame(chunked + after, chunk)
    assert segments == [("/b/k", chunked, True, True), ("/b", after, True, True)]


def test_bytes_that_are_not_http_make_the_rest_of_the_stream_opaque():
    framer = RequestFramer()
    segments = framer.feed(b"\x16\x03\x01 not http\r\n\r\nGET / HTTP/1.1\r\n\r\n")
    assert [(segment.request, segment.data) for segment in segments] == [
        (None, b"\x16\x03\x01 not http\r\n\r\n"),
        (None, b"GET / HTTP/1.1\r\n\r\n"),
    ]


def test_a_head_that_never_ends_becomes_opaque_instead_of_growing_without_bound():
    framer = RequestFramer()
    assert framer.feed(b"GET / HTTP/1.1\r\nX-Long: " + b"a" * 1024) == []  # waiting for the blank line
    segments = framer.feed(b"a" * (70 * 1024)) + framer.feed(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n")
    assert segments and all(segment.request is None for segment in segments)
    assert sum(len(segment.data) for segment in segments) == len(b"GET / HTTP/1.1\r\nX-Long: ") + 71 * 1024 + 22


def test_request_heads_parse_and_hide_their_headers_from_repr():
    head = RequestHead.parse(
        b"put /b/k?partNumber=2&uploadId=abc HTTP/1.1\r\nAuthorization: AWS4-HMAC-SHA256 Credential=AKIAXYZ\r\n"
        b"content-length: 12\r\n\r\n"
    )
    assert head.method == "PUT" and head.path == "/b/k"
    assert head.query == {"partNumber": "2", "uploadId": "abc"}
    assert head.header("Content-Length") == "12" and head.header("x-missing") is None
    assert "AKIAXYZ" not in repr(head) and "AKIAXYZ" not in repr(ProxiedRequest(head, "UploadPart", 100))
    with pytest.raises(ValueError, match="not an HTTP request line"):
        RequestHead.parse(b"hello\r\n\r\n")


@pytest.mark.parametrize(
    ("method", "target", "headers", "operation"),
    [
        ("PUT", "/b/k", {}, "PutObject"),
        ("PUT", "/b/k", {"x-amz-copy-source": "/b/j"}, "CopyObject"),
        ("PUT", "/b/k?partNumber=1&uploadId=u", {}, "UploadPart"),
        ("POST", "/b/k?uploads", {}, "CreateMultipartUpload"),
        ("POST", "/b/k?uploadId=u", {}, "CompleteMultipartUpload"),
        ("DELETE", "/b/k?uploadId=u", {}, "AbortMultipartUpload"),
        ("GET", "/b/k?uploadId=u", {}, "ListParts"),
        ("GET", "/b?uploads", {}, "ListMultipartUploads"),
        ("GET", "/b?list-type=2&prefix=a", {}, "ListObjects"),
        ("POST", "/b?delete", {}, "DeleteObjects"),
        ("HEAD", "/b", {}, "HeadBucket"),
        ("PUT", "/b", {}, "CreateBucket"),
        ("GET", "/b/k", {}, "GetObject"),
        ("HEAD", "/b/k", {}, "HeadObject"),
        ("DELETE", "/b/k", {}, "DeleteObject"),
        ("GET", "/", {}, "ListBuckets"),
        ("PATCH", "/b/k", {}, "Other"),
    ],
)
def test_s3_operations_are_named_from_method_path_and_query(method, target, headers, operation):
    assert s3_operation(RequestHead(method, target, tuple(headers.items()))) == operation


# --- over sockets ---------------------------------------------------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    """Reads each request's body and answers with its length; records what arrived, truncated or not."""

    protocol_version = "HTTP/1.1"
    server: _RecordingServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            body, complete = self._read_chunked()
        else:
            length = int(self.headers.get("Content-Length") or 0)
            body = b""
            try:
                while len(body) < length:
                    chunk = self.rfile.read1(length - len(body))
                    if not chunk:
                        break
                    body += chunk
            except OSError:
                pass
            complete = len(body) == length
        self.server.arrived.append((self.command, self.path, len(body)))
        if not complete:
            self.close_connection = True
            return
        answer = f"{self.command} {self.path} {len(body)}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def _read_chunked(self) -> tuple[bytes, bool]:
        """The decoded body, and whether it ended with its last chunk and trailers."""
        body = b""
        try:
            while True:
                line = self.rfile.readline()
                if not line.endswith(b"\r\n"):
                    return body, False
                size = int(line.split(b";", 1)[0], 16)
                if size == 0:
                    while (trailer := self.rfile.readline()) not in (b"\r\n", b""):
                        pass
                    return body, trailer == b"\r\n"
                data = self.rfile.read(size + 2)
                body += data[:size]
                if len(data) < size + 2:
                    return body, False
        except (OSError, ValueError):
            return body, False

    do_GET = do_PUT = do_POST = do_HEAD = _serve


class _RecordingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Recorder)
        self.arrived: list[tuple[str, str, int]] = []
        self._lock = threading.Lock()
        self._handling = 0  # connections accepted whose handler has not finished

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            self._handling += 1
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._lock:
                self._handling -= 1

    def settle(self) -> None:
        """Wait until every connection accepted so far is handled: what reached it is in ``arrived``."""
        wait_for(lambda: self._handling == 0)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients cut in the middle are what these tests are about


@pytest.fixture
def upstream() -> Iterator[_RecordingServer]:
    server = _RecordingServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def proxy(upstream: _RecordingServer) -> Iterator[CuttingProxy]:
    with CuttingProxy("127.0.0.1", upstream.server_address[1]) as running:
        yield running


def wait_for(condition: Any, timeout: float = 10.0) -> None:
    """Wait until the upstream server's thread has recorded what arrived."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def send(connection: http.client.HTTPConnection, method: str, path: str, body: bytes = b"") -> str:
    connection.request(method, path, body=body or None)
    response = connection.getresponse()
    return response.read().decode()


def test_pass_through_relays_requests_and_answers_on_one_kept_alive_connection(proxy, upstream):
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    try:
        assert send(connection, "PUT", "/b/k", b"y" * 1_000_000) == "PUT /b/k 1000000"
        assert send(connection, "GET", "/b?list-type=2") == "GET /b?list-type=2 0"
    finally:
        connection.close()
    assert proxy.url == f"http://127.0.0.1:{proxy.port}"
    assert proxy.connections == 1
    assert proxy.operations() == ["PutObject", "ListObjects"]
    assert [(r.forwarded == r.length, r.cut) for r in proxy.requests] == [(True, False), (True, False)]
    assert upstream.arrived == [("PUT", "/b/k", 1_000_000), ("GET", "/b?list-type=2", 0)]


def test_a_cut_forwards_exactly_n_bytes_then_resets_the_client_and_is_used_up(proxy, upstream):
    proxy.cut_after(5000, operations={"PutObject"}, times=1)
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    try:
        assert send(connection, "GET", "/b/k") == "GET /b/k 0"  # not a PutObject: untouched
        with pytest.raises((ConnectionError, http.client.RemoteDisconnected)):
            send(connection, "PUT", "/b/k", b"z" * 100_000)
    finally:
        connection.close()
    cut = proxy.requests[-1]
    assert (cut.operation, cut.forwarded, cut.cut) == ("PutObject", 5000, True)
    head_length = cut.length - 100_000
    wait_for(lambda: len(upstream.arrived) == 2)
    assert upstream.arrived[-1] == ("PUT", "/b/k", 5000 - head_length)  # the server saw it end there
    # The rule was for one request: the next goes through.
    again = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    try:
        assert send(again, "PUT", "/b/k", b"z" * 100_000) == "PUT /b/k 100000"
    finally:
        again.close()
    assert proxy.cuts == 1
    assert proxy.operations(cut=True) == ["PutObject"]


def test_body_only_cuts_count_from_the_end_of_the_head_and_short_requests_pass(proxy, upstream):
    proxy.cut_after(10, body_only=True, match=lambda head: head.path == "/b/cut-me")
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    try:
        assert send(connection, "PUT", "/b/cut-me", b"0123456789") == "PUT /b/cut-me 10"  # ends at the point
        assert send(connection, "PUT", "/b/other", b"a" * 50) == "PUT /b/other 50"
        with pytest.raises((ConnectionError, http.client.RemoteDisconnected)):
            send(connection, "PUT", "/b/cut-me", b"b" * 50)
    finally:
        connection.close()
    wait_for(lambda: len(upstream.arrived) == 3)
    assert upstream.arrived[-1] == ("PUT", "/b/cut-me", 10)
    assert [request.cut for request in proxy.requests] == [False, False, True]
    proxy.clear_log()
    assert proxy.requests == [] and proxy.cuts == 0


def send_chunked(connection: http.client.HTTPConnection, path: str, chunks: list[bytes]) -> str:
    connection.request("PUT", path, body=iter(chunks), encode_chunked=True)
    response = connection.getresponse()
    return response.read().decode()


def test_a_chunked_request_that_ends_before_the_cut_point_does_not_use_up_the_cut(proxy, upstream):
    """Its length is not announced, so it is judged at the cut point: ending before it, it counts as no cut."""
    proxy.cut_after(1000, body_only=True, times=1)
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    try:
        assert send_chunked(connection, "/b/short", [b"a" * 100, b"b" * 100]) == "PUT /b/short 200"
        with pytest.raises((ConnectionError, http.client.RemoteDisconnected)):
            send_chunked(connection, "/b/long", [b"c" * 600, b"d" * 600])
    finally:
        connection.close()
    assert [(request.length, request.cut) for request in proxy.requests] == [(None, False), (None, True)]
    again = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    try:  # the one cut is used up
        assert send_chunked(again, "/b/long", [b"e" * 600, b"f" * 600]) == "PUT /b/long 1200"
    finally:
        again.close()
    assert proxy.cuts == 1


def test_after_zero_bytes_nothing_of_the_request_reaches_the_server(proxy, upstream):
    proxy.cut_after(0)
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    try:
        with pytest.raises((ConnectionError, http.client.RemoteDisconnected)):
            send(connection, "GET", "/b/k")
    finally:
        connection.close()
    assert proxy.requests[0].forwarded == 0 and proxy.cuts == 1
    proxy.stop()  # joins the relaying threads: nothing can still be on its way upstream
    upstream.settle()
    assert upstream.arrived == []


def test_deny_answers_with_an_s3_error_in_the_servers_place_and_the_server_sees_nothing(proxy, upstream):
    """A denied request is read whole, answered 403 with S3's error XML, and its connection closed; others pass."""
    proxy.deny(
        operations={"PutObject"}, match=lacks_header("x-amz-server-side-encryption"), message="Encrypt: <required>"
    )
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    try:
        connection.request("PUT", "/b/plain", body=b"p" * 200_000)
        response = connection.getresponse()
        body = response.read().decode()
        assert response.status == 403
        assert response.getheader("Connection") == "close"
        assert "<Code>AccessDenied</Code><Message>Encrypt: &lt;required&gt;</Message>" in body
        assert "<Resource>/b/plain</Resource>" in body
    finally:
        connection.close()
    again = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    try:
        again.request("PUT", "/b/sealed", body=b"s" * 10, headers={"x-amz-server-side-encryption": "AES256"})
        assert again.getresponse().read().decode() == "PUT /b/sealed 10"
        assert send(again, "GET", "/b/plain") == "GET /b/plain 0"  # not a PutObject: untouched
    finally:
        again.close()
    upstream.settle()
    assert upstream.arrived == [("PUT", "/b/sealed", 10), ("GET", "/b/plain", 0)]
    assert [(request.operation, request.denied) for request in proxy.requests] == [
        ("PutObject", True),
        ("PutObject", False),
        ("GetObject", False),
    ]
    assert [request.head.path for request in proxy.denials] == ["/b/plain"]
    proxy.pass_through()
    last = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    try:
        assert send(last, "PUT", "/b/plain", b"p") == "PUT /b/plain 1"
    finally:
        last.close()


def test_a_denied_request_expecting_100_continue_is_answered_before_its_body(proxy, upstream):
    """Like S3, the proxy answers a request that waits for ``100 Continue`` at once: its body is never sent."""
    proxy.deny(operations={"PutObject"})
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as client:
        client.sendall(b"PUT /b/k HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
            if b"</Error>" in answer:
                break
    assert answer.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert proxy.denials[0].operation == "PutObject"
    upstream.settle()
    assert upstream.arrived == []


def test_a_lost_answer_lets_the_request_reach_the_server_whole_and_resets_the_client(proxy, upstream):
    proxy.lose_answers(operations={"PutObject"}, times=1)
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    try:
        with pytest.raises((ConnectionError, http.client.RemoteDisconnected)):
            send(connection, "PUT", "/b/k", b"z" * 100_000)
    finally:
        connection.close()
    wait_for(lambda: len(upstream.arrived) == 1)
    assert upstream.arrived == [("PUT", "/b/k", 100_000)]  # carried out, unbeknown to the client
    lost = proxy.requests[-1]
    assert (lost.answer_lost, lost.cut, lost.forwarded == lost.length) == (True, False, True)
    again = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    try:
        assert send(again, "PUT", "/b/k", b"z") == "PUT /b/k 1"  # used up
    finally:
        again.close()


def test_refuse_refuses_new_connections_resets_open_ones_and_pass_through_reopens_the_port(proxy, upstream):
    kept = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    try:
        assert send(kept, "GET", "/b/one") == "GET /b/one 0"
        port = proxy.port
        proxy.refuse()
        proxy.refuse()  # twice is the same
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        kept.auto_open = 0  # no silent reconnect: the kept-alive connection itself must fail
        with pytest.raises((ConnectionError, http.client.RemoteDisconnected, http.client.NotConnected)):
            send(kept, "GET", "/b/two")
    finally:
        kept.close()
    proxy.pass_through()
    assert proxy.port == port
    again = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        assert send(again, "GET", "/b/three") == "GET /b/three 0"
    finally:
        again.close()
    assert [path for _, path, _ in upstream.arrived] == ["/b/one", "/b/three"]


def test_a_down_server_shows_as_a_reset_connection():
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))  # bound, never listening: connections to it are refused
        port = placeholder.getsockname()[1]
        with CuttingProxy("127.0.0.1", port) as proxy:
            connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
            try:
                with pytest.raises((ConnectionError, http.client.RemoteDisconnected)):
                    send(connection, "GET", "/b")
            finally:
                connection.close()
            assert proxy.requests == []


def test_on_request_runs_before_the_request_is_forwarded_and_its_errors_are_kept(upstream):
    seen: list[str] = []

    def hook(request: ProxiedRequest) -> None:
        seen.append(f"{request.operation} {len(upstream.arrived)}")
        if request.head.path == "/b/boom":
            raise RuntimeError("boom")

    with CuttingProxy.to(f"http://127.0.0.1:{upstream.server_address[1]}", on_request=hook) as proxy:
        connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
        try:
            assert send(connection, "GET", "/b/k") == "GET /b/k 0"
            with pytest.raises((ConnectionError, http.client.RemoteDisconnected)):
                send(connection, "GET", "/b/boom")
        finally:
            connection.close()
        assert seen == ["GetObject 0", "GetObject 1"]
        assert [str(error) for error in proxy.errors] == ["boom"]
        proxy.stop()  # joins the relaying threads: nothing can still be on its way upstream
        upstream.settle()
        assert upstream.arrived == [("GET", "/b/k", 0)]


def test_bad_arguments_and_use_before_start_are_refused():
    proxy = CuttingProxy("127.0.0.1", 9)
    with pytest.raises(RuntimeError, match="not running"):
        _ = proxy.url
    with pytest.raises(ValueError, match="after_bytes must be >= 0"):
        proxy.cut_after(-1)
    with pytest.raises(ValueError, match="times must be >= 1"):
        proxy.cut_after(10, times=0)
    with pytest.raises(ValueError, match="times must be >= 1"):
        proxy.lose_answers(times=0)
    with pytest.raises(ValueError, match="names no host and port"):
        CuttingProxy.to("http://example.com")
    proxy.stop()  # never started: nothing to do
