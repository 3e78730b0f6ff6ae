#!/usr/bin/env bash
# One-time, idempotent set-up on a Debian machine (as root): a CPU Vulkan driver for machines without
# a GPU, a virtual environment in .venv, and the project with its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(mesa-vulkan-drivers libvulkan1 chromium)
missing=()
for p in "${apt_packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [[ ! -x .venv/bin/python ]]; then
  echo "setup: creating .venv" >&2
  python3 -m venv .venv
fi
# A stamp keyed on pyproject.toml makes repeated runs instant.
stamp=.venv/.hearth-installed
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
  echo "setup: installing the project and its test extras (first run builds llama-cpp-python: minutes)" >&2
  .venv/bin/pip install -q --disable-pip-version-check -e '.[test]' 2>&1 | grep -v '^WARNING: Location' >&2 || true
  .venv/bin/python -c "import engine, wgpu, numpy" # fail here, not in the middle of the tests
  touch "$stamp"
fi
