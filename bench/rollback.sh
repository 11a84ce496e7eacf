#!/usr/bin/env bash
# The rollback and the backup against the database's size (issue 23), on a
# Supabase-shaped server as the deploy role `postgres`:
#   an app database of ROWS rows in `events` (8 million, about 1 GB) and a
#   1,000-row `notes`; a migration adds a column and an index to `notes`;
#   the health check fails and the run rolls back.
# Side by side, in the same run, each N times (alternating):
#   backup:   pg-backup `data: changes` (the schema, and the rows of what the
#             pending migrations can destroy)  vs  `pg_dump -Fc` of the database
#   rollback: the revert of the change ledger (the `revert-app` step)
#   before:   the previous rollback, a restore of a full backup (`ledger:
#             false`, `data: all`), once
# Targets: rollback <= 1 s; backup <= 0.25x the full pg_dump.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-8000000}
N=${N:-3}
source bench/common.sh

work=$(mktemp -d)
trap 'stop_throwaway_postgres "$work"; rm -rf "$work"' EXIT
start_supabase_shaped_postgres "$work" >/dev/null
url=$DATABASE_URL
psql() { "$pgbin/psql" -X -q -v ON_ERROR_STOP=1 -d "$url" "$@"; }

t0=$EPOCHREALTIME
psql -c "create table events (id bigint primary key, kind text not null, payload text not null, at timestamptz not null default now())" \
     -c "insert into events (id, kind, payload) select g, 'k' || (g % 50), md5(g::text) || md5((g * 7)::text) || md5((g * 13)::text) from generate_series(1, $ROWS) g" \
     -c "create table notes (id bigint primary key, title text not null, body text)" \
     -c "insert into notes select g, 'note ' || g, repeat('b', 200) from generate_series(1, 1000) g" \
     -c "vacuum analyze events, notes"
size=$(psql -A -t -c "select pg_size_pretty(pg_database_size(current_database()))")
echo "database: $size ($ROWS rows in events, 1,000 in notes), built in $(calc "$EPOCHREALTIME - $t0") s"

mkdir -p "$work/project/migrations" "$work/project/backups"
printf 'alter table notes add column color text;\ncreate index notes_color on notes (color);\n' \
    >"$work/project/migrations/20240102000000_color.sql"
dead_port=$(free_port)
pipeline() {
    cat <<YAML
pipeline: bench
databases:
  app: { url_env: BENCH_URL }
stages:
  - name: schema
    steps:
      - name: backup
        uses: pg-backup
        with: { database: app, data: $1, migrations: migrations }
        grants: { databases: [app], fs: { read: [migrations], write: [backups] } }
        timeout: 30m
      - name: migrate
        uses: supabase-migrate
        with: { database: app, dir: migrations, ledger: $2 }
        grants: { databases: [app], fs: { read: [migrations] } }
  - name: health
    steps:
      - name: probe
        uses: health-probe
        with: { url: "http://127.0.0.1:$dead_port/health", retries: 0 }
        grants: { net: ["127.0.0.1:$dead_port"] }
rollback:
  on: [health_check_failure]
YAML
}
step_ms() { python3 -c "import json,sys; r=json.load(open('$1')); print([s['ms'] for s in r['steps'] + (r.get('rollback') or {}).get('steps', []) if s['step']=='$2'][0])"; }

backups=() dumps=() reverts=()
for i in $(seq 1 "$N"); do
    pipeline changes true >"$work/project/pipeline.yaml"
    (cd "$work/project" && BENCH_URL=$url "$bin" run -q pipeline.yaml >/dev/null 2>&1) || true
    results=$(last_results "$work/project/.deployhost")
    backups+=("$(step_ms "$results" backup)")
    reverts+=("$(step_ms "$results" revert-app)")
    [ "$(python3 -c "import json; print(json.load(open('$results'))['rollback']['ok'])")" = True ] || { echo "the rollback failed"; exit 1; }
    [ "$(psql -A -t -c "select count(*) from information_schema.columns where table_name = 'notes' and column_name = 'color'")" = 0 ] || { echo "the column is still there"; exit 1; }
    t0=$EPOCHREALTIME
    "$pgbin/pg_dump" -Fc -f "$work/full.dump" -d "$url"
    dumps+=("$(calc "($EPOCHREALTIME - $t0) * 1000")")
done
backup_bytes=$(ls -l "$work"/project/backups/*.dump | awk '{ s = $5 } END { print s }')
full_bytes=$(stat -c %s "$work/full.dump")

# Before: the rollback restored a full backup.
pipeline all false >"$work/project/pipeline.yaml"
(cd "$work/project" && BENCH_URL=$url "$bin" run -q pipeline.yaml >/dev/null 2>&1) || true
results=$(last_results "$work/project/.deployhost")
restore_ms=$(step_ms "$results" restore-app)
full_backup_ms=$(step_ms "$results" backup)

ms() { printf '%s\n' "$@" | mmm; }
echo "backup, data: changes      (ms): $(ms "${backups[@]}")   $backup_bytes bytes"
echo "pg_dump -Fc, whole database (ms): $(ms "${dumps[@]}")   $full_bytes bytes"
echo "rollback, change ledger    (ms): $(ms "${reverts[@]}")"
echo "before: backup data: all $full_backup_ms ms; rollback by restoring it $restore_ms ms"
ratios=()
for i in $(seq 0 $((N - 1))); do ratios+=("$(calc "${backups[$i]} / ${dumps[$i]}")"); done
echo "ratio backup / pg_dump, pair by pair: $(printf '%s\n' "${ratios[@]}" | mmm)   (target <= 0.25)"
echo "rollback median: $(printf '%s\n' "${reverts[@]}" | median) ms   (target <= 1000 ms)"
