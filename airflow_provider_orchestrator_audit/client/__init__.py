"""The HTTP client for Orchestrator's audit API.

A sans-I/O core decides what to send, how to read the answer and when to retry: :mod:`.exchanges`
(requests and retry loops), :mod:`.settings`, :mod:`.retry`, :mod:`.tokens`, :mod:`.page_parser`,
:mod:`.advice` (errors that say what to fix), :mod:`.redaction` (secrets masked in quoted bodies) and
:mod:`.validation`. :mod:`.drivers` holds the thin synchronous and asynchronous loops that do the
actual I/O with httpx.
"""

from airflow_provider_orchestrator_audit.client.drivers import AsyncOrchestratorAuditClient, OrchestratorAuditClient
from airflow_provider_orchestrator_audit.client.exchanges import AuditLogQuery
from airflow_provider_orchestrator_audit.client.retry import RetryPolicy
from airflow_provider_orchestrator_audit.client.settings import ConnectionSettings

__all__ = [
    "AsyncOrchestratorAuditClient",
    "AuditLogQuery",
    "ConnectionSettings",
    "OrchestratorAuditClient",
    "RetryPolicy",
]
