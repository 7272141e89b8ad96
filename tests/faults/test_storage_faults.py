"""
S3 failing under a running export: down before it starts, dying in the middle, connections cut mid-upload.

Every scenario runs the real operator against the local Orchestrator over HTTP and SeaweedFS as S3 (its own
instance, since some tests kill it), with :class:`CuttingProxy` in between where the network misbehaves.
Each one proves three things:

* the task fails with an :class:`AuditExportError` that names the object, the bucket, the AWS connection and
  its endpoint, and says what to do — not a bare botocore traceback — and that never carries the AWS keys;
* nothing of the failed attempt is visible: the bucket lists no object and no open multipart upload (or,
  when S3 itself was down at the time, exactly the invisible upload the message names, which the next
  successful run aborts);
* the rerun after recovery writes exactly the window: every entry of the data set once, nothing else.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowTaskTimeout
from airflow.sdk.execution_time.timeout import timeout
from botocore.exceptions import ClientError

from airflow_provider_orchestrator_audit.exceptions import AuditExportError
from airflow_provider_orchestrator_audit.export._s3_errors import endpoint_of
from airflow_provider_orchestrator_audit.export.s3_stream import PART_SIZE
from airflow_provider_orchestrator_audit.testing import AuditDataset, LocalOrchestratorServer
from airflow_provider_orchestrator_audit.timestamps import to_ticks
from airflow_provider_orchestrator_audit.transfers.audit_logs_to_s3 import AuditLogsToS3Operator
from tests.conftest import set_connection
from tests.support.proxy import CuttingProxy, ProxiedRequest, lacks_header
from tests.support.s3 import LOCAL_KMS_KEY_ID, LocalS3Server

pytestmark = pytest.mark.integration

# Keys nobody would type by chance, to prove they never reach an error message or a log line.
ACCESS_KEY = "AKIAFAULTSUITE7Q3X"
SECRET_KEY = "faults-suite-secret-Zm9vYmFyYmF6cXV4"
ORCHESTRATOR_CONN = "orchestrator_faults"
# 36,000 entries an hour of about 380 bytes: one hour is ~13 MiB, two streamed 5 MiB parts and a tail.
ENTRIES_PER_HOUR = 36_000
HOUR = ("2026-01-01T01:00:00Z", "2026-01-01T02:00:00Z")  # entries before and after it exist
FIVE_MINUTES = ("2026-01-01T01:00:00Z", "2026-01-01T01:05:00Z")  # ~1.1 MiB: one plain PUT
# botocore retries a failed request once more (two attempts), so a fault held for a request is seen twice.
ATTEMPTS = 2


@pytest.fixture(scope="module")
def storage() -> Iterator[LocalS3Server]:
    """SeaweedFS for this module alone: its tests stop and restart it."""
    with LocalS3Server(access_key=ACCESS_KEY, secret_key=SECRET_KEY) as server:
        yield server


@pytest.fixture(scope="module")
def source() -> Iterator[LocalOrchestratorServer]:
    """A dense audit log (three hours of 36,000 entries) that does not move: the expected output is fixed."""
    dataset = AuditDataset(size=3 * ENTRIES_PER_HOUR, seed=23, entries_per_hour=ENTRIES_PER_HOUR)
    with LocalOrchestratorServer(dataset) as server:
        yield server


@pytest.fixture
def orchestrator_source(source: LocalOrchestratorServer, monkeypatch: pytest.MonkeyPatch) -> LocalOrchestratorServer:
    source.faults.clear()
    source.latency_seconds = 0.0
    source.reset_stats()
    set_connection(monkeypatch, ORCHESTRATOR_CONN, source.airflow_connection())
    return source


@pytest.fixture
def bucket(storage: LocalS3Server, request: pytest.FixtureRequest) -> str:
    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-") + f"-{uuid.uuid4().hex[:8]}"
    storage.create_bucket(name)
    return name


@pytest.fixture
def proxy(storage: LocalS3Server) -> Iterator[CuttingProxy]:
    with CuttingProxy.to(storage.endpoint_url) as running:
        yield running


def use_s3(monkeypatch: pytest.MonkeyPatch, storage: LocalS3Server, endpoint_url: str) -> None:
    """``aws_default`` pointing at ``endpoint_url``, with botocore's retries bounded to :data:`ATTEMPTS`."""
    connection = storage.airflow_connection()
    connection["extra"]["endpoint_url"] = endpoint_url
    connection["extra"]["config_kwargs"] = {"retries": {"mode": "standard", "total_max_attempts": ATTEMPTS}}
    set_connection(monkeypatch, "aws_default", connection)


