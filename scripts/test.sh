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
status=0
{
    cargo test --workspace "$@" &&
    (cd plugins && cargo test --target "$host" -p deployhost-plugin-sdk -p command -p http-check -p odoo-modules -p supabase-functions -p digitalocean-app -p prometheus-query)
} 2>&1 | tee "$log" || status=$?

# One closing line for all the test binaries above.
awk '/^test result:/ { p += $4; f += $6; s += $8 } END { printf "all tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
