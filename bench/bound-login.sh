#!/usr/bin/env bash
# What binding a step's session to its granted roles costs (issue 25, #6):
# a one-step pipeline whose rls-test step checks 3 statements as `anon`,
# granted `databases: [{ name: app, roles: [anon] }]`. DEPLOYHOST_BIN (A)
# makes a login role bound to `anon`, connects as it and drops it after;
# BASE_BIN (B, a deployhost from before, e.g. 88be912) connects as the
# pipeline's login and asks `current_user, session_user` after every
# statement. Each run is timed whole, A and B in turn (bench/pairs.py).
# Neither binary is built here.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-20}
DEPLOYHOST_BIN=${DEPLOYHOST_BIN:-$PWD/target/release/deployhost}
: "${BASE_BIN:?set BASE_BIN to a deployhost built from before the bound logins}"
source bench/common.sh

work=$(mktemp -d)
trap 'stop_throwaway_postgres "$work"; rm -rf "$work"' EXIT
start_supabase_shaped_postgres "$work" >/dev/null
url="postgres://postgres:throwaway-password@127.0.0.1:$PGPORT/postgres"
"$pgbin/psql" -X -q -d "$url" -c "create table public.notes (id int primary key, body text); grant select on public.notes to anon"

cat >"$work/pipeline.yaml" <<YAML
pipeline: bench
databases:
  app: { url_env: BENCH_URL }
stages:
  - name: rls
    steps:
      - name: rls
        uses: rls-test
        with: { database: app, matrix: [{ as: visitor, role: anon, checks: [{ sql: select * from notes, rows: 0 }, { sql: delete from notes, denied: true }, { sql: select 1, rows: 1 }] }] }
        grants: { databases: [{ name: app, roles: [anon] }] }
YAML
cat >"$work/way.sh" <<SH
#!/bin/sh
cd "$work" && BENCH_URL="$url" exec "\$1" --state-dir "state-\$2" run pipeline.yaml
SH
chmod +x "$work/way.sh"
"$work/way.sh" "$DEPLOYHOST_BIN" a >/dev/null # fills each compile cache, and must pass
"$work/way.sh" "$BASE_BIN" b >/dev/null
echo "== bound to its roles (A: $DEPLOYHOST_BIN) against checked after each statement (B: $BASE_BIN), $RUNS runs each"
python3 bench/pairs.py -n "$RUNS" --vs "$work/way.sh $BASE_BIN b" -- "$work/way.sh" "$DEPLOYHOST_BIN" a
echo "bound logins left: $("$pgbin/psql" -X -qtA -d "$url" -c "select count(*) from pg_roles where rolname like 'deployhost_step_%'")"
