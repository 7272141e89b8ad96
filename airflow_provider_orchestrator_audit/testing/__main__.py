"""
Run the local Orchestrator audit API from a shell.

    python -m airflow_provider_orchestrator_audit.testing serve --entries 100000 --latency-ms 50

It prints the base URL and an ``export AIRFLOW_CONN_ORCHESTRATOR_AUDIT_DEFAULT=...`` line that points
Airflow at it, then serves until interrupted (Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from airflow_provider_orchestrator_audit.testing.dataset import AuditDataset
from airflow_provider_orchestrator_audit.testing.events_dataset import DEFAULT_TENANTS, EventsDataset, ListingSwitches
from airflow_provider_orchestrator_audit.testing.orchestrator_dataset import OdataSwitches, OrchestratorDataset
from airflow_provider_orchestrator_audit.testing.server import LocalOrchestratorServer

__all__ = ["build_parser", "main"]

_PROG = "python -m airflow_provider_orchestrator_audit.testing"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command line: one ``serve`` command with the simulator's settings."""
    parser = argparse.ArgumentParser(
        prog=_PROG, description="A local stand-in for UiPath Orchestrator's audit-log API."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="serve the audit-log API and a token endpoint until interrupted")
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)")
    serve.add_argument(
        "--port", type=_non_negative_int, default=8765, help="port; 0 picks a free one (default: %(default)s)"
    )
    serve.add_argument(
        "--entries", type=_non_negative_int, default=10_000, help="entries visible at start (default: %(default)s)"
    )
    serve.add_argument(
        "--entries-per-hour", type=float, default=3600, help="mean rate of entries over time (default: %(default)s)"
    )
    serve.add_argument(
        "--tie-probability",
        type=float,
        default=0.15,
        help="chance an entry shares the createdOn of the one before (default: %(default)s)",
    )
    serve.add_argument(
        "--cache-size",
        type=int,
        default=65_536,
        help="entries kept serialised, so that pages read again cost little CPU (default: %(default)s)",
    )
    serve.add_argument(
        "--seed", type=int, default=0, help="selects the generated log and the tie order (default: %(default)s)"
    )
    serve.add_argument(
        "--latency-ms", type=_non_negative_float, default=0.0, help="delay per audit request in milliseconds"
    )
    serve.add_argument(
        "--page-size-cap", type=_positive_int, default=None, help="most entries per page, whatever top says"
    )
    serve.add_argument(
        "--token-lifetime",
        type=_positive_int,
        default=3600,
        help="access token lifetime in seconds (default: %(default)s)",
    )
    serve.add_argument(
        "--arrivals-per-request", type=_non_negative_int, default=0, help="new entries before each audit page"
    )
    serve.add_argument(
        "--removals-per-request", type=_non_negative_int, default=0, help="expired entries before each audit page"
    )
    serve.add_argument(
        "--late-per-request",
        type=_non_negative_int,
        default=0,
        help="entries recorded late before each audit page, below the newest entry",
    )
    serve.add_argument(
        "--late-max-lag-seconds",
        type=_non_negative_float,
        default=3600.0,
        help="how far below the newest entry a late entry's createdOn may lie (default: %(default)s)",
    )
    serve.add_argument(
        "--late-min-lag-seconds", type=_non_negative_float, default=0.0, help="the least lag of a late entry"
    )
    serve.add_argument(
        "--late-burst-every", type=_positive_int, default=None, help="every Nth audit request records a burst"
    )
    serve.add_argument(
        "--late-burst-size", type=_non_negative_int, default=0, help="late entries in each burst (default: 0)"
    )
    serve.add_argument(
        "--throttle-every", type=_positive_int, default=None, help="answer every Nth audit request with 429"
    )
    serve.add_argument(
        "--error-every", type=_positive_int, default=None, help="answer every Nth audit request with a 503"
    )
    serve.add_argument(
        "--reset-every", type=_positive_int, default=None, help="reset the connection of every Nth audit request"
    )
    serve.add_argument("--organization", default="acme", help="organization name in the URL (default: %(default)s)")
    serve.add_argument("--client-id", default="local-client", help="accepted client id (default: %(default)s)")
    serve.add_argument("--client-secret", default="local-secret", help="accepted client secret (default: %(default)s)")
    serve.add_argument("--verbose", action="store_true", help="log every request to stderr")
    events = parser_events_group(serve)
    events.add_argument(
        "--events", type=_non_negative_int, default=1000, help="audit events per stream (default: %(default)s)"
    )
    events.add_argument(
        "--tenants", default=",".join(DEFAULT_TENANTS), help="comma-separated tenant names (default: %(default)s)"
    )
    events.add_argument(
        "--events-per-hour", type=float, default=3600, help="mean events per hour of each stream (default: %(default)s)"
    )
    events.add_argument(
        "--event-page-cap", type=_positive_int, default=200, help="most events per page (default: %(default)s)"
    )
    events.add_argument(
        "--event-fraction-digits", type=int, choices=range(8), default=3, help="createdOn fraction digits (default: 3)"
    )
    events.add_argument("--to-inclusive", action="store_true", help="'to' includes events at exactly 'to'")
    events.add_argument(
        "--page-overlap", type=_non_negative_int, default=0, help="events each cursor page repeats (default: 0)"
    )
    events.add_argument("--oldest-first", action="store_true", help="list events oldest first inside a page")
    events.add_argument(
        "--cursor-ttl", type=_non_negative_float, default=None, help="seconds before a cursor is refused as expired"
    )
    events.add_argument(
        "--event-cache-size",
        type=_positive_int,
        default=65_536,
        help="events whose JSON text is kept (default: %(default)s)",
    )
    events.add_argument(
        "--event-arrivals-per-request", type=_non_negative_int, default=0, help="new events per events request"
    )
    events.add_argument(
        "--event-late-per-request", type=_non_negative_int, default=0, help="late-recorded events per events request"
    )
    odata = serve.add_argument_group("Orchestrator's own audit log ({org}/{tenant}/orchestrator_/odata/AuditLogs)")
    odata.add_argument(
        "--orchestrator-entries",
        type=_non_negative_int,
        default=1000,
        help="entries per tenant, from 2026-01-01 (default: %(default)s)",
    )
    odata.add_argument(
        "--orchestrator-entries-per-hour",
        type=float,
        default=3600,
        help="mean rate of each tenant's log (default: %(default)s)",
    )
    odata.add_argument(
        "--orchestrator-fraction-digits",
        type=int,
        choices=(0, 3, 7),
        default=7,
        help="digits of ExecutionTime stored and written (default: %(default)s)",
    )
    odata.add_argument(
        "--orchestrator-cache-size",
        type=_positive_int,
        default=65_536,
        help="entries whose JSON text is kept (default: %(default)s)",
    )
    odata.add_argument(
        "--orchestrator-page-cap",
        type=_positive_int,
        default=1000,
        help="the most entries a page holds, whatever $top asks (default: %(default)s)",
    )
    return parser


