"""Hooks: :class:`~.orchestrator_audit.OrchestratorAuditHook` and its async twin."""
