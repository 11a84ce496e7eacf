//! Lock-safe migrations: each file runs with `lock_timeout` and
//! `statement_timeout` set (and reset after it); a file that times out
//! waiting for a lock is tried again with a growing pause, each attempt
//! logged and audited with the session that held the lock, until it
//! applies or the attempts run out, with nothing of it applied.
//!
//! The contended table lives in a schema the backup leaves out (`jobs`), so
//! the blocker holds its lock from before the deploy starts without making
//! `pg_dump` wait.

use crate::support::pg::Postgres;
use crate::support::{Project, Run};
use std::time::{Duration, Instant};

const JOBS: &str = "create schema jobs;
create table jobs.queue (id bigint primary key, payload text);
insert into jobs.queue values (1, 'a'), (2, 'b');";

const BLOCKER: &str = "lock table jobs.queue in access exclusive mode; select pg_sleep(60)";

fn project(with: &str) -> Project {
    let p = Project::new();
    p.write("migrations/20240102000000_color.sql", "alter table jobs.queue add column color text;\n");
    p.pipeline(&format!(
        "pipeline: m\ndatabases:\n  app: {{ url_env: DATABASE_URL }}\nstages:\n  - name: schema\n    steps:\n      \
         - name: backup\n        uses: pg-backup\n        with: {{ database: app, schemas: [public, supabase_migrations] }}\n        \
         grants: {{ databases: [app], fs: {{ write: [backups] }} }}\n      - name: migrate\n        uses: supabase-migrate\n        \
         with: {{ database: app, dir: migrations{with} }}\n        grants: {{ databases: [app], fs: {{ read: [migrations] }} }}\n"
    ));
    p
}

fn migrate(p: &Project, pg: &Postgres) -> Run {
    p.deployhost(&["run", "pipeline.yaml"], &[("DATABASE_URL", &pg.url("postgres"))])
}

/// Starts a session that holds an ACCESS EXCLUSIVE lock on jobs.queue in
/// an open transaction (for 60 s, or until cancelled); returns once the
/// lock is held.
fn hold_lock(pg: &Postgres) -> std::thread::JoinHandle<Result<String, String>> {
    let psql = pg.client("postgres");
    let blocker = std::thread::spawn(move || psql.app(BLOCKER));
    let started = Instant::now();
    while pg.admin(
        "select count(*) from pg_locks where relation = to_regclass('jobs.queue') and mode = 'AccessExclusiveLock' and granted",
    ) != "1"
    {
        assert!(started.elapsed() < Duration::from_secs(20), "the blocker never took its lock");
        std::thread::sleep(Duration::from_millis(50));
    }
    blocker
}

fn release(pg: &Postgres) {
    pg.admin("select pg_cancel_backend(pid) from pg_stat_activity where query like 'lock table jobs.queue%'");
}

fn column_exists(pg: &Postgres) -> String {
    pg.psql(
        "postgres",
        "select count(*) from pg_attribute where attrelid = 'jobs.queue'::regclass and attname = 'color'",
    )
}

#[test]
fn a_migration_behind_a_lock_times_out_retries_and_applies_once_the_blocker_ends() {
    let pg = Postgres::start();
    pg.psql("postgres", JOBS);
    let p = project(", lock_timeout: 500ms, lock_attempts: 20, lock_retry_wait: 100ms");
    let blocker = hold_lock(&pg);
    let out = std::thread::scope(|s| {
        let run = s.spawn(|| migrate(&p, &pg));
        // The blocker ends only after the migration gave up once and came
        // back: two lock waits of its session, started at different times.
        let mut waits = std::collections::BTreeSet::new();
        let started = Instant::now();
        while waits.len() < 2 && !run.is_finished() {
            let now = pg.admin(
                "select coalesce(string_agg(query_start::text, ','), '') from pg_stat_activity \
                 where wait_event_type = 'Lock' and query like '%jobs.queue add column color%'",
            );
            waits.extend(now.split(',').filter(|w| !w.is_empty()).map(str::to_string));
            assert!(started.elapsed() < Duration::from_secs(60), "the migration never waited twice: {waits:?}");
            std::thread::sleep(Duration::from_millis(30));
        }
        release(&pg);
        run.join().unwrap()
    });
    assert!(blocker.join().unwrap().is_err(), "the blocker was cancelled");
    out.assert_code(0);

    let summary = p.step("migrate")["summary"].as_str().unwrap().to_string();
    let attempts: u32 = summary
        .split("applied after lock timeouts: 20240102000000_color.sql: ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no attempt count in: {summary}"));
    assert!(attempts >= 2, "{summary}");
    assert_eq!(column_exists(&pg), "1");
    assert_eq!(
        pg.psql("postgres", "select string_agg(version, ',') from supabase_migrations.schema_migrations"),
        "20240102000000"
    );

    // Each failed attempt: audited with the session that held the lock,
    // and logged with what comes next.
    let timeouts: Vec<_> = p.audit_events("migrate", "sql").into_iter().filter(|e| e["error"] == "55P03").collect();
    assert_eq!(timeouts.len() as u32, attempts - 1, "{timeouts:#?}");
    for t in &timeouts {
        let held = t["blocked_by"].to_string();
        assert!(held.contains("user postgres") && held.contains(BLOCKER), "{held}");
    }
    let logs: Vec<String> = p
        .audit_events("migrate", "log")
        .iter()
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect();
    let first = logs.iter().find(|l| l.contains("attempt 1 of 20")).unwrap_or_else(|| panic!("{logs:#?}"));
    assert!(
        first.contains("waited over 500ms (lock_timeout)")
            && first.contains("SQLSTATE 55P03")
            && first.contains("the lock was held by pid")
            && first.contains(BLOCKER)
            && first.contains("trying again in 100ms"),
        "{first}"
    );
    // The timeouts were set for the file, and reset after it.
    let statements: Vec<String> = p
        .audit_events("migrate", "sql")
        .iter()
        .map(|e| e["statement"].as_str().unwrap_or_default().to_string())
        .collect();
    let set =
        statements.iter().rposition(|s| s.contains("SET lock_timeout = '500ms'; SET statement_timeout = '600000ms'"));
    let reset = statements.iter().rposition(|s| s == "RESET lock_timeout; RESET statement_timeout");
    assert!(matches!((set, reset), (Some(s), Some(r)) if s < r), "{statements:#?}");
}

