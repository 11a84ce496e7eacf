#!/usr/bin/env bash
# Peak RSS of deployhost running pipelines/prod.yaml, as the prod_pipeline
# end-to-end test runs it: dev, then staging, then prod (approved), each
# against its own database of a throwaway PostgreSQL, with real pytest and
# ruff (tests/tools/preflight-venv), the demo_app service for the health
# checks and a local stand-in for Slack and the incident tool.
# The first run (dev) compiles every plugin the file uses (empty cache); the
# others load them from the cache. Baseline: `deployhost validate` of the
# same file afterwards (cache hit: loads and describes the plugins, runs none).
# Target (issue 7): < 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prerequisites.sh
source bench/common.sh
bin=$(realpath "$bin")
examples=$(realpath "$examples")
venv=$PWD/tests/tools/preflight-venv/bin
[ -x "$venv/pytest" ] || { echo "pytest is missing: scripts/prerequisites.sh installs it into $venv"; exit 1; }

work=$(mktemp -d)
cleanup() {
    for pid in ${app:-} ${hooks:-}; do kill "$pid" 2>/dev/null; done
    stop_throwaway_postgres "$work"
    rm -rf "$work"
}
trap cleanup EXIT
start_throwaway_postgres "$work" >/dev/null
export PGOPTIONS="-c client_min_messages=warning"
url() { echo "postgres://postgres:throwaway-password@127.0.0.1:$PGPORT/$1"; }
for env in dev staging uat prod; do
    "$pgbin/psql" -X -q -v ON_ERROR_STOP=1 -d "$(url postgres)" -c "create database $env"
    "$pgbin/psql" -X -q -v ON_ERROR_STOP=1 -d "$(url "$env")" -f pipelines/examples/supabase/local/supabase-platform.sql
done

"$examples/demo_app" --port 0 >"$work/app.log" 2>&1 &
app=$!
hooks_port=$(free_port)
python3 -c '
import http.server, sys
import json, urllib.parse
class H(http.server.BaseHTTPRequestHandler):
    # Slack and the incident tool answer "ok"; /v1/projects/... plays the
    # Supabase Management API (secrets set, functions deployed in one bulk update).
    def answer(self, status, body):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status); self.send_header("content-length", str(len(data))); self.end_headers(); self.wfile.write(data)
    def do_GET(self):
        if self.path.endswith("/secrets"):
            return self.answer(200, [{"name": n, "value": "0" * 64} for n in ("ODOO_WEBHOOK_SECRET", "RESEND_API_KEY")])
        self.answer(200, [] if self.path.endswith("/functions") else {"message": "not found"})
    def do_PUT(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.answer(200, {"functions": []})
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        if "/functions/deploy" in self.path:
            slug = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)["slug"][0]
            return self.answer(201, {"id": slug, "slug": slug, "name": slug, "version": 1, "status": "ACTIVE"})
        self.answer(200, b"ok")
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
' "$hooks_port" &
hooks=$!
for _ in $(seq 50); do grep -q listening "$work/app.log" && break; sleep 0.1; done
app_port=$(sed -n 's/.*127.0.0.1:\([0-9]*\).*/\1/p' "$work/app.log")

cp -r pipelines "$work/project"
cd "$work/project"
export PATH="$venv:$PATH" USER=release-bot DEPLOY_VERSION=1.0.0
export APP_HOST="127.0.0.1:$app_port" SLACK_HOST="127.0.0.1:$hooks_port" INCIDENT_HOST="127.0.0.1:$hooks_port"
export SLACK_WEBHOOK_URL="http://127.0.0.1:$hooks_port/services/deploys"
export ONCALL_WEBHOOK_URL="http://127.0.0.1:$hooks_port/services/oncall"
export INCIDENT_URL="http://127.0.0.1:$hooks_port/incidents"
export SUPABASE_ACCESS_TOKEN=sbp_bench SUPABASE_API_URL="http://127.0.0.1:$hooks_port" SUPABASE_API_HOST="127.0.0.1:$hooks_port"

worst=0
for env in dev staging uat prod; do
    extra=()
    [ "$env" = uat ] && extra=(--approved-by qa-lead)
    [ "$env" = prod ] && extra=(--approved-by devops-lead)
    DATABASE_URL=$(url "$env") timed "$work/t" "$bin" run prod.yaml --env "$env" "${extra[@]}" >"$work/$env.out" 2>&1 ||
        { cat "$work/$env.out"; exit 1; }
    read -r wall kib <"$work/t"
    steps=$(python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(len(r['steps']), r['status'])" "$(last_results .deployhost)")
    cache="cache hit"
    [ "$env" = dev ] && cache="compiles its plugins"
    printf '%-58s %6.1f MiB   (%.2f s; steps, status: %s)\n' "deployhost run prod.yaml --env $env ($cache)" "$(calc "$kib / 1024")" "$wall" "$steps"
    [ "$kib" -gt "$worst" ] && worst=$kib
done
DATABASE_URL=$(url dev) timed "$work/t" "$bin" validate prod.yaml >/dev/null
read -r _ base <"$work/t"
printf '%-58s %6.1f MiB\n' "baseline: deployhost validate prod.yaml" "$(calc "$base / 1024")"
printf 'peak RSS / target 64 MiB: %.2f; peak / validate baseline: %.1fx\n' "$(calc "$worst / 1024 / 64")" "$(calc "$worst / $base")"
