"""
Wall time to export a 86,400-entry window (one day) with 100 ms latency per request: the operator
(concurrent pages, spooled upload) against a sequential newest-first scan written with requests +
S3Hook, in the same run. The log holds a newer day too, as when yesterday is exported today.
Each way runs once untimed first, then ``--repeat`` timed runs, alternating.

Beside each run of the operator it prints the latency-bound limit of its reading: the probes of the
upper edge's search (sequential, and needed before any page) plus its pages and repairs divided by the
concurrency, rounded up, times the latency; and the reading itself (first probe to last entry, the
spooling and streamed part uploads included), which is what the limit bounds. The whole ``execute()``
adds the S3 client, the bucket check and the completion of the upload. It also prints the local
Orchestrator's CPU seconds per export of the operator (its process, all threads): that much of the
2 cores went to serving rather than to the exporter (a real Orchestrator spends it on its own machines).

    .venv/bin/python benchmarks/export_speed.py [--repeat 3] [--latency-ms 100]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import psutil
from harness import export_keeping_reader, median, naive_export, orchestrator, s3, use_connections

ENTRIES = 3 * 86_400  # 2026-01-01 .. 2026-01-03, one entry per second
WINDOW = ("2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z")


def ours(bucket: str, latency_ms: float = 0) -> dict:
    """One export by the operator; its result, with the reading's time and latency-bound limit."""
    result, reader, operator = export_keeping_reader(s3_bucket=bucket, window_start=WINDOW[0], window_end=WINDOW[1])
    stats = reader.stats
    pages = stats.page_requests + stats.repair_requests
    rounds = stats.upper_probes + math.ceil(pages / operator.max_concurrency)
    return result | {
        "read_seconds": stats.seconds,
        "limit_seconds": rounds * latency_ms / 1000,
        "requests": f"{stats.upper_probes}+{stats.lower_probes} probes, {stats.page_requests} pages, "
        f"{stats.repair_requests} repairs, concurrency {operator.max_concurrency}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=100)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"ours": [], "naive": []}
    reads: list[float] = []
    limits: list[float] = []
    served: list[float] = []
    records: dict[str, int] = {}
    load_before = os.getloadavg()
    # The whole log stays serialised in the simulator after the warm-up round, so that its CPU (which a
    # real Orchestrator spends on its own machines) competes as little as possible with the exporters.
    with orchestrator(ENTRIES, latency_ms=args.latency_ms, cache_size=ENTRIES) as orch, s3() as s3_server:
        use_connections(orch, s3_server)
        server = psutil.Process(orch.process.pid)
        # One untimed round each: imports (Airflow, boto3) and SeaweedFS's first volume allocation are
        # start-up costs of the process and the store, not of either way of exporting.
        ours("bench")
        naive_export(orch.url, *WINDOW, "bench", "naive.jsonl")
        for _ in range(args.repeat):
            server_cpu = sum(server.cpu_times()[:2])
            started = time.perf_counter()
            result = ours("bench", args.latency_ms)
            times["ours"].append(time.perf_counter() - started)
            served.append(sum(server.cpu_times()[:2]) - server_cpu)
            records["ours"] = result["records"]
            reads.append(result["read_seconds"])
            limits.append(result["limit_seconds"])
            requests = result["requests"]
            started = time.perf_counter()
            records["naive"] = naive_export(orch.url, *WINDOW, "bench", "naive.jsonl")["records"]
            times["naive"].append(time.perf_counter() - started)
    assert records["ours"] == records["naive"] == 86_400, records
    summary = {
        name: {"seconds": [round(t, 2) for t in runs], "median": round(median(runs), 2)} for name, runs in times.items()
    }
    summary["ours_reading"] = {
        "seconds": [round(t, 2) for t in reads],
        "median": round(median(reads), 2),
        "latency_bound_limit": round(median(limits), 2),
        "over_limit": round(median(reads) / median(limits), 2),
        "requests": requests,
        "server_cpu_seconds": [round(t, 2) for t in served],
    }
    summary["latency_ms"] = args.latency_ms
    summary["speedup"] = round(summary["naive"]["median"] / summary["ours"]["median"], 1)
    summary["load_average_before_after"] = [round(load_before[0], 1), round(os.getloadavg()[0], 1)]
    summary["cpus"] = os.cpu_count()
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
