"""
The example DAGs: they import cleanly in a DagBag, carry production settings after serialization (what
the scheduler sees), and the mapped backfill exports each sub-window to its own object through real
Airflow (``dag.test()``), a local Orchestrator and SeaweedFS.
"""

from __future__ import annotations

import gzip
import json
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_orchestrator_audit.paging.window import WindowError
from airflow_provider_orchestrator_audit.testing import AuditDataset, LocalOrchestratorServer
from airflow_provider_orchestrator_audit.timestamps import to_ticks
from tests.conftest import set_connection
from tests.integration.airflow_runs import EXAMPLE_DAGS, install_example, load_dag

if TYPE_CHECKING:
    from tests.support.s3 import LocalS3Server

pytestmark = pytest.mark.usefixtures("airflow_db")

HOURLY = "example_orchestrator_audit_to_s3"
EVENT_DRIVEN = "example_orchestrator_audit_event_driven"
MAPPED = "example_orchestrator_audit_mapped_backfill"
TENANT_EVENTS = "example_orchestrator_audit_tenant_events"
ORCHESTRATOR_LOG = "example_orchestrator_audit_orchestrator_log"
EXAMPLES = (HOURLY, EVENT_DRIVEN, MAPPED, TENANT_EVENTS, ORCHESTRATOR_LOG)
SPLIT_TASK_ID = "split_into_sub_windows"
EXPORT_TASK_ID = "export_sub_window"

# 100 entries an hour from 2026-01-01T00:00Z for 26 hours: every hour of 2026-01-01 holds entries, and
# so do the hours around the windows the tests export (to catch an entry leaking in from outside).
BACKFILL_DATASET_ENTRIES = 2_600
BACKFILL_ENTRIES_PER_HOUR = 100


# --- every example imports cleanly ----------------------------------------------------------------


@pytest.fixture(scope="module")
def example_dagbag() -> Any:
    """The example folder parsed the way the DAG processor parses a DAGs folder, warnings recorded."""
    from airflow.dag_processing.dagbag import DagBag

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dagbag = DagBag(dag_folder=str(EXAMPLE_DAGS), safe_mode=False)
    dagbag.caught_warnings = [f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}" for w in caught]
    return dagbag


def test_every_example_imports_without_errors_or_warnings(example_dagbag):
    assert example_dagbag.import_errors == {}
    assert example_dagbag.captured_warnings == {}
    assert example_dagbag.caught_warnings == []
    files = sorted(path.name for path in EXAMPLE_DAGS.glob("*.py"))
    assert files == sorted(f"{dag_id}.py" for dag_id in EXAMPLES)
    assert sorted(example_dagbag.dag_ids) == sorted(EXAMPLES)
    for dag in example_dagbag.dags.values():
        assert dag.doc_md and "Setup" in dag.doc_md, f"{dag.dag_id} should explain its setup"


def serialized(example_dagbag: Any, dag_id: str) -> Any:
    """The DAG as the scheduler sees it: serialized to JSON and back."""
    from airflow.serialization.serialized_objects import DagSerialization

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dag = DagSerialization.from_dict(DagSerialization.to_dict(example_dagbag.dags[dag_id]))
    assert [str(warning.message) for warning in caught] == []
    return dag


@pytest.mark.parametrize(
    ("dag_id", "max_active_runs", "params"),
    [
        (HOURLY, 4, {"window_start": None, "window_end": None}),
        (EVENT_DRIVEN, 1, {"first_window_hours": 24}),
        (MAPPED, 2, {"window_start": None, "window_end": None, "hours_per_task": 1}),
        (ORCHESTRATOR_LOG, 2, {"tenant": None, "window_start": None, "window_end": None}),
    ],
)
def test_examples_have_production_settings(example_dagbag, dag_id, max_active_runs, params):
    dag = serialized(example_dagbag, dag_id)
    assert dag.catchup is False
    assert dag.max_active_runs == max_active_runs
    assert {name: dag.params[name] for name in dag.params} == params
    for task in dag.tasks:
        assert task.retries >= 2, task.task_id
        # Exponential backoff as the scheduler computes it (a bare True would be read as 2.0 only here).
        assert task.retry_exponential_backoff == 2.0, task.task_id
        assert timedelta(0) < task.retry_delay < task.max_retry_delay <= timedelta(minutes=30), task.task_id


def test_the_exports_keep_their_ids_and_limits(example_dagbag):
    hourly = serialized(example_dagbag, HOURLY)
    assert [task.task_id for task in hourly.tasks] == ["export_audit_logs"]
    orchestrator_log = serialized(example_dagbag, ORCHESTRATOR_LOG)
    assert [task.task_id for task in orchestrator_log.tasks] == ["export_orchestrator_audit_log"]
    mapped = serialized(example_dagbag, MAPPED)
    export = mapped.get_task(EXPORT_TASK_ID)
    assert export.is_mapped and export.max_active_tis_per_dag == 4
    assert [task.task_id for task in export.upstream_list] == [SPLIT_TASK_ID]


