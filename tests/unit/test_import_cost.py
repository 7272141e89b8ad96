"""
What importing the operator's module loads, in a fresh interpreter: every task process and every DAG
file parse pays for it. The S3 client library, the OpenLineage provider and the local test servers are
needed only when a task runs (or never, in production), so they are imported there.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

MODULES = [
    "airflow_provider_orchestrator_audit.transfers.audit_logs_to_s3",
    "airflow_provider_orchestrator_audit.hooks.orchestrator_audit",
]
NOT_AT_IMPORT = [
    "boto3",
    "airflow.providers.amazon.aws.hooks.s3",
    "airflow.providers.openlineage",
    "airflow_provider_orchestrator_audit.testing",
]


def _loaded_after_import(module: str) -> list[str]:
    code = f"import json, sys\nimport {module}\nprint(json.dumps(sorted(sys.modules)))\n"
    output = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


@pytest.mark.parametrize("module", MODULES)
def test_importing_does_not_load_what_only_a_running_task_needs(module):
    loaded = _loaded_after_import(module)
    assert module in loaded
    heavy = [name for name in loaded if any(name == n or name.startswith(n + ".") for n in NOT_AT_IMPORT)]
    assert not heavy, f"importing {module} loads {heavy}"


def test_the_check_sees_boto3_where_it_is_imported():
    # The same check on the amazon provider's S3 hook module, which does import boto3: it can fail.
    assert "boto3" in _loaded_after_import("airflow.providers.amazon.aws.hooks.s3")
