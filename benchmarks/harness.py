"""
Shared set-up of the benchmarks: the local Orchestrator in its own process (so that serving does not
compete with the exporter for the interpreter lock), SeaweedFS as S3, an isolated Airflow home, and
the naive exporter every figure is compared with.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

if "AIRFLOW_HOME" not in os.environ:
    os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="orchestrator-audit-bench-")
    atexit.register(shutil.rmtree, os.environ["AIRFLOW_HOME"], ignore_errors=True)  # goes with the run
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")

# SeaweedFS as S3 is test tooling of this checkout, not part of the installed package.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.support.s3 import LocalS3Server

ORGANIZATION = "acme"
CLIENT_ID, CLIENT_SECRET = "local-client", "local-secret"


@dataclass
class Orchestrator:
    url: str
    process: subprocess.Popen[str]

    def connection(self) -> dict:
        return {
            "conn_type": "orchestrator_audit",
            "host": self.url,
            "login": CLIENT_ID,
            "password": CLIENT_SECRET,
            "extra": {"organization": ORGANIZATION},
        }


@contextmanager
def orchestrator(entries: int, *, latency_ms: float = 0, **options: object) -> Iterator[Orchestrator]:
    """A local Orchestrator process serving ``entries`` entries (one per second, from 2026-01-01)."""
    command = [
        sys.executable,
        "-m",
        "airflow_provider_orchestrator_audit.testing",
        "serve",
        "--port",
        "0",
        "--entries",
        str(entries),
        "--latency-ms",
        str(latency_ms),
    ]
    for name, value in options.items():
        command += [f"--{name.replace('_', '-')}", str(value)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    match = re.search(r"http://[\d.:]+", line)
    if not match:
        process.kill()
        raise RuntimeError(f"the local Orchestrator did not start: {line!r}")
    try:
        yield Orchestrator(match.group(0), process)
    finally:
        process.terminate()
        process.wait(10)


@contextmanager
def s3(bucket: str = "bench") -> Iterator[LocalS3Server]:
    with LocalS3Server() as server:
        server.create_bucket(bucket)
        yield server


def use_connections(orch: Orchestrator, s3_server: LocalS3Server | None = None) -> None:
    os.environ["AIRFLOW_CONN_ORCHESTRATOR_AUDIT_DEFAULT"] = json.dumps(orch.connection())
    if s3_server is not None:
        os.environ["AIRFLOW_CONN_AWS_DEFAULT"] = json.dumps(s3_server.airflow_connection())


def naive_export(
    url: str,
    window_start: str,
    window_end: str,
    bucket: str,
    key: str,
    page_size: int = 1000,
    compression: str | None = None,
) -> dict:
    """
    How exporters are usually written: a sequential newest-first scan from offset 0 with requests,
    the window's lines kept in memory, one upload with S3Hook at the end (gzipped by the hook when
    ``compression="gzip"``).
    """
    import requests
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from airflow_provider_orchestrator_audit.timestamps import parse_timestamp

    start, end = parse_timestamp(window_start), parse_timestamp(window_end)
    session = requests.Session()
    token = session.post(
        f"{url}/identity_/connect/token",
        data={
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "scope": "PM.Audit.Read",
        },
    ).json()["access_token"]
    session.headers["Authorization"] = f"Bearer {token}"
    lines, skip, requests_made = [], 0, 0
    while True:
        page = session.get(
            f"{url}/{ORGANIZATION}/audit_/api/auditlogs",
            params={"top": page_size, "skip": skip, "sortBy": "createdOn", "sortOrder": "desc"},
        ).json()
        requests_made += 1
        results = page["results"]
        for entry in results:
            ticks = parse_timestamp(entry["createdOn"])
            if start <= ticks < end:
                lines.append(json.dumps(entry, ensure_ascii=False))
        skip += len(results)
        if not results or parse_timestamp(results[-1]["createdOn"]) < start or skip >= page["totalCount"]:
            break
    S3Hook(aws_conn_id="aws_default").load_string(
        "\n".join(lines) + "\n", key, bucket_name=bucket, replace=True, compression=compression
    )
    return {"records": len(lines), "requests": requests_made}


def median(values: list[float]) -> float:
    return statistics.median(values)


def export_keeping_reader(**operator_kwargs: Any) -> tuple[dict, Any, Any]:
    """
    One export by ``AuditLogsToS3Operator(task_id="export", **operator_kwargs)``: its result, the reader it
    read the window with (for the reading's statistics) and the operator.
    """
    from airflow_provider_orchestrator_audit.transfers.audit_logs_to_s3 import AuditLogsToS3Operator

    readers: list[Any] = []

    class Operator(AuditLogsToS3Operator):
        def _reader(self, window: Any) -> Any:  # keeps the reader, for its statistics
            readers.append(super()._reader(window))
            return readers[-1]

    operator = Operator(task_id="export", **operator_kwargs)
    result = operator.execute({})
    (reader,) = readers
    return result, reader, operator
