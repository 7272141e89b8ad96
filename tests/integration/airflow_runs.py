"""Run DAGs for real with ``dag.test()``: DAG files in the test Airflow's DAG folder, results from the DB."""

from __future__ import annotations

import importlib.util
import shutil
import sys
import textwrap
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.conftest import DAGS_FOLDER

EXAMPLE_DAGS = Path(__file__).resolve().parents[2] / "example_dags"


def load_dag(path: Path, dag_id: str) -> Any:
    """Import a DAG file under a unique module name and return its DAG."""
    name = f"dagfile_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return next(value for value in vars(module).values() if getattr(value, "dag_id", None) == dag_id)


def forget_dag(dag_id: str) -> None:
    """
    Remove every record of ``dag_id`` from the test database, before its DAG file is written anew.

    Each ``dag.test()`` of changed DAG source adds a DAG version under the same id, and Airflow's
    ``DagRun.serialized_dag`` (joined on the id alone) then warns of several rows when it is loaded:
    an error in this warning-free suite, and not one any deployment sees (a DAG file there is one DAG).
    """
    from airflow.api.common.delete_dag import delete_dag
    from airflow.exceptions import DagNotFound

    try:
        delete_dag(dag_id)
    except DagNotFound:
        pass


def install_example(name: str) -> Path:
    """Copy an example DAG file into the test Airflow's DAG folder."""
    forget_dag(Path(name).stem)
    target = Path(DAGS_FOLDER) / name
    shutil.copy(EXAMPLE_DAGS / name, target)
    return target


# Hourly runs whose data interval is the hour before the logical date.
HOURLY = 'CronDataIntervalTimetable("0 * * * *", timezone="UTC")'


def write_export_dag(
    dag_id: str,
    operator_kwargs: dict[str, Any],
    *,
    default_args: str = '{"retries": 0}',
    params: dict[str, Any] | None = None,
    schedule: str = HOURLY,
    imports: str = "",
    operator_source: str = "",
) -> Path:
    """
    A one-task DAG exporting with ``AuditLogsToS3Operator(task_id="export", **operator_kwargs)``, in the
    test Airflow's DAG folder.

    :param default_args: the DAG's ``default_args`` as Python source.
    :param params: the DAG's params, for templated arguments such as ``"{{ params.window_start }}"``.
    :param schedule: the DAG's ``schedule`` as Python source, e.g. ``"None"`` for manual runs only.
    :param imports: import lines the sources above need (callbacks, ``timedelta``).
    :param operator_source: more operator arguments as Python source, e.g. ``"on_failure_callback=f"``.
    """
    forget_dag(dag_id)
    path = Path(DAGS_FOLDER) / f"{dag_id}.py"
    extra = f", {operator_source}" if operator_source else ""
    path.write_text(
        textwrap.dedent(
            """
            from datetime import datetime, timezone

            from airflow_provider_orchestrator_audit.compat import DAG, CronDataIntervalTimetable
            from airflow_provider_orchestrator_audit.transfers.audit_logs_to_s3 import AuditLogsToS3Operator
            """
        )
        + imports.strip()
        + "\n"
        + textwrap.dedent(
            f"""
            with DAG(
                dag_id={dag_id!r},
                schedule={schedule},
                start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
                catchup=False,
                params={params or {}!r},
                default_args={default_args},
            ) as dag:
                AuditLogsToS3Operator(task_id="export"{extra}, **{operator_kwargs!r})
            """
        )
    )
    return path


def run_dag(path: Path, dag_id: str, logical_date: datetime, task_id: str = "export", **kwargs: Any) -> tuple[str, Any]:
    """``dag.test()`` one run; return its state and ``task_id``'s XCom return value."""
    dag = load_dag(path, dag_id)
    run = dag.test(logical_date=logical_date, **kwargs)
    return run.state, xcom_return_value(dag_id, run.run_id, task_id)


def xcom_return_value(dag_id: str, run_id: str, task_id: str) -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=dag_id, run_id=run_id, task_id=task_id, key="return_value")
            .one_or_none()
        )
        return None if row is None else XComModel.deserialize_value(row)
