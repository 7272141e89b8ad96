"""Test-wide set-up: an isolated Airflow home, and the local servers the tests talk to."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from collections.abc import Iterator

# Airflow reads its configuration when first imported: point it at a throw-away home before that.
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="airflow-home-")
atexit.register(shutil.rmtree, _AIRFLOW_HOME, ignore_errors=True)  # the run's home goes with the run
DAGS_FOLDER = os.path.join(_AIRFLOW_HOME, "dags")
os.makedirs(DAGS_FOLDER)
os.environ["AIRFLOW_HOME"] = _AIRFLOW_HOME
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = DAGS_FOLDER
# A hook-lineage reader plugin, as lineage backends register one: it makes Airflow collect the assets
# that hooks report, so the tests can check the export's lineage.
_PLUGINS_FOLDER = os.path.join(_AIRFLOW_HOME, "plugins")
os.makedirs(_PLUGINS_FOLDER)
with open(os.path.join(_PLUGINS_FOLDER, "lineage_reader.py"), "w") as _plugin:
    _plugin.write(
        "from airflow.plugins_manager import AirflowPlugin\n"
        "from airflow_provider_orchestrator_audit.compat import HookLineageReader\n\n\n"
        "class LineageReaderPlugin(AirflowPlugin):\n"
        "    name = 'lineage_reader'\n"
        "    hook_lineage_readers = [HookLineageReader]\n"
    )
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = _PLUGINS_FOLDER
# One process runs every export of the suite: Airflow's hook-lineage collector keeps at most 100 assets
# per process by default, and the lineage tests must still see theirs after hundreds of exports.
os.environ["AIRFLOW__LINEAGE__MAX_ASSETS_PER_COLLECTOR"] = "1000000"
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ.pop("AIRFLOW_CONN_ORCHESTRATOR_AUDIT_DEFAULT", None)

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from airflow_provider_orchestrator_audit.testing import LocalOrchestratorServer
    from tests.support.s3 import LocalS3Server

CONN_ID = "orchestrator_audit_test"
ORCHESTRATOR_ENTRIES = 5_000
#: Unified audit events per stream (the organization's and each tenant's) of the session's server.
ORCHESTRATOR_EVENTS = 5_000


@pytest.fixture(scope="session")
def orchestrator_server() -> Iterator[LocalOrchestratorServer]:
    """One local Orchestrator for the session; :func:`orchestrator` resets it for each test."""
    from airflow_provider_orchestrator_audit.testing import AuditDataset, EventsDataset, LocalOrchestratorServer
    from airflow_provider_orchestrator_audit.testing.orchestrator_dataset import OrchestratorDataset

    events = EventsDataset(size=ORCHESTRATOR_EVENTS, seed=7, tie_probability=0.2)
    own_audit = OrchestratorDataset(size=ORCHESTRATOR_EVENTS, seed=7, tie_probability=0.2)
    with LocalOrchestratorServer(
        AuditDataset(size=ORCHESTRATOR_ENTRIES, seed=7), events=events, orchestrator_audit=own_audit
    ) as server:
        yield server


@pytest.fixture
def orchestrator(orchestrator_server: LocalOrchestratorServer) -> Iterator[LocalOrchestratorServer]:
    """The local Orchestrator, with no faults, no drift, no latency and fresh counters."""
    server = orchestrator_server
    server.faults.clear()
    server.revoke_tokens()
    server.latency_seconds = 0.0
    server.page_size_cap = None
    server.arrivals_per_request = 0
    server.removals_per_request = 0
    server.late_per_request = 0
    server.late_burst_every = None
    server.late_burst_size = 0
    server.token_lifetime_seconds = 3600
    server.granted_scopes = ("PM.Audit.Read", "PM.Audit", "OR.Audit.Read", "OR.Audit")
    server.dataset.set_visible_range(0, ORCHESTRATOR_ENTRIES)
    _reset_events(server)
    _reset_orchestrator_audit(server)
    server.reset_stats()
    yield server
    server.faults.clear()


def _reset_events(server: LocalOrchestratorServer) -> None:
    from airflow_provider_orchestrator_audit.testing import ListingSwitches
    from airflow_provider_orchestrator_audit.testing.events_dataset import ORGANIZATION_STREAM

    server.event_listing.switches = ListingSwitches()
    server.event_arrivals_per_request = server.event_late_per_request = 0
    for stream in (ORGANIZATION_STREAM, *server.events.tenants):
        server.events.set_visible(stream, 0, ORCHESTRATOR_EVENTS)


def _reset_orchestrator_audit(server: LocalOrchestratorServer) -> None:
    from airflow_provider_orchestrator_audit.testing.orchestrator_dataset import OdataSwitches

    server.odata_listing.switches = OdataSwitches()
    server.odata_arrivals_per_request = server.odata_late_per_request = 0
    for tenant in server.orchestrator_audit.tenants:
        server.orchestrator_audit.reset(tenant, ORCHESTRATOR_EVENTS)


def connection_env(conn: dict) -> str:
    """An Airflow connection as the JSON an ``AIRFLOW_CONN_*`` variable holds."""
    return json.dumps(conn)


def set_connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, conn: dict) -> str:
    """Define an Airflow connection the way users do in containers: an ``AIRFLOW_CONN_*`` variable."""
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", connection_env(conn))
    return conn_id


@pytest.fixture
def orchestrator_conn(orchestrator: LocalOrchestratorServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """An ``orchestrator_audit`` connection to the local server."""
    return set_connection(monkeypatch, CONN_ID, orchestrator.airflow_connection())


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """Airflow's metadata database (SQLite in the throw-away home), created once."""
    from airflow.utils.db import initdb

    initdb()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[LocalS3Server]:
    """SeaweedFS serving S3 on loopback for the whole session."""
    from tests.support.s3 import LocalS3Server

    with LocalS3Server() as server:
        yield server


@pytest.fixture
def bucket(s3_server: LocalS3Server, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> str:
    """A fresh bucket for one test, reachable through the ``aws_default`` connection."""
    import re
    import uuid

    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-") + f"-{uuid.uuid4().hex[:8]}"
    s3_server.create_bucket(name)
    set_connection(monkeypatch, "aws_default", s3_server.airflow_connection())
    return name
