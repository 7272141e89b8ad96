"""Tests for the SeaweedFS-backed :class:`LocalS3Server` used by tests, demo and benchmarks."""

from __future__ import annotations

import json
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError

from tests.support import s3 as local_s3
from tests.support.s3 import (
    LOCAL_KMS_KEY_ID,
    WEED_BINARY_ENV,
    LocalS3Server,
    find_weed_binary,
)

pytestmark = pytest.mark.integration

BUCKET = "local-s3-tests"
MULTIPART_SIZE = 20 * 1024 * 1024


@pytest.fixture(scope="module")
def server() -> Iterator[LocalS3Server]:
    with LocalS3Server() as s3:
        s3.create_bucket(BUCKET)
        yield s3


def test_weed_binary_is_found() -> None:
    path = find_weed_binary()
    assert os.access(path, os.X_OK)


def test_picked_ports_leave_room_for_grpc_twins() -> None:
    ports = local_s3._pick_ports("127.0.0.1", 4)
    assert len(set(ports)) == 4
    twins = {port + 10_000 for port in ports}
    assert not twins & set(ports)
    for port in ports:
        assert port < 55_000
        for candidate in (port, port + 10_000):
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", candidate))


def test_endpoint_is_loopback_with_low_port(server: LocalS3Server) -> None:
    assert server.endpoint_url == f"http://127.0.0.1:{server.port}"
    # SeaweedFS also binds port + 10000 for gRPC, which must stay a valid port.
    assert server.port < 55_000
    assert server.is_running


def test_put_get_and_list(server: LocalS3Server) -> None:
    client = server.client()
    client.put_object(Bucket=BUCKET, Key="put-get/a.json", Body=b'{"a": 1}')
    client.put_object(Bucket=BUCKET, Key="put-get/b.json", Body=b'{"b": 2}')
    client.put_object(Bucket=BUCKET, Key="elsewhere/c.json", Body=b"{}")

    assert server.get_object_bytes(BUCKET, "put-get/a.json") == b'{"a": 1}'
    assert server.list_keys(BUCKET, prefix="put-get/") == ["put-get/a.json", "put-get/b.json"]
    assert "elsewhere/c.json" in server.list_keys(BUCKET)


def test_objects_are_stored_with_sse_s3_sse_kms_and_sse_c(server: LocalS3Server) -> None:
    """
    Like AWS, the server takes each kind of server-side encryption and says so in the object's HEAD:
    SSE-S3 with its own key, SSE-KMS with the built-in local KMS's key, SSE-C with the caller's key,
    which every later read of the object needs.
    """
    client = server.client()
    customer_key = os.urandom(32)
    client.put_object(Bucket=BUCKET, Key="sse/s3", Body=b"s3", ServerSideEncryption="AES256")
    client.put_object(
        Bucket=BUCKET, Key="sse/kms", Body=b"kms", ServerSideEncryption="aws:kms", SSEKMSKeyId=LOCAL_KMS_KEY_ID
    )
    client.put_object(Bucket=BUCKET, Key="sse/c", Body=b"c", SSECustomerAlgorithm="AES256", SSECustomerKey=customer_key)
    assert client.head_object(Bucket=BUCKET, Key="sse/s3")["ServerSideEncryption"] == "AES256"
    kms = client.head_object(Bucket=BUCKET, Key="sse/kms")
    assert kms["ServerSideEncryption"] == "aws:kms" and kms["SSEKMSKeyId"]
    with pytest.raises(ClientError) as without_key:
        client.head_object(Bucket=BUCKET, Key="sse/c")
    assert without_key.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    sse_c = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": customer_key}
    assert client.head_object(Bucket=BUCKET, Key="sse/c", **sse_c)["SSECustomerAlgorithm"] == "AES256"
    assert client.get_object(Bucket=BUCKET, Key="sse/c", **sse_c)["Body"].read() == b"c"
    assert [server.get_object_bytes(BUCKET, key) for key in ("sse/s3", "sse/kms")] == [b"s3", b"kms"]


