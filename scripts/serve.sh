#!/usr/bin/env bash
# The README's "Run it": makes .venv in the checkout (once), installs Tessera into it and serves
# the page and the REST API on its embedded defaults. Extra arguments go to `tessera serve`,
# e.g. `bash scripts/serve.sh --port 9000`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh ""  # no extras (an empty argument: the script's own arguments are not extras)
exec tessera serve "$@"
