#!/usr/bin/env bash
# The test suite: set up, lint, then pytest (extra arguments go to pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
.venv/bin/ruff check .
exec .venv/bin/pytest "$@"
