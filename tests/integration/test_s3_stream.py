"""Multipart uploads that follow the spool while the window is read: invisible until completed."""

from __future__ import annotations

import gzip
from secrets import token_hex

import pytest
from airflow.providers.amazon.aws.hooks.s3 import S3Hook

from airflow_provider_orchestrator_audit.export.s3_sink import S3JsonLinesSink
from airflow_provider_orchestrator_audit.export.s3_stream import PART_SIZE, StreamingUploads
from airflow_provider_orchestrator_audit.export.spool import JsonLinesSpool
from airflow_provider_orchestrator_audit.models import AuditLogEntry
from airflow_provider_orchestrator_audit.timestamps import format_ticks

BATCHES = 60  # 60 x 1,000 entries of ~400 bytes: about 24 MB (13 MB gzipped), several parts and a tail


def batch(number: int) -> list[AuditLogEntry]:
    base = 17_672_256_000_000_000 + number * 10**10
    return [
        AuditLogEntry({"createdOn": format_ticks(base - i), "message": f"entry {number}-{i} " + token_hex(170)})
        for i in range(1000)
    ]


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_parts_go_up_while_reading_and_appear_only_at_the_end(s3_server, bucket, compression):
    hook = S3Hook(aws_conn_id="aws_default")
    key = "stream/window.jsonl" + (".gz" if compression else "")
    with S3JsonLinesSink(hook, bucket, key, compression=compression) as sink:
        for number in range(BATCHES):
            sink.write(batch(number))
        assert sink._uploads._uploads, "large windows upload parts while they are read"
        assert s3_server.list_keys(bucket) == []  # nothing visible yet
        objects = sink.finish()
    assert objects == [f"s3://{bucket}/{key}"]
    body = s3_server.get_object_bytes(bucket, key)
    text = (gzip.decompress(body) if compression else body).decode()
    lines = text.splitlines()
    assert len(lines) == BATCHES * 1000 and lines[0].startswith('{"createdOn"')
    if not compression:
        assert len(body) > 2 * PART_SIZE


def test_an_aborted_export_leaves_nothing(s3_server, bucket):
    hook = S3Hook(aws_conn_id="aws_default")
    streamed = StreamingUploads(hook, bucket, lambda index: "aborted.jsonl")
    with JsonLinesSpool() as spool:
        for number in range(BATCHES // 2):
            spool.write(batch(number))
            streamed.advance(spool)
        assert streamed._uploads
        streamed.abort()
    streamed.close()
    assert s3_server.list_keys(bucket) == []
    uploads = s3_server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert uploads == []


def test_a_source_error_inside_the_sink_goes_on_unchanged_and_leaves_nothing(s3_server, bucket):
    hook = S3Hook(aws_conn_id="aws_default")

    class SourceFailed(Exception):
        pass

    with pytest.raises(SourceFailed, match="page 31 is gone"), S3JsonLinesSink(hook, bucket, "w.jsonl") as sink:
        for number in range(BATCHES // 2):
            sink.write(batch(number))
        assert sink._uploads._uploads
        raise SourceFailed("page 31 is gone")
    assert s3_server.list_keys(bucket) == []
    assert s3_server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
