#!/usr/bin/env bash
# Builds a Python step plugin into a WebAssembly component:
#   scripts/build-python-plugin.sh SRC_DIR OUT.wasm
# SRC_DIR holds app.py (the `WitWorld` class) and its own modules; the
# bindings come from wit/ (world `step`). Installs the pinned componentize-py
# first when it is missing. Prints the component's sha256 to pin it with.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 SRC_DIR OUT.wasm" >&2; exit 2; }
src=$(realpath "$1")
out=$(realpath -m "$2")
[ -f "$src/app.py" ] || { echo "$src has no app.py" >&2; exit 2; }
cd "$(dirname "$0")/.."
source scripts/prerequisites.sh
install_componentize_py >&2
mkdir -p "$(dirname "$out")"
# No VIRTUAL_ENV: only SRC_DIR and the standard library reach the component.
env -u VIRTUAL_ENV plugins/python/.venv/bin/componentize-py -q -d wit -w step \
    componentize app -p "$src" -o "$out"
sha256sum "$out" | cut -d' ' -f1
