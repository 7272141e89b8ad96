#!/usr/bin/env bash
# The older Airflow lines the provider supports, each in its own virtualenv, and the tests that run on each.
#
#   bash scripts/airflow-lines.sh install [VERSION...]   create (or reuse) the virtualenvs
#   bash scripts/airflow-lines.sh test [VERSION...]      run tests/lines (and the UI tests where listed) on each
#
# Without VERSIONs: every line below. The newest Airflow is tested by scripts/test.sh in .venv.
# Each virtualenv lives outside the repository, under
# ${XDG_CACHE_HOME:-~/.cache}/airflow-provider-orchestrator-audit/venvs/<version>-<hash>, where the hash
# covers everything the install depends on (the line's constraint file, the provider's dependencies,
# Python's version): any clone on this machine reuses it while those are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"

LINES=(2.11.0 3.0.0 3.1.0 3.2.0)
PYTHON="${PYTHON:-python3}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/airflow-provider-orchestrator-audit/venvs"
INSTALL_TIMEOUT="${AIRFLOW_LINES_INSTALL_TIMEOUT:-1200}"
TEST_TIMEOUT="${AIRFLOW_LINES_TEST_TIMEOUT:-1500}"

# Tests beyond tests/lines, each against a running Airflow: the browser tests of the connection form (and a
# UI backfill) where the UI builds the form another way than the newest Airflow does, and on every line
# the deferrable sensor in a real triggerer.
DEFERRAL_TEST="tests/e2e/test_airflow_ui.py::test_a_deferred_sensor_waits_in_the_triggerer_and_resumes_the_task"
declare -A UI_TESTS=(
  [2.11.0]="tests/e2e/test_airflow2_ui.py"
  [3.0.0]="tests/e2e/test_airflow_ui.py"
  [3.1.0]="$DEFERRAL_TEST"
  [3.2.0]="$DEFERRAL_TEST"
)

venv_dir() {
  local version="$1" key
  key="$(
    {
      cat "scripts/constraints/airflow-$version.txt"
      "$PYTHON" - <<'PY'
import json, sys, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
print(json.dumps([project["dependencies"], project.get("optional-dependencies", {})], sort_keys=True))
print(sys.version)
PY
      echo "recipe 1"
    } | sha256sum | cut -c1-16
  )"
  echo "$CACHE/$version-$key"
}

install_line() {
  local version="$1" dir started
  dir="$(venv_dir "$version")"
  if [ -f "$dir/.complete" ]; then
    echo "Airflow $version: reusing $dir"
    return 0
  fi
  started=$SECONDS
  echo "Airflow $version: installing into $dir ..."
  mkdir -p "$CACHE"
  # Built in place (a virtualenv cannot be moved); .complete marks a finished one.
  rm -rf "$dir"
  "$PYTHON" -m venv "$dir"
  local pip=("$dir/bin/python" -m pip --quiet --disable-pip-version-check)
  if ! timeout "$INSTALL_TIMEOUT" "${pip[@]}" install --upgrade pip ||
    ! timeout "$INSTALL_TIMEOUT" "${pip[@]}" install -c "scripts/constraints/airflow-$version.txt" \
      "apache-airflow==$version" -e ".[test]"; then
    rm -rf "$dir"
    echo "Airflow $version: the install failed (or took longer than ${INSTALL_TIMEOUT}s)" >&2
    return 1
  fi
  touch "$dir/.complete"
  # Earlier installs of this line (made for other constraints or dependencies) are not needed any more.
  find "$CACHE" -maxdepth 1 -name "$version-*" ! -path "$dir" -exec rm -rf {} +
  echo "Airflow $version: installed in $((SECONDS - started))s"
}

test_line() {
  local version="$1" dir started status=0
  dir="$(venv_dir "$version")"
  if [ ! -f "$dir/.complete" ]; then
    echo "Airflow $version: not installed (run: bash scripts/airflow-lines.sh install $version)" >&2
    return 1
  fi
  started=$SECONDS
  # The virtualenv may have been made from another clone, and another clone may be testing in it now: the
  # provider is imported from this checkout (PYTHONPATH comes before the editable install's finder), by
  # pytest and by every Airflow process the tests start.
  local env=(PYTHONPATH="$repo")
  case "$version" in
  # 2.11 warns on every start until its metrics use the unit that Airflow 3 made the default; and the
  # tests' unit-test mode would pick the LocalExecutor, which 2.11 refuses with SQLite.
  2.*) env+=(AIRFLOW__METRICS__TIMER_UNIT_CONSISTENCY=True AIRFLOW__CORE__EXECUTOR=SequentialExecutor) ;;
  esac
  echo "Airflow $version: running tests/lines ${UI_TESTS[$version]:-}"
  # The line's anyio (pinned as Airflow was released) has a pytest plugin that newer pytest warns about;
  # no test uses it.
  # shellcheck disable=SC2086  # the UI test paths are words
  env "${env[@]}" timeout "$TEST_TIMEOUT" "$dir/bin/python" -m pytest -q -p no:anyio tests/lines ${UI_TESTS[$version]:-} ||
    status=$?
  echo "Airflow $version: tests took $((SECONDS - started))s (exit $status)"
  return $status
}

command="${1:-}"
shift || true
versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=("${LINES[@]}")
case "$command" in
install)
  # In parallel: most of an install is waiting for downloads and unpacking.
  pids=()
  for version in "${versions[@]}"; do
    install_line "$version" &
    pids+=($!)
  done
  status=0
  for pid in "${pids[@]}"; do wait "$pid" || status=1; done
  exit $status
  ;;
test)
  status=0
  for version in "${versions[@]}"; do test_line "$version" || status=1; done
  exit $status
  ;;
*)
  echo "usage: bash scripts/airflow-lines.sh install|test [VERSION...]" >&2
  exit 2
  ;;
esac
