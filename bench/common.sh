# Helpers shared by the benchmarks (sourced).
bin=${DEPLOYHOST_BIN:-target/release/deployhost}
examples=$(dirname "$bin")/examples

now() { date +%s.%N; }
calc() { awk "BEGIN { print $1 }"; }

# "p50 X p90 Y min Z (n=N)" of the numbers on stdin, one a line.
stats() {
    sort -g | awk '{ v[NR] = $1 } END {
        i50 = int(NR * 0.5) + 1; i90 = int(NR * 0.9) + 1; if (i90 > NR) i90 = NR
        printf "p50 %.3f  p90 %.3f  min %.3f  (n=%d)\n", v[i50], v[i90], v[1], NR }'
}
p50() { sort -g | awk '{ v[NR] = $1 } END { print v[int(NR * 0.5) + 1] }'; }

# `timed FILE CMD…`: runs CMD; FILE gets "WALL_SECONDS MAX_RSS_KIB" (the
# wall time from `date`, GNU time's 10 ms resolution is too coarse).
timed() {
    local out=$1 t0 t1 rc=0
    shift
    t0=$(now)
    /usr/bin/time -f '%M' -o "$out.rss" "$@" || rc=$?
    t1=$(now)
    echo "$(calc "$t1 - $t0") $(tail -n 1 "$out.rss")" >"$out"
    return $rc
}

# The test-only no-op plugin and its sha256.
noop_wasm() { "$examples/bench_step" noop-path; }

# The newest run's results.json in a state dir.
last_results() { ls -d "$1"/runs/*/ | sort | tail -n 1 | sed 's|/$|/results.json|'; }
