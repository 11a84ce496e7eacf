#!/usr/bin/env bash
# 500 small migrations, three ways, each on a fresh database of one server:
#   psql loop:   one `psql -1 -f FILE -c "insert into history …"` per file
#   one psql:    one psql connection applying all files (`psql -f … -f …`)
#   deployhost:  supabase-migrate (each file and its history row one transaction)
# Target (issue 3): deployhost ≥ 5× faster than the loop, ≤ 1.3× one psql.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prerequisites.sh
N=${N:-500}
source bench/common.sh

work=$(mktemp -d)
trap 'stop_throwaway_postgres "$work"; rm -rf "$work"' EXIT
start_throwaway_postgres "$work" >/dev/null
psql() { "$pgbin/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }
url() { echo "postgres://postgres:throwaway-password@127.0.0.1:$PGPORT/$1"; }

mkdir -p "$work/project/migrations"
for i in $(seq 1 "$N"); do
    printf 'create table t_%d (id int primary key, note text);\ninsert into t_%d values (1, %s);\n' \
        "$i" "$i" "'migration $i'" >"$work/project/migrations/$(printf '%014d' "$i")_m$i.sql"
done
files=("$work"/project/migrations/*.sql)
history="create schema if not exists supabase_migrations; create table if not exists supabase_migrations.schema_migrations (version text primary key, statements text[], name text);"

# psql loop
psql -d "$(url postgres)" -c "create database loop_db" -c "create database one_db" -c "create database dh_db"
psql -d "$(url loop_db)" -c "$history"
t0=$EPOCHREALTIME
for f in "${files[@]}"; do
    v=$(basename "$f" | cut -d_ -f1)
    psql -1 -d "$(url loop_db)" -f "$f" -c "insert into supabase_migrations.schema_migrations (version, name) values ('$v', 'm')"
done
t1=$EPOCHREALTIME
loop=$(calc "$t1 - $t0")

# one psql connection
args=()
for f in "${files[@]}"; do args+=(-f "$f"); done
t0=$EPOCHREALTIME
psql -d "$(url one_db)" "${args[@]}"
t1=$EPOCHREALTIME
one=$(calc "$t1 - $t0")

# deployhost (the pipeline needs its backup step; only the migrate step is timed)
cat >"$work/project/pipeline.yaml" <<YAML
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
        with: { database: app, dir: migrations }
        grants: { databases: [app], fs: { read: [migrations] } }
        timeout: 30m
YAML
t0=$EPOCHREALTIME
(cd "$work/project" && BENCH_URL=$(url dh_db) "$bin" run pipeline.yaml >/dev/null)
t1=$EPOCHREALTIME
run_total=$(calc "$t1 - $t0")
ms=$(python3 -c "import json,glob; r=json.load(open(sorted(glob.glob('$work/project/.deployhost/runs/*/results.json'))[-1])); print([s for s in r['steps'] if s['step']=='migrate'][0]['ms'])")
dh=$(calc "$ms / 1000")
applied=$(psql -A -t -d "$(url dh_db)" -c "select count(*) from supabase_migrations.schema_migrations")
[ "$applied" = "$N" ] || { echo "deployhost applied $applied of $N"; exit 1; }

printf '%-40s %8.3f s\n' "psql loop ($N processes, -1, history row)" "$loop"
printf '%-40s %8.3f s\n' "one psql connection ($N files)" "$one"
printf '%-40s %8.3f s   (whole run incl. backup and start: %.3f s)\n' "deployhost supabase-migrate" "$dh" "$run_total"
printf 'ratio psql loop / deployhost:      %6.1fx  (target >= 5x)\n' "$(calc "$loop / $dh")"
printf 'ratio deployhost / one psql:       %6.2fx  (target <= 1.3x)\n' "$(calc "$dh / $one")"
