#!/usr/bin/env bash
# The whole test suite. Every server it needs (a local Orchestrator, SeaweedFS as S3, Airflow) is
# started and stopped by the tests themselves. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
# The Airflow UI tests drive Debian's Chromium through Playwright.
if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "Installing Debian's chromium for the Airflow UI tests ..."
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "The Airflow UI tests need Chromium at /usr/bin/chromium (Debian: sudo apt-get install chromium)." >&2
  fi
fi
exec .venv/bin/python -m pytest "$@"