def export(bucket: str, window: tuple[str, str] = HOUR, key: str = "w.jsonl", **kwargs: Any) -> dict[str, Any]:
    operator = AuditLogsToS3Operator(
        task_id="export",
        orchestrator_conn_id=ORCHESTRATOR_CONN,
        s3_bucket=bucket,
        s3_key=key,
        window_start=window[0],
        window_end=window[1],
        **kwargs,
    )
    return operator.execute({})


def open_uploads(storage: LocalS3Server, bucket: str) -> list[str]:
    uploads = storage.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return sorted(upload["Key"] for upload in uploads)


def assert_nothing_written(storage: LocalS3Server, bucket: str) -> None:
    assert storage.list_keys(bucket) == []
    assert open_uploads(storage, bucket) == []


def expected_window(source: LocalOrchestratorServer, window: tuple[str, str]) -> list[str]:
    """The window's entries in the data set, canonical and sorted (the log does not move here)."""
    dataset = source.dataset
    first, end = dataset.index_range(to_ticks(window[0]), to_ticks(window[1]))
    return sorted(json.dumps(dataset.entry(i), sort_keys=True, ensure_ascii=False) for i in range(first, end))


def assert_exact(
    storage: LocalS3Server, bucket: str, source: LocalOrchestratorServer, window: tuple[str, str], keys: list[str]
) -> None:
    """The bucket holds exactly ``keys``, no open upload, and their lines are the window's entries, each once."""
    assert storage.list_keys(bucket) == sorted(keys)
    assert open_uploads(storage, bucket) == []
    lines: list[str] = []
    for key in keys:
        body = storage.get_object_bytes(bucket, key).decode("utf-8")
        assert body.endswith("\n")
        lines.extend(body.split("\n")[:-1])
    written = sorted(json.dumps(json.loads(line), sort_keys=True, ensure_ascii=False) for line in lines)
    expected = expected_window(source, window)
    assert len(expected) > 1000
    assert written == expected


def assert_no_secrets(text: str) -> None:
    assert ACCESS_KEY not in text
    assert SECRET_KEY not in text


def advice(endpoint: str) -> str:
    """What a failed write tells the reader to do."""
    return (
        f"Check that S3 is reachable at {endpoint} with the connection 'aws_default', then rerun the task: "
        "it reads the window again and writes it whole."
    )


# --- S3 down --------------------------------------------------------------------------------------


def test_s3_down_before_the_export_fails_before_reading(
    storage, orchestrator_source, bucket, monkeypatch, caplog, capfd
):
    """
    With S3 down from the start, the export fails at its first S3 request (the bucket check), before any
    Orchestrator request: the message names the bucket, the connection and its endpoint, and says S3 did
    not answer. Once S3 is back, the bucket is untouched and the rerun writes the exact window.
    """
    use_s3(monkeypatch, storage, storage.endpoint_url)
    caplog.set_level(logging.INFO)
    storage.stop_temporarily()
    try:
        with pytest.raises(AuditExportError) as failure:
            export(bucket)
    finally:
        storage.restart()
    message = str(failure.value)
    assert message == (
        f"Cannot use S3 bucket {bucket!r} (aws_conn_id='aws_default', endpoint {storage.endpoint_url}): "
        f'EndpointConnectionError: Could not connect to the endpoint URL: "{storage.endpoint_url}/{bucket}". '
        "S3 did not answer: check that it is up and that the connection's endpoint_url points at it, then rerun "
        "the task (nothing was read or written)."
    )
    assert orchestrator_source.stats.audit_requests == 0
    assert_no_secrets(message + caplog.text + "".join(capfd.readouterr()))
    assert_nothing_written(storage, bucket)

    result = export(bucket)
    assert_exact(storage, bucket, orchestrator_source, HOUR, ["w.jsonl"])
    assert result["records"] == len(expected_window(orchestrator_source, HOUR))


