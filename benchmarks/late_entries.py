"""
What exactness under late-recorded entries costs, and what it saves: requests and time of this
provider's window reader with no late entries (the speed benchmark's one-day window at 100 ms per
request, and the far-backfill window of a 2,000,000-entry log), and entries lost or kept when 5
entries per request are recorded up to 57 minutes below the newest one (a 30-minute window in the
middle of a 5,000-entry log, 100-entry pages, the local Orchestrator in this process so that the
entries that existed before the export can be listed).

    .venv/bin/python benchmarks/late_entries.py [--repeat 3]

Run it again with ``PYTHONPATH`` pointing at another checkout to compare two versions of the reader.
"""

from __future__ import annotations

import argparse
import json
import time

from harness import median, orchestrator, use_connections

SPEED = (3 * 86_400, ("2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"), 100.0)
FAR = (2_000_000, ("2026-01-12T12:00:00Z", "2026-01-12T14:00:00Z"), 0.0)


def canonical(line: str) -> str:
    return json.dumps(json.loads(line), sort_keys=True)


def read_window(window: tuple[str, str], page_size: int | None = None, concurrency: int = 8) -> dict:
    from airflow_provider_orchestrator_audit.export.reader import WindowReader
    from airflow_provider_orchestrator_audit.hooks.orchestrator_audit import OrchestratorAuditHook
    from airflow_provider_orchestrator_audit.paging import AuditWindow

    hook = OrchestratorAuditHook()
    started = time.perf_counter()
    try:
        reader = WindowReader(
            lambda skip, top: hook.get_audit_logs(top, skip),
            AuditWindow.parse(*window),
            page_size=page_size,
            max_concurrency=concurrency,
        )
        lines = [canonical(entry.to_json()) for batch in reader for entry in batch]
    finally:
        hook.close()
    stats = reader.stats
    return {
        "records": len(lines),
        "requests": stats.requests,
        "repairs": stats.repair_requests,
        "seconds": time.perf_counter() - started,
        "lines": lines,
    }


def no_late(entries: int, window: tuple[str, str], latency_ms: float, repeat: int) -> dict:
    with orchestrator(entries, latency_ms=latency_ms, cache_size=min(entries, 300_000)) as orch:
        use_connections(orch)
        read_window(window)  # warm-up: imports and the simulator's cache
        runs = [read_window(window) for _ in range(repeat)]
    return {
        "records": runs[0]["records"],
        "requests": median([run["requests"] for run in runs]),
        "repairs": median([run["repairs"] for run in runs]),
        "seconds": round(median([run["seconds"] for run in runs]), 2),
    }


def with_late(repeat: int) -> dict:
    from airflow_provider_orchestrator_audit.testing import AuditDataset, LocalOrchestratorServer
    from airflow_provider_orchestrator_audit.timestamps import to_ticks

    window = ("2026-01-01T00:30:00Z", "2026-01-01T01:00:00Z")
    low, high = to_ticks(window[0]), to_ticks(window[1])
    lost, requests, repairs = [], [], []
    for run in range(repeat):
        dataset = AuditDataset(size=5_000, seed=run)
        with LocalOrchestratorServer(
            dataset, page_size_cap=100, late_per_request=5, late_max_lag_seconds=57 * 60, seed=run
        ) as server:
            orch = type("Orch", (), {"connection": lambda self: server.airflow_connection()})()
            use_connections(orch)
            view = dataset.view()
            before = {
                canonical(dataset.entry_json(i).decode())
                for i in dataset.page_indices(0, view.total, view=view)
                if low <= to_ticks(dataset.entry(i)["createdOn"]) < high
            }
            result = read_window(window, page_size=100, concurrency=4)
            written = set(result["lines"])
            lost.append(len(before - written))
            requests.append(result["requests"])
            repairs.append(result["repairs"])
    return {
        "runs": repeat,
        "runs_that_lost_entries": sum(1 for n in lost if n),
        "entries_lost": sum(lost),
        "most_lost_in_one_run": max(lost),
        "requests": median(requests),
        "repairs": median(repairs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--late-runs", type=int, default=20, help="runs (data set seeds) of the late-entry case")
    args = parser.parse_args()
    summary = {
        "speed_window_no_late": no_late(*SPEED, args.repeat),
        "far_backfill_no_late": no_late(*FAR, args.repeat),
        "late_entries_5_per_request": with_late(args.late_runs),
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
