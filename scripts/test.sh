#!/usr/bin/env bash
# Runs every test on a fresh machine: installs what the tests need, then
# the unit tests and the end-to-end tests (real plugins, real HTTP servers).
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2
cargo test --workspace "$@"
