"""
Requests needed to export a 2-hour window from the middle of a 2,000,000-entry audit log with
1,000-entry pages: this provider (edge search + planned pages) against a newest-first scan from offset 0.

    .venv/bin/python benchmarks/locate_window.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import time

from harness import median, naive_export, orchestrator, s3, use_connections

ENTRIES = 2_000_000  # one per second from 2026-01-01T00:00Z: about 23 days
WINDOW = ("2026-01-12T12:00:00Z", "2026-01-12T14:00:00Z")  # two hours in the middle


def ours() -> dict:
    from airflow_provider_orchestrator_audit.export.reader import WindowReader
    from airflow_provider_orchestrator_audit.hooks.orchestrator_audit import OrchestratorAuditHook
    from airflow_provider_orchestrator_audit.paging import AuditWindow

    hook = OrchestratorAuditHook()
    try:
        reader = WindowReader(
            lambda skip, top: hook.get_audit_logs(top, skip), AuditWindow.parse(*WINDOW), page_size=1000
        )
        records = sum(len(batch) for batch in reader)
    finally:
        hook.close()
    stats = reader.stats
    return {
        "records": records,
        "requests": stats.requests,
        "probes": stats.probe_requests,
        "pages": stats.page_requests,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows: dict[str, list[dict]] = {"ours": [], "naive": []}
    with orchestrator(ENTRIES) as orch, s3() as s3_server:
        use_connections(orch, s3_server)
        for _ in range(args.repeat):
            started = time.perf_counter()
            rows["ours"].append(ours() | {"seconds": time.perf_counter() - started})
            started = time.perf_counter()
            rows["naive"].append(
                naive_export(orch.url, *WINDOW, "bench", "naive.jsonl") | {"seconds": time.perf_counter() - started}
            )
    summary = {
        name: {
            "records": runs[0]["records"],
            "requests": median([run["requests"] for run in runs]),
            "seconds": round(median([run["seconds"] for run in runs]), 2),
        }
        for name, runs in rows.items()
    }
    assert summary["ours"]["records"] == summary["naive"]["records"] == 7200
    summary["request_ratio"] = round(summary["naive"]["requests"] / summary["ours"]["requests"], 1)
    summary["time_ratio"] = round(summary["naive"]["seconds"] / summary["ours"]["seconds"], 1)
    summary["ours_detail"] = {key: rows["ours"][0][key] for key in ("probes", "pages")}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
