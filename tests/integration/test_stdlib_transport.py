"""
The synchronous client's own HTTP/1.1 transport, over real sockets: against the local Orchestrator
server, and against a scripted server on loopback for what a real one does now and then (closes an idle
connection, stalls, cuts an answer short, speaks TLS with its own CA).
"""

from __future__ import annotations

import datetime
import gzip
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from airflow_provider_orchestrator_audit.client.drivers import OrchestratorAuditClient
from airflow_provider_orchestrator_audit.client.events import EventsQuery
from airflow_provider_orchestrator_audit.client.settings import ConnectionSettings
from airflow_provider_orchestrator_audit.client.stdlib_transport import (
    StdlibTransport,
    stdlib_transport_unless_proxied,
)
from airflow_provider_orchestrator_audit.hooks.orchestrator_audit import OrchestratorAuditHook
from tests.conftest import set_connection

TIMEOUT = httpx.Timeout(5.0)

# What the scripted server does with one connection: it gets the socket and the bytes of each request head.
Script = Callable[[socket.socket, Callable[[], bytes | None]], None]


class ScriptedServer:
    """A TCP server on loopback that runs ``script`` for each connection it accepts and counts them."""

    def __init__(self, script: Script, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1") -> None:
        self.script = script
        self.tls = tls
        self.connections = 0
        self.heads: list[bytes] = []
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.create_server((host, 0), family=family)
        self.port = self._listener.getsockname()[1]
        self.host = f"[{host}]" if family == socket.AF_INET6 else "localhost"
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def url(self, path: str = "/page") -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}{path}"

    def close(self) -> None:
        self._listener.close()
        for thread in self._threads:
            thread.join(5)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket) -> None:
        try:
            if self.tls:
                sock = self.tls.wrap_socket(sock, server_side=True)
            buffer = b""

            def next_head() -> bytes | None:
                nonlocal buffer
                while b"\r\n\r\n" not in buffer:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return None
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    ),
                    0,
                )
                while len(buffer) < length:
                    buffer += sock.recv(65536)
                body, buffer = buffer[:length], buffer[length:]
                self.heads.append(head + b"\r\n\r\n" + body)
                return head

            self.script(sock, next_head)
        except OSError:
            pass
        finally:
            sock.close()


def answer(body: bytes = b'{"ok": true}', *extra: str, status: str = "200 OK") -> bytes:
    head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", "Content-Type: application/json", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def keep_answering(sock: socket.socket, next_head: Callable[[], bytes | None]) -> None:
    while next_head() is not None:
        sock.sendall(answer())


