#!/usr/bin/env bash
# Sets up and runs the demo pipeline on a fresh machine: installs the
# wasm32-wasip2 target, builds deployhost (with its built-in plugins),
# starts the demo service on a free port, runs pipelines/demo.yaml, and
# shows the audit of the run.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2
cargo build --bins --examples
bin=target/debug/deployhost

log=$(mktemp)
target/debug/examples/demo_app --port 0 >"$log" 2>&1 &
app=$!
trap 'kill $app 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 50); do grep -q listening "$log" && break; sleep 0.1; done
export DEMO_PORT=$(sed -n 's/.*127.0.0.1:\([0-9]*\).*/\1/p' "$log")
echo "demo service on 127.0.0.1:$DEMO_PORT"

"$bin" validate pipelines/demo.yaml
"$bin" run pipelines/demo.yaml
run_id=$(ls -t .deployhost/runs | head -n 1)
echo
echo "What each step was granted and what it used (deployhost audit --run $run_id):"
"$bin" audit --run "$run_id"
