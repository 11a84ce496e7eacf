#!/usr/bin/env bash
# Runs the benchmarks and prints each figure with its baseline, measured in
# the same run, plus the machine. `bench/run.sh` (all) or `bench/run.sh NAME`.
# Release build; results are pasted into BENCHMARKS.md by hand, with this
# command and the date.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prerequisites.sh
install_prerequisites
cargo build --release --bins --examples 2>&1 | tail -n 1
export DEPLOYHOST_BIN=$PWD/target/release/deployhost

echo "machine: $(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)), $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr), $(date -u +%Y-%m-%dT%H:%MZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"
for bench in ${1:-step-start pipeline-overhead probes memory migrations rollback}; do
    echo
    echo "== $bench"
    bash "bench/$bench.sh"
done
echo
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
