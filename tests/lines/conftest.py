"""Settings for the tests that run on every supported Airflow line."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    from airflow_provider_orchestrator_audit.compat import AIRFLOW_V_3_0_PLUS, AIRFLOW_V_3_2_PLUS

    # Warnings stay errors, except those that older Airflow lines raise about their own code and their own
    # pinned dependencies (they come with those releases and are not this provider's to fix).
    ignored = []
    if not AIRFLOW_V_3_0_PLUS:
        # Airflow 2.11's web stack as its constraints pin it: Flask 2.2 with Flask-AppBuilder 4,
        # Flask-SQLAlchemy 2.5 and SQLAlchemy 1.4, connexion 2 with jsonschema 4.23, marshmallow 3.26.
        ignored.append(
            "ignore::DeprecationWarning:(flask_appbuilder|flask_sqlalchemy|connexion|marshmallow_sqlalchemy)(\\..*)?"
        )
    if not AIRFLOW_V_3_2_PLUS:
        # 3.0 and 3.1's execution API uses a status name that Starlette has since renamed.
        ignored.append("ignore:'HTTP_422_UNPROCESSABLE_ENTITY' is deprecated")
    for line in ignored:
        config.addinivalue_line("filterwarnings", line)
