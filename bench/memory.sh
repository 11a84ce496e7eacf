#!/usr/bin/env bash
# Peak RSS of deployhost running pipelines/prod.yaml, as the prod_pipeline
# end-to-end test runs it: dev, staging, uat (approved by qa-lead), then prod
# (approved by devops-lead), each against its own database of a throwaway
# PostgreSQL shaped like a hosted Supabase project (tests/e2e/support/pg.rs),
# with real pytest and ruff (tests/tools/preflight-venv), the demo_app service
# for the health checks and one local stand-in for Slack, the incident tool,
# the Supabase Management API, Odoo's JSON-RPC and the DigitalOcean App
# Platform API.
# The first run (dev) starts with an empty cache: the built-ins it uses load
# their code precompiled into the binary (a build for another CPU compiles
# them); the others run the same way. Baseline: `deployhost validate` of the
# same file afterwards (loads and describes the plugins, runs none).
# Target (issues 7 and 17): < 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
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
# Shaped like a hosted Supabase project, as tests/e2e/support/pg.rs builds it:
# `supabase_admin` is the only superuser and applies the platform to
# template1 and postgres; the deploy role `postgres` (not a superuser) gets a
# password, creates each environment's database from template1 and is the
# role the pipeline connects as.
start_throwaway_postgres "$work" supabase_admin >/dev/null
export PGOPTIONS="-c client_min_messages=warning"
admin_url() { echo "postgres://supabase_admin:throwaway-password@127.0.0.1:$PGPORT/$1"; }
url() { echo "postgres://postgres:throwaway-password@127.0.0.1:$PGPORT/$1"; }
for db in template1 postgres; do
    "$pgbin/psql" -X -q -v ON_ERROR_STOP=1 -1 -d "$(admin_url "$db")" -f pipelines/examples/supabase/local/supabase-platform.sql
done
"$pgbin/psql" -X -q -v ON_ERROR_STOP=1 -d "$(admin_url postgres)" -c "ALTER ROLE postgres PASSWORD 'throwaway-password'"
for env in dev staging uat prod; do
    "$pgbin/psql" -X -q -v ON_ERROR_STOP=1 -d "$(url postgres)" -c "create database $env"
done

"$examples/demo_app" --port 0 >"$work/app.log" 2>&1 &
app=$!
hooks_port=$(free_port)
# One local server for every vendor the pipeline calls, each on its own paths,
# answering as tests/e2e/support/{management_api,odoo,digitalocean}.rs do:
# Slack and the incident tool answer "ok"; /v1/projects/... plays the
# Supabase Management API (secrets set, functions deployed in one bulk
# update); POST /jsonrpc is Odoo's external JSON-RPC (common: version,
# authenticate; object: execute_kw on ir.module.module), one module state per
# database; /v2/apps/... is the DigitalOcean App Platform API (the app, a
# spec update that starts a deployment, the deployment ACTIVE when polled).
cat >"$work/standin.py" <<'PY'
import http.server, json, sys, threading, urllib.parse
SUPABASE_TOKEN, ODOO_KEY, DO_TOKEN = sys.argv[2:5]
UID = 2
# Before a deploy: expense_sync not installed, expense_approval at its previous
# version; the addons path carries the manifests' versions.
odoo = {db: {"expense_sync": {"id": 51, "state": "uninstalled", "installed": "", "on_disk": "17.0.1.0.0"},
             "expense_approval": {"id": 52, "state": "installed", "installed": "17.0.1.1.0", "on_disk": "17.0.1.2.0"}}
        for db in ("ipai_dev", "ipai_staging", "ipai_prod")}
DEPLOYMENT, PREVIOUS = "b6bdf840-2854-4f87-a36c-5f231c617c84", "3aa4d20e-5527-4c00-b496-601fbd22520a"
def app_spec(tag):
    return {"name": "shop", "region": "ams", "services": [
        {"name": "api", "http_port": 8080, "image": {"registry_type": "DOCR", "repository": "shop-api", "tag": tag}},
        {"name": "docs", "github": {"repo": "acme/docs", "branch": "main"}}]}
