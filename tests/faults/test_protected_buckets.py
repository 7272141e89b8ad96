"""
Protected buckets: server-side encryption, ACLs, storage class, tags and metadata on every object, and a
bucket that refuses uploads without ``x-amz-server-side-encryption``.

Each export is a real ``dag.test()`` run against the local Orchestrator and SeaweedFS (which stores SSE-S3,
SSE-KMS through its built-in local KMS, and SSE-C objects, and says so in their HEAD). The refusing bucket
is SeaweedFS enforcing the bucket policy AWS documents for that, or SeaweedFS behind :class:`CuttingProxy`,
which answers every ``PutObject`` and ``CreateMultipartUpload`` without the header with ``AccessDenied``.
Bad values of the new arguments are import errors of the DAG file, naming the task. The multipart paths of
the same settings are in ``test_storage_faults.py``.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from airflow_provider_orchestrator_audit.exceptions import AuditExportError
from tests.conftest import set_connection
from tests.faults.scenario_helpers import (
    KEY,
    assert_exact_export,
    assert_failed_cleanly,
    bucket_contents,
    export_kwargs,
    run_export,
    unfinished_uploads,
    window_lines,
    write_scenario_dag,
)
from tests.support.proxy import CuttingProxy, lacks_header
from tests.support.s3 import LOCAL_KMS_KEY_ID, LocalS3Server

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("airflow_db")]

# What S3 says when a bucket policy's explicit deny refuses an upload.
POLICY_DENIAL = (
    "User: arn:aws:iam::111122223333:user/airflow is not authorized to perform: s3:PutObject with an explicit deny "
    "in a resource-based policy"
)
SSE_HEADER = "x-amz-server-side-encryption"
# Before the local Orchestrator's first entry (2026-01-01T00:00Z): an empty window.
EMPTY_WINDOW = ("2025-12-31T22:00:00Z", "2025-12-31T23:00:00Z")


@pytest.fixture
def protected(s3_server: LocalS3Server, bucket: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[CuttingProxy]:
    """
    ``aws_default`` reaching the bucket through a proxy that refuses, as a bucket policy with
    ``"Null": {"s3:x-amz-server-side-encryption": "true"}`` does, every upload without the header.
    """
    with CuttingProxy.to(s3_server.endpoint_url) as proxy:
        proxy.deny(
            operations={"PutObject", "CreateMultipartUpload"}, match=lacks_header(SSE_HEADER), message=POLICY_DENIAL
        )
        connection = s3_server.airflow_connection()
        connection["extra"]["endpoint_url"] = proxy.url
        set_connection(monkeypatch, "aws_default", connection)
        yield proxy


def heads(proxy: CuttingProxy, operation: str, header: str) -> list[str | None]:
    """The value of ``header`` in every ``operation`` request the proxy saw."""
    return [request.head.header(header) for request in proxy.requests if request.operation == operation]


def test_a_bucket_that_requires_encryption_refuses_the_export_without_it_and_takes_it_with_encrypt(
    orchestrator, orchestrator_conn, bucket, s3_server, protected
):
    """
    Without ``encrypt`` the bucket refuses the upload: the task fails naming the object, the bucket, the
    refused header and the parameter to set; the denied request never reached S3, and nothing is left.
    With ``encrypt=True`` the same export goes through and the object is stored with SSE-S3.
    """
    run = run_export("protected_bucket_plain", export_kwargs(orchestrator_conn, bucket))
    message = assert_failed_cleanly(
        run,
        s3_server,
        bucket,
        AuditExportError,
        f"Writing s3://{bucket}/{KEY} failed: AccessDenied: {POLICY_DENIAL}. Nothing of this run is visible in the "
        f"bucket. S3 refused the write: bucket {bucket!r} may require server-side encryption (a bucket policy that "
        "denies s3:PutObject without the x-amz-server-side-encryption header, which this export did not send). Set "
        "encrypt=True on the operator (SSE-S3), or s3_extra_args={'ServerSideEncryption': 'aws:kms', "
        "'SSEKMSKeyId': '<key id or ARN>'} (SSE-KMS), as the bucket policy asks",
    )
    assert message.endswith(
        "Otherwise check that the connection may s3:PutObject into the bucket. Then rerun the task."
    )
    assert [request.operation for request in protected.denials] == ["PutObject"]  # a 403 is not retried

    protected.clear_log()
    run = run_export("protected_bucket_encrypted", export_kwargs(orchestrator_conn, bucket, encrypt=True))
    assert_exact_export(run, orchestrator, s3_server, bucket)
    assert protected.denials == []
    assert heads(protected, "PutObject", SSE_HEADER) == ["AES256"]
    head = s3_server.client().head_object(Bucket=bucket, Key=KEY)
    assert head["ServerSideEncryption"] == "AES256"
    assert head["ContentType"] == "application/x-ndjson"


def require_encryption_by_policy(s3_server: LocalS3Server, bucket: str) -> None:
    """The bucket policy AWS documents for buckets that take only encrypted uploads; SeaweedFS enforces it."""
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyUnencryptedUploads",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:PutObject",
                "Resource": f"arn:aws:s3:::{bucket}/*",
                "Condition": {"Null": {"s3:x-amz-server-side-encryption": "true"}},
            }
        ],
    }
    s3_server.client().put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))


@pytest.mark.parametrize(
    ("settings", "encryption"),
    [
        ({"encrypt": True}, "AES256"),
        ({"s3_extra_args": {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": LOCAL_KMS_KEY_ID}}, "aws:kms"),
    ],
    ids=["sse-s3", "sse-kms"],
)
def test_a_bucket_policy_that_requires_encryption_is_met_by_the_operators_settings(
    orchestrator, orchestrator_conn, bucket, s3_server, settings, encryption
):
    """
    The same refusal from SeaweedFS itself, enforcing the bucket policy: the export without settings fails
    with S3's own AccessDenied and the advice, leaving nothing; with SSE-S3 or SSE-KMS it is written.

    (SeaweedFS 4.48 applies such a policy to CompleteMultipartUpload as well, which has no encryption header
    in S3's API, so a window large enough for a multipart upload cannot pass it at all; the multipart path
    is refused and met through the proxy in test_storage_faults.py.)
    """
    require_encryption_by_policy(s3_server, bucket)
    run = run_export("protected_bucket_policy_plain", export_kwargs(orchestrator_conn, bucket))
    assert_failed_cleanly(
        run,
        s3_server,
        bucket,
        AuditExportError,
        f"Writing s3://{bucket}/{KEY} failed: AccessDenied: Access Denied. Nothing of this run is visible in the "
        f"bucket. S3 refused the write: bucket {bucket!r} may require server-side encryption",
        "Set encrypt=True on the operator (SSE-S3)",
    )
    run = run_export("protected_bucket_policy_met", export_kwargs(orchestrator_conn, bucket, **settings))
    assert_exact_export(run, orchestrator, s3_server, bucket)
    assert s3_server.client().head_object(Bucket=bucket, Key=KEY)["ServerSideEncryption"] == encryption


def test_every_part_of_a_split_gzip_window_carries_every_setting(
    orchestrator, orchestrator_conn, bucket, s3_server, protected
):
    """
    A window split into three gzip objects, each one PutObject: every request carries the encryption, the ACL,
    the storage class, the tags and the metadata, and every object is stored with them, as
    ``application/gzip`` without a ``Content-Encoding`` (it is a ``.gz`` file, not a compressed transfer).
    """
    key = "audit/window.jsonl.gz"
    kwargs = export_kwargs(
        orchestrator_conn,
        bucket,
        s3_key=key,
        compression="gzip",
        max_records_per_file=250,
        encrypt=True,
        acl_policy="bucket-owner-full-control",
        s3_extra_args={
            "StorageClass": "STANDARD_IA",
            "Tagging": {"team": "security", "data": "audit log"},
            "Metadata": {"source": "uipath-orchestrator"},
        },
    )
    run = run_export("protected_bucket_split", kwargs)
    assert run.state == "success", f"the export failed: {run.error!r}"
    keys = [f"audit/window.part-0000{index}.jsonl.gz" for index in range(3)]
    assert run.result is not None and run.result["objects"] == [f"s3://{bucket}/{name}" for name in keys]
    objects = bucket_contents(s3_server, bucket)
    assert sorted(objects) == keys
    lines = [line for name in keys for line in gzip.decompress(objects[name]).decode("utf-8").splitlines()]
    assert Counter(lines) == Counter(window_lines(orchestrator))
    assert unfinished_uploads(s3_server, bucket) == []

    assert protected.denials == []
    for header, value in (
        (SSE_HEADER, "AES256"),
        ("x-amz-acl", "bucket-owner-full-control"),
        ("x-amz-storage-class", "STANDARD_IA"),
        ("x-amz-tagging", "team=security&data=audit+log"),
        ("x-amz-meta-source", "uipath-orchestrator"),
        ("Content-Type", "application/gzip"),
        ("Content-Encoding", None),
    ):
        assert heads(protected, "PutObject", header) == [value] * 3, header
    client = s3_server.client()
    for name in keys:
        head = client.head_object(Bucket=bucket, Key=name)
        assert head["ServerSideEncryption"] == "AES256", name
        assert head["StorageClass"] == "STANDARD_IA", name
        assert head["Metadata"] == {"source": "uipath-orchestrator"}, name
        assert head["ContentType"] == "application/gzip" and "ContentEncoding" not in head, name
        tags = client.get_object_tagging(Bucket=bucket, Key=name)["TagSet"]
        assert {tag["Key"]: tag["Value"] for tag in tags} == {"team": "security", "data": "audit log"}, name


def test_an_empty_window_is_written_with_sse_kms(orchestrator, orchestrator_conn, bucket, s3_server, protected):
    """The empty object of a window without entries is encrypted like any other: SSE-KMS with the named key."""
    kms = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": LOCAL_KMS_KEY_ID, "BucketKeyEnabled": True}
    kwargs = export_kwargs(
        orchestrator_conn, bucket, window_start=EMPTY_WINDOW[0], window_end=EMPTY_WINDOW[1], s3_extra_args=kms
    )
    run = run_export("protected_bucket_empty", kwargs)
    assert run.state == "success", f"the export failed: {run.error!r}"
    assert run.result is not None and run.result["records"] == 0
    assert bucket_contents(s3_server, bucket) == {KEY: b""}
    assert heads(protected, "PutObject", SSE_HEADER) == ["aws:kms"]
    assert heads(protected, "PutObject", "x-amz-server-side-encryption-aws-kms-key-id") == [LOCAL_KMS_KEY_ID]
    assert heads(protected, "PutObject", "x-amz-server-side-encryption-bucket-key-enabled") == ["true"]
    head = s3_server.client().head_object(Bucket=bucket, Key=KEY)
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"]  # the local KMS's id of the key behind the alias


def test_a_window_is_written_with_sse_c_through_airflow(orchestrator, orchestrator_conn, bucket, s3_server):
    """
    SSE-C from a DAG file: the key (32 raw bytes) survives Airflow's parsing and serialization of the task,
    the object can be read with it only, and Airflow's secrets masker knows the key as the header sends it.
    """
    from airflow.sdk._shared.secrets_masker import redact

    customer_key = bytes(range(64, 96))
    sse_c = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": customer_key}
    run = run_export("protected_bucket_sse_c", export_kwargs(orchestrator_conn, bucket, s3_extra_args=sse_c))
    assert run.state == "success", f"the export failed: {run.error!r}"
    client = s3_server.client()
    with pytest.raises(ClientError):
        client.head_object(Bucket=bucket, Key=KEY)
    assert client.head_object(Bucket=bucket, Key=KEY, **sse_c)["SSECustomerAlgorithm"] == "AES256"
    body = client.get_object(Bucket=bucket, Key=KEY, **sse_c)["Body"].read().decode("utf-8")
    assert Counter(body.splitlines()) == Counter(window_lines(orchestrator))
    sent_key = base64.b64encode(customer_key).decode("ascii")
    assert redact(f"key {sent_key}") == "key ***"


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        (
            {"s3_extra_args": {"ServerSideEncryption": "AES-256"}},
            (
                "export: s3_extra_args ServerSideEncryption must be one of AES256, aws:kms, aws:kms:dsse; got 'AES-256' "
                "(did you mean 'AES256'?)"
            ),
        ),
        (
            {"s3_extra_args": {"SSEKMSKeyId": "alias/audit-logs"}},
            (
                "export: s3_extra_args SSEKMSKeyId needs ServerSideEncryption='aws:kms' (or 'aws:kms:dsse'), but the "
                "export has no ServerSideEncryption: add ServerSideEncryption='aws:kms' to s3_extra_args"
            ),
        ),
        (
            {"encrypt": True, "s3_extra_args": {"ServerSideEncryption": "aws:kms"}},
            (
                "export: encrypt=True asks for SSE-S3 (AES256), but s3_extra_args asks for ServerSideEncryption='aws:kms': "
                "drop encrypt=True to use 'aws:kms', or drop ServerSideEncryption"
            ),
        ),
        (
            {"acl_policy": "owner-full-control"},
            (
                "export: acl_policy must be one of private, public-read, public-read-write, authenticated-read, "
                "aws-exec-read, bucket-owner-read, bucket-owner-full-control; got 'owner-full-control' (did you mean "
                "'bucket-owner-full-control'?)"
            ),
        ),
        (
            {"s3_extra_args": {"StorageClas": "STANDARD_IA"}},
            (
                "export: s3_extra_args: 'StorageClas' is not an object setting the export can apply; did you mean "
                "'StorageClass'?"
            ),
        ),
    ],
    ids=["unknown-sse-algorithm", "kms-key-without-kms", "encrypt-and-kms", "unknown-acl", "misspelt-argument"],
)
def test_bad_object_settings_are_import_errors_of_the_dag(
    orchestrator, orchestrator_conn, bucket, s3_server, argument, message
):
    """The DAG file does not load; Airflow lists the error for the file, naming the task; nothing is asked or written."""
    from airflow.dag_processing.dagbag import DagBag

    path = write_scenario_dag("protected_bucket_parse", export_kwargs(orchestrator_conn, bucket, **argument))
    try:
        bag = DagBag(dag_folder=str(path))
    finally:
        Path(path).unlink()
    assert bag.dag_ids == []
    assert message in bag.import_errors[str(path)]
    assert (orchestrator.stats.audit_requests, orchestrator.stats.token_requests) == (0, 0)
    assert s3_server.list_keys(bucket) == []
