"""Which UI tests apply: Airflow 2 serves a Flask-AppBuilder web UI, Airflow 3 a React UI on its API server."""

from __future__ import annotations

from airflow_provider_orchestrator_audit.compat import AIRFLOW_V_3_0_PLUS

# Each module drives the UI of one generation, which the other does not have (scripts/airflow-lines.sh
# runs test_airflow2_ui.py in the Airflow 2.11 virtualenv).
collect_ignore = ["test_airflow2_ui.py"] if AIRFLOW_V_3_0_PLUS else ["test_airflow_ui.py"]
