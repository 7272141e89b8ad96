"""
Exporting tenant audit events (``source="tenant_events"``) against the naive way, in the same run.

``speed``: wall time for an 86,400-event window (one day, a newer day ahead of it) at 100 ms latency
per request and 200 events per page: the operator (disjoint time slices, their cursor chains 8 at a
time, spooled upload) against a naive exporter that follows ``previous`` from ``to=window_end``
sequentially with requests, keeps the lines in memory and uploads them once with S3Hook. Each way
runs once untimed first, then ``--repeat`` timed runs, alternating.

``memory``: peak RSS of the operator exporting a 10,000-event and a 500,000-event window, each in a
fresh process, and of the naive exporter on the large one.

    .venv/bin/python benchmarks/events_export.py speed [--repeat 3] [--latency-ms 100]
    .venv/bin/python benchmarks/events_export.py memory [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import Any

from harness import CLIENT_ID, CLIENT_SECRET, ORGANIZATION, median, orchestrator, s3, use_connections

TENANT = "DefaultTenant"
SPEED_EVENTS = 3 * 86_400  # per stream: 2026-01-01 .. 2026-01-03, one event a second on average
SPEED_WINDOW = ("2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z")
MEMORY_EVENTS = 520_000
SMALL = ("2026-01-06T00:00:00Z", "2026-01-06T02:46:40Z")  # 10,000 events
LARGE = ("2026-01-01T00:10:00Z", "2026-01-06T19:03:20Z")  # 500,000 events


def ours(bucket: str, start: str, end: str) -> dict[str, Any]:
    from airflow_provider_orchestrator_audit.transfers.audit_logs_to_s3 import AuditLogsToS3Operator

    operator = AuditLogsToS3Operator(
        task_id="export", s3_bucket=bucket, source="tenant_events", tenant=TENANT, window_start=start, window_end=end
    )
    return operator.execute({})


def naive_events_export(
    url: str, window_start: str, window_end: str, bucket: str, key: str, compression: str | None = None
) -> dict[str, Any]:
    """
    Follow ``previous`` from ``to=window_end`` one page after the other; lines in memory; one upload (gzipped by
    the hook when ``compression="gzip"``).
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
    lines, seen, requests_made = [], set(), 0
    answer = session.get(
        f"{url}/{ORGANIZATION}/{TENANT}/tenantaudit_/api/query/events",
        params={"from": window_start, "to": window_end, "maxCount": 200},
    )
    while True:
        requests_made += 1
        page = answer.json()
        for event in page["auditEvents"]:
            if start <= parse_timestamp(event["createdOn"]) < end and event["id"] not in seen:
                seen.add(event["id"])
                lines.append(json.dumps(event, ensure_ascii=False))
        if page["previous"] is None:
            break
        answer = session.get(url + page["previous"])
    S3Hook(aws_conn_id="aws_default").load_string(
        "\n".join(lines) + "\n", key, bucket_name=bucket, replace=True, compression=compression
    )
    return {"records": len(lines), "requests": requests_made}


def events_server(events: int, latency_ms: float) -> Any:
    # The classic log is kept tiny: only the events are read here.
    # Every event of the window stays serialised in the simulator after the warm-up round, so that its
    # CPU (which a real Orchestrator spends on its own machines) competes little with the exporters.
    return orchestrator(
        10,
        latency_ms=latency_ms,
        events=events,
        tenants=TENANT,
        events_per_hour=3600,
        event_page_cap=200,
        event_cache_size=min(events, 200_000),
    )


def speed(repeat: int, latency_ms: float) -> dict[str, Any]:
    times: dict[str, list[float]] = {"ours": [], "naive": []}
    records: dict[str, int] = {}
    requests: dict[str, int] = {}
    with events_server(SPEED_EVENTS, latency_ms) as orch, s3() as s3_server:
        use_connections(orch, s3_server)
        ours("bench", *SPEED_WINDOW)  # untimed: imports and SeaweedFS's first volume allocation
        naive_events_export(orch.url, *SPEED_WINDOW, "bench", "naive.jsonl")
        for _ in range(repeat):
            started = time.perf_counter()
            records["ours"] = ours("bench", *SPEED_WINDOW)["records"]
            times["ours"].append(time.perf_counter() - started)
            started = time.perf_counter()
            naive = naive_events_export(orch.url, *SPEED_WINDOW, "bench", "naive.jsonl")
            times["naive"].append(time.perf_counter() - started)
            records["naive"], requests["naive"] = naive["records"], naive["requests"]
    assert records["ours"] == records["naive"] == 86_400, records
    summary: dict[str, Any] = {
        name: {"seconds": [round(t, 2) for t in runs], "median": round(median(runs), 2)} for name, runs in times.items()
    }
    summary["naive"]["requests"] = requests["naive"]
    summary["latency_ms"] = latency_ms
    summary["speedup"] = round(summary["naive"]["median"] / summary["ours"]["median"], 1)
    return summary


def child(kind: str, start: str, end: str) -> None:
    """Runs in a fresh process: one export, then its peak RSS in MiB on stdout."""
    if kind == "ours":
        result = ours("bench", start, end)
    else:
        import os

        url = json.loads(os.environ["AIRFLOW_CONN_ORCHESTRATOR_AUDIT_DEFAULT"])["host"]
        result = naive_events_export(url, start, end, "bench", "naive.jsonl")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"records": result["records"], "peak_mib": round(peak, 1)}))


def measure(kind: str, window: tuple[str, str]) -> dict[str, Any]:
    output = subprocess.run(
        [sys.executable, __file__, "child", kind, *window], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def memory(repeat: int) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {"ours_10k": [], "ours_500k": [], "naive_500k": []}
    with events_server(MEMORY_EVENTS, 0) as orch, s3() as s3_server:
        use_connections(orch, s3_server)
        for _ in range(repeat):
            runs["ours_10k"].append(measure("ours", SMALL))
            runs["ours_500k"].append(measure("ours", LARGE))
            runs["naive_500k"].append(measure("naive", LARGE))
    summary: dict[str, Any] = {
        name: {"records": rows[0]["records"], "peak_mib": median([row["peak_mib"] for row in rows])}
        for name, rows in runs.items()
    }
    assert summary["ours_10k"]["records"] == 10_000 and summary["ours_500k"]["records"] == 500_000, summary
    assert summary["naive_500k"]["records"] == 500_000, summary
    summary["ours_growth_mib"] = round(summary["ours_500k"]["peak_mib"] - summary["ours_10k"]["peak_mib"], 1)
    summary["naive_growth_over_ours_10k_mib"] = round(
        summary["naive_500k"]["peak_mib"] - summary["ours_10k"]["peak_mib"], 1
    )
    return summary


def main() -> None:
    if sys.argv[1:2] == ["child"]:
        child(*sys.argv[2:5])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("figure", choices=["speed", "memory"])
    parser.add_argument("--repeat", type=int, default=None, help="timed runs (default: 3 for speed, 2 for memory)")
    parser.add_argument("--latency-ms", type=float, default=100)
    args = parser.parse_args()
    if args.figure == "speed":
        result = speed(args.repeat or 3, args.latency_ms)
    else:
        result = memory(args.repeat or 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
