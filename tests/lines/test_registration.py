"""The provider registers with Airflow through its entry point, and Airflow's CLI says so without a warning."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from airflow_provider_orchestrator_audit.version import __version__

DISTRIBUTION = "airflow-provider-orchestrator-audit"


def airflow_cli(home: Path, *args: str) -> str:
    airflow = str(Path(sys.executable).with_name("airflow"))
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW_CONN_")}
    env["AIRFLOW_HOME"] = str(home)
    done = subprocess.run([airflow, *args], env=env, capture_output=True, text=True, timeout=180, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def test_airflow_lists_the_provider_and_its_hook_without_a_warning(tmp_path):
    outputs = {
        "get": airflow_cli(tmp_path, "providers", "get", DISTRIBUTION),
        "list": airflow_cli(tmp_path, "providers", "list"),
        "hooks": airflow_cli(tmp_path, "providers", "hooks", "--output", "json"),
    }
    get_rows = [line.split("|") for line in outputs["get"].splitlines() if line.startswith(DISTRIBUTION)]
    assert [[cell.strip() for cell in row] for row in get_rows] == [[DISTRIBUTION, __version__]]
    assert DISTRIBUTION in outputs["list"]
    hooks, _ = json.JSONDecoder().raw_decode(outputs["hooks"], outputs["hooks"].index("[{"))
    (hook,) = [row for row in hooks if row["connection_type"] == "orchestrator_audit"]
    assert hook["class"] == "airflow_provider_orchestrator_audit.hooks.orchestrator_audit.OrchestratorAuditHook"
    assert hook["hook_name"] == "UiPath Orchestrator Audit" and hook["package_name"] == DISTRIBUTION
    for name, text in outputs.items():
        assert "warning" not in text.lower(), f"airflow providers {name}:\n{text}"
    for name in ("get", "list"):  # (the hooks' JSON is one line naming every provider)
        ours = [line for line in outputs[name].splitlines() if "orchestrator" in line.lower()]
        assert ours and not any("error" in line.lower() for line in ours), outputs[name]
