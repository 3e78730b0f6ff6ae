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
# The pinned llama-cpp-python sdist, kept: the witness is built from it, and the tests read llama.cpp's own
# tokenizer vocabularies (with expected ids) and real chat templates from its vendor/llama.cpp/models.
llama=$(grep -o '"llama-cpp-python==[^"]*"' pyproject.toml | tr -d '"')
sdist_dir=.venv/cache
sdist="$sdist_dir/llama_cpp_python-${llama#*==}.tar.gz"
if [[ ! -f $sdist ]]; then
  echo "setup: downloading the $llama sdist" >&2
  mkdir -p "$sdist_dir"
  .venv/bin/pip download -q --disable-pip-version-check --no-deps --no-binary :all: "$llama" -d "$sdist_dir" 2>&1 \
    | grep -v '^WARNING: Location' >&2 || true
  [[ -f $sdist ]] || { echo "setup: $sdist was not downloaded" >&2; exit 1; }
fi
# The llama.cpp witness (tests only) is built without native CPU tuning: a -march=native build dies with SIGILL
# on machines whose CPU flags promise more than the virtual machine grants (AMX on some Xeons).
export CMAKE_ARGS="-DGGML_NATIVE=OFF"
# A stamp keyed on pyproject.toml and the build flags makes repeated runs instant, and a change to either
# rebuilds.
stamp=.venv/.hearth-installed
key="$(sha256sum pyproject.toml | cut -d' ' -f1) CMAKE_ARGS=$CMAKE_ARGS"
if [[ ! -f $stamp || "$(cat "$stamp")" != "$key" ]]; then
  echo "setup: installing the project and its test extras (first run builds llama-cpp-python: minutes)" >&2
  # pip's wheel cache does not know the build flags: build the witness afresh, with these flags.
  .venv/bin/pip install -q --disable-pip-version-check --no-cache-dir --force-reinstall --no-deps "$sdist" 2>&1 \
    | grep -v '^WARNING: Location' >&2 || true
  .venv/bin/pip install -q --disable-pip-version-check -e '.[test]' 2>&1 | grep -v '^WARNING: Location' >&2 || true
  .venv/bin/python -c "import engine, wgpu, numpy, llama_cpp" # fail here, not in the middle of the tests
  echo "$key" > "$stamp"
fi
