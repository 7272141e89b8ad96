"""
Run the example DAG end to end on the embedded default: a local Orchestrator serving 100,000 audit
entries (with new entries arriving and old ones expiring while the export pages) and SeaweedFS as S3.
Prints what was written and checks it against the data set: every entry of the hour, exactly once.

With ``--events`` it runs the tenant audit events example instead: one hour of three tenants' events,
one mapped task each, checked the same way. With ``--orchestrator`` it runs the example of Orchestrator's
own audit log (``source="orchestrator"``): one hour of a tenant's entries with their changed entities,
served at millisecond precision in another time zone, in short pages, while entries arrive.
"""

from __future__ import annotations

import gzip
import importlib
import json
import os
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HOME = tempfile.mkdtemp(prefix="orchestrator-audit-demo-")
# Airflow reads its configuration on import: an isolated home with the example DAGs comes first.
os.environ.update(
    AIRFLOW_HOME=HOME,
    AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "example_dags"),
    AIRFLOW__CORE__LOAD_EXAMPLES="False",
    AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
)

# The local stack (SeaweedFS as S3) is test tooling of this checkout, not part of the installed package.
sys.path.insert(0, str(ROOT))

from airflow_provider_orchestrator_audit.testing import AuditDataset  # noqa: E402
from airflow_provider_orchestrator_audit.timestamps import to_ticks  # noqa: E402
from tests.support.stack import LocalStack  # noqa: E402

LOGICAL_DATE = datetime(2026, 1, 1, 14, tzinfo=UTC)  # the run that exports 13:00-14:00


def main() -> int:
    if "--events" in sys.argv[1:]:
        return events_demo()
    if "--orchestrator" in sys.argv[1:]:
        return orchestrator_demo()
    dataset = AuditDataset(size=100_000, seed=2026)
    stack = LocalStack(dataset, latency_seconds=0.01, arrivals_per_request=3, removals_per_request=1)
    with stack:
        print(f"Local Orchestrator at {stack.orchestrator.url} ({dataset.total_count:,} audit entries)")
        print(f"Local S3 (SeaweedFS) at {stack.s3.endpoint_url}, bucket {stack.bucket!r}")
        if not run_example("example_orchestrator_audit_to_s3"):
            return 1
        return report(stack, dataset)


def run_example(module: str, run_conf: dict[str, Any] | None = None) -> bool:
    """One run of an example DAG (``module``'s ``dag``) for :data:`LOGICAL_DATE` through ``dag.test()``: did it succeed."""
    from airflow.utils.db import initdb

    initdb()
    sys.path.insert(0, str(ROOT / "example_dags"))
    run = importlib.import_module(module).dag.test(logical_date=LOGICAL_DATE, run_conf=run_conf)
    if run is None or run.state != "success":
        print(f"The DAG run did not succeed: {run and run.state}")
        return False
    return True


