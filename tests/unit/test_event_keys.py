"""Default keys per organization, source, tenant and window; classic keys unchanged."""

from __future__ import annotations

from airflow_provider_orchestrator_audit.export.keys import default_key, part_pattern
from airflow_provider_orchestrator_audit.paging import AuditWindow

WINDOW = AuditWindow.parse("2026-01-31T13:00:00Z", "2026-01-31T14:00:00.5Z")


def test_classic_keys_are_unchanged() -> None:
    assert default_key("acme", WINDOW, None) == (
        "orchestrator-audit/organization=acme/dt=2026-01-31/hour=13/20260131T130000Z_20260131T140000.5000000Z.jsonl"
    )


def test_event_keys_carry_source_and_tenant() -> None:
    assert default_key("acme", WINDOW, "gzip", source="organization_events") == (
        "orchestrator-audit/organization=acme/source=organization_events/dt=2026-01-31/hour=13/"
        "20260131T130000Z_20260131T140000.5000000Z.jsonl.gz"
    )
    key = default_key("acme", WINDOW, None, "audit/", source="tenant_events", tenant="Shared Services/EU")
    assert key.startswith("audit/organization=acme/source=tenant_events/tenant=Shared%20Services%2FEU/dt=2026-01-31/")
    assert part_pattern(key).match(key.replace(".jsonl", ".part-00001.jsonl"))


def test_keys_differ_per_source_and_tenant_and_repeat_per_window() -> None:
    keys = {
        default_key("acme", WINDOW, None),
        default_key("acme", WINDOW, None, source="organization_events"),
        default_key("acme", WINDOW, None, source="tenant_events", tenant="A"),
        default_key("acme", WINDOW, None, source="tenant_events", tenant="B"),
        default_key("other", WINDOW, None, source="tenant_events", tenant="A"),
    }
    assert len(keys) == 5
    assert default_key("acme", WINDOW, None, source="tenant_events", tenant="A") == default_key(
        "acme", WINDOW, None, source="tenant_events", tenant="A"
    )
