#!/usr/bin/env bash
# Installs everything the tests need (Debian's chromium and redis-server included) and runs them.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k cli`.
set -euo pipefail
cd "$(dirname "$0")/.."
# chromium for the browser tests, redis-server for the cluster tests (which start their own).
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
python3 -m pip install -q --disable-pip-version-check -e '.[test]'
python3 -m pytest "$@"
