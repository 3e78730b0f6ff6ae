# Sourced by the scripts: quiet Mesa's complaint about a missing runtime dir on headless machines.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/runtime-$(id -u)}"
mkdir -p -m 700 "$XDG_RUNTIME_DIR"