apps = {a: app_spec("1.0.0") for a in ("5b0e7f4c-2d1a-4e8b-9c3f-0a1b2c3d4e01", "5b0e7f4c-2d1a-4e8b-9c3f-0a1b2c3d4e02",
                                         "5b0e7f4c-2d1a-4e8b-9c3f-0a1b2c3d4e04")}
lock = threading.Lock()

def odoo_rpc(body):
    rid = body.get("id")
    def error(name, message):
        return {"jsonrpc": "2.0", "id": rid, "error": {"code": 200, "message": "Odoo Server Error",
                "data": {"name": name, "message": message, "arguments": [message], "debug": ""}}}
    ok = lambda result: {"jsonrpc": "2.0", "id": rid, "result": result}
    if body.get("jsonrpc") != "2.0" or body.get("method") != "call":
        return error("werkzeug.exceptions.BadRequest", "not a JSON-RPC 2.0 call")
    params = body.get("params", {})
    args = params.get("args", [])
    service, method = params.get("service"), params.get("method")
    if (service, method) == ("common", "version"):
        return ok({"server_version": "17.0", "server_version_info": [17, 0, 0, "final", 0, ""],
                   "server_serie": "17.0", "protocol_version": 1})
    if (service, method) == ("common", "authenticate"):
        valid = len(args) == 4 and args[0] in odoo and args[1] == "deploy" and args[2] == ODOO_KEY
        return ok(UID if valid else False)
    if (service, method) != ("object", "execute_kw"):
        return error("werkzeug.exceptions.NotFound", "unknown service or method")
    if len(args) < 6 or args[0] not in odoo or args[1] != UID or args[2] != ODOO_KEY:
        return error("odoo.exceptions.AccessDenied", "Access Denied")
    if args[3] != "ir.module.module":
        return error("builtins.KeyError", str(args[3]))
    modules, call, kw = odoo[args[0]], args[5], args[4]
    if kw == "update_list":
        return ok([0, 0])
    if kw == "search_read":
        try:
            names = call[0][0][2]
        except (IndexError, KeyError, TypeError):
            return error("builtins.ValueError", "expected a domain [('name', 'in', [...])]")
        return ok([{"id": m["id"], "name": n, "state": m["state"], "latest_version": m["installed"]}
                   for n, m in sorted(modules.items()) if n in names])
    if kw in ("button_immediate_install", "button_immediate_upgrade"):
        ids = call[0] if call and isinstance(call[0], list) else []
        expected = "uninstalled" if kw == "button_immediate_install" else "installed"
        for m in modules.values():
            if m["id"] in ids:
                if m["state"] != expected:
                    return error("odoo.exceptions.UserError", f"{kw} on a module {m['state']}")
                m["state"], m["installed"] = "installed", m["on_disk"]
        return ok({"type": "ir.actions.client", "tag": "reload"})
    return error("builtins.AttributeError", f"type object has no attribute '{kw}'")

def digitalocean(method, path, body):
    rest = path[len("/v2/apps/"):]
    app_id = rest.split("/")[0].split("?")[0]
    not_found = (404, {"id": "not_found", "message": "The resource you were accessing could not be found."})
    if app_id not in apps:
        return not_found
    app, base = f"/v2/apps/{app_id}", f"/v2/apps/{app_id}/deployments"
    active = {"id": PREVIOUS, "phase": "ACTIVE"}
    if method == "GET" and path == app:
        return 200, {"app": {"id": app_id, "spec": apps[app_id], "active_deployment": active}}
    if method == "PUT" and path == app:
        apps[app_id] = (body or {}).get("spec")
        return 200, {"app": {"id": app_id, "spec": apps[app_id], "active_deployment": active,
                             "pending_deployment": {"id": DEPLOYMENT, "phase": "PENDING_BUILD"}}}
    def deployment(phase):
        return 200, {"deployment": {"id": DEPLOYMENT, "cause": "manual", "phase": phase,
                                    "progress": {"success_steps": 1, "total_steps": 3, "steps": []}}}
    if method == "POST" and path == base:
        return deployment("PENDING_BUILD")
    if method == "GET" and path == f"{base}/{DEPLOYMENT}":
        return deployment("ACTIVE")
    return not_found

