#!/usr/bin/env bash
# The main job end to end on the embedded default: the example DAG exports one hour of audit logs
# from a local Orchestrator to a local S3 (SeaweedFS), then prints and verifies what it wrote
# (--events: the tenant audit events example; --orchestrator: the example of source="orchestrator").
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python scripts/demo.py "$@"
