#!/usr/bin/env bash
# Step start, in process (host/examples/bench_step.rs): warm (compiled and
# pre-instantiated) and cold (no cache; and a new process's cache hit) for
# the test-only `noop` plugin, against fork+exec of a native no-op program.
# Cold is also timed for supabase-migrate (the largest built-in) and for an
# unoptimized build of it (opt-level 0, built here once), the largest
# component at hand. Then the whole `deployhost run` of a 1-step pipeline,
# process start to exit, against the native no-op program started the same way.
# Each built-in's first use with an empty cache (the code embedded at build
# time), and warm step start with the pooling allocator next to on-demand
# allocation, in the same process.
# Targets (issue 17): step start p50 <= 30 us, p99 <= 100 us; first use of
# any built-in <= 5 ms; a one-step run <= 3x a native no-op process.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
REPEAT=${REPEAT:-30}

big_dir=target/bench-plugins
CARGO_TARGET_DIR=$big_dir CARGO_PROFILE_DEV_DEBUG=false CARGO_PROFILE_DEV_STRIP=true \
    cargo build -q --target wasm32-wasip2 --manifest-path plugins/Cargo.toml -p supabase-migrate
unoptimized=$big_dir/supabase_migrate-opt0.wasm
cp "$big_dir/wasm32-wasip2/debug/supabase_migrate.wasm" "$unoptimized"
noop=$(noop_wasm)
"$examples/bench_step" --native "$examples/noop_native" \
    --cold "$(dirname "$noop")/supabase_migrate.wasm" --cold "$unoptimized"

echo
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$noop" "$work/noop.wasm"
printf 'pipeline: one\nstages:\n  - name: s\n    steps:\n      - { name: noop, uses: ./noop.wasm, sha256: %s }\n' \
    "$(sha256sum "$noop" | cut -d' ' -f1)" >"$work/pipeline.yaml"
"$bin" --state-dir "$work/state" run "$work/pipeline.yaml" >/dev/null # fills the compile cache
runs=() natives=() ratios=()
for _ in $(seq 1 "$REPEAT"); do
    t0=$EPOCHREALTIME
    "$bin" --state-dir "$work/state" run "$work/pipeline.yaml" >/dev/null
    t1=$EPOCHREALTIME
    "$examples/noop_native"
    t2=$EPOCHREALTIME
    runs+=("$(calc "($t1 - $t0) * 1000")")
    natives+=("$(calc "($t2 - $t1) * 1000")")
    ratios+=("$(calc "($t1 - $t0) / ($t2 - $t1)")")
done
printf '%-52s %s\n' "native no-op program from bash, ms" "$(printf '%s\n' "${natives[@]}" | mmm)"
printf '%-52s %s\n' "deployhost run, 1 no-op step, whole process, ms" "$(printf '%s\n' "${runs[@]}" | mmm)"
printf '%-52s %s   (target <= 3x)\n' "ratio deployhost run / native program" "$(printf '%s\n' "${ratios[@]}" | mmm)"
