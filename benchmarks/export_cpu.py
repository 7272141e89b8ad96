"""
The exporter's own CPU time for a 86,400-entry window (one day, with a newer day ahead of it): the
operator against the naive exporter (a sequential scan with requests, the lines in memory, one S3Hook
upload), in the same run, for plain and gzip output.

CPU time is the process's, all its threads (page fetches, parsing, spooling, S3 uploads); the local
Orchestrator and SeaweedFS run in their own processes, so their CPU, which a real deployment spends on
other machines, is not counted. Each way runs once untimed first (imports, SeaweedFS's first volume
allocation), then ``--repeat`` measured rounds, alternating. Figures are CPU seconds per 100,000
entries, medians of the rounds.

    .venv/bin/python benchmarks/export_cpu.py [--repeat 3] [--latency-ms 100]

``--source tenant_events`` measures the tenant audit events instead (the 86,400-event window of
``benchmarks/events_export.py``, against its naive exporter that follows ``previous``).

    .venv/bin/python benchmarks/export_cpu.py --source tenant_events [--repeat 3] [--latency-ms 100]

``--source orchestrator`` measures Orchestrator's own audit log (the 86,400-entry window of
``benchmarks/orchestrator_export.py``, against its naive exporter that pages the window's ``$filter``
with ``$skip``).

``--output plain`` (or ``gzip``) measures one of the two outputs only. The summary names the outputs whose
ratio is above the target (a third); ``--strict`` makes that an exit status of 1.

``--isolate`` runs each exporter (each output) in a process of its own, as Airflow runs each task, and
measures that process's CPU; the rounds still alternate. In the one shared process of the default, each
exporter allocates from a heap the other one has just churned (the naive exporter's lines and their
joined copy are ~60 MB a run). Before each measured round the garbage of the rounds before is collected,
untimed, in either mode and for either exporter.

    .venv/bin/python benchmarks/export_cpu.py --source orchestrator [--repeat 3] [--latency-ms 100]
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import time
from collections.abc import Callable
from multiprocessing.connection import Connection

from harness import median, naive_export, orchestrator, s3, use_connections

ENTRIES = 3 * 86_400  # 2026-01-01 .. 2026-01-03, one entry per second
WINDOW = ("2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z")
RECORDS = 86_400
COMPRESSIONS = (None, "gzip")
#: The most CPU the export may use, as a share of the naive exporter's (``--strict`` fails above it).
TARGET_RATIO = 1 / 3


def ours(bucket: str, compression: str | None) -> dict:
    from airflow_provider_orchestrator_audit.transfers.audit_logs_to_s3 import AuditLogsToS3Operator

    operator = AuditLogsToS3Operator(
        task_id="export", s3_bucket=bucket, window_start=WINDOW[0], window_end=WINDOW[1], compression=compression
    )
    return operator.execute({})


def ours_events(bucket: str, compression: str | None) -> dict:
    from events_export import SPEED_WINDOW, TENANT

    from airflow_provider_orchestrator_audit.transfers.audit_logs_to_s3 import AuditLogsToS3Operator

    operator = AuditLogsToS3Operator(
        task_id="export",
        s3_bucket=bucket,
        source="tenant_events",
        tenant=TENANT,
        window_start=SPEED_WINDOW[0],
        window_end=SPEED_WINDOW[1],
        compression=compression,
    )
    return operator.execute({})


def exporters(source: str, url: str, compression: str | None) -> dict[str, Callable[[], dict]]:
    """The operator and the naive exporter of ``source``, each writing ``compression`` output."""
    if source == "tenant_events":
        from events_export import SPEED_WINDOW, naive_events_export

        return {
            "ours": lambda: ours_events("bench", compression),
            "naive": lambda: naive_events_export(url, *SPEED_WINDOW, "bench", "naive.jsonl", compression=compression),
        }
    if source == "orchestrator":
        from orchestrator_export import SPEED_WINDOW, naive_skip_export
        from orchestrator_export import ours as ours_orchestrator

        return {
            "ours": lambda: ours_orchestrator("bench", *SPEED_WINDOW, compression=compression),
            "naive": lambda: naive_skip_export(url, *SPEED_WINDOW, "bench", "naive.jsonl", compression=compression),
        }
    return {
        "ours": lambda: ours("bench", compression),
        "naive": lambda: naive_export(url, *WINDOW, "bench", "naive.jsonl", compression=compression),
    }


def measured(run) -> tuple[dict, float, float]:
    """
    ``run()``'s result, its CPU seconds (this process, all threads) and its wall seconds.

    The garbage earlier rounds left is collected first, untimed, for either exporter: an Airflow task runs one
    export in a fresh process, where no other export's garbage waits for a full collection. (Each export's
    S3 client leaves reference cycles behind, and with no collection between rounds the heap each later round
    walks keeps growing.)
    """
    gc.collect()
    cpu, wall = time.process_time(), time.perf_counter()
    result = run()
    return result, time.process_time() - cpu, time.perf_counter() - wall


def _isolated_worker(source: str, url: str, compression: str | None, way: str, pipe: Connection) -> None:
    """Run one exporter in this process: untimed once, then once per ``"run"`` received, answering with its figures."""
    run = exporters(source, url, compression)[way]
    run()
    pipe.send("ready")
    while pipe.recv() == "run":
        result, seconds, elapsed = measured(run)
        pipe.send((result, seconds, elapsed))


class IsolatedExporter:
    """An exporter in a process of its own (spawned, so that it starts as a task's process does)."""

    def __init__(self, source: str, url: str, compression: str | None, way: str) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipe, theirs = context.Pipe()
        self.process = context.Process(
            target=_isolated_worker, args=(source, url, compression, way, theirs), daemon=True
        )
        self.process.start()

    def ready(self) -> None:
        assert self.pipe.recv() == "ready"

    def __call__(self) -> tuple[dict, float, float]:
        self.pipe.send("run")
        return self.pipe.recv()

    def stop(self) -> None:
        self.pipe.send("stop")
        self.process.join(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=100)
    parser.add_argument("--source", choices=["audit_logs", "tenant_events", "orchestrator"], default="audit_logs")
    parser.add_argument(
        "--output", choices=["both", "plain", "gzip"], default="both", help="measure plain and gzip output, or one"
    )
    parser.add_argument("--isolate", action="store_true", help="each exporter in a process of its own")
    parser.add_argument(
        "--strict",
        action="store_true",
        help=f"exit with status 1 when a ratio is above the target ({TARGET_RATIO:.3f})",
    )
    args = parser.parse_args()
    cpu: dict[str, list[float]] = {}
    wall: dict[str, list[float]] = {}
    load_before = os.getloadavg()
    compressions = COMPRESSIONS if args.output == "both" else ({"plain": None, "gzip": "gzip"}[args.output],)
    if args.source == "tenant_events":
        from events_export import SPEED_EVENTS, events_server

        server = events_server(SPEED_EVENTS, args.latency_ms)
    elif args.source == "orchestrator":
        from orchestrator_export import SPEED_ENTRIES, odata_server

        server = odata_server(SPEED_ENTRIES, args.latency_ms)
    else:
        server = orchestrator(ENTRIES, latency_ms=args.latency_ms, cache_size=ENTRIES)
    with server as orch, s3() as s3_server:
        use_connections(orch, s3_server)
        ways: dict[str, Callable[[], tuple[dict, float, float]]]
        if args.isolate:
            isolated = {
                f"{way}_{compression or 'plain'}": IsolatedExporter(args.source, orch.url, compression, way)
                for compression in compressions
                for way in ("ours", "naive")
            }
            for worker in isolated.values():
                worker.ready()  # each ran once untimed
            ways = dict(isolated)
        else:
            runs = {
                f"{way}_{compression or 'plain'}": run
                for compression in compressions
                for way, run in exporters(args.source, orch.url, compression).items()
            }
            for run in runs.values():
                run()  # untimed: imports and SeaweedFS's first allocation are start-up, not export, costs
            ways = {name: (lambda run=run: measured(run)) for name, run in runs.items()}
        for _ in range(args.repeat):
            for name, way in ways.items():
                result, seconds, elapsed = way()
                assert result["records"] == RECORDS, (name, result)
                cpu.setdefault(name, []).append(seconds)
                wall.setdefault(name, []).append(elapsed)
        if args.isolate:
            for worker in isolated.values():
                worker.stop()
    per_100k = 100_000 / RECORDS
    summary: dict[str, object] = {
        name: {
            "cpu_seconds": [round(s, 2) for s in runs],
            "cpu_median": round(median(runs), 2),
            "cpu_per_100k_entries": round(median(runs) * per_100k, 2),
            "wall_median": round(median(wall[name]), 2),
        }
        for name, runs in cpu.items()
    }
    missed = []
    for compression in compressions:
        label = compression or "plain"
        ratio = median(cpu[f"ours_{label}"]) / median(cpu[f"naive_{label}"])
        summary[f"cpu_ratio_{label}"] = round(ratio, 2)
        if ratio > TARGET_RATIO:
            missed.append(label)
    summary["target_ratio"] = round(TARGET_RATIO, 3)
    summary["target_missed"] = missed
    summary["source"] = args.source
    summary["isolated"] = args.isolate
    summary["latency_ms"] = args.latency_ms
    summary["load_average_before_after"] = [round(load_before[0], 1), round(os.getloadavg()[0], 1)]
    summary["cpus"] = os.cpu_count()
    print(json.dumps(summary, indent=2))
    if args.strict and missed:
        raise SystemExit(f"the export's CPU is above {TARGET_RATIO:.3f}x the naive exporter's for: {', '.join(missed)}")


if __name__ == "__main__":
    main()