class H(http.server.BaseHTTPRequestHandler):
    def answer(self, status, body):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "text/plain" if isinstance(body, bytes) else "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def body(self):
        return self.rfile.read(int(self.headers.get("content-length", 0)))
    def bearer(self, token):
        return self.headers.get("authorization") == f"Bearer {token}"
    def handle_any(self, method):
        raw = self.body() if method in ("POST", "PUT") else b""
        path = self.path
        with lock:
            if path.startswith("/v2/apps/"):
                if not self.bearer(DO_TOKEN):
                    return self.answer(401, {"id": "unauthorized", "message": "Unable to authenticate you."})
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                return self.answer(*digitalocean(method, path, body))
            if path == "/jsonrpc":
                if method != "POST":
                    return self.answer(404, b"")
                try:
                    return self.answer(200, odoo_rpc(json.loads(raw)))
                except ValueError:
                    return self.answer(200, {"jsonrpc": "2.0", "id": None, "error": {"code": 200, "message": "Odoo Server Error",
                                             "data": {"name": "werkzeug.exceptions.BadRequest", "message": "the body is not JSON"}}})
            if path.startswith("/v1/projects/"):
                if not self.bearer(SUPABASE_TOKEN):
                    return self.answer(401, {"message": "Unauthorized"})
                if method == "GET" and path.endswith("/secrets"):
                    return self.answer(200, [{"name": n, "value": "0" * 64} for n in ("ODOO_WEBHOOK_SECRET", "RESEND_API_KEY")])
                if method == "GET":
                    return self.answer(200, [] if path.endswith("/functions") else {"message": "not found"})
                if method == "PUT":
                    return self.answer(200, {"functions": []})
                if method == "POST" and "/functions/deploy" in path:
                    slug = urllib.parse.parse_qs(urllib.parse.urlparse(path).query)["slug"][0]
                    return self.answer(201, {"id": slug, "slug": slug, "name": slug, "version": 1, "status": "ACTIVE"})
            # Slack's webhooks and the incident tool.
            self.answer(200, b"ok")
    def do_GET(self): self.handle_any("GET")
    def do_PUT(self): self.handle_any("PUT")
    def do_POST(self): self.handle_any("POST")
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
supabase_token=sbp_bench odoo_key=odoo_bench_key do_token=dop_v1_bench
python3 "$work/standin.py" "$hooks_port" "$supabase_token" "$odoo_key" "$do_token" &
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
export SUPABASE_ACCESS_TOKEN=$supabase_token SUPABASE_API_URL="http://127.0.0.1:$hooks_port" SUPABASE_API_HOST="127.0.0.1:$hooks_port"
export ODOO_URL="http://127.0.0.1:$hooks_port" ODOO_HOST="127.0.0.1:$hooks_port" ODOO_API_KEY=$odoo_key
export DIGITALOCEAN_TOKEN=$do_token DIGITALOCEAN_API_URL="http://127.0.0.1:$hooks_port" DIGITALOCEAN_API_HOST="127.0.0.1:$hooks_port"
export DIGITALOCEAN_POLL_INTERVAL=20ms

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
    [ "$env" = dev ] && cache="empty cache: built-ins precompiled"
    printf '%-58s %6.1f MiB   (%.2f s; steps, status: %s)\n' "deployhost run prod.yaml --env $env ($cache)" "$(calc "$kib / 1024")" "$wall" "$steps"
    [ "$kib" -gt "$worst" ] && worst=$kib
done
DATABASE_URL=$(url dev) timed "$work/t" "$bin" validate prod.yaml >/dev/null
read -r _ base <"$work/t"
printf '%-58s %6.1f MiB\n' "baseline: deployhost validate prod.yaml" "$(calc "$base / 1024")"
printf 'peak RSS / target 64 MiB: %.2f; peak / validate baseline: %.1fx\n' "$(calc "$worst / 1024 / 64")" "$(calc "$worst / $base")"
