#!/usr/bin/env bash
# Health probes of Debian's nginx (`GET /health`, 200), started by the
# benchmark on a free port of 127.0.0.1; the server under test is not ours.
#
# - parallel: one `parallel: true` stage of N (200) `health-probe` steps,
#   the whole `deployhost run` (process start to exit), against a shell loop
#   of N `curl` processes to the same URL;
# - sequential: one stage of S (300) `health-probe` steps, one after the
#   other, the whole run, against S `curl` processes.
#
# Each repetition times deployhost and its baseline back to back, and the
# figure is their ratio; min, median and max over REPEAT repetitions.
# A first, untimed run creates the state folder. Targets (issue 17): both
# ratios >= 20x.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
N=${N:-200}
S=${S:-300}
REPEAT=${REPEAT:-5}

work=$(mktemp -d)
trap 'stop_nginx; rm -rf "$work"' EXIT
start_nginx "$work"
echo "nginx $(/usr/sbin/nginx -v 2>&1 | sed 's|.*/||') on $health_url"

pipeline() { # NAME COUNT PARALLEL
    printf 'pipeline: %s\nstages:\n  - name: health\n    parallel: %s\n    steps:\n' "$1" "$3"
    for i in $(seq 1 "$2"); do
        printf '      - { name: p%d, uses: health-probe, with: { url: "%s", expect: 200 }, grants: { net: ["127.0.0.1:%s"] } }\n' \
            "$i" "$health_url" "$nginx_port"
    done
}
curl_loop() { # COUNT
    for _ in $(seq 1 "$1"); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$health_url")" = 200 ] || { echo "curl: not 200"; exit 1; }
    done
}
check_passed() { # COUNT
    python3 -c "import json,sys; r=json.load(open(sys.argv[1])); assert r['status']=='passed' and len(r['steps'])==$1, r['status']" \
        "$(last_results "$work/state")"
}

for kind in parallel sequential; do
    if [ "$kind" = parallel ]; then n=$N par=true; else n=$S par=false; fi
    pipeline "$kind" "$n" "$par" >"$work/$kind.yaml"
    "$bin" --state-dir "$work/state" run "$work/$kind.yaml" >/dev/null
    runs=() curls=() ratios=() rss=()
    for _ in $(seq 1 "$REPEAT"); do
        timed "$work/t" "$bin" --state-dir "$work/state" run "$work/$kind.yaml" >/dev/null
        read -r wall kib <"$work/t"
        check_passed "$n"
        t0=$EPOCHREALTIME
        curl_loop "$n"
        t1=$EPOCHREALTIME
        c=$(calc "$t1 - $t0")
        runs+=("$wall") curls+=("$c") rss+=("$kib") ratios+=("$(calc "$c / $wall")")
    done
    echo "-- $kind: $n probes"
    printf '%-44s %s\n' "curl loop ($n processes), s" "$(printf '%s\n' "${curls[@]}" | mmm)"
    printf '%-44s %s\n' "deployhost run, whole process, s" "$(printf '%s\n' "${runs[@]}" | mmm)"
    printf '%-44s %s\n' "host cost per probe, us (run / $n)" "$(printf '%s\n' "${runs[@]}" | awk -v n="$n" '{ print $1 / n * 1e6 }' | mmm)"
    printf '%-44s %s   (target >= 20x)\n' "ratio curl loop / deployhost" "$(printf '%s\n' "${ratios[@]}" | mmm)"
    printf 'peak RSS of deployhost: %.1f MiB\n' "$(calc "$(printf '%s\n' "${rss[@]}" | sort -g | tail -n 1) / 1024")"
done