def test_s3_dies_mid_export_after_a_part_went_up(storage, orchestrator_source, bucket, monkeypatch, caplog, capfd):
    """
    SeaweedFS is killed the moment the exporter starts sending the second 5 MiB part of the window (the
    first is stored by then; the window may still be being read), and the endpoint refuses connections
    from then on. The task fails naming the object, the part and the endpoint; no object is visible. The
    upload cannot be aborted while S3 is down, so exactly that invisible upload remains, and the message
    says so and what removes it; the rerun after recovery writes the exact window and aborts it.
    """
    started: list[str] = []

    def kill_at_second_part(request: ProxiedRequest) -> None:
        if request.operation == "UploadPart":
            started.append(request.head.query["partNumber"])
            if len(started) == 2:
                storage.stop_temporarily()
                proxy.refuse()

    caplog.set_level(logging.INFO)
    with CuttingProxy.to(storage.endpoint_url, on_request=kill_at_second_part) as proxy:
        use_s3(monkeypatch, storage, proxy.url)
        try:
            with pytest.raises(AuditExportError) as failure:
                export(bucket)
        finally:
            if not storage.is_running:
                storage.restart()
            proxy.pass_through()
        assert started == ["1", "2"]
        assert proxy.errors == []
        message = str(failure.value)
        assert re.fullmatch(
            re.escape(f"Writing s3://{bucket}/w.jsonl failed")
            + r"( while the window was still being read)?, sending part 2: "
            # The last attempt's error: refused, or reset if it went out on a connection the crash cut.
            + "(EndpointConnectionError: Could not connect to the endpoint URL|ConnectionClosedError: Connection was "
            "closed before we received a valid response from endpoint URL): "
            + re.escape(f'"{proxy.url}/{bucket}/w.jsonl?')
            + r"[^\"]*partNumber=2\"\. Nothing of this run is visible in the bucket\. "
            + re.escape(advice(proxy.url))
            + " "
            + re.escape(f"The unfinished multipart upload of s3://{bucket}/w.jsonl could not be aborted (")
            + r"EndpointConnectionError: [^)]*\): it is invisible, but keeps its storage until the next successful "
            r"export of this window aborts it \(as would a lifecycle rule with AbortIncompleteMultipartUpload\)\.",
            message,
        ), message
        logs = caplog.text + "".join(capfd.readouterr())
        assert "Could not abort the unfinished multipart upload of s3://" in logs  # the warning was captured
        assert_no_secrets(message + logs)
        assert storage.list_keys(bucket) == []
        assert open_uploads(storage, bucket) == ["w.jsonl"]  # the one the message names, invisible

        result = export(bucket)
    assert_exact(storage, bucket, orchestrator_source, HOUR, ["w.jsonl"])
    assert result["objects"] == [f"s3://{bucket}/w.jsonl"]


# --- connections cut mid-upload ---------------------------------------------------------------------------


def test_a_part_cut_on_every_attempt_stops_the_export_early(
    storage, orchestrator_source, bucket, monkeypatch, caplog, capfd
):
    """
    Every UploadPart is cut after 64 KiB: botocore's retry is cut too, and the export stops at its next
    batch instead of reading the rest of the window (the reader is slowed so that the rest would take
    seconds), aborts the upload after its part finished failing, and leaves nothing. After the network
    recovers, the rerun writes the exact window.

    The pages read are counted from the part's last attempt to the abort: botocore waits a random time
    before its retry, during which reading goes on, so a count from the start of the export would race.
    """
    audit_requests: dict[str, int] = {}

    def count_pages(request: ProxiedRequest) -> None:
        if request.operation in ("UploadPart", "AbortMultipartUpload"):
            audit_requests[request.operation] = orchestrator_source.stats.audit_requests

    caplog.set_level(logging.INFO)
    orchestrator_source.latency_seconds = 0.03
    with CuttingProxy.to(storage.endpoint_url, on_request=count_pages) as proxy:
        use_s3(monkeypatch, storage, proxy.url)
        proxy.cut_after(64 * 1024, operations={"UploadPart"})
        with pytest.raises(AuditExportError) as failure:
            export(bucket, page_size=500, max_concurrency=1)
        message = str(failure.value)
        assert re.fullmatch(
            re.escape(f"Writing s3://{bucket}/w.jsonl failed while the window was still being read, sending part 1: ")
            + re.escape(
                "ConnectionClosedError: Connection was closed before we received a valid response from endpoint URL: "
                f'"{proxy.url}/{bucket}/w.jsonl?'
            )
            + r"[^\"]*partNumber=1\"\. Nothing of this run is visible in the bucket\. "
            + re.escape(advice(proxy.url)),
            message,
        ), message
        assert proxy.operations(cut=True) == ["UploadPart"] * ATTEMPTS
        assert proxy.operations()[-1] == "AbortMultipartUpload"  # after the part's last attempt, not before
        # 5 MiB are ~14,000 entries, 28 pages of 500; the window has 72, ~40 left by then at 30 ms each. From
        # the part's last attempt to the abort, the export reads only what was under way (1-2 pages measured;
        # the margin is for a loaded machine), not the rest of the window.
        read_after_last_attempt = audit_requests["AbortMultipartUpload"] - audit_requests["UploadPart"]
        assert read_after_last_attempt <= 6, audit_requests
        assert_no_secrets(message + caplog.text + "".join(capfd.readouterr()))
        assert_nothing_written(storage, bucket)

        proxy.pass_through()
        export(bucket)
    assert_exact(storage, bucket, orchestrator_source, HOUR, ["w.jsonl"])


