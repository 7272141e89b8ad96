"""The HTTP client for Orchestrator's audit API.

A sans-I/O core (:mod:`.settings`, :mod:`.retry`, :mod:`.tokens`, :mod:`.exchanges`) decides what to
send, how to read the answer and when to retry; :mod:`.drivers` holds the thin synchronous and
asynchronous loops that do the actual I/O with httpx.
"""

from airflow_provider_orchestrator_audit.client.drivers import AsyncOrchestratorAuditClient, OrchestratorAuditClient
from airflow_provider_orchestrator_audit.client.retry import RetryPolicy
from airflow_provider_orchestrator_audit.client.settings import ConnectionSettings

__all__ = ["AsyncOrchestratorAuditClient", "ConnectionSettings", "OrchestratorAuditClient", "RetryPolicy"]
