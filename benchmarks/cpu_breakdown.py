"""
Where the export's own CPU goes, step by step: the thread CPU time of each step (summed over the threads
that run it) during one export of the 86,400-entry window of ``benchmarks/export_cpu.py`` at 100 ms per
request, beside the process's CPU for the whole export. The steps are timed by wrapping the functions
that do them (page parsing, the HTTP exchange, spooling, part uploads, the boto3 client); what is left
is the reader, stitching and the operator. One untimed export first, then ``--repeat`` timed ones.

    .venv/bin/python benchmarks/cpu_breakdown.py [--repeat 3] [--source audit_logs|tenant_events] [--gzip]
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from export_cpu import ENTRIES, ours, ours_events
from harness import orchestrator, s3, use_connections

_totals: Counter[str] = Counter()
_lock = threading.Lock()
_depth = threading.local()


def timed(owner: Any, name: str, step: str) -> None:
    """Counts the thread CPU time of ``owner.name`` as ``step`` (not again for the calls it makes itself)."""
    function: Callable[..., Any] = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        outer = getattr(_depth, "value", 0) == 0
        _depth.value = getattr(_depth, "value", 0) + 1
        started = time.thread_time()
        try:
            return function(*args, **kwargs)
        finally:
            _depth.value -= 1
            if outer:
                with _lock:
                    _totals[step] += time.thread_time() - started

    setattr(owner, name, wrapper)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--source", choices=["audit_logs", "tenant_events"], default="audit_logs")
    parser.add_argument("--gzip", action="store_true")
    args = parser.parse_args()

    from airflow.providers.amazon.aws.hooks.base_aws import AwsGenericHook

    from airflow_provider_orchestrator_audit.client import drivers, events, exchanges
    from airflow_provider_orchestrator_audit.export import s3_sink, s3_stream, spool

    timed(drivers.OrchestratorAuditClient, "_send", "HTTP (request, answer, body: the client's transport)")
    timed(exchanges, "parse_page", "parsing pages")
    timed(events, "parse_event_lines", "parsing pages")
    timed(spool.JsonLinesSpool, "write", "spooling lines")
    timed(s3_stream.StreamingUploads, "_upload_part", "part uploads (their thread)")
    timed(s3_sink.S3JsonLinesSink, "finish", "completing the upload")
    timed(AwsGenericHook, "get_client_type", "the boto3 client")

    compression = "gzip" if args.gzip else None
    if args.source == "tenant_events":
        from events_export import SPEED_EVENTS, events_server

        server = events_server(SPEED_EVENTS, 100)
        export = lambda: ours_events("bench", compression)  # noqa: E731
    else:
        server = orchestrator(ENTRIES, latency_ms=100, cache_size=ENTRIES)
        export = lambda: ours("bench", compression)  # noqa: E731
    runs: list[dict[str, Any]] = []
    with server as orch, s3() as s3_server:
        use_connections(orch, s3_server)
        export()
        for _ in range(args.repeat):
            _totals.clear()
            cpu = time.process_time()
            export()
            whole = time.process_time() - cpu
            steps = {step: round(seconds, 3) for step, seconds in _totals.most_common()}
            steps["the rest (reader, stitching, operator)"] = round(whole - sum(_totals.values()), 3)
            runs.append({"process_cpu_seconds": round(whole, 2), "steps": steps, "load": round(os.getloadavg()[0], 1)})
    print(json.dumps({"source": args.source, "compression": compression, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
