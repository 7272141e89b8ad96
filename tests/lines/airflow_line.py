"""
What the tests of every supported Airflow line need from Airflow itself and that differs between lines.

These are test-side counterparts of the provider's compat module: running a DAG with ``dag.test()``,
reading an XCom value, parsing and serializing DAG files.
"""

from __future__ import annotations

import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

from airflow_provider_orchestrator_audit.compat import AIRFLOW_V_3_0_PLUS, AIRFLOW_V_3_1_PLUS, AIRFLOW_V_3_2_PLUS


def run_example(dag_id: str, logical_date: datetime) -> Any:
    """One run of the example DAG ``dag_id`` (its file put in the DAG folder for the run) through ``dag.test()``."""
    from tests.integration.airflow_runs import install_example, load_dag

    path = install_example(f"{dag_id}.py")
    try:
        return run_dag_test(load_dag(path, dag_id), logical_date)
    finally:
        path.unlink()


def run_dag_test(dag: Any, logical_date: datetime) -> Any:
    """
    One run of ``dag`` through ``dag.test()``; returns its DAG run.

    2.11 calls the date ``execution_date``; 3.0's Task SDK DAG has no ``test()`` and is turned into the
    scheduler's DAG first, as 3.0's ``airflow dags test`` does; 3.1's ``test()`` needs the DAG stored in
    the database already, as the DAG processor stores it (3.2 stores it itself).
    """
    if AIRFLOW_V_3_2_PLUS:
        return dag.test(logical_date=logical_date)
    if AIRFLOW_V_3_1_PLUS:
        _sync_to_db(dag)
        return dag.test(logical_date=logical_date)
    if AIRFLOW_V_3_0_PLUS:
        from airflow.models.dag import DAG as SchedulerDAG

        return SchedulerDAG.from_sdk_dag(dag).test(logical_date=logical_date)
    return dag.test(execution_date=logical_date)


def _sync_to_db(dag: Any) -> None:
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.models.dagbag import DagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(DagBag(dag_folder=dag.fileloc, include_examples=False), "dags-folder", None)


def xcom_value(dag_id: str, run_id: str, task_id: str) -> Any:
    """``task_id``'s return value in that run, from the metadata database."""
    from airflow.utils.session import create_session

    if AIRFLOW_V_3_0_PLUS:
        from airflow.models.xcom import XComModel as XComRow
    else:
        from airflow.models.xcom import XCom as XComRow

    with create_session() as session:
        row = (
            session.query(XComRow)
            .filter_by(dag_id=dag_id, run_id=run_id, task_id=task_id, key="return_value")
            .one_or_none()
        )
        if row is None:
            return None
        # 2.11's XCom rows hold the value already deserialized.
        return XComRow.deserialize_value(row) if AIRFLOW_V_3_0_PLUS else row.value


def task_state(dag_id: str, run_id: str, task_id: str) -> str | None:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        return session.query(TaskInstance).filter_by(dag_id=dag_id, run_id=run_id, task_id=task_id).one().state


def parse_dag_folder(folder: Path) -> tuple[Any, list[str]]:
    """The folder parsed as the DAG processor parses it, and every warning raised meanwhile."""
    if AIRFLOW_V_3_2_PLUS:
        from airflow.dag_processing.dagbag import DagBag
    else:
        from airflow.models.dagbag import DagBag

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dagbag = DagBag(dag_folder=str(folder), safe_mode=False)
    return dagbag, [f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}" for w in caught]


def serialize(dag: Any) -> dict[str, Any]:
    """The DAG as JSON for the scheduler (validated against Airflow's schema on every line)."""
    if AIRFLOW_V_3_2_PLUS:
        from airflow.serialization.serialized_objects import DagSerialization

        return DagSerialization.to_dict(dag)
    from airflow.serialization.serialized_objects import SerializedDAG

    return SerializedDAG.to_dict(dag)
