"""AuditLogsTotalCountTrigger survives the round trip through Airflow's trigger table; its condition, judged offline."""

from __future__ import annotations

import time

import pytest

from airflow_provider_orchestrator_audit.exceptions import OrchestratorConfigError
from airflow_provider_orchestrator_audit.models import AuditLogPage
from airflow_provider_orchestrator_audit.timestamps import to_ticks
from airflow_provider_orchestrator_audit.triggers.audit_logs import AuditLogsTotalCountTrigger, NewEntriesCondition

NEWEST = "2026-01-01T01:23:18.4094432+00:00"


def rebuilt(trigger: AuditLogsTotalCountTrigger) -> AuditLogsTotalCountTrigger:
    """What the triggerer runs: the row Airflow stores for a deferred task, read back and instantiated."""
    from airflow.models.trigger import Trigger
    from airflow.sdk._shared.module_loading import import_string

    row = Trigger.from_object(trigger)
    return import_string(row.classpath)(**row.kwargs)


def test_serialize_round_trip_keeps_baseline_precision_and_deadline():
    deadline = time.time() + 3600.25
    original = AuditLogsTotalCountTrigger(
        orchestrator_conn_id="uipath_prod",
        baseline_count=12_345,
        newer_than="2026-01-01T03:23:18.4094432+02:00",
        poke_interval=30,
        deadline=deadline,
    )
    classpath, kwargs = original.serialize()
    assert classpath == "airflow_provider_orchestrator_audit.triggers.audit_logs.AuditLogsTotalCountTrigger"
    assert kwargs == {
        "orchestrator_conn_id": "uipath_prod",
        "baseline_count": 12_345,
        "newer_than": NEWEST,  # normalised to UTC, all seven digits kept
        "poke_interval": 30.0,
        "deadline": deadline,
    }
    again = rebuilt(original)
    assert type(again) is AuditLogsTotalCountTrigger
    assert again.serialize() == original.serialize()
    assert again.condition == NewEntriesCondition(12_345, to_ticks(NEWEST))


def test_round_trip_of_a_single_condition_without_deadline():
    only_time = AuditLogsTotalCountTrigger(orchestrator_conn_id="c", newer_than=NEWEST)
    assert rebuilt(only_time).serialize()[1] == {
        "orchestrator_conn_id": "c",
        "baseline_count": None,
        "newer_than": NEWEST,
        "poke_interval": 60.0,
        "deadline": None,
    }
    only_count = rebuilt(AuditLogsTotalCountTrigger(orchestrator_conn_id="c", baseline_count=0))
    assert only_count.condition == NewEntriesCondition(baseline_count=0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "nothing to wait for"),
        ({"baseline_count": -1}, "baseline_count must be at least 0, got -1"),
        ({"newer_than": "soon"}, "newer_than: 'soon' is not an ISO-8601 timestamp"),
        ({"baseline_count": 1, "poke_interval": -5}, "poke_interval"),
    ],
)
def test_bad_trigger_arguments_are_refused(kwargs, message):
    with pytest.raises(OrchestratorConfigError, match=message):
        AuditLogsTotalCountTrigger(orchestrator_conn_id="c", **kwargs)


def page(total: int, *created_on: str) -> AuditLogPage:
    return AuditLogPage.model_validate(
        {"totalCount": total, "results": [{"createdOn": value, "category": "User"} for value in created_on]}
    )


def test_condition_compares_ticks_and_either_part_suffices():
    one_tick_before = "2026-01-01T01:23:18.4094431+00:00"  # equal as datetimes (6 digits), not as ticks
    both = NewEntriesCondition(baseline_count=10, newer_than=to_ticks(one_tick_before))
    seen = both.observe(page(10, NEWEST))
    assert seen.is_met and seen.reason == f"newest createdOn {NEWEST} vs {one_tick_before}"
    assert seen.total_count == 10 and seen.newest_created_on == NEWEST
    same_instant = NewEntriesCondition(baseline_count=10, newer_than=to_ticks(NEWEST)).observe(page(10, NEWEST))
    assert not same_instant.is_met
    assert same_instant.pending == f"totalCount 10 vs baseline 10; newest createdOn {NEWEST} vs {NEWEST}"
    assert NewEntriesCondition(baseline_count=9, newer_than=to_ticks(NEWEST)).observe(page(10, NEWEST)).is_met
    assert both.describe() == f"totalCount > 10 or newest createdOn > {one_tick_before}"


def test_an_empty_log_has_nothing_newer():
    empty = NewEntriesCondition(newer_than=to_ticks(NEWEST)).observe(page(0))
    assert not empty.is_met and empty.newest_created_on is None and "the log is empty" in empty.pending
    assert NewEntriesCondition(baseline_count=0).observe(page(1, NEWEST)).is_met
