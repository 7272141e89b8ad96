import json

import pytest
from airflow.sdk import Connection

from airflow_provider_orchestrator_audit.client.settings import ConnectionSettings
from airflow_provider_orchestrator_audit.exceptions import OrchestratorConfigError


def make(**kwargs):
    fields = {
        "conn_id": "uipath",
        "conn_type": "orchestrator_audit",
        "host": "https://cloud.uipath.com",
        "login": "client",
        "password": "s3cret-value",
        "extra": {"organization": "acme"},
    }
    fields.update(kwargs)
    fields["extra"] = json.dumps(fields["extra"])
    return ConnectionSettings.from_connection(Connection(**fields))


def test_defaults_for_automation_cloud():
    settings = make()
    assert settings.audit_logs_url == "https://cloud.uipath.com/acme/audit_/api/auditlogs"
    assert settings.token_url == "https://cloud.uipath.com/identity_/connect/token"
    assert settings.scope == "PM.Audit.Read"
    assert settings.verify is True and settings.timeout == 60
    assert "s3cret-value" not in repr(settings)


def test_standalone_and_extras():
    settings = make(
        host="orchestrator.corp.example",
        port=8443,
        extra={
            "organization": "Default",
            "token_url": "https://orchestrator.corp.example:8443/identity/connect/token",
            "scope": "PM.Audit",
            "verify": "/etc/ssl/corp.pem",
            "timeout": "15",
        },
    )
    assert settings.base_url == "https://orchestrator.corp.example:8443"
    assert settings.token_url.endswith("/identity/connect/token")
    assert settings.verify == "/etc/ssl/corp.pem" and settings.timeout == 15.0 and settings.scope == "PM.Audit"
    assert make(extra={"organization": "acme", "verify": "false"}).verify is False


def test_a_port_may_repeat_the_base_url_port_but_not_contradict_it():
    assert make(host="http://127.0.0.1:8765", port=8765).base_url == "http://127.0.0.1:8765"
    assert make(host="http://127.0.0.1", port=8765).base_url == "http://127.0.0.1:8765"
    # Port 443 (filled in for Airflow 3.3's Test button) does not change the URL or the lineage names.
    assert make(host="https://cloud.uipath.com", port=443).base_url == "https://cloud.uipath.com"
    assert make(host="http://orchestrator.local", port=80).base_url == "http://orchestrator.local"
    with pytest.raises(OrchestratorConfigError, match=r"Port 8766 contradicts the port in Host"):
        make(host="http://127.0.0.1:8765", port=8766)


def test_personal_access_token_needs_no_client_credentials():
    settings = make(login=None, password=None, extra={"organization": "acme", "access_token": "pat-123456"})
    assert settings.uses_personal_access_token and settings.secrets == ("pat-123456",)


def test_malformed_extra_is_reported():
    with pytest.raises(OrchestratorConfigError, match="Extra is not valid JSON"):
        ConnectionSettings.from_connection(
            Connection(conn_id="u", conn_type="orchestrator_audit", host="https://h", extra="{oops")
        )


def test_prefixed_extras_of_older_forms():
    settings = make(extra={"extra__orchestrator_audit__organization": "acme"})
    assert settings.organization == "acme"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"extra": {}}, "extra 'organization' is required"),
        ({"host": ""}, "Host is empty"),
        ({"host": "ftp://x"}, "not an http"),
        ({"login": None, "extra": {"organization": "acme"}}, "no credentials"),
        ({"extra": {"organization": "acme", "timeout": "soon"}}, "extra 'timeout' must be a number"),
        ({"extra": {"organization": "acme", "timeout": 0}}, "greater than 0"),
        ({"extra": {"organization": "acme", "token_url": "identity/token"}}, "extra 'token_url'"),
    ],
)
def test_bad_connections_name_the_field(kwargs, message):
    with pytest.raises(OrchestratorConfigError, match=message) as info:
        make(**kwargs)
    assert "'uipath'" in str(info.value)
    assert "s3cret-value" not in str(info.value)
