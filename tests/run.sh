#!/usr/bin/env bash
# Installs what the tests need (Chromium from Debian, Python packages) and runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1; then
  SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
if python -c 'import sys; sys.exit(sys.prefix != sys.base_prefix)'; then
  # Said, not refused: CI containers install into their system Python on purpose.
  echo "tests/run.sh: installing into $(python -c 'import sys; print(sys.prefix)'), not a virtual environment" \
    "(see README, Set-up)" >&2
fi
python -m pip install -q -r requirements-test.txt -e .
python -m pytest -q "$@"
