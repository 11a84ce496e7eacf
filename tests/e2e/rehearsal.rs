//! `rehearse: shadow`: the pending migrations are applied first to a
//! throwaway database the host makes on the target's server from its
//! schema, and dropped after. A file that fails there stops the deploy
//! with its file:line before the target is touched; the target's tables
//! are never locked by the rehearsal; the report lists each statement's
//! locks and time. The shadow has no rows: a file that fails only on the
//! data is caught by the lint's check, counted on the target read-only.

use crate::support::pg::Postgres;
use crate::support::{Project, Run};
use std::time::{Duration, Instant};

const NOTES: &str = "create table notes (id bigint primary key, title text);
insert into notes values (1, 'a'), (2, 'a'), (3, 'b');";

fn project(with: &str) -> Project {
    project_with(with, "")
}

/// `step`: more keys of the migrate step (`timeout: 2s`).
fn project_with(with: &str, step: &str) -> Project {
    let p = Project::new();
    pipeline(&p, with, step);
    p
}

fn pipeline(p: &Project, with: &str, step: &str) {
    p.pipeline(&format!(
        "pipeline: m\ndatabases:\n  app: {{ url_env: DATABASE_URL }}\nstages:\n  - name: schema\n    steps:\n      \
         - name: backup\n        uses: pg-backup\n        with: {{ database: app }}\n        \
         grants: {{ databases: [app], fs: {{ write: [backups] }} }}\n      - name: migrate\n        uses: supabase-migrate\n        with: {{ database: app, dir: migrations, rehearse: shadow{with} }}\n        \
         grants: {{ databases: [app], fs: {{ read: [migrations] }} }}\n{step}"
    ));
}

fn migrate(p: &Project, pg: &Postgres) -> Run {
    p.deployhost(&["run", "pipeline.yaml"], &[("DATABASE_URL", &pg.url("postgres"))])
}