#[test]
fn a_migration_that_never_gets_its_lock_fails_cleanly_after_the_last_attempt() {
    let pg = Postgres::start();
    pg.psql("postgres", JOBS);
    let p = project(", lock_timeout: 500ms, lock_attempts: 3, lock_retry_wait: 100ms");
    // Dropping a column: the change ledger copies it first, and waits for
    // the lock as the statement would.
    p.write("migrations/20240102000000_color.sql", "alter table jobs.queue drop column payload;\n");
    let blocker = hold_lock(&pg);
    let started = Instant::now();
    let out = migrate(&p, &pg);
    let took = started.elapsed();
    release(&pg);
    let _ = blocker.join();
    out.assert_code(1);
    assert!(took < Duration::from_secs(30), "nothing waits forever: {took:?}");

    let summary = p.step("migrate")["summary"].as_str().unwrap().to_string();
    assert!(
        summary.starts_with(
            "20240102000000_color.sql failed in its transaction: the change ledger: canceling statement due to lock timeout"
        ) && summary.contains("SQLSTATE 55P03; the lock was held by pid")
            && summary.contains(BLOCKER)
            && summary.contains("gave up after 3 attempt(s), each waiting at most 500ms for a lock")
            && summary.ends_with("nothing was applied"),
        "{summary}"
    );
    assert_eq!(p.audit_events("migrate", "sql").iter().filter(|e| e["error"] == "55P03").count(), 3);
    let payload = "select count(*) from pg_attribute where attrelid = 'jobs.queue'::regclass \
                   and attname = 'payload' and not attisdropped";
    assert_eq!(pg.psql("postgres", payload), "1", "nothing of it applied");
    assert_eq!(pg.psql("postgres", "select count(*) from supabase_migrations.schema_migrations"), "0");
}

#[test]
fn create_index_concurrently_waits_for_older_writers_without_a_lock_timeout() {
    let pg = Postgres::start();
    pg.psql("postgres", JOBS);
    let p = project(", lock_timeout: 200ms, lock_attempts: 1");
    p.write(
        "migrations/20240102000000_color.sql",
        "create index concurrently if not exists queue_payload on jobs.queue (payload);\n",
    );
    // A writer whose transaction lasts 3 s: the index build waits for it.
    let psql = pg.client("postgres");
    let writer = std::thread::spawn(move || {
        psql.app("update jobs.queue set payload = payload where id = 1; select pg_sleep(3)")
    });
    let started = Instant::now();
    while pg.admin(
        "select count(*) from pg_locks where relation = to_regclass('jobs.queue') and mode = 'RowExclusiveLock' and granted",
    ) != "1"
    {
        assert!(started.elapsed() < Duration::from_secs(20), "the writer never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    migrate(&p, &pg).assert_code(0);
    assert!(writer.join().unwrap().is_ok());
    assert_eq!(
        pg.psql("postgres", "select indisvalid from pg_index where indexrelid = 'jobs.queue_payload'::regclass"),
        "t"
    );
    let build = p
        .audit_events("migrate", "sql")
        .into_iter()
        .find(|e| {
            e["statement"].as_str().is_some_and(|s| s.starts_with("create index concurrently")) && e["error"].is_null()
        })
        .expect("the index build is audited");
    assert!(build["ms"].as_f64().unwrap() > 200.0, "it waited past lock_timeout: {build}");
    assert_eq!(p.audit_events("migrate", "sql").iter().filter(|e| e["error"] == "55P03").count(), 0);
}
