#!/usr/bin/env bash
# The main job: set up, then answer a question with the default model, streamed to the terminal.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
prompt="${*:-What is the capital of France?}"
exec .venv/bin/python -m engine generate --temperature 0 --max-tokens 128 "$prompt"
