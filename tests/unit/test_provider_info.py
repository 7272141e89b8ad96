import json
import warnings
from importlib import resources
from importlib.metadata import entry_points

import jsonschema

from airflow_provider_orchestrator_audit.get_provider_info import get_provider_info


def test_provider_info_matches_airflows_schema():
    schema = json.loads(resources.files("airflow").joinpath("provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_entry_point_and_package_name():
    (point,) = [
        p
        for p in entry_points(group="apache_airflow_provider")
        if p.value.startswith("airflow_provider_orchestrator_audit")
    ]
    info = point.load()()
    assert info["package-name"] == "airflow-provider-orchestrator-audit"
    assert info["connection-types"][0]["connection-type"] == "orchestrator_audit"


def test_connection_form_metadata_carries_the_custom_fields():
    from airflow.providers_manager import ProvidersManager
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        manager = ProvidersManager()
        widgets = manager.connection_form_widgets
        behaviours = manager.field_behaviours
        hooks = ProvidersManagerTaskRuntime().hooks
    fields = {name: info for name, info in widgets.items() if name.startswith("extra__orchestrator_audit__")}
    assert set(fields) == {
        f"extra__orchestrator_audit__{n}"
        for n in (
            "organization",
            "tenant",
            "scope",
            "token_url",
            "orchestrator_url",
            "access_token",
            "verify",
            "timeout",
        )
    }
    assert fields["extra__orchestrator_audit__organization"].field["schema"]["title"] == "Organization"
    assert fields["extra__orchestrator_audit__access_token"].is_sensitive
    assert fields["extra__orchestrator_audit__scope"].field["value"] == "PM.Audit.Read"
    behaviour = behaviours["orchestrator_audit"]
    assert behaviour["relabeling"] == {
        "host": "Base URL",
        "login": "Client ID",
        "password": "Client secret",
        "port": "Port",
    }
    assert behaviour["placeholders"]["extra__orchestrator_audit__organization"] == "acme"
    assert hooks["orchestrator_audit"].hook_name == "UiPath Orchestrator Audit"


def test_airflow_cli_lists_the_provider_without_warnings(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    airflow = str(Path(sys.executable).with_name("airflow"))
    env = dict(os.environ, AIRFLOW_HOME=str(tmp_path))
    outputs = {}
    for command in (
        ["providers", "list"],
        ["providers", "hooks"],
        ["providers", "get", "airflow-provider-orchestrator-audit"],
    ):
        done = subprocess.run([airflow, *command], env=env, capture_output=True, text=True, timeout=120, check=True)
        outputs[command[1]] = done.stdout + done.stderr
    assert "airflow-provider-orchestrator-audit" in outputs["list"]
    assert "UiPath Orchestrator Audit" in outputs["hooks"] and "orchestrator_audit" in outputs["hooks"]
    assert "0.1.0" in outputs["get"]
    for text in outputs.values():
        assert "warning" not in text.lower()
        # (The amazon provider's optional DuckDB hook reports an import error of its own here.)
        ours = [line for line in text.splitlines() if "orchestrator" in line.lower()]
        assert ours and not any("error" in line.lower() for line in ours)
