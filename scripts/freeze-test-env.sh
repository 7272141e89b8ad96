#!/usr/bin/env bash
# Refresh scripts/constraints/test-env.txt, the pinned test environment of .venv: resolve the provider
# with its test and lint extras afresh in a temporary virtualenv (newest releases on PyPI), and write
# what was installed. Run the suite afterwards (scripts/test.sh); commit the file when it is green.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$PYTHON" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --upgrade pip
"$work/venv/bin/python" -m pip install --quiet ".[test,lint]"
{
  echo "# The test environment the suite was last green on. Refresh: bash scripts/freeze-test-env.sh"
  "$work/venv/bin/python" -m pip freeze --exclude-editable | grep -v '^airflow-provider-orchestrator-audit'
} >scripts/constraints/test-env.txt
echo "Wrote scripts/constraints/test-env.txt ($(grep -vc '^#' scripts/constraints/test-env.txt) packages)"
