# Helpers shared by the benchmarks (sourced, from the repository's root).
source scripts/prerequisites.sh
bin=${DEPLOYHOST_BIN:-target/release/deployhost}
examples=$(dirname "$bin")/examples

# Timestamps are bash's $EPOCHREALTIME: reading the clock starts no
# process. `$(date +%s.%N)` forked and ran `date` inside every interval,
# about 1 ms: it read a 0.9 ms native no-op as 2.7 ms.
export LC_NUMERIC=C
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
    t0=$EPOCHREALTIME
    /usr/bin/time -f '%M' -o "$out.rss" "$@" || rc=$?
    t1=$EPOCHREALTIME
    echo "$(calc "$t1 - $t0") $(tail -n 1 "$out.rss")" >"$out"
    return $rc
}

# The test-only no-op plugin and its sha256.
noop_wasm() { "$examples/bench_step" noop-path; }

# The newest run's results.json in a state dir.
last_results() { ls -d "$1"/runs/*/ | sort | tail -n 1 | sed 's|/$|/results.json|'; }

# "min X  median Y  max Z  (n=N)" of the numbers on stdin, one a line.
mmm() {
    sort -g | awk '{ v[NR] = $1 } END {
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "min %.3f  median %.3f  max %.3f  (n=%d)\n", v[1], m, v[NR], NR }'
}
median() { mmm | awk '{ print $4 }'; }

# `start_nginx DIR`: Debian's nginx (installed with apt if missing) on a
# free port of 127.0.0.1, `GET /health` answering 200 "ok", nothing logged
# per request; sets `nginx_pid`, `nginx_port` and `health_url`. The server
# under test is not one of ours. Stop it with `stop_nginx`.
start_nginx() {
    local dir=$1/nginx sudo=""
    if ! [ -x /usr/sbin/nginx ]; then
        echo "installing nginx (Debian's nginx package)"
        apt_install --no-install-recommends nginx
        # The package starts a system nginx on port 80; the benchmark runs its own.
        [ "$(id -u)" = 0 ] || sudo="sudo"
        $sudo systemctl disable --now nginx >/dev/null 2>&1 || $sudo service nginx stop >/dev/null 2>&1 || true
    fi
    nginx_port=$(free_port)
    mkdir -p "$dir/logs" "$dir/tmp"
    cat >"$dir/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    server {
        listen 127.0.0.1:$nginx_port;
        location = /health { default_type text/plain; return 200 "ok\n"; }
    }
}
CONF
    /usr/sbin/nginx -p "$dir" -c "$dir/nginx.conf" &
    nginx_pid=$!
    health_url="http://127.0.0.1:$nginx_port/health"
    for _ in $(seq 100); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$health_url")" = 200 ] && return 0
        sleep 0.05
    done
    echo "nginx did not answer on $health_url:"; cat "$dir/logs/error.log"; return 1
}
stop_nginx() { [ -n "${nginx_pid:-}" ] && kill "$nginx_pid" 2>/dev/null; wait "$nginx_pid" 2>/dev/null || true; }