def occurrences_on_disk(server: LocalS3Server, marker: bytes) -> int:
    """How often ``marker`` appears in the files SeaweedFS keeps its data in."""
    return sum(path.read_bytes().count(marker) for path in (server.data_dir / "data").rglob("*") if path.is_file())


def test_encrypted_objects_are_not_stored_in_plaintext(server: LocalS3Server) -> None:
    """What the HEAD says is true on disk: a plain object's bytes are in SeaweedFS's files, an encrypted one's are not."""
    client = server.client()
    bodies = {}
    for key, settings in (
        ("plain", {}),
        ("sse-s3", {"ServerSideEncryption": "AES256"}),
        ("sse-kms", {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": LOCAL_KMS_KEY_ID}),
        ("sse-c", {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": os.urandom(32)}),
    ):
        # Random bytes around the marker: nothing for SeaweedFS to compress it away with.
        marker = f"marker-{key}-{os.urandom(8).hex()}".encode()
        bodies[key] = marker
        client.put_object(
            Bucket=BUCKET, Key=f"at-rest/{key}", Body=os.urandom(4096) + marker + os.urandom(4096), **settings
        )
    assert {key: occurrences_on_disk(server, marker) for key, marker in bodies.items()} == {
        "plain": 1,
        "sse-s3": 0,
        "sse-kms": 0,
        "sse-c": 0,
    }


def test_create_bucket_is_idempotent(server: LocalS3Server) -> None:
    server.create_bucket("local-s3-twice")
    server.create_bucket("local-s3-twice")
    names = [b["Name"] for b in server.client().list_buckets()["Buckets"]]
    assert "local-s3-twice" in names


@pytest.mark.parametrize(
    ("access_key", "secret_key", "expected_code"),
    [
        ("local-access-key", "not-the-secret", "SignatureDoesNotMatch"),
        ("unknown-access-key", "local-secret-key", "InvalidAccessKeyId"),
    ],
)
def test_bad_credentials_are_rejected(
    server: LocalS3Server, access_key: str, secret_key: str, expected_code: str
) -> None:
    import boto3

    client = boto3.session.Session().client(
        "s3",
        endpoint_url=server.endpoint_url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=server.region,
        config=Config(retries={"total_max_attempts": 1}),
    )
    with pytest.raises(ClientError) as excinfo:
        client.get_object(Bucket=BUCKET, Key="put-get/a.json")
    assert excinfo.value.response["Error"]["Code"] == expected_code


def test_airflow_connection_shape(server: LocalS3Server) -> None:
    conn = server.airflow_connection()
    assert conn == {
        "conn_type": "aws",
        "login": "local-access-key",
        "password": "local-secret-key",
        "extra": {"endpoint_url": server.endpoint_url, "region_name": "us-east-1"},
    }
    env = server.airflow_connection_env("my_s3")
    assert json.loads(env["AIRFLOW_CONN_MY_S3"]) == conn


def test_s3hook_uploads_through_env_connection(
    server: LocalS3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Airflow reads its configuration at import time, so its home must be set first.
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow-home"))
    for name, value in server.airflow_connection_env("local_s3").items():
        monkeypatch.setenv(name, value)
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    hook = S3Hook(aws_conn_id="local_s3")
    small = tmp_path / "small.json"
    small.write_bytes(b'{"event": "login"}')
    big = tmp_path / "big.bin"
    big_payload = os.urandom(MULTIPART_SIZE)
    big.write_bytes(big_payload)

    hook.load_file(str(small), key="hook/small.json", bucket_name=BUCKET)
    hook.load_file(str(big), key="hook/big.bin", bucket_name=BUCKET, replace=True)

    assert hook.read_key("hook/small.json", bucket_name=BUCKET) == '{"event": "login"}'
    assert hook.check_for_key("hook/big.bin", bucket_name=BUCKET)
    assert server.list_keys(BUCKET, prefix="hook/") == ["hook/big.bin", "hook/small.json"]
    assert server.get_object_bytes(BUCKET, "hook/big.bin") == big_payload
    # A multipart upload's ETag ends in "-<parts>": proves the managed transfer split it.
    etag = server.client().head_object(Bucket=BUCKET, Key="hook/big.bin")["ETag"]
    assert "-" in etag


def test_start_failure_reports_log_tail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "weed"
    fake.write_text("#!/bin/sh\necho 'fake weed refusing to start' >&2\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv(WEED_BINARY_ENV, str(fake))

    s3 = LocalS3Server(startup_timeout=10)
    with pytest.raises(RuntimeError, match="exited with code 3") as excinfo:
        s3.start()
    assert "fake weed refusing to start" in str(excinfo.value)
    assert not s3.is_running
    # The temporary directory is ours and gone after a failed start too.
    with pytest.raises(RuntimeError, match="not been started"):
        _ = s3.data_dir


def test_start_retries_when_a_port_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    real_pick = local_s3._pick_ports
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        picks: list[list[int]] = []

        def pick_taken_first(host: str, count: int) -> list[int]:
            ports = real_pick(host, count)
            if not picks:
                ports[0] = taken  # the master port: weed fails to bind it at once
            picks.append(ports)
            return ports

        monkeypatch.setattr(local_s3, "_pick_ports", pick_taken_first)
        with LocalS3Server() as s3:
            assert len(picks) == 2
            assert s3.port == picks[1][3]
            assert s3.client().list_buckets()["Buckets"] == []


def test_start_timeout_reports_log_tail() -> None:
    # Over before weed can bind its ports: at 0.2 s a slow attempt could connect while weed was still
    # starting and be answered once it was ready, so that start() succeeded.
    s3 = LocalS3Server(startup_timeout=0.01)
    with pytest.raises(RuntimeError, match=r"did not answer within 0\.01s") as excinfo:
        s3.start()
    assert "last lines of weed's log" in str(excinfo.value)
    assert not s3.is_running


def test_stop_temporarily_and_restart_keep_port_and_data(server: LocalS3Server) -> None:
    client = server.client(retries={"total_max_attempts": 1}, connect_timeout=1)
    client.put_object(Bucket=BUCKET, Key="outage/before.txt", Body=b"survives")
    client.put_object(Bucket=BUCKET, Key="outage/sealed.txt", Body=b"sealed", ServerSideEncryption="AES256")
    endpoint = server.endpoint_url

    server.stop_temporarily()
    assert not server.is_running
    with pytest.raises(EndpointConnectionError):
        client.list_buckets()

    server.restart()
    assert server.endpoint_url == endpoint
    # The same client works again: same port, same credentials, same data.
    assert client.get_object(Bucket=BUCKET, Key="outage/before.txt")["Body"].read() == b"survives"
    # The SSE-S3 key is the server's own across restarts: its objects stay readable.
    assert client.get_object(Bucket=BUCKET, Key="outage/sealed.txt")["Body"].read() == b"sealed"
    client.put_object(Bucket=BUCKET, Key="outage/after.txt", Body=b"new")
    assert server.list_keys(BUCKET, prefix="outage/") == ["outage/after.txt", "outage/before.txt", "outage/sealed.txt"]


def test_data_dir_persists_across_servers(tmp_path: Path) -> None:
    data_dir = tmp_path / "s3-data"
    with LocalS3Server(data_dir=data_dir) as first:
        first.create_bucket("persisted")
        first.client().put_object(Bucket="persisted", Key="k", Body=b"v")
        first_pid = first.pid
    assert first_pid is not None and not first.is_running
    assert (data_dir / "weed.log").is_file()

    with LocalS3Server(data_dir=data_dir) as second:
        assert second.get_object_bytes("persisted", "k") == b"v"
    assert data_dir.is_dir()
