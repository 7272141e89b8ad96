"""Provider metadata that Airflow reads through the ``apache_airflow_provider`` entry point.

The connection form is declared here (``conn-fields`` and ``ui-field-behaviour``) so that Airflow 3.2 and
later build it without importing the hook. Older lines ask the hook instead
(``OrchestratorAuditHook.get_connection_form_widgets`` and ``get_ui_field_behaviour``), which answers
from the same declarations, so every line shows the same form.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CONN_FIELDS", "UI_FIELD_BEHAVIOUR", "get_provider_info"]

_NULLABLE_STRING = ["string", "null"]
_INTEGRATION = "UiPath Orchestrator"


CONN_FIELDS: dict[str, dict[str, Any]] = {
    "organization": {
        "label": "Organization",
        "description": "The organization name in your Orchestrator URL: 'acme' for https://cloud.uipath.com/acme. Required.",
        "schema": {"type": _NULLABLE_STRING},
    },
    "tenant": {
        "label": "Tenant",
        "description": "The tenant name that follows the organization in your Orchestrator URL: 'DefaultTenant' "
        "for https://cloud.uipath.com/acme/DefaultTenant. Default tenant of source='tenant_events' and "
        "source='orchestrator'; optional.",
        "schema": {"type": _NULLABLE_STRING},
    },
    "scope": {
        "label": "Scope",
        "description": "OAuth2 scopes to request, space separated, for every source. PM.Audit.Read (the default) "
        "lets each source ask for its own: PM.Audit.Read, or OR.Audit.Read for source='orchestrator'.",
        "schema": {"type": _NULLABLE_STRING, "default": "PM.Audit.Read"},
    },
    "token_url": {
        "label": "Token URL",
        "description": "Identity server token endpoint. Default: <Base URL>/identity_/connect/token; "
        "standalone Orchestrator uses https://<server>/identity/connect/token.",
        "schema": {"type": _NULLABLE_STRING},
    },
    "orchestrator_url": {
        "label": "Orchestrator URL",
        "description": "A standalone Orchestrator only: its URL, e.g. https://orchestrator.example.com. "
        "source='orchestrator' then reads <Orchestrator URL>/odata/AuditLogs, with no "
        "<organization>/<tenant>/orchestrator_ prefix; Base URL, Organization and Token URL default to it, "
        "its host and <Orchestrator URL>/identity/connect/token. Leave empty for Automation Cloud and "
        "Automation Suite.",
        "schema": {"type": _NULLABLE_STRING},
    },
    "access_token": {
        "label": "Personal access token",
        "description": "Sent as the bearer token instead of the client-credentials grant; leave Client ID and Client secret empty.",
        "schema": {"type": _NULLABLE_STRING, "format": "password"},
    },
    "verify": {
        "label": "Verify TLS",
        "description": "true, false, or the path of a CA bundle file.",
        "schema": {"type": _NULLABLE_STRING, "default": "true"},
    },
    "timeout": {
        "label": "Timeout (seconds)",
        "description": "Connect and read timeout of each request.",
        "schema": {"type": ["number", "null"], "default": 60},
    },
}

UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    # Port stays visible: Airflow 3.3's Test button compares the stored port with the one the
    # list sends (0 for an empty port) and refuses a connection without one (apache/airflow#73298).
    "hidden-fields": ["schema"],
    # "Port" too: Airflow 3.0 and 3.1's form would show the bare field name.
    "relabeling": {"host": "Base URL", "login": "Client ID", "password": "Client secret", "port": "Port"},
    "placeholders": {
        "host": "https://cloud.uipath.com",
        "login": "client id of the external application",
        "password": "client secret of the external application",
        "port": "443 (optional: the port of the Base URL)",
        "organization": "acme",
        "tenant": "DefaultTenant (for tenant audit events and source='orchestrator')",
        "token_url": "https://cloud.uipath.com/identity_/connect/token",
        "scope": "PM.Audit.Read",
        "orchestrator_url": "https://orchestrator.example.com (standalone Orchestrator only)",
    },
}


def _connection_form() -> dict[str, Any]:
    return {
        "connection-type": "orchestrator_audit",
        "hook-class-name": "airflow_provider_orchestrator_audit.hooks.orchestrator_audit.OrchestratorAuditHook",
        "hook-name": "UiPath Orchestrator Audit",
        "conn-fields": CONN_FIELDS,
        "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
    }


def get_provider_info() -> dict[str, Any]:
    """What this provider offers: hooks, operators, sensors, triggers and its connection type."""
    return {
        "package-name": "airflow-provider-orchestrator-audit",
        "name": "UiPath Orchestrator Audit",
        "description": "Export UiPath Orchestrator audit logs to S3 as JSON lines, exactly once per window.",
        "integrations": [
            {
                "integration-name": _INTEGRATION,
                "external-doc-url": "https://docs.uipath.com/orchestrator/",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {
                "integration-name": _INTEGRATION,
                "python-modules": ["airflow_provider_orchestrator_audit.hooks.orchestrator_audit"],
            }
        ],
        "sensors": [
            {
                "integration-name": _INTEGRATION,
                "python-modules": ["airflow_provider_orchestrator_audit.sensors.audit_logs"],
            }
        ],
        "triggers": [
            {
                "integration-name": _INTEGRATION,
                "python-modules": ["airflow_provider_orchestrator_audit.triggers.audit_logs"],
            }
        ],
        "transfers": [
            {
                "source-integration-name": _INTEGRATION,
                "target-integration-name": "Amazon Simple Storage Service (S3)",
                "python-module": "airflow_provider_orchestrator_audit.transfers.audit_logs_to_s3",
            }
        ],
        "connection-types": [_connection_form()],
    }
