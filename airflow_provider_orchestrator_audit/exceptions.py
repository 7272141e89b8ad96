"""Errors raised by this provider.

Every message says what went wrong, where (connection id, URL, parameter) and what to do about it.
None of them ever carries a client secret, an access token or a personal access token.
"""

from __future__ import annotations

from airflow_provider_orchestrator_audit.compat import AirflowException

__all__ = [
    "AuditExportError",
    "OrchestratorAuditError",
    "OrchestratorAuthError",
    "OrchestratorConfigError",
    "OrchestratorRequestError",
    "OrchestratorResponseError",
]


class OrchestratorAuditError(AirflowException):
    """Base class of every error this provider raises."""


class OrchestratorConfigError(OrchestratorAuditError, ValueError):
    """A connection or a parameter is missing or malformed; nothing was sent."""


class OrchestratorAuthError(OrchestratorAuditError):
    """The identity server or Orchestrator refused the credentials or their permissions."""


class OrchestratorRequestError(OrchestratorAuditError):
    """A request failed for good: an unexpected status, or retries ran out."""


class OrchestratorResponseError(OrchestratorAuditError):
    """Orchestrator answered, but not with the documented response."""


class AuditExportError(OrchestratorAuditError):
    """The export could not be written to its destination; nothing partial was left behind."""
