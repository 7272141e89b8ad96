#!/usr/bin/env bash
# The whole test suite. Every server it needs (a local Orchestrator, SeaweedFS as S3, Airflow) is
# started and stopped by the tests themselves. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m pytest "$@"
