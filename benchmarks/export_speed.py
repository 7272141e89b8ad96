"""
Wall time to export a 86,400-entry window (one day) with 100 ms latency per request: the operator
(concurrent pages, spooled upload) against a sequential newest-first scan written with requests +
S3Hook, in the same run. The log holds a newer day too, as when yesterday is exported today.
Each way runs once untimed first, then ``--repeat`` timed runs, alternating.

    .venv/bin/python benchmarks/export_speed.py [--repeat 3] [--latency-ms 100]
"""

from __future__ import annotations

import argparse
import json
import time

from harness import median, naive_export, orchestrator, s3, use_connections

ENTRIES = 3 * 86_400  # 2026-01-01 .. 2026-01-03, one entry per second
WINDOW = ("2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z")


def ours(bucket: str) -> dict:
    from airflow_provider_orchestrator_audit.transfers.audit_logs_to_s3 import AuditLogsToS3Operator

    operator = AuditLogsToS3Operator(task_id="export", s3_bucket=bucket, window_start=WINDOW[0], window_end=WINDOW[1])
    return operator.execute({})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=100)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"ours": [], "naive": []}
    records: dict[str, int] = {}
    # The whole log stays serialised in the simulator after the warm-up round, so that its CPU (which a
    # real Orchestrator spends on its own machines) competes as little as possible with the exporters.
    with orchestrator(ENTRIES, latency_ms=args.latency_ms, cache_size=ENTRIES) as orch, s3() as s3_server:
        use_connections(orch, s3_server)
        # One untimed round each: imports (Airflow, boto3) and SeaweedFS's first volume allocation are
        # start-up costs of the process and the store, not of either way of exporting.
        ours("bench")
        naive_export(orch.url, *WINDOW, "bench", "naive.jsonl")
        for _ in range(args.repeat):
            started = time.perf_counter()
            records["ours"] = ours("bench")["records"]
            times["ours"].append(time.perf_counter() - started)
            started = time.perf_counter()
            records["naive"] = naive_export(orch.url, *WINDOW, "bench", "naive.jsonl")["records"]
            times["naive"].append(time.perf_counter() - started)
    assert records["ours"] == records["naive"] == 86_400, records
    summary = {
        name: {"seconds": [round(t, 2) for t in runs], "median": round(median(runs), 2)} for name, runs in times.items()
    }
    summary["latency_ms"] = args.latency_ms
    summary["speedup"] = round(summary["naive"]["median"] / summary["ours"]["median"], 1)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
