#!/usr/bin/env bash
# N no-op steps in one sequential stage (N = 10, 100, 1000, 10000), each a
# `noop` component (the test-only plugin, pinned by path). The steps do no
# work of their own, so the whole run's wall time is host overhead; the
# time recorded inside steps (results.json `ms`: sandbox, log, instantiate,
# call) is shown too. The plugin is compiled by a first, untimed run.
# Baseline: a shell loop starting N native no-op programs (fork+exec).
# Targets (issue 7): 1,000 steps < 0.5 s overhead, peak RSS < 100 MiB, linear.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
SIZES=${SIZES:-10 100 1000 10000}
REPEAT=${REPEAT:-3}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
noop=$(noop_wasm)
sha=$(sha256sum "$noop" | cut -d' ' -f1)

printf '%-7s %-28s %-12s %-16s %-9s %-20s %s\n' steps "wall s (p50, max of $REPEAT)" "per step us" "in steps (ms)" "RSS MiB" "native loop s (p50)" "loop / deployhost"
for n in $SIZES; do
    dir="$work/n$n"
    mkdir -p "$dir"
    cp "$noop" "$dir/noop.wasm"
    {
        printf 'pipeline: overhead\nstages:\n  - name: noop\n    steps:\n'
        for i in $(seq 1 "$n"); do
            printf '      - { name: s%d, uses: ./noop.wasm, sha256: %s }\n' "$i" "$sha"
        done
    } >"$dir/pipeline.yaml"
    "$bin" --state-dir "$dir/state" run "$dir/pipeline.yaml" >/dev/null # fills the compile cache
    walls=() rss=() own=0
    for _ in $(seq 1 "$REPEAT"); do
        timed "$dir/t" "$bin" --state-dir "$dir/state" run "$dir/pipeline.yaml" >/dev/null
        read -r wall kib <"$dir/t"
        own=$(python3 -c "import json,sys; r=json.load(open(sys.argv[1])); assert r['status']=='passed' and len(r['steps'])==$n; print(sum(s['ms'] for s in r['steps']))" "$(last_results "$dir/state")")
        walls+=("$wall")
        rss+=("$kib")
    done
    loops=()
    for _ in $(seq 1 "$REPEAT"); do
        t0=$EPOCHREALTIME
        for _ in $(seq 1 "$n"); do "$examples/noop_native"; done
        t1=$EPOCHREALTIME
        loops+=("$(calc "$t1 - $t0")")
    done
    o50=$(printf '%s\n' "${walls[@]}" | p50)
    omax=$(printf '%s\n' "${walls[@]}" | sort -g | tail -n 1)
    l50=$(printf '%s\n' "${loops[@]}" | p50)
    r=$(printf '%s\n' "${rss[@]}" | sort -g | tail -n 1)
    printf '%-7s %-28s %-12.1f %-16s %-9.1f %-20.3f %.1fx\n' "$n" "$(printf '%.3f, %.3f' "$o50" "$omax")" \
        "$(calc "$o50 / $n * 1000000")" "$own" "$(calc "$r / 1024")" "$l50" "$(calc "$l50 / $o50")"
done
echo "targets: 1000 steps wall (all overhead) < 0.5 s, peak RSS < 100 MiB, per-step cost flat from 10 to 10000"