# --- the mapped backfill's split task, called as Airflow calls it ---------------------------------


@pytest.fixture(scope="module")
def split_task(example_dagbag) -> Any:
    """The split task's own function (the DAG file's code, run with a context as Airflow passes it)."""
    return example_dagbag.dags[MAPPED].get_task(SPLIT_TASK_ID).python_callable


def split_context(window_start: Any = None, window_end: Any = None, hours_per_task: int = 1, **context: Any) -> dict:
    params = {"window_start": window_start, "window_end": window_end, "hours_per_task": hours_per_task}
    return {"params": params, **context}


def test_the_split_task_pairs_the_bounds_of_each_sub_window(split_task):
    sub_windows = split_task(**split_context("2026-01-01T01:00:00Z", "2026-01-01T03:30:00.1234567Z"))
    assert sub_windows == [
        {"window_start": "2026-01-01T01:00:00.0000000+00:00", "window_end": "2026-01-01T02:00:00.0000000+00:00"},
        {"window_start": "2026-01-01T02:00:00.0000000+00:00", "window_end": "2026-01-01T03:00:00.0000000+00:00"},
        {"window_start": "2026-01-01T03:00:00.0000000+00:00", "window_end": "2026-01-01T03:30:00.1234567+00:00"},
    ]


def test_the_split_task_defaults_to_the_data_interval(split_task):
    day = {
        "data_interval_start": datetime(2026, 1, 1, tzinfo=UTC),
        "data_interval_end": datetime(2026, 1, 2, tzinfo=UTC),
    }
    # Empty form fields mean "not set", like unset params.
    sub_windows = split_task(**split_context("", "", hours_per_task=6, **day))
    assert [part["window_start"][11:16] for part in sub_windows] == ["00:00", "06:00", "12:00", "18:00"]
    assert sub_windows[-1]["window_end"] == "2026-01-02T00:00:00.0000000+00:00"


@pytest.mark.parametrize(
    ("context", "message"),
    [
        (split_context("2026-01-01T00:00:00Z"), "window_end is not set while the other bound is; set both or neither"),
        (split_context(None, "2026-01-01T00:00:00Z"), "window_start is not set while the other bound is"),
        (split_context(), "no data interval to split .* params window_start and window_end"),
        (
            split_context(
                data_interval_start=datetime(2026, 1, 1, tzinfo=UTC), data_interval_end=datetime(2026, 1, 1, tzinfo=UTC)
            ),
            "no data interval to split",
        ),
        (split_context("2026-01-02T00:00:00Z", "2026-01-01T00:00:00Z"), "window_end .* is before window_start"),
        (split_context("yesterday", "2026-01-01T00:00:00Z"), "window_start: 'yesterday' is not an ISO-8601"),
        (
            # 2 years in hours: more mapped tasks than Airflow maps by default.
            split_context("2024-01-01T00:00:00Z", "2026-01-01T00:00:00Z"),
            "gives 17544 sub-windows, more than the limit of 1024.*raise the param hours_per_task",
        ),
    ],
)
def test_the_split_task_refuses_unusable_windows_clearly(split_task, context, message):
    with pytest.raises(WindowError, match=message):
        split_task(**context)


# --- the mapped backfill through Airflow ----------------------------------------------------------


@pytest.fixture(scope="module")
def backfill_orchestrator() -> Iterator[LocalOrchestratorServer]:
    """A local Orchestrator whose log spans more than a day, so that every sub-window holds entries."""
    dataset = AuditDataset(size=BACKFILL_DATASET_ENTRIES, seed=23, entries_per_hour=BACKFILL_ENTRIES_PER_HOUR)
    with LocalOrchestratorServer(dataset) as server:
        yield server


@pytest.fixture
def mapped_example(backfill_orchestrator, bucket, monkeypatch) -> Any:
    """The mapped example installed in the DAGs folder, its connections and bucket pointing at the local servers."""
    set_connection(monkeypatch, "orchestrator_audit_default", backfill_orchestrator.airflow_connection())
    monkeypatch.setenv("AIRFLOW_VAR_ORCHESTRATOR_AUDIT_BUCKET", bucket)
    dag = load_dag(install_example(f"{MAPPED}.py"), MAPPED)
    for task in dag.tasks:
        task.retries = 0  # a failure should fail the test now, not after the example's retry delays
    return dag


def canonical(entries: Any) -> list[str]:
    return sorted(json.dumps(entry, sort_keys=True, ensure_ascii=False) for entry in entries)


def entries_between(server: LocalOrchestratorServer, start: str, end: str) -> list[str]:
    return canonical(server.dataset.entries_between(to_ticks(start), to_ticks(end)))


def read_objects(s3_server: LocalS3Server, bucket: str) -> dict[str, list[str]]:
    """Every object of the bucket: its records, canonical JSON."""
    objects = {}
    for key in s3_server.list_keys(bucket):
        text = gzip.decompress(s3_server.get_object_bytes(bucket, key)).decode("utf-8")
        objects[key] = canonical(json.loads(line) for line in text.splitlines())
    return objects


