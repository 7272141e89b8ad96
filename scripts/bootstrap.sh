#!/usr/bin/env bash
# Create .venv with the provider and its test dependencies. Safe to run again: it only reinstalls when
# pyproject.toml changed. Needs Python 3.11+; on Debian it installs python3-venv itself when run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "Python 3.11 or newer is needed as '$PYTHON' (set PYTHON=/path/to/python3.11)." >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  if ! "$PYTHON" -m venv .venv 2>/dev/null; then
    rm -rf .venv
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "Installing Debian's python3-venv ..."
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      "$PYTHON" -m venv .venv
    else
      echo "'$PYTHON -m venv' failed: install your distribution's venv package (Debian: sudo apt-get install python3-venv)." >&2
      exit 1
    fi
  fi
fi

# The test environment is pinned by scripts/constraints/test-env.txt: the versions the suite was last
# green on (scripts/freeze-test-env.sh refreshes it).
stamp=.venv/.installed-$(cat pyproject.toml scripts/constraints/test-env.txt | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  echo "Installing the provider and its dependencies into .venv (a few minutes the first time) ..."
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -c scripts/constraints/test-env.txt -e ".[test,lint]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi
