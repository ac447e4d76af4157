#!/usr/bin/env bash
# One command for all static checks; CI runs it too. Installs the dev tools into .venv if needed.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh test
ruff check .
ruff format --check .
mypy
lint-imports
