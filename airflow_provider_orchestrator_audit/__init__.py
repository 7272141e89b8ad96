"""Export UiPath Orchestrator audit logs to S3 as JSON lines, exactly once per window."""

from airflow_provider_orchestrator_audit.version import __version__

__all__ = ["__version__"]