def test_a_put_cut_on_every_attempt_leaves_nothing(
    storage, orchestrator_source, proxy, bucket, monkeypatch, caplog, capfd
):
    """
    A window smaller than a part goes up in one PutObject at the end; cut after 200 KiB on every attempt,
    the task fails naming the object and the endpoint, and S3 keeps nothing of the truncated bodies.
    """
    use_s3(monkeypatch, storage, proxy.url)
    caplog.set_level(logging.INFO)
    proxy.cut_after(200 * 1024, operations={"PutObject"})
    with pytest.raises(AuditExportError) as failure:
        export(bucket, FIVE_MINUTES, key="small.jsonl")
    message = str(failure.value)
    assert message.startswith(
        f"Writing s3://{bucket}/small.jsonl failed: ConnectionClosedError: Connection was closed before we received "
        f'a valid response from endpoint URL: "{proxy.url}/{bucket}/small.jsonl". '
    ), message
    assert message.endswith(" Nothing of this run is visible in the bucket. " + advice(proxy.url)), message
    assert proxy.operations(cut=True) == ["PutObject"] * ATTEMPTS
    assert_no_secrets(message + caplog.text + "".join(capfd.readouterr()))
    assert_nothing_written(storage, bucket)

    proxy.pass_through()
    export(bucket, FIVE_MINUTES, key="small.jsonl")
    assert_exact(storage, bucket, orchestrator_source, FIVE_MINUTES, ["small.jsonl"])


def test_a_cut_completion_leaves_nothing(storage, orchestrator_source, proxy, bucket, monkeypatch, caplog, capfd):
    """
    Every part is stored, but CompleteMultipartUpload is cut 100 bytes into its body on every attempt:
    S3 never sees the whole part list, so nothing becomes visible; the upload is aborted and the rerun
    writes the exact window.
    """
    use_s3(monkeypatch, storage, proxy.url)
    caplog.set_level(logging.INFO)
    proxy.cut_after(100, operations={"CompleteMultipartUpload"}, body_only=True)
    with pytest.raises(AuditExportError) as failure:
        export(bucket)
    message = str(failure.value)
    assert message.startswith(
        f"Writing s3://{bucket}/w.jsonl failed, completing its multipart upload: ConnectionClosedError: "
    ), message
    assert message.endswith(" Nothing of this run is visible in the bucket. " + advice(proxy.url)), message
    assert proxy.operations(cut=True) == ["CompleteMultipartUpload"] * ATTEMPTS
    assert proxy.operations().count("UploadPart") == 3  # 13 MiB: two 5 MiB parts and the tail
    assert_no_secrets(message + caplog.text + "".join(capfd.readouterr()))
    assert_nothing_written(storage, bucket)

    proxy.pass_through()
    export(bucket)
    assert_exact(storage, bucket, orchestrator_source, HOUR, ["w.jsonl"])