@pytest.fixture
def scripted() -> Iterator[Callable[..., ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(script: Script, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1") -> ScriptedServer:
        servers.append(ScriptedServer(script, tls, host))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def transport() -> Iterator[StdlibTransport]:
    made = StdlibTransport()
    yield made
    made.close()


def get(transport: httpx.BaseTransport, url: str, timeout: httpx.Timeout = TIMEOUT) -> httpx.Response:
    with httpx.Client(transport=transport, timeout=timeout) as client:
        return client.get(url, headers={"Authorization": "Bearer a-token"})


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"], ids=["ipv4", "ipv6-literal"])
def test_answers_come_back_as_httpx_responses_over_one_kept_alive_connection(scripted, transport, host):
    server = scripted(keep_answering, host=host)
    client = httpx.Client(transport=transport, timeout=TIMEOUT)
    for _ in range(5):
        reply = client.get(server.url("/page?a=1&b=%2F"), headers={"Authorization": "Bearer a-token"})
        assert reply.status_code == 200 and reply.json() == {"ok": True}
        assert reply.headers["content-type"] == "application/json"
    assert server.connections == 1
    head = server.heads[0]
    assert head.startswith(b"GET /page?a=1&b=%2F HTTP/1.1\r\n")
    # An IPv6 literal is sent in brackets, as the URL writes it.
    assert (
        b"\r\nAuthorization: Bearer a-token" in head and f"\r\nHost: {server.host}:{server.port}\r\n".encode() in head
    )


def test_a_form_post_carries_its_body(scripted, transport):
    server = scripted(keep_answering)
    with httpx.Client(transport=transport, timeout=TIMEOUT) as client:
        client.post(server.url("/token"), data={"grant_type": "client_credentials", "scope": "A B"})
    assert server.heads[0].startswith(b"POST /token HTTP/1.1\r\n")
    assert server.heads[0].endswith(b"\r\n\r\ngrant_type=client_credentials&scope=A+B")


def test_an_idle_connection_the_server_closed_is_not_used_again(scripted, transport):
    def one_answer_then_close(sock, next_head):
        next_head()
        sock.sendall(answer())  # keep-alive as far as the client knows

    server = scripted(one_answer_then_close)
    client = httpx.Client(transport=transport, timeout=TIMEOUT)
    for _ in range(3):
        assert client.get(server.url()).status_code == 200
        time.sleep(0.05)  # the server's close reaches the client's idle socket
    assert server.connections == 3


def test_connection_close_is_honoured(scripted, transport):
    def close_after(sock, next_head):
        next_head()
        sock.sendall(answer(b"{}", "Connection: close"))

    server = scripted(close_after)
    client = httpx.Client(transport=transport, timeout=TIMEOUT)
    assert [client.get(server.url()).status_code for _ in range(2)] == [200, 200]
    assert server.connections == 2


def test_chunked_and_gzipped_answers_are_decoded(scripted, transport):
    body = gzip.compress(b'{"auditEvents": []}')

    def chunked_gzip(sock, next_head):
        while next_head() is not None:
            chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:7], body[7:]))
            head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n"
            sock.sendall(head + chunks + b"0\r\n\r\n")

    server = scripted(chunked_gzip)
    assert get(transport, server.url()).content == b'{"auditEvents": []}'


def answer_each(*answers: bytes) -> Script:
    """A script that sends the next of ``answers`` for each request on the connection."""

    def script(sock: socket.socket, next_head: Callable[[], bytes | None]) -> None:
        for sent in answers:
            if next_head() is None:
                return
            sock.sendall(sent)
        next_head()

    return script


@pytest.mark.parametrize(
    ("sent", "content"),
    [
        (b"HTTP/1.1 100 Continue\r\n\r\n" + answer(b"[1]"), b"[1]"),
        (b"HTTP/1.1 200 OK\r\nX-Long: a\r\n  b\r\n" + answer(b"[2]")[17:], b"[2]"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;name=value\r\n[3]\r\n0\r\nX-Trailer: 1\r\n\r\n",
            b"[3]",
        ),
        (b"HTTP/1.1 200\r\nContent-Length: 3\r\n\r\n[4]", b"[4]"),
        (b"HTTP/1.1 204 No Content\r\n\r\n", b""),
    ],
    ids=["interim-100-skipped", "folded-header", "chunk-extension-and-trailer", "no-reason-phrase", "no-content"],
)
def test_answers_framed_as_rfc_9112_says_keep_the_connection(scripted, transport, sent, content):
    server = scripted(answer_each(sent, answer(b"[0]")))
    client = httpx.Client(transport=transport, timeout=TIMEOUT)
    reply = client.get(server.url())
    assert reply.content == content
    assert client.get(server.url()).content == b"[0]"  # the next answer on the same connection, read from its start
    assert server.connections == 1
    if sent.startswith(b"HTTP/1.1 200 OK\r\nX-Long"):
        assert reply.headers["x-long"] == "a b"


