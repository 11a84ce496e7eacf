#!/usr/bin/env bash
# What the pre-flights of issue 24 cost on 500 small migrations (`create
# table` + one `insert` each), each command timed whole (bench/pairs.py)
# against applying them, on a database made fresh before every run:
#   apply:    the backup-then-migrate pipeline, as bench/migrations.sh
#   lint:     the same pipeline with a 501st file that the lint blocks
#             (`lint: { block: [locking] }`): every file is linted (and the
#             data checks run), nothing is applied
#   rehearse: the same as apply with `rehearse: shadow`: a shadow database
#             made, filled from pg_dump, the 500 files applied there, dropped,
#             then the 500 files applied to the target
# DEPLOYHOST_BIN picks the binary (default target/debug/deployhost; this
# script never builds one).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-500}
RUNS=${RUNS:-5}
WARMUP=${WARMUP:-1}
DEPLOYHOST_BIN=${DEPLOYHOST_BIN:-$PWD/target/debug/deployhost}
source bench/common.sh
bin=$DEPLOYHOST_BIN

work=$(mktemp -d)
trap 'stop_throwaway_postgres "$work"; rm -rf "$work"' EXIT
start_supabase_shaped_postgres "$work" >/dev/null
url() { echo "postgres://postgres:throwaway-password@127.0.0.1:$PGPORT/$1"; }

project=$work/project
mkdir -p "$project/migrations" "$project/blocked"
for i in $(seq 1 "$N"); do
    f=$(printf '%014d' "$i")_m$i.sql
    printf 'create table t_%d (id int primary key, note text);\ninsert into t_%d values (1, %s);\n' \
        "$i" "$i" "'migration $i'" >"$project/migrations/$f"
    cp "$project/migrations/$f" "$project/blocked/$f"
done
printf 'create index blocker_note on blocker (note);\n' >"$project/blocked/$(printf '%014d' $((N + 1)))_blocked.sql"

pipeline() { # name dir extra-with
    cat >"$project/$1.yaml" <<YAML
pipeline: bench
databases:
  app: { url_env: BENCH_URL }
stages:
  - name: schema
    steps:
      - name: backup
        uses: pg-backup
        with: { database: app }
        grants: { databases: [app], fs: { write: [backups] } }
      - name: migrate
        uses: supabase-migrate
        with: { database: app, dir: $2$3 }
        grants: { databases: [app], fs: { read: [$2] } }
        timeout: 30m
YAML
}
pipeline apply migrations ""
pipeline lint blocked ", lint: { block: [locking] }"
pipeline rehearse migrations ", rehearse: shadow"

# One command per way: a fresh `bench` database (with the table the lint's
# blocked file indexes), then the run. Exit codes are checked after.
cat >"$work/way.sh" <<SH
#!/bin/sh
"$pgbin/psql" -X -q -d "$(url postgres)" -c "drop database if exists bench with (force)" -c "create database bench" >/dev/null
"$pgbin/psql" -X -q -d "$(url bench)" -c "create table blocker (id int, note text)" >/dev/null
cd "$project" && BENCH_URL="$(url bench)" exec "$bin" run "\$1.yaml" >>"$work/\$1.log" 2>&1
SH
chmod +x "$work/way.sh"

for way in lint rehearse; do
    echo "== $way vs apply ($N migrations, $RUNS runs each)"
    python3 bench/pairs.py -n "$RUNS" --warmup "$WARMUP" --vs "$work/way.sh apply" -- "$work/way.sh" "$way"
done

# What each way did, from its last run.
"$work/way.sh" lint || true
"$work/way.sh" rehearse
python3 - "$project" <<'PY'
import glob, json, sys
r = json.load(open(sorted(glob.glob(sys.argv[1] + "/.deployhost/runs/*/results.json"))[-1]))
m = [s for s in r["steps"] if s["step"] == "migrate"][0]
print("last rehearse run: migrate step", m["ms"], "ms;", m["summary"][:160])
PY