def report(stack: LocalStack, dataset: AuditDataset) -> int:
    keys = stack.s3.list_keys(stack.bucket)
    print("\nWritten to S3:")
    lines: list[str] = []
    for key in keys:
        body = stack.s3.get_object_bytes(stack.bucket, key)
        text = (gzip.decompress(body) if key.endswith(".gz") else body).decode("utf-8")
        records = text.splitlines() if text else []
        lines.extend(records)
        print(f"  s3://{stack.bucket}/{key}: {len(records):,} records, {len(body):,} bytes")
    if lines:
        print("\nA sample line:\n  " + lines[len(lines) // 2])
    start = to_ticks(datetime(2026, 1, 1, 13, tzinfo=UTC))
    end = to_ticks(datetime(2026, 1, 1, 14, tzinfo=UTC))
    expected = sorted(json.dumps(entry, sort_keys=True) for entry in dataset.entries_between(start, end))
    written = sorted(json.dumps(json.loads(line), sort_keys=True) for line in lines)
    if written != expected:
        print(f"\nMISMATCH: wrote {len(written):,} records, the hour holds {len(expected):,}")
        return 1
    print(f"\nVerified: the {len(expected):,} entries of 13:00-14:00 UTC, each exactly once, byte-for-byte fields.")
    print(f"Requests served by the local Orchestrator: {stack.orchestrator.stats.audit_requests}")
    return 0


def events_demo() -> int:
    """The tenant audit events example: one hour of three tenants' events, verified against the data set."""
    from airflow_provider_orchestrator_audit.testing import EventsDataset, ListingSwitches
    from airflow_provider_orchestrator_audit.testing.events_dataset import EventListing

    tenants = ["DefaultTenant", "Finance", "HR"]
    events = EventsDataset(size=100_000, seed=2026, tenants=tenants)
    # Pages that repeat the last events of the one before, and new events arriving while it pages.
    stack = LocalStack(
        AuditDataset(size=10, seed=2026),
        latency_seconds=0.01,
        events=events,
        event_switches=ListingSwitches(page_overlap=2),
        event_arrivals_per_request=3,
    )
    with stack:
        print(f"Local Orchestrator at {stack.orchestrator.url}: audit events of tenants {', '.join(tenants)}")
        print(f"Local S3 (SeaweedFS) at {stack.s3.endpoint_url}, bucket {stack.bucket!r}")
        if not run_example("example_orchestrator_audit_tenant_events", {"tenants": tenants}):
            return 1
        listing: EventListing = stack.orchestrator.event_listing
        start = to_ticks(datetime(2026, 1, 1, 13, tzinfo=UTC))
        end = to_ticks(datetime(2026, 1, 1, 14, tzinfo=UTC))
        print("\nWritten to S3:")
        for key in stack.s3.list_keys(stack.bucket):
            body = stack.s3.get_object_bytes(stack.bucket, key)
            lines = gzip.decompress(body).decode("utf-8").splitlines()
            tenant = key.split("tenant=", 1)[1].split("/", 1)[0]
            expected = [
                events.event_json(tenant, index, ticks).replace("\u2028", "\\u2028")
                for ticks, _, index in listing.events_between(tenant, start, end)
            ]
            print(f"  s3://{stack.bucket}/{key}: {len(lines):,} events, {len(body):,} bytes")
            if sorted(lines) != sorted(expected):
                print(
                    f"\nMISMATCH for tenant {tenant!r}: wrote {len(lines):,} events, the hour holds {len(expected):,}"
                )
                return 1
        print("\nVerified: each tenant's events of 13:00-14:00 UTC, each exactly once, the server's own JSON text.")
    return 0


def orchestrator_demo() -> int:
    """The example of Orchestrator's own audit log: one hour of a tenant, verified against the data set."""
    from airflow_provider_orchestrator_audit.testing.orchestrator_dataset import OdataSwitches, OrchestratorDataset

    tenant = "Finance"
    logs = OrchestratorDataset(size=100_000, seed=2026)
    # ExecutionTime stored to the millisecond and written at +02:00, pages cut short, arrivals while paging.
    switches = OdataSwitches(fraction_digits=3, offset="+02:00", page_size_cap=500, short_pages=True)
    stack = LocalStack(
        AuditDataset(size=10, seed=2026),
        latency_seconds=0.01,
        orchestrator_audit=logs,
        odata_switches=switches,
        odata_arrivals_per_request=3,
    )
    with stack:
        print(f"Local Orchestrator at {stack.orchestrator.url}: Orchestrator's audit log of tenant {tenant!r}")
        print(f"Local S3 (SeaweedFS) at {stack.s3.endpoint_url}, bucket {stack.bucket!r}")
        if not run_example("example_orchestrator_audit_orchestrator_log", {"tenant": tenant}):
            return 1
        listing = stack.orchestrator.odata_listing
        hour = listing.window_entries(
            tenant, to_ticks(datetime(2026, 1, 1, 13, tzinfo=UTC)), to_ticks(datetime(2026, 1, 1, 14, tzinfo=UTC))
        )
        expected = listing.entry_lines(tenant, hour)
        print("\nWritten to S3:")
        (key,) = stack.s3.list_keys(stack.bucket)
        body = stack.s3.get_object_bytes(stack.bucket, key)
        lines = gzip.decompress(body).decode("utf-8").splitlines()
        print(f"  s3://{stack.bucket}/{key}: {len(lines):,} entries, {len(body):,} bytes")
        print("\nA sample line:\n  " + lines[len(lines) // 2])
        if sorted(lines) != sorted(expected):
            print(f"\nMISMATCH: wrote {len(lines):,} entries, the hour holds {len(expected):,}")
            return 1
        print(
            f"\nVerified: the {len(expected):,} entries of 13:00-14:00 UTC, each exactly once, the server's own text."
        )
        print(f"Requests served by the local Orchestrator: {stack.orchestrator.stats.audit_requests}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        shutil.rmtree(HOME, ignore_errors=True)