@pytest.mark.parametrize(
    "sent",
    [
        b"HTTP/1.1 200 OK\r\n\r\n[5]",  # no length: the body runs to the end of the connection
        b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\n[5]",  # HTTP/1.0 without keep-alive
        answer(b"[5]") + b"HTTP/1.1 200 OK\r\n",  # bytes after the answer that nobody asked for
    ],
    ids=["read-to-close", "http-1.0", "bytes-after-the-answer"],
)
def test_a_connection_that_cannot_carry_another_answer_is_not_used_again(scripted, transport, sent):
    def send_it(sock, next_head):
        while next_head() is not None:
            sock.sendall(sent)
            if b"Content-Length" not in sent:
                sock.shutdown(socket.SHUT_WR)

    server = scripted(send_it)
    client = httpx.Client(transport=transport, timeout=TIMEOUT)
    assert [client.get(server.url()).content for _ in range(2)] == [b"[5]", b"[5]"]
    assert server.connections == 2


def test_a_header_that_would_break_the_request_is_refused_before_anything_is_sent(scripted, transport):
    server = scripted(keep_answering)
    request = httpx.Request("GET", server.url(), headers={"Authorization": "Bearer a-secret\r\nX-Injected: 1"})
    with pytest.raises(httpx.LocalProtocolError, match="'Authorization' cannot be sent") as raised:
        transport.handle_request(request)
    assert "a-secret" not in str(raised.value)
    time.sleep(0.05)
    assert server.heads == []


def test_a_refused_connection_is_a_connect_error(transport):
    with socket.create_server(("127.0.0.1", 0)) as reserved:
        port = reserved.getsockname()[1]
    with pytest.raises(httpx.ConnectError, match=f"cannot connect to 127.0.0.1:{port}"):
        get(transport, f"http://127.0.0.1:{port}/page")


def test_an_answer_that_stalls_is_a_read_timeout(scripted, transport):
    def stall(sock, next_head):
        next_head()
        time.sleep(1.0)

    server = scripted(stall)
    with pytest.raises(httpx.ReadTimeout):
        get(transport, server.url(), timeout=httpx.Timeout(0.2))


@pytest.mark.parametrize(
    ("sent", "error", "words"),
    [
        (b"", httpx.RemoteProtocolError, "without response"),
        (b"HELLO\r\n", httpx.RemoteProtocolError, "HELLO"),
        (answer(b'{"ok": true}')[:-4], httpx.RemoteProtocolError, "4 bytes before the end of the answer"),
        (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n", httpx.RemoteProtocolError, "middle of the answer's head"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", httpx.RemoteProtocolError, "not a header: b'no colon"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n", httpx.RemoteProtocolError, "unusable Content-Length"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            httpx.RemoteProtocolError,
            "chunk size that is not hexadecimal",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
            httpx.RemoteProtocolError,
            "3 bytes before the end",
        ),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70000, httpx.RemoteProtocolError, "longer than 65536 bytes"),
    ],
    ids=[
        "closed-without-answer",
        "not-http",
        "cut-short",
        "head-cut-short",
        "not-a-header",
        "conflicting-lengths",
        "bad-chunk-size",
        "chunk-cut-short",
        "endless-line",
    ],
)
def test_a_broken_answer_is_a_protocol_error(scripted, transport, sent, error, words):
    def broken(sock, next_head):
        next_head()
        sock.sendall(sent)

    server = scripted(broken)
    with pytest.raises(error, match=words):
        get(transport, server.url())


def test_a_reset_is_one_of_the_errors_httpx_raises_for_it(scripted, transport):
    # A reset read as such is a ReadError; one that lands before the status line reads as an answer that never
    # came (RemoteProtocolError), as with httpx's own transport. Either way the retry policy retries it.
    def reset(sock, next_head):
        next_head()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")

    server = scripted(reset)
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        get(transport, server.url())


