#!/usr/bin/env bash
# The whole test suite. Every server it needs (a local Orchestrator, SeaweedFS as S3, Airflow) is
# started and stopped by the tests themselves.
#
# Without arguments: the whole suite on the newest Airflow (.venv), then tests/lines (and the UI tests
# where the older UI differs) on the oldest supported release of each older line, each in its own
# cached virtualenv (scripts/airflow-lines.sh). With arguments: only pytest in .venv, with those
# arguments (e.g. a test file).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
# Debian's packages the tests start: Chromium (the Airflow UI tests drive it through Playwright), and
# PostgreSQL and Redis (the distributed test's metadata database and Celery broker).
missing=()
command -v chromium >/dev/null || missing+=(chromium)
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || command -v postgres >/dev/null || missing+=(postgresql)
command -v redis-server >/dev/null || missing+=(redis-server)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "Installing Debian's ${missing[*]} for the tests ..."
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "The tests need Debian's ${missing[*]} (sudo apt-get install ${missing[*]})." >&2
  fi
fi
if [ $# -gt 0 ]; then
  exec .venv/bin/python -m pytest "$@"
fi

started=$SECONDS
# Lint, format and types first: a finding fails CI like a failing test.
bash scripts/lint.sh
mkdir -p test-artifacts
# The older lines install (or are found in the cache) while the main suite runs: mostly downloads.
install_log=test-artifacts/airflow-lines-install.log
bash scripts/airflow-lines.sh install >"$install_log" 2>&1 &
installing=$!

status=0
.venv/bin/python -m pytest || status=$?
echo "Newest Airflow: the whole suite took $((SECONDS - started))s (exit $status)"

if wait "$installing"; then
  grep '^Airflow ' "$install_log" || true
  bash scripts/airflow-lines.sh test || status=1
else
  tail -n 40 "$install_log" >&2
  echo "Installing the older Airflow lines failed; the full log is $install_log" >&2
  status=1
fi
echo "All Airflow lines: $((SECONDS - started))s (exit $status)"
exit $status
