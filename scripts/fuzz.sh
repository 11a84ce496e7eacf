#!/usr/bin/env bash
# Fuzzes the pipeline loader and validator for SECONDS (default 60):
#   ./scripts/fuzz.sh [SECONDS]
# The target (fuzz/fuzz_targets/pipeline_loader.rs) fails on a panic, on an
# input taking over 10 s (a hang), and on an error that does not name the
# file and a line of it. The corpus starts from pipelines/*.yaml; crashes
# land in fuzz/artifacts/pipeline_loader/.
#
# fuzz/ is a cargo-fuzz project (`cargo fuzz run --sanitizer none
# pipeline_loader` works by hand, with RUSTC_BOOTSTRAP=1 on stable). This
# script builds it the same way without needing cargo-fuzz installed: the
# same libFuzzer coverage flags, but rustc's default codegen units instead of
# cargo-fuzz's single one. The target links `deployhost-pipeline` alone (no
# wasmtime), so the instrumented build takes well under a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
triple=$(rustc -vV | sed -n 's/^host: //p')

corpus=fuzz/corpus/pipeline_loader
mkdir -p "$corpus" fuzz/artifacts/pipeline_loader
cp pipelines/*.yaml "$corpus/"

# libFuzzer's instrumentation, as cargo-fuzz passes it; a stable toolchain
# accepts these only with RUSTC_BOOTSTRAP. Safe Rust needs no sanitizer.
# --target keeps the flags off build scripts and proc macros.
export RUSTC_BOOTSTRAP=1
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cllvm-args=-sanitizer-coverage-stack-depth \
-Cllvm-args=-simplifycfg-branch-fold-threshold=0 --cfg fuzzing -Cdebug-assertions"
cargo build --release --manifest-path fuzz/Cargo.toml --target "$triple" --bin pipeline_loader \
    --config 'profile.release.debug="line-tables-only"'
unset RUSTFLAGS RUSTC_BOOTSTRAP

"fuzz/target/$triple/release/pipeline_loader" "$corpus" \
    -artifact_prefix=fuzz/artifacts/pipeline_loader/ \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
    -dict=fuzz/pipeline.dict -print_final_stats=1