def test_requests_beyond_max_connections_wait_for_the_pool_timeout(scripted):
    def slow(sock, next_head):
        while next_head() is not None:
            time.sleep(0.5)
            sock.sendall(answer())

    server = scripted(slow)
    transport = StdlibTransport(max_connections=1)
    client = httpx.Client(transport=transport, timeout=httpx.Timeout(5.0, pool=0.1))
    first = threading.Thread(target=client.get, args=(server.url(),))
    first.start()
    time.sleep(0.1)
    with pytest.raises(httpx.PoolTimeout):
        client.get(server.url())
    first.join()
    client.close()


# --- TLS ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate_authority(tmp_path_factory) -> tuple[Path, ssl.SSLContext]:
    """A CA's certificate (PEM file) and a server context with a certificate it signed for ``localhost``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def certificate(subject, issuer, key, signer, *extensions):
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(signer, hashes.SHA256())

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test audit CA")])
    ca = certificate(
        ca_name,
        ca_name,
        ca_key,
        ca_key,
        (x509.BasicConstraints(ca=True, path_length=None), True),
        (
            x509.KeyUsage(True, False, False, False, False, True, True, False, False),
            True,
        ),
        (x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False),
    )
    server = certificate(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]),
        ca_name,
        server_key,
        ca_key,
        (x509.SubjectAlternativeName([x509.DNSName("localhost")]), False),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
        (x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False),
    )
    folder = tmp_path_factory.mktemp("tls")
    ca_file, chain_file, key_file = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    chain_file.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain_file, key_file)
    return ca_file, context


def test_tls_is_verified_against_the_ca_bundle_given(scripted, certificate_authority):
    ca_file, server_context = certificate_authority
    server = scripted(keep_answering, tls=server_context)
    trusting = StdlibTransport(verify=str(ca_file))
    assert get(trusting, server.url()).json() == {"ok": True}
    trusting.close()
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        get(StdlibTransport(verify=True), server.url())
    assert get(StdlibTransport(verify=False), server.url()).status_code == 200


def test_a_ca_bundle_that_is_not_there_fails_when_the_client_is_made(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pem' .* does not exist"):
        StdlibTransport(verify=str(tmp_path / "missing.pem"))


# --- where the client uses it ------------------------------------------------------------------------------


def test_the_client_uses_it_unless_a_proxy_is_configured(monkeypatch):
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    settings = ConnectionSettings(conn_id="c", base_url="https://cloud.uipath.com/acme", organization="acme")
    assert isinstance(stdlib_transport_unless_proxied(True, 4), StdlibTransport)
    with OrchestratorAuditClient(settings) as client:
        assert isinstance(client._direct, StdlibTransport)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert stdlib_transport_unless_proxied(True, 4) is None
    with OrchestratorAuditClient(settings) as client:
        assert client._direct is None  # through httpx's client and its own transport, which read the proxy variables
        assert isinstance(client._http._transport, httpx.HTTPTransport)


def test_pages_through_it_equal_pages_through_httpx_own_transport(orchestrator, monkeypatch):
    """A chain of tenant audit event pages, read by the client with each transport: the same events, byte for byte."""
    conn_id = set_connection(monkeypatch, "transports", orchestrator.airflow_connection(tenant="Finance"))
    settings = OrchestratorAuditHook(conn_id).settings
    chains = {}
    for name, transport in (("stdlib", None), ("httpx", httpx.HTTPTransport())):
        with OrchestratorAuditClient(settings, transport=transport) as client:
            # The client calls its own transport directly, and goes through httpx's client with any other.
            assert isinstance(client._direct, StdlibTransport) if transport is None else client._direct is None
            first = EventsQuery("tenant", "Finance", "2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z", max_count=200)
            chain = [client.fetch_events(first)]
            while chain[-1].previous and len(chain) < 4:
                chain.append(client.fetch_events(EventsQuery("tenant", "Finance", cursor=chain[-1].previous)))
        chains[name] = [[event.to_json_bytes() for event in page.events] for page in chain]
    assert chains["stdlib"] == chains["httpx"]
    assert [len(page) for page in chains["stdlib"]] == [200, 200, 200, 200]
