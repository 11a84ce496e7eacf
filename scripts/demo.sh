#!/usr/bin/env bash
# Sets up and runs the demo on a fresh machine: installs the wasm32-wasip2
# target and PostgreSQL, builds deployhost with its built-in plugins, starts
# a throwaway PostgreSQL and the demo service, deploys the example Supabase
# project with pipelines/demo.yaml (backup, migrations, stored procedures,
# RLS tests per role, health checks), and shows the audit of the run.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prerequisites.sh
install_demo_prerequisites
cargo build --bins --examples
bin=target/debug/deployhost

work=$(mktemp -d)
cleanup() {
    [ -n "${app:-}" ] && kill "$app" 2>/dev/null
    stop_throwaway_postgres "$work"
    rm -rf "$work"
}
trap cleanup EXIT

start_supabase_shaped_postgres "$work"
echo "PostgreSQL on 127.0.0.1:$PGPORT, shaped like a Supabase project; deploying as \`postgres\` (not a superuser; data in $work)"

# The service the health checks probe.
target/debug/examples/demo_app --port 0 >"$work/app.log" 2>&1 &
app=$!
for _ in $(seq 50); do grep -q listening "$work/app.log" && break; sleep 0.1; done
export DEMO_PORT=$(sed -n 's/.*127.0.0.1:\([0-9]*\).*/\1/p' "$work/app.log")
echo "demo service on 127.0.0.1:$DEMO_PORT"

"$bin" validate pipelines/demo.yaml
"$bin" run pipelines/demo.yaml
run_id=$(ls .deployhost/runs | sort | tail -n 1)
echo
echo "What each step was granted and what it used (deployhost audit --run $run_id):"
"$bin" audit --run "$run_id"
echo
echo "The RLS matrix, from the step log ($(pwd)/.deployhost/runs/$run_id/logs/rls-matrix.log):"
sed 's/^info: /  /' ".deployhost/runs/$run_id/logs/rls-matrix.log"
