#!/usr/bin/env bash
# 200 health probes of a local HTTP service (the demo_app example): one
# `parallel: true` stage of 200 `health-probe` steps, timed as the whole
# `deployhost run` (process start to exit, plugin already compiled) and as
# the stage alone (first step's start to last step's end), against a shell
# loop of 200 `curl` requests to the same URL.
# Target (issue 7): >= 10x faster than the curl loop.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
N=${N:-200}
REPEAT=${REPEAT:-5}

work=$(mktemp -d)
cleanup() {
    [ -n "${app:-}" ] && kill "$app" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
"$examples/demo_app" --port 0 >"$work/app.log" 2>&1 &
app=$!
for _ in $(seq 50); do grep -q listening "$work/app.log" && break; sleep 0.1; done
port=$(sed -n 's/.*127.0.0.1:\([0-9]*\).*/\1/p' "$work/app.log")
url="http://127.0.0.1:$port/health"

{
    printf 'pipeline: probes\nstages:\n  - name: health\n    parallel: true\n    steps:\n'
    for i in $(seq 1 "$N"); do
        printf '      - { name: p%d, uses: health-probe, with: { url: "%s", expect: 200 }, grants: { net: ["127.0.0.1:%s"] } }\n' \
            "$i" "$url" "$port"
    done
} >"$work/pipeline.yaml"
"$bin" --state-dir "$work/state" run "$work/pipeline.yaml" >/dev/null # compiles health-probe once

runs=() stages=() rss=()
for _ in $(seq 1 "$REPEAT"); do
    timed "$work/t" "$bin" --state-dir "$work/state" run "$work/pipeline.yaml" >/dev/null
    read -r wall kib <"$work/t"
    runs+=("$wall")
    rss+=("$kib")
    stages+=("$(python3 - "$(last_results "$work/state")" "$N" <<'PY'
import json, sys
from datetime import datetime
r = json.load(open(sys.argv[1]))
assert r["status"] == "passed" and len(r["steps"]) == int(sys.argv[2]), r["status"]
t = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
print(max(t(s["started"]) + s["ms"] / 1000 for s in r["steps"]) - min(t(s["started"]) for s in r["steps"]))
PY
)")
done
curls=()
for _ in $(seq 1 "$REPEAT"); do
    t0=$(now)
    for _ in $(seq 1 "$N"); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$url")" = 200 ] || { echo "curl: not 200"; exit 1; }
    done
    t1=$(now)
    curls+=("$(calc "$t1 - $t0")")
done
run50=$(printf '%s\n' "${runs[@]}" | p50)
stage50=$(printf '%s\n' "${stages[@]}" | p50)
curl50=$(printf '%s\n' "${curls[@]}" | p50)
printf '%-52s %s\n' "curl loop ($N processes), s" "$(printf '%s\n' "${curls[@]}" | stats)"
printf '%-52s %s\n' "deployhost run, whole process, s" "$(printf '%s\n' "${runs[@]}" | stats)"
printf '%-52s %s\n' "deployhost parallel stage alone, s" "$(printf '%s\n' "${stages[@]}" | stats)"
printf 'peak RSS of deployhost: %.1f MiB\n' "$(calc "$(printf '%s\n' "${rss[@]}" | sort -g | tail -n 1) / 1024")"
printf 'ratio curl loop / deployhost run: %.1fx; / stage alone: %.1fx   (target >= 10x)\n' \
    "$(calc "$curl50 / $run50")" "$(calc "$curl50 / $stage50")"
