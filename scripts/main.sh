#!/usr/bin/env bash
# The main job, the whole chain: set up, build the extension, start the bridge and Chromium with the extension
# (a window where there is a display, headless otherwise), ask one question through the bridge and print the
# answer as it streams, then keep serving local scripts until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
prompt="${*:-What is the capital of France?}"
exec .venv/bin/python -m bridge --launch-browser --ask "$prompt"
