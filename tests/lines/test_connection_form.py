"""
The connection form on every supported line: the same fields, labels, masked secret and Test answer.

Airflow 3.2 and later read the form from the provider info; 2.11, 3.0 and 3.1 ask the hook. Each UI's own
view of the form is read in a fresh process, as the web server builds it (3.0 and 3.1's API server calls
the hook with WTForms replaced by stand-ins, which only works in a process that has not loaded the
hooks before).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings
from typing import Any

from airflow_provider_orchestrator_audit.compat import AIRFLOW_V_3_0_PLUS
from airflow_provider_orchestrator_audit.hooks.orchestrator_audit import OrchestratorAuditHook
from tests.conftest import ORCHESTRATOR_ENTRIES

LABELS = {
    "organization": "Organization",
    "tenant": "Tenant",
    "scope": "Scope",
    "token_url": "Token URL",
    "orchestrator_url": "Orchestrator URL",
    "access_token": "Personal access token",
    "verify": "Verify TLS",
    "timeout": "Timeout (seconds)",
}
RELABELING = {"host": "Base URL", "login": "Client ID", "password": "Client secret", "port": "Port"}


def _label_and_default(field: Any) -> tuple[str, Any]:
    if isinstance(field, dict):  # declared in the provider info (3.2 and later)
        return field["schema"]["title"], field.get("value")
    return field.args[0], field.kwargs.get("default")  # a WTForms field from the hook


def test_airflow_knows_the_fields_labels_and_the_secret():
    from airflow.providers_manager import ProvidersManager

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        manager = ProvidersManager()
        widgets = manager.connection_form_widgets
        behaviours = manager.field_behaviours
    # (Other providers' hooks may warn on older lines; ours must not.)
    ours = [
        w for w in caught if "airflow_provider_orchestrator_audit" in w.filename or "orchestrator" in str(w.message)
    ]
    assert [str(w.message) for w in ours] == []
    prefix = "extra__orchestrator_audit__"
    ours = {name.removeprefix(prefix): info for name, info in widgets.items() if name.startswith(prefix)}
    assert {name: _label_and_default(info.field)[0] for name, info in ours.items()} == LABELS
    assert [name for name, info in ours.items() if info.is_sensitive] == ["access_token"]
    assert str(_label_and_default(ours["scope"].field)[1]) == "PM.Audit.Read"
    behaviour = behaviours["orchestrator_audit"]
    assert behaviour["relabeling"] == RELABELING
    assert behaviour["hidden_fields"] == ["schema"]
    assert behaviour["placeholders"][f"{prefix}organization"] == "acme"
    assert behaviour["placeholders"]["host"] == "https://cloud.uipath.com"
    assert behaviour["placeholders"][f"{prefix}orchestrator_url"].startswith("https://orchestrator.example.com")


_UI_VIEW_3 = """
import json
from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

(meta,) = [m for m in HookMetaService.hook_meta_data() if m.connection_type == "orchestrator_audit"]
print(json.dumps(meta.model_dump(mode="json")))
"""

_UI_VIEW_2 = """
import json
from airflow.www.forms import create_connection_form_class

form = create_connection_form_class()
fields = {
    name.removeprefix("extra__orchestrator_audit__"): {
        "label": value.args[0],
        "field": value.field_class.__name__,
        "widget": type(value.kwargs["widget"]).__name__,
    }
    for name, value in vars(form).items()
    if name.startswith("extra__orchestrator_audit__")
}
print(json.dumps(fields))
"""


def _ui_view() -> Any:
    source = _UI_VIEW_3 if AIRFLOW_V_3_0_PLUS else _UI_VIEW_2
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source)], capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_ui_shows_the_same_form():
    view = _ui_view()
    if AIRFLOW_V_3_0_PLUS:  # the React form: a JSON schema per extra field, titles for the standard ones
        assert view["hook_name"] == "UiPath Orchestrator Audit"
        standard = view["standard_fields"]
        assert {name: standard[name]["title"] for name in RELABELING} == RELABELING
        assert standard["url_schema"]["hidden"] is True
        extra = view["extra_fields"]
        assert {name: extra[name]["schema"]["title"] for name in extra} == LABELS
        assert [name for name in extra if extra[name]["schema"].get("format") == "password"] == ["access_token"]
        assert extra["scope"]["value"] == "PM.Audit.Read"
    else:  # Flask-AppBuilder's form: WTForms fields with Bootstrap widgets, the token in a password input
        assert {name: field["label"] for name, field in view.items()} == LABELS
        assert view["access_token"] == {
            "label": "Personal access token",
            "field": "PasswordField",
            "widget": "BS3PasswordFieldWidget",
        }
        assert {field["widget"] for name, field in view.items() if name != "access_token"} == {"BS3TextFieldWidget"}


def test_the_test_button_answer(orchestrator, orchestrator_conn):
    assert OrchestratorAuditHook(orchestrator_conn).test_connection() == (
        True,
        f"Connected to organization 'acme' at {orchestrator.url}: {ORCHESTRATOR_ENTRIES} audit entries",
    )
