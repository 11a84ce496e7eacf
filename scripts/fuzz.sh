#!/usr/bin/env bash
# Fuzzes the pipeline loader and validator for SECONDS (default 60):
#   ./scripts/fuzz.sh [SECONDS]
# The target (fuzz/fuzz_targets/pipeline_loader.rs) fails on a panic, on an
# input taking over 10 s (a hang), and on an error that does not name the
# file and a line of it. The corpus starts from pipelines/*.yaml; crashes
# land in fuzz/artifacts/pipeline_loader/ (replay one with
# `RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none pipeline_loader FILE`).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

corpus=fuzz/corpus/pipeline_loader
mkdir -p "$corpus"
cp pipelines/*.yaml "$corpus/"

# cargo-fuzz passes libFuzzer's instrumentation flags, which a stable
# toolchain only accepts with RUSTC_BOOTSTRAP; safe Rust needs no sanitizer.
export RUSTC_BOOTSTRAP=1
cargo fuzz run --sanitizer none pipeline_loader "$corpus" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
    -dict=fuzz/pipeline.dict -print_final_stats=1
