#!/usr/bin/env bash
# Lint, format and type checks, as CI runs them before the tests (and .pre-commit-config.yaml before a
# commit). The rules are in pyproject.toml ([tool.ruff], [tool.mypy]); the tools are pinned in its
# `lint` extra, which scripts/bootstrap.sh installs into .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
.venv/bin/ruff check . || status=1
.venv/bin/ruff format --check . || status=1
.venv/bin/mypy || status=1
if [ "$status" != 0 ]; then
  echo "Lint failed: 'ruff check --fix .' and 'ruff format .' fix most findings; mypy's need a look." >&2
fi
exit $status
