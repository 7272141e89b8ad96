"""
A local Orchestrator audit API for tests, demos and benchmarks.

:class:`LocalOrchestratorServer` serves a deterministic :class:`AuditDataset` over HTTP with the
identity server's client-credentials flow, drifting data, tie groups in random order and scripted
:class:`Fault` s. Run one from a shell with::

    python -m airflow_provider_orchestrator_audit.testing serve --entries 100000
"""

from airflow_provider_orchestrator_audit.testing.dataset import (
    DEFAULT_START,
    DOCUMENTED_FIELDS,
    AuditDataset,
    SortTooLargeError,
)
from airflow_provider_orchestrator_audit.testing.events_dataset import EventListing, EventsDataset, ListingSwitches
from airflow_provider_orchestrator_audit.testing.faults import Endpoint, Fault, FaultKind, FaultSchedule, ThrottleStyle
from airflow_provider_orchestrator_audit.testing.server import AUDIT_SCOPES, LocalOrchestratorServer, ServerStats

__all__ = [
    "AUDIT_SCOPES",
    "DEFAULT_START",
    "DOCUMENTED_FIELDS",
    "AuditDataset",
    "Endpoint",
    "EventListing",
    "EventsDataset",
    "Fault",
    "FaultKind",
    "FaultSchedule",
    "ListingSwitches",
    "LocalOrchestratorServer",
    "ServerStats",
    "SortTooLargeError",
    "ThrottleStyle",
]