def parser_events_group(serve: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The options of the unified audit events endpoints."""
    return serve.add_argument_group("audit events (orgaudit_/tenantaudit_ query/events)")


def main(argv: Sequence[str] | None = None) -> int:
    """
    Parse the command line and serve until interrupted.

    :param argv: the arguments after the program name; ``sys.argv[1:]`` when None.
    :return: the process exit status.
    """
    args = build_parser().parse_args(argv)
    try:
        dataset = AuditDataset(
            size=args.entries,
            seed=args.seed,
            entries_per_hour=args.entries_per_hour,
            tie_probability=args.tie_probability,
            cache_size=args.cache_size,
        )
        server = LocalOrchestratorServer(
            dataset,
            host=args.host,
            port=args.port,
            organization=args.organization,
            client_id=args.client_id,
            client_secret=args.client_secret,
            token_lifetime_seconds=args.token_lifetime,
            latency_seconds=args.latency_ms / 1000,
            page_size_cap=args.page_size_cap,
            arrivals_per_request=args.arrivals_per_request,
            removals_per_request=args.removals_per_request,
            late_per_request=args.late_per_request,
            late_max_lag_seconds=args.late_max_lag_seconds,
            late_min_lag_seconds=args.late_min_lag_seconds,
            late_burst_every=args.late_burst_every,
            late_burst_size=args.late_burst_size,
            throttle_every=args.throttle_every,
            error_every=args.error_every,
            reset_every=args.reset_every,
            seed=args.seed,
            verbose=args.verbose,
            events=EventsDataset(
                size=args.events,
                tenants=[name.strip() for name in args.tenants.split(",") if name.strip()],
                organization=args.organization,
                seed=args.seed,
                events_per_hour=args.events_per_hour,
                fraction_digits=args.event_fraction_digits,
                cache_size=args.event_cache_size,
            ),
            event_switches=ListingSwitches(
                to_inclusive=args.to_inclusive,
                page_overlap=args.page_overlap,
                page_order="oldest_first" if args.oldest_first else "newest_first",
                page_size_cap=args.event_page_cap,
                cursor_ttl_seconds=args.cursor_ttl,
            ),
            event_arrivals_per_request=args.event_arrivals_per_request,
            event_late_per_request=args.event_late_per_request,
            orchestrator_audit=OrchestratorDataset(
                size=args.orchestrator_entries,
                tenants=tuple(name.strip() for name in args.tenants.split(",") if name.strip()),
                seed=args.seed,
                entries_per_hour=args.orchestrator_entries_per_hour,
                cache_size=args.orchestrator_cache_size,
            ),
            odata_switches=OdataSwitches(
                fraction_digits=args.orchestrator_fraction_digits, page_size_cap=args.orchestrator_page_cap
            ),
        )
        server.start()
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    stop = threading.Event()

    def _request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _request_stop)
    signal.signal(signal.SIGTERM, _request_stop)
    connection = json.dumps(server.airflow_connection())
    print(f"Orchestrator audit API simulator listening on {server.url}")
    print(f"  audit logs: GET {server.audit_url}  ({dataset.total_count} entries)")
    print(f"  token:      POST {server.token_url}")
    print(f"export AIRFLOW_CONN_ORCHESTRATOR_AUDIT_DEFAULT={shlex.quote(connection)}")
    print(f"  audit events: GET {server.events_url()}  (organization)")
    for tenant in server.events.tenants:
        print(f"                GET {server.events_url(tenant)}  (tenant; set the connection extra 'tenant')")
    for tenant in server.orchestrator_audit.tenants:
        print(f"  Orchestrator audit log: GET {server.orchestrator_audit_url(tenant)}  (source='orchestrator')")
    print(f"  standalone form:        GET {server.orchestrator_audit_url()}  ({server.standalone_tenant})")
    print("Press Ctrl-C to stop.", flush=True)
    try:
        # A timed wait, so the signal handler's set() is noticed promptly on every platform.
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    print("Stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