fn text(v: &serde_json::Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn shadows(pg: &Postgres) -> String {
    pg.admin("select count(*) from pg_database where datname like 'deployhost\\_shadow\\_%'")
}

/// Locks held on `public.notes` of the target by anyone else.
fn target_locks(pg: &Postgres) -> String {
    pg.admin(
        "select count(*) from pg_locks where database = (select oid from pg_database where datname = 'postgres') \
         and relation = 'public.notes'::regclass and pid <> pg_backend_pid()",
    )
}

/// ACCESS EXCLUSIVE locks held in a shadow database.
fn shadow_exclusive_locks(pg: &Postgres) -> String {
    pg.admin(
        "select count(*) from pg_locks l join pg_database d on d.oid = l.database \
         where d.datname like 'deployhost\\_shadow\\_%' and l.locktype = 'relation' and l.mode = 'AccessExclusiveLock'",
    )
}

#[test]
fn a_file_failing_on_the_schema_is_caught_on_the_shadow_and_the_target_is_never_locked() {
    let pg = Postgres::start();
    pg.psql("postgres", NOTES);
    let schema = pg.app_schema("postgres");
    let p = project("");
    // The first file holds ACCESS EXCLUSIVE on notes (of the shadow) for
    // a while; the second reads a column that does not exist, on line 3.
    p.write("migrations/20240102000000_size.sql", "alter table notes add column size int;\nselect pg_sleep(2);\n");
    p.write("migrations/20240103000000_view.sql", "create view note_names as\n  select id,\n    nme\n  from notes;\n");

    let (run, seen) = std::thread::scope(|s| {
        let run = s.spawn(|| migrate(&p, &pg));
        let started = Instant::now();
        let mut seen = false;
        while !run.is_finished() && started.elapsed() < Duration::from_secs(60) {
            if shadow_exclusive_locks(&pg) != "0" {
                // The rehearsal holds its lock on the shadow's notes; the
                // target's notes is not locked by anyone.
                assert_eq!(target_locks(&pg), "0", "the rehearsal locked the target's table");
                seen = true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        (run.join().unwrap(), seen)
    });
    assert!(seen, "the rehearsal was never seen holding its lock on the shadow");
    run.assert_code(1);
    let step = p.step("migrate");
    let summary = text(&step["summary"]);
    assert!(
        summary.starts_with(
            "the rehearsal on a shadow copy failed: 20240103000000_view.sql:3: column \"nme\" does not exist (SQLSTATE 42703)"
        ),
        "{summary}"
    );
    assert!(summary.ends_with("nothing was applied to the target"), "{summary}");
    assert_eq!(text(&step["outputs"]["failed_version"]), "20240103000000");
    let rehearsal = text(&step["outputs"]["rehearsal"]);
    let size = rehearsal.lines().next().unwrap_or_default();
    assert!(
        size.starts_with("20240102000000_size.sql:1: ") && size.ends_with("ms; ACCESS EXCLUSIVE on public.notes"),
        "{rehearsal}"
    );
    let sleep: u64 = rehearsal
        .lines()
        .nth(1)
        .and_then(|l| l.strip_prefix("20240102000000_size.sql:2: "))
        .and_then(|l| l.split("ms").next())
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("no time for the second statement: {rehearsal}"));
    assert!(sleep >= 2000, "{rehearsal}");
    assert!(rehearsal.contains("20240103000000_view.sql: failed: 20240103000000_view.sql:3: column"), "{rehearsal}");

    // The target: untouched, not even the history table; the shadow: gone.
    assert_eq!(pg.app_schema("postgres"), schema);
    assert_eq!(pg.psql("postgres", "select to_regclass('supabase_migrations.schema_migrations') is null"), "t");
    assert_eq!(shadows(&pg), "0");
    let events: Vec<String> = p.audit_events("migrate", "sql.shadow").iter().map(|e| text(&e["op"])).collect();
    assert_eq!(events, ["create", "drop"]);

    // Fixed: with `dry_run: true` as well, the shadow rehearsal passes, then
    // the files apply in the target's transaction and are rolled back.
    p.write(
        "migrations/20240103000000_view.sql",
        "create view note_names as\n  select id,\n    title\n  from notes;\n",
    );
    pipeline(&p, ", dry_run: true", "");
    migrate(&p, &pg).assert_code(0);
    let step = p.step("migrate");
    assert!(
        text(&step["summary"]).starts_with("dry run: 2 pending migration(s) apply cleanly; rolled back"),
        "{step:#}"
    );
    assert!(text(&step["outputs"]["rehearsal"]).contains("20240103000000_view.sql: applied in "), "{step:#}");
    assert_eq!(pg.app_schema("postgres"), schema);

    // And the deploy itself rehearses, then applies.
    pipeline(&p, "", "");
    migrate(&p, &pg).assert_code(0);
    let step = p.step("migrate");
    assert!(text(&step["summary"]).starts_with("applied 2 migration(s)"), "{step:#}");
    assert!(text(&step["outputs"]["rehearsal"]).contains("20240103000000_view.sql: applied in "), "{step:#}");
    assert_eq!(pg.psql("postgres", "select count(*) from note_names"), "3");
    assert_eq!(shadows(&pg), "0");

    // Nothing pending: nothing to rehearse, no shadow made.
    migrate(&p, &pg).assert_code(0);
    assert!(text(&p.step("migrate")["summary"]).starts_with("up to date"));
    assert!(p.audit_events("migrate", "sql.shadow").is_empty());
}

#[test]
fn a_file_failing_on_the_rows_is_caught_by_the_check_on_the_target_before_any_shadow() {
    let pg = Postgres::start();
    pg.psql("postgres", NOTES);
    let schema = pg.app_schema("postgres");
    let p = project("");
    p.write("migrations/20240102000000_unique.sql", "create unique index notes_title on notes (title);\n");
    migrate(&p, &pg).assert_code(1);
    let step = p.step("migrate");
    let summary = text(&step["summary"]);
    assert!(
        summary.starts_with(
            "the rehearsal on a shadow copy failed: 20240102000000_unique.sql:1:1: unique-on-existing-rows"
        ) && summary.contains("checked on the target: 1 row(s) in the way, it will fail"),
        "{summary}"
    );
    assert_eq!(pg.app_schema("postgres"), schema);
    assert!(p.audit_events("migrate", "sql.shadow").is_empty(), "no shadow was made");
}

#[test]
fn a_role_that_may_not_create_databases_is_told_to_use_a_dry_run() {
    let pg = Postgres::start();
    pg.admin("alter role postgres nocreatedb");
    let p = project("");
    p.write("migrations/20240102000000_a.sql", "create table a (id int);\n");
    migrate(&p, &pg).assert_code(1);
    let summary = text(&p.step("migrate")["summary"]);
    assert!(
        summary.contains("role `postgres` may not create databases") && summary.contains("dry_run: true"),
        "{summary}"
    );
    assert_eq!(pg.psql("postgres", "select to_regclass('public.a') is null"), "t");
}

#[test]
fn a_rehearsal_stopped_by_the_step_timeout_leaves_no_shadow_behind() {
    let pg = Postgres::start();
    pg.psql("postgres", NOTES);
    let p = project_with("", "        timeout: 25s\n");
    p.write("migrations/20240102000000_slow.sql", "alter table notes add column size int;\nselect pg_sleep(60);\n");
    let started = Instant::now();
    migrate(&p, &pg).assert_code(1);
    assert!(started.elapsed() < Duration::from_secs(55), "the step was not stopped");
    assert_eq!(p.audit_events("migrate", "sql.shadow").len(), 1, "made, and stopped before its own drop");
    // Dropped from the stopped rehearsal's own task (FORCE ends its session).
    let until = Instant::now() + Duration::from_secs(20);
    while shadows(&pg) != "0" && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(shadows(&pg), "0", "the shadow was left behind");
    assert_eq!(
        pg.psql(
            "postgres",
            "select count(*) from pg_attribute where attrelid = 'notes'::regclass and attname = 'size'"
        ),
        "0"
    );
}

#[test]
fn a_shadow_that_cannot_be_filled_stops_the_deploy_and_is_dropped() {
    let pg = Postgres::start();
    // A server whose template1 lacks the platform's auth schema (a hosted
    // project's may), and an app table that refers to auth.users.
    pg.admin_in("template1", "drop schema auth cascade");
    pg.psql("postgres", "create table profiles (id uuid primary key references auth.users (id), name text);");
    let schema = pg.app_schema("postgres");
    let p = project("");
    p.write("migrations/20240102000000_bio.sql", "alter table profiles add column bio text;\n");
    migrate(&p, &pg).assert_code(1);
    let summary = text(&p.step("migrate")["summary"]);
    assert!(
        summary.starts_with("the rehearsal on a shadow copy could not run: psql (filling the shadow) failed:")
            && summary.contains("auth")
            && summary.ends_with("; nothing was applied"),
        "{summary}"
    );
    assert_eq!(pg.app_schema("postgres"), schema);
    assert_eq!(shadows(&pg), "0");
    let events: Vec<String> = p.audit_events("migrate", "sql.shadow").iter().map(|e| text(&e["op"])).collect();
    assert_eq!(events, ["create", "drop"]);
}