def test_a_split_window_whose_second_object_fails_shows_no_first_object(
    storage, orchestrator_source, proxy, bucket, monkeypatch, caplog, capfd
):
    """
    A window split into two objects of more than 5 MiB each: the first completes, the second's
    completion is cut on every attempt. The first object, already visible, is removed again, so a failed
    run never leaves half a window that looks like a finished export. Once an export exists, the same
    failure in a rerun leaves the earlier export whole (its first object replaced by identical content),
    and the message names the objects the failed rerun may have replaced.
    """

    def cut_second_completion() -> None:
        proxy.cut_after(
            10, operations={"CompleteMultipartUpload"}, match=lambda head: ".part-00001." in head.path, body_only=True
        )

    use_s3(monkeypatch, storage, proxy.url)
    caplog.set_level(logging.INFO)
    cut_second_completion()
    with pytest.raises(AuditExportError) as failure:
        export(bucket, max_records_per_file=ENTRIES_PER_HOUR // 2)
    message = str(failure.value)
    assert message.startswith(f"Writing s3://{bucket}/w.part-00001.jsonl failed, completing its multipart upload: ")
    assert message.endswith(" Nothing of this run is visible in the bucket. " + advice(proxy.url)), message
    operations = proxy.operations()
    assert operations.count("CompleteMultipartUpload") == 1 + ATTEMPTS
    assert "DeleteObject" in operations
    assert_no_secrets(message + caplog.text + "".join(capfd.readouterr()))
    assert_nothing_written(storage, bucket)

    proxy.pass_through()
    result = export(bucket, max_records_per_file=ENTRIES_PER_HOUR // 2)
    keys = ["w.part-00000.jsonl", "w.part-00001.jsonl"]
    assert result["objects"] == [f"s3://{bucket}/{key}" for key in keys]
    assert_exact(storage, bucket, orchestrator_source, HOUR, keys)

    cut_second_completion()
    with pytest.raises(AuditExportError) as failure:
        export(bucket, max_records_per_file=ENTRIES_PER_HOUR // 2)
    assert_no_secrets(str(failure.value) + caplog.text + "".join(capfd.readouterr()))
    assert str(failure.value).endswith(
        f" The earlier run's objects stay, but this run may have replaced s3://{bucket}/w.part-00000.jsonl, "
        f"s3://{bucket}/w.part-00001.jsonl before failing; until the rerun they may mix both runs. {advice(proxy.url)}"
    ), str(failure.value)
    assert_exact(storage, bucket, orchestrator_source, HOUR, keys)


# --- interrupted runs and concurrent runs of the same window -------------------------------------------


@pytest.mark.parametrize(
    ("operation", "records_per_file"),
    [
        # Two objects of 18,000 entries (~6.5 MiB): both multipart, the second interrupted while completing.
        ("CompleteMultipartUpload", ENTRIES_PER_HOUR // 2),
        # 30,000 entries (~11 MiB, multipart) and 6,000 (~2 MiB): the second, one PutObject, interrupted.
        ("PutObject", 30_000),
    ],
)
def test_a_task_timeout_while_writing_the_second_object_leaves_nothing(
    storage, orchestrator_source, bucket, monkeypatch, caplog, capfd, operation, records_per_file
):
    """
    Airflow's execution timeout fires while the second object of a split window is being written, after the
    first became visible: Airflow's own SIGALRM handler raises AirflowTaskTimeout, a BaseException, in the
    middle of the S3 call. The first object is removed again, the unfinished upload aborted, and the timeout
    itself reaches Airflow unchanged. The interrupted request is held by the proxy until the end of the
    test, so S3 never carries it out; the rerun writes the exact window.
    """
    held = threading.Event()
    release = threading.Event()
    main_thread = threading.main_thread().ident
    assert main_thread is not None

    def time_out_at_the_second_object(request: ProxiedRequest) -> None:
        if request.operation == operation and ".part-00001." in request.head.path and not held.is_set():
            held.set()
            signal.pthread_kill(main_thread, signal.SIGALRM)  # what the timer of timeout() would do, now
            release.wait(60)
            raise ConnectionResetError("held until the test had looked")  # the request never reaches S3

    caplog.set_level(logging.INFO)
    original_handler = signal.getsignal(signal.SIGALRM)
    with CuttingProxy.to(storage.endpoint_url, on_request=time_out_at_the_second_object) as proxy:
        use_s3(monkeypatch, storage, proxy.url)
        try:
            with pytest.raises(AirflowTaskTimeout) as failure, timeout(3600):
                export(bucket, max_records_per_file=records_per_file)
            assert held.is_set()
            assert str(failure.value) == f"Timeout, PID: {os.getpid()}"  # Airflow's own, not wrapped
            assert proxy.operations().count("CompleteMultipartUpload") == (2 if operation != "PutObject" else 1)
            assert storage.list_keys(bucket) == []
            assert open_uploads(storage, bucket) == []
        finally:
            release.set()
            signal.signal(signal.SIGALRM, original_handler)
        logs = caplog.text + "".join(capfd.readouterr())
        assert (
            f"Writing to S3 bucket {bucket!r} (aws_conn_id='aws_default', endpoint {proxy.url}) was interrupted "
            "(AirflowTaskTimeout). Nothing of this run is visible in the bucket." in logs
        )
        assert_no_secrets(logs)

        result = export(bucket, max_records_per_file=records_per_file)
    keys = ["w.part-00000.jsonl", "w.part-00001.jsonl"]
    assert result["objects"] == [f"s3://{bucket}/{key}" for key in keys]
    assert_exact(storage, bucket, orchestrator_source, HOUR, keys)


def test_a_failed_run_leaves_the_object_another_run_wrote_since(
    storage, orchestrator_source, bucket, monkeypatch, caplog, capfd
):
    """
    Two runs write the same keys at the same time (the hourly DAG and a backfill of one-hour sub-windows
    do): this run's first object is visible, and while its second completion is being cut on every attempt,
    the other run writes the first key. Cleaning up after its failure, this run removes only what is still
    its own: the other run's object stays, and the message says so instead of claiming it was removed.
    """
    other_run = b'{"written": "by the other run"}\n'
    written: list[str] = []

    def other_run_writes_the_first_key(request: ProxiedRequest) -> None:
        if request.operation == "CompleteMultipartUpload" and ".part-00001." in request.head.path and not written:
            storage.client().put_object(Bucket=bucket, Key="w.part-00000.jsonl", Body=other_run)
            written.append("w.part-00000.jsonl")

    caplog.set_level(logging.INFO)
    with CuttingProxy.to(storage.endpoint_url, on_request=other_run_writes_the_first_key) as proxy:
        use_s3(monkeypatch, storage, proxy.url)
        proxy.cut_after(
            10, operations={"CompleteMultipartUpload"}, match=lambda head: ".part-00001." in head.path, body_only=True
        )
        with pytest.raises(AuditExportError) as failure:
            export(bucket, max_records_per_file=ENTRIES_PER_HOUR // 2)
        assert proxy.errors == []
    assert written == ["w.part-00000.jsonl"]
    message = str(failure.value)
    assert message.startswith(f"Writing s3://{bucket}/w.part-00001.jsonl failed, completing its multipart upload: ")
    assert message.endswith(
        f" Nothing of this run is visible in the bucket. s3://{bucket}/w.part-00000.jsonl changed after this run "
        "wrote it: another run writing the same keys at the same time (the hourly DAG and a backfill of the same "
        "hours, say) replaced it, so it is left as it is; let only one run write a window at a time. "
        + advice(proxy.url)
    ), message
    assert_no_secrets(message + caplog.text + "".join(capfd.readouterr()))
    assert storage.list_keys(bucket) == ["w.part-00000.jsonl"]
    assert storage.get_object_bytes(bucket, "w.part-00000.jsonl") == other_run
    assert open_uploads(storage, bucket) == []


def test_a_run_aborts_only_the_uploads_begun_before_it(storage, orchestrator_source, bucket, monkeypatch):
    """
    A successful run aborts the unfinished uploads of its keys that an earlier failed run left, but not
    one that another run of the same window begins while this one is writing: that run is still going.
    S3 stamps an upload's start to the second, so the leftover is begun a second before this run starts.
    """
    client = storage.client()
    leftover = client.create_multipart_upload(Bucket=bucket, Key="small.jsonl")["UploadId"]
    time.sleep(1.1)
    concurrent: list[str] = []

    def another_run_begins_an_upload(request: ProxiedRequest) -> None:
        if request.operation == "PutObject" and not concurrent:
            concurrent.append(client.create_multipart_upload(Bucket=bucket, Key="small.jsonl")["UploadId"])

    with CuttingProxy.to(storage.endpoint_url, on_request=another_run_begins_an_upload) as proxy:
        use_s3(monkeypatch, storage, proxy.url)
        export(bucket, FIVE_MINUTES, key="small.jsonl")
        assert proxy.operations().count("AbortMultipartUpload") == 1
    uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [upload["UploadId"] for upload in uploads] == concurrent
    assert leftover not in concurrent
    client.abort_multipart_upload(Bucket=bucket, Key="small.jsonl", UploadId=concurrent[0])
    assert_exact(storage, bucket, orchestrator_source, FIVE_MINUTES, ["small.jsonl"])


class _FailingLineage:
    """A hook-lineage collector whose backend fails: the one fault that no server here can cause."""

    def add_output_asset(self, **kwargs: Any) -> None:
        raise RuntimeError("the lineage backend is down")


def test_a_lineage_failure_leaves_the_written_window_alone(storage, orchestrator_source, bucket, monkeypatch, caplog):
    """
    Reporting the written objects as lineage fails after the window was written (multipart, so completed
    here): the objects stay, the export succeeds, and a warning names the objects and the lineage error
    instead of a write failure.
    """
    import airflow_provider_orchestrator_audit.compat as compat

    use_s3(monkeypatch, storage, storage.endpoint_url)
    monkeypatch.setattr(compat, "get_hook_lineage_collector", _FailingLineage)
    caplog.set_level(logging.INFO)
    result = export(bucket)
    assert result["objects"] == [f"s3://{bucket}/w.jsonl"]
    assert_exact(storage, bucket, orchestrator_source, HOUR, ["w.jsonl"])
    assert (
        f"The window was written to s3://{bucket}/w.jsonl, but reporting its lineage failed: "
        "RuntimeError: the lineage backend is down" in caplog.text
    )


def test_one_cut_is_ridden_out_by_the_retry(storage, orchestrator_source, proxy, bucket, monkeypatch):
    """
    A single UploadPart cut mid-body is retried by botocore and the export succeeds: the part is not
    stored twice and the object is exactly the window.
    """
    use_s3(monkeypatch, storage, proxy.url)
    proxy.cut_after(PART_SIZE // 2, operations={"UploadPart"}, times=1)
    result = export(bucket)
    assert proxy.cuts == 1
    assert proxy.operations().count("UploadPart") == 3 + 1
    assert result["records"] == len(expected_window(orchestrator_source, HOUR))
    assert_exact(storage, bucket, orchestrator_source, HOUR, ["w.jsonl"])


def test_endpoints_in_messages_never_carry_user_info():
    """An endpoint URL with credentials in it is named without them."""

    class Meta:
        endpoint_url = f"https://{ACCESS_KEY}:{SECRET_KEY}@s3.example.com:8443/base"

    class Client:
        meta = Meta()

    assert endpoint_of(Client()) == "https://s3.example.com:8443/base"


# --- protected buckets: encryption on every write path -----------------------------------------------------

POLICY_DENIAL = "User: arn:aws:iam::111122223333:user/airflow is not authorized to perform: s3:PutObject"
KMS = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": LOCAL_KMS_KEY_ID, "BucketKeyEnabled": True}
CUSTOMER_KEY = bytes(range(100, 132))
SSE_C = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": CUSTOMER_KEY}


def header_values(proxy: CuttingProxy, operation: str, header: str) -> list[str | None]:
    return [request.head.header(header) for request in proxy.requests if request.operation == operation]


def test_a_bucket_that_requires_encryption_refuses_a_multipart_export_without_it(
    storage, orchestrator_source, proxy, bucket, monkeypatch, caplog, capfd
):
    """
    The bucket refuses every upload without ``x-amz-server-side-encryption``. The window's first 5 MiB part
    needs a multipart upload, which is refused while the window is still being read: the task fails at once,
    naming the object, the bucket, the header and the parameter, and nothing is left (no object, no upload).
    With ``encrypt=True`` the multipart object is written whole, stored with SSE-S3.
    """
    use_s3(monkeypatch, storage, proxy.url)
    caplog.set_level(logging.INFO)
    proxy.deny(
        operations={"PutObject", "CreateMultipartUpload"},
        match=lacks_header("x-amz-server-side-encryption"),
        message=POLICY_DENIAL,
    )
    with pytest.raises(AuditExportError) as failure:
        export(bucket)
    message = str(failure.value)
    assert message.startswith(
        f"Writing s3://{bucket}/w.jsonl failed while the window was still being read, starting its multipart upload: "
        f"AccessDenied: {POLICY_DENIAL}. Nothing of this run is visible in the bucket. S3 refused the write: bucket "
        f"{bucket!r} may require server-side encryption (a bucket policy that denies s3:PutObject without the "
        "x-amz-server-side-encryption header, which this export did not send). Set encrypt=True on the operator"
    ), message
    assert [request.operation for request in proxy.denials] == ["CreateMultipartUpload"]
    assert "UploadPart" not in proxy.operations()
    assert_no_secrets(message + caplog.text + "".join(capfd.readouterr()))
    assert_nothing_written(storage, bucket)

    proxy.clear_log()
    export(bucket, encrypt=True)
    assert proxy.denials == []
    assert header_values(proxy, "CreateMultipartUpload", "x-amz-server-side-encryption") == ["AES256"]
    assert header_values(proxy, "CreateMultipartUpload", "Content-Type") == ["application/x-ndjson"]
    assert_exact(storage, bucket, orchestrator_source, HOUR, ["w.jsonl"])
    head = storage.client().head_object(Bucket=bucket, Key="w.jsonl")
    assert head["ServerSideEncryption"] == "AES256"
    assert head["ETag"].endswith('-3"')  # two 5 MiB parts and the tail


def test_multipart_objects_are_written_with_sse_kms(storage, orchestrator_source, proxy, bucket, monkeypatch):
    """
    SSE-KMS through SeaweedFS's local KMS: the settings go with CreateMultipartUpload only (S3 refuses them on
    UploadPart), and the completed object is stored under the key.
    """
    use_s3(monkeypatch, storage, proxy.url)
    export(bucket, s3_extra_args=KMS)
    assert header_values(proxy, "CreateMultipartUpload", "x-amz-server-side-encryption") == ["aws:kms"]
    assert header_values(proxy, "CreateMultipartUpload", "x-amz-server-side-encryption-aws-kms-key-id") == [
        LOCAL_KMS_KEY_ID
    ]
    assert header_values(proxy, "UploadPart", "x-amz-server-side-encryption") == [None] * 3
    assert_exact(storage, bucket, orchestrator_source, HOUR, ["w.jsonl"])
    head = storage.client().head_object(Bucket=bucket, Key="w.jsonl")
    assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"]


def test_multipart_objects_are_written_with_sse_c(storage, orchestrator_source, proxy, bucket, monkeypatch):
    """
    SSE-C: S3 needs the customer's key with every part and with the completion, and every read after; the
    object cannot even be HEAD without it. Airflow's secrets masker knows the key as sent in the header
    (botocore logs request headers at DEBUG).
    """
    from airflow.sdk._shared.secrets_masker import redact

    use_s3(monkeypatch, storage, proxy.url)
    result = export(bucket, s3_extra_args=SSE_C, max_records_per_file=ENTRIES_PER_HOUR // 2)
    sent_key = base64.b64encode(CUSTOMER_KEY).decode("ascii")
    assert redact(f"x-amz-server-side-encryption-customer-key: {sent_key}") == (
        "x-amz-server-side-encryption-customer-key: ***"
    )
    keys = ["w.part-00000.jsonl", "w.part-00001.jsonl"]
    assert result["objects"] == [f"s3://{bucket}/{key}" for key in keys]
    for operation, count in (("CreateMultipartUpload", 2), ("UploadPart", 4), ("CompleteMultipartUpload", 2)):
        assert header_values(proxy, operation, "x-amz-server-side-encryption-customer-algorithm") == ["AES256"] * count
        assert all(header_values(proxy, operation, "x-amz-server-side-encryption-customer-key")), operation
    client = storage.client()
    assert storage.list_keys(bucket) == keys and open_uploads(storage, bucket) == []
    lines: list[str] = []
    for key in keys:
        with pytest.raises(ClientError) as without_key:
            client.head_object(Bucket=bucket, Key=key)
        assert without_key.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        body = client.get_object(Bucket=bucket, Key=key, **SSE_C)["Body"].read().decode("utf-8")
        lines.extend(body.splitlines())
    written = sorted(json.dumps(json.loads(line), sort_keys=True, ensure_ascii=False) for line in lines)
    assert written == expected_window(orchestrator_source, HOUR)


@pytest.mark.parametrize("encryption", ["sse-s3", "sse-kms"])
def test_a_put_whose_answer_is_lost_is_removed_or_named_by_its_etag(
    storage, orchestrator_source, proxy, bucket, monkeypatch, caplog, capfd, encryption
):
    """
    S3 stores the single PutObject, but its answer is lost on every attempt: the task fails, and the object
    it may have made is looked at. Under SSE-S3 its ETag is the MD5 of the body, so it is recognised as this
    run's and removed. Under SSE-KMS the ETag is no MD5 of the content, so whose object it is cannot be
    told: it is left, and the message names it as possibly visible. The rerun writes the window either way.
    """
    settings: dict[str, Any] = {"encrypt": True} if encryption == "sse-s3" else {"s3_extra_args": KMS}
    use_s3(monkeypatch, storage, proxy.url)
    caplog.set_level(logging.INFO)
    proxy.lose_answers(operations={"PutObject"})
    with pytest.raises(AuditExportError) as failure:
        export(bucket, FIVE_MINUTES, key="small.jsonl", **settings)
    message = str(failure.value)
    assert [request.answer_lost for request in proxy.requests if request.operation == "PutObject"] == [True] * ATTEMPTS
    assert message.startswith(
        f"Writing s3://{bucket}/small.jsonl failed: ConnectionClosedError: Connection was closed before we received "
        f'a valid response from endpoint URL: "{proxy.url}/{bucket}/small.jsonl". '
    ), message
    assert_no_secrets(message + caplog.text + "".join(capfd.readouterr()))
    if encryption == "sse-s3":
        assert message.endswith(" Nothing of this run is visible in the bucket. " + advice(proxy.url)), message
        assert "DeleteObject" in proxy.operations()
        assert_nothing_written(storage, bucket)
    else:
        assert message.endswith(
            f" s3://{bucket}/small.jsonl may be visible without the rest of the window: S3 did not confirm this run's "
            "write, and an object encrypted with SSE-KMS or SSE-C has an ETag that is not the MD5 of its content, so "
            "whether it is this run's object or another run's cannot be told; it was left in place (delete it unless "
            "another run wrote this window since, or let the rerun overwrite it). " + advice(proxy.url)
        ), message
        assert "DeleteObject" not in proxy.operations()
        assert storage.list_keys(bucket) == ["small.jsonl"]

    proxy.pass_through()
    export(bucket, FIVE_MINUTES, key="small.jsonl", **settings)
    assert_exact(storage, bucket, orchestrator_source, FIVE_MINUTES, ["small.jsonl"])
