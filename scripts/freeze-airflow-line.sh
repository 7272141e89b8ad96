#!/usr/bin/env bash
# Regenerate the constraint file of one supported Airflow line: scripts/constraints/airflow-<version>.txt.
#
#   bash scripts/freeze-airflow-line.sh 3.1.0 2025-10-02
#
# Airflow publishes constraint files for each release (on GitHub); CI installs from PyPI only, so this
# script makes an equivalent one: Airflow itself is resolved with what PyPI held a week after its release
# (the dependency versions it was released and tested with), then the provider with its dependencies and
# test tools is added on top, keeping those versions wherever the provider's own floors allow. The result
# is frozen. Run it only to add a line or to move one forward, and commit the file it writes.
set -euo pipefail
cd "$(dirname "$0")/.."
version="$1"
released_plus_a_week="$2"
PYTHON="${PYTHON:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

"$PYTHON" -m venv "$work/venv"
pip=("$work/venv/bin/python" -m pip --quiet --disable-pip-version-check)
"${pip[@]}" install --upgrade pip
# Against the package index alone: wheels in a local directory or mirror carry no upload time.
PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS="" \
  "${pip[@]}" install "apache-airflow==$version" --uploaded-prior-to "$released_plus_a_week"
# Providers follow the provider's own requirements; everything else stays as Airflow was released with it.
"${pip[@]}" freeze --exclude-editable | grep -v -i '^apache-airflow-providers-' >"$work/base.txt"
"${pip[@]}" install -c "$work/base.txt" "apache-airflow==$version" -e ".[test]"
{
  echo "# apache-airflow $version with this provider's dependencies and test tools."
  echo "# Made by: bash scripts/freeze-airflow-line.sh $version $released_plus_a_week"
  "${pip[@]}" freeze --exclude-editable | grep -v -i '^airflow-provider-orchestrator-audit'
} >"scripts/constraints/airflow-$version.txt"
echo "wrote scripts/constraints/airflow-$version.txt"
