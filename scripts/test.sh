#!/usr/bin/env bash
# The README's "Test it": installs everything the tests need (Debian's chromium and redis-server,
# the Python test extras into the checkout's .venv) and runs them.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k cli`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh test
# chromium for the browser tests, redis-server for the cluster tests (which start their own).
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if [ "${#missing[@]}" -gt 0 ]; then
  _tessera_apt "${missing[@]}"
fi
python -m pytest "$@"