def mapped_exports(dag_id: str, run_id: str) -> list[tuple[int, str | None, str, dict | None]]:
    """(map index, rendered name, state, XCom return value) of each export task instance of a run."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = (
            session.query(TaskInstance)
            .filter_by(dag_id=dag_id, run_id=run_id, task_id=EXPORT_TASK_ID)
            .order_by(TaskInstance.map_index)
            .all()
        )
        exports = []
        for ti in tis:
            xcom = (
                session.query(XComModel)
                .filter_by(dag_id=dag_id, run_id=run_id, task_id=EXPORT_TASK_ID, map_index=ti.map_index)
                .filter_by(key="return_value")
                .one_or_none()
            )
            result = None if xcom is None else XComModel.deserialize_value(xcom)
            exports.append((ti.map_index, ti.rendered_map_index, ti.state, result))
    return exports


def test_mapped_backfill_exports_each_sub_window_to_its_own_object(
    mapped_example, backfill_orchestrator, bucket, s3_server
):
    # 3.5 hours in hourly sub-windows: three whole hours and a shorter last one, 4 mapped tasks.
    window = ("2026-01-01T01:00:00Z", "2026-01-01T04:30:00Z")
    run = mapped_example.test(
        logical_date=datetime(2026, 3, 1, tzinfo=UTC),
        run_conf={"window_start": window[0], "window_end": window[1], "hours_per_task": 1},
    )
    assert run.state == "success"
    exports = mapped_exports(MAPPED, run.run_id)
    bounds = [("01:00", "02:00"), ("02:00", "03:00"), ("03:00", "04:00"), ("04:00", "04:30")]
    assert [(index, state) for index, _, state, _ in exports] == [(index, "success") for index in range(4)]

    objects = read_objects(s3_server, bucket)
    prefix = "orchestrator-audit/organization=acme/dt=2026-01-01"
    expected_keys = [
        f"{prefix}/hour=01/20260101T010000Z_20260101T020000Z.jsonl.gz",
        f"{prefix}/hour=02/20260101T020000Z_20260101T030000Z.jsonl.gz",
        f"{prefix}/hour=03/20260101T030000Z_20260101T040000Z.jsonl.gz",
        f"{prefix}/hour=04/20260101T040000Z_20260101T043000Z.jsonl.gz",
    ]
    assert sorted(objects) == expected_keys
    for (index, name, _, result), (start, end), key in zip(exports, bounds, expected_keys, strict=True):
        sub_window = (f"2026-01-01T{start}:00Z", f"2026-01-01T{end}:00Z")
        expected = entries_between(backfill_orchestrator, *sub_window)
        assert objects[key] == expected and len(expected) > 20, f"sub-window {index} holds exactly its own entries"
        assert result["objects"] == [f"s3://{bucket}/{key}"] and result["records"] == len(expected)
        assert name == f"2026-01-01T{start}:00.0000000+00:00"  # the grid shows the sub-window, not "3"

    # Together (as multisets): every entry of the whole window exactly once, and nothing from outside it.
    union = sorted(record for records in objects.values() for record in records)
    assert union == entries_between(backfill_orchestrator, *window)


def test_mapped_backfill_splits_the_data_interval_by_default(mapped_example, backfill_orchestrator, bucket, s3_server):
    # A daily run (logical date = end of the interval, as dag.test infers it), in 6-hour sub-windows.
    run = mapped_example.test(logical_date=datetime(2026, 1, 2, tzinfo=UTC), run_conf={"hours_per_task": 6})
    assert run.state == "success"
    results = [result for _, _, _, result in mapped_exports(MAPPED, run.run_id)]
    assert [(result["window_start"][11:16], result["window_end"][11:16]) for result in results] == [
        ("00:00", "06:00"),
        ("06:00", "12:00"),
        ("12:00", "18:00"),
        ("18:00", "00:00"),
    ]
    objects = read_objects(s3_server, bucket)
    assert len(objects) == 4
    union = sorted(record for records in objects.values() for record in records)
    day = entries_between(backfill_orchestrator, "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z")
    assert union == day and len(day) > 20 * BACKFILL_ENTRIES_PER_HOUR


def test_mapped_backfill_with_one_bound_fails_before_any_export(
    mapped_example, backfill_orchestrator, bucket, s3_server
):
    backfill_orchestrator.reset_stats()
    run = mapped_example.test(
        logical_date=datetime(2026, 3, 2, tzinfo=UTC), run_conf={"window_start": "2026-01-01T01:00:00Z"}
    )
    assert run.state == "failed"
    # The split task failed (its message is tested above); the export was never expanded or run.
    assert mapped_exports(MAPPED, run.run_id) == [(-1, None, "upstream_failed", None)]
    assert backfill_orchestrator.stats.audit_requests == 0 and s3_server.list_keys(bucket) == []
