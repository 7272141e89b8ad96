"""
Peak memory (RSS) of exporting a 10,000-entry and a 500,000-entry window, each in a fresh process,
and of the naive exporter (lines kept in memory) on the large window, in the same run.

    .venv/bin/python benchmarks/memory.py [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

from harness import median, orchestrator, s3, use_connections

ENTRIES = 520_000  # one per second from 2026-01-01T00:00Z
SMALL = ("2026-01-06T00:00:00Z", "2026-01-06T02:46:40Z")  # 10,000 entries
LARGE = ("2026-01-01T00:10:00Z", "2026-01-06T19:03:20Z")  # 500,000 entries


def child(kind: str, start: str, end: str) -> None:
    """Runs in a fresh process: one export, then its peak RSS in MiB on stdout."""
    if kind == "ours":
        from airflow_provider_orchestrator_audit.transfers.audit_logs_to_s3 import AuditLogsToS3Operator

        result = AuditLogsToS3Operator(task_id="export", s3_bucket="bench", window_start=start, window_end=end).execute(
            {}
        )
    else:
        import os

        from harness import naive_export

        url = json.loads(os.environ["AIRFLOW_CONN_ORCHESTRATOR_AUDIT_DEFAULT"])["host"]
        result = naive_export(url, start, end, "bench", "naive.jsonl")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"records": result["records"], "peak_mib": round(peak, 1)}))


def measure(kind: str, window: tuple[str, str]) -> dict:
    output = subprocess.run(
        [sys.executable, __file__, "--child", kind, *window], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    runs: dict[str, list[dict]] = {"ours_10k": [], "ours_500k": [], "naive_500k": []}
    with orchestrator(ENTRIES) as orch, s3() as s3_server:
        use_connections(orch, s3_server)
        for _ in range(args.repeat):
            runs["ours_10k"].append(measure("ours", SMALL))
            runs["ours_500k"].append(measure("ours", LARGE))
            runs["naive_500k"].append(measure("naive", LARGE))
    summary = {
        name: {"records": rows[0]["records"], "peak_mib": median([row["peak_mib"] for row in rows])}
        for name, rows in runs.items()
    }
    # The generated log has one entry per second on average (not exactly): the counts are within 0.1%.
    assert (
        abs(summary["ours_10k"]["records"] - 10_000) <= 10 and abs(summary["ours_500k"]["records"] - 500_000) <= 500
    ), summary
    assert summary["ours_500k"]["records"] == summary["naive_500k"]["records"], summary
    summary["ours_growth_mib"] = round(summary["ours_500k"]["peak_mib"] - summary["ours_10k"]["peak_mib"], 1)
    summary["naive_growth_over_ours_10k_mib"] = round(
        summary["naive_500k"]["peak_mib"] - summary["ours_10k"]["peak_mib"], 1
    )
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
