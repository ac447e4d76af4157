#!/usr/bin/env bash
# One command for all static checks; CI runs it too.
set -euo pipefail
cd "$(dirname "$0")/.."
ruff check .
ruff format --check .
mypy
