#!/usr/bin/env bash
# Runs every test on a fresh machine: installs what the tests need (the
# wasm32-wasip2 target, PostgreSQL's server and client tools, Chromium), then the unit
# tests and the end-to-end tests (real plugins built from source, real HTTP
# servers on 127.0.0.1, a real PostgreSQL started per test).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prerequisites.sh
install_prerequisites

log=$(mktemp)
trap 'rm -f "$log"' EXIT
host=$(rustc -vV | sed -n 's/^host: //p')

# The plugin crates with unit tests of their own, run on the host: every
# crate under plugins/ whose sources hold a `#[test]`, except those marked
# wasm-only (`# wasm-only` in their Cargo.toml: they build for wasm32 alone).
plugin_crates=()
for manifest in plugins/*/Cargo.toml; do
    dir=$(dirname "$manifest")
    grep -q '^# wasm-only' "$manifest" && continue
    grep -rqs '#\[test\]' "$dir/src" "$dir/tests" || continue
    plugin_crates+=(-p "$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$manifest" | head -n 1)")
done
if [ ${#plugin_crates[@]} -eq 0 ]; then
    echo "no plugin crate with unit tests found under plugins/" >&2
    exit 1
fi

status=0
{
    cargo test --workspace "$@" &&
    (cd plugins && cargo test --target "$host" "${plugin_crates[@]}")
} 2>&1 | tee "$log" || status=$?

# One closing line for all the test binaries above.
awk '/^test result:/ { p += $4; f += $6; s += $8 } END { printf "all tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
