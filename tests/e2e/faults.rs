//! Faults outside deployhost: a database that cannot be reached or answers
//! too slowly, a health endpoint that hangs up. Each ends in a defined,
//! recorded state, with the database untouched or restored.

use crate::support::Project;
use crate::support::http::{Response, Server};
use crate::support::pg::Postgres;

fn deploy(p: &Project, app: &Server, migration: &str, timeout: &str) {
    p.write("migrations/1_orders.sql", migration);
    p.pipeline(&format!(
        "pipeline: shop\ndatabases:\n  app: {{ url_env: DATABASE_URL }}\nstages:\n  - name: schema\n    steps:\n      - name: backup\n        uses: pg-backup\n        with: {{ database: app }}\n        grants: {{ databases: [app], fs: {{ write: [backups] }} }}\n      - name: migrate\n        uses: supabase-migrate\n        with: {{ database: app, dir: migrations }}\n        grants: {{ databases: [app], fs: {{ read: [migrations] }} }}\n        timeout: {timeout}\n  - name: health\n    steps:\n      - name: probe\n        uses: health-probe\n        with: {{ url: \"{}\", retries: 2, backoff: 10ms }}\n        grants: {{ net: [\"{}\"] }}\nrollback:\n  on: [health_check_failure]\n",
        app.url("/health"),
        app.grant()
    ));
}

fn status(p: &Project) -> serde_json::Value {
    let runs: serde_json::Value = serde_json::from_str(&p.deployhost(&["history", "--json"], &[]).stdout).unwrap();
    runs[0].clone()
}

#[test]
fn an_unreachable_database_fails_the_first_step_that_needs_it() {
    let app = Server::fixed(Response::ok("ok"));
    let p = Project::new();
    deploy(&p, &app, "create table orders (id int);", "60s");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("postgres://postgres:secret-pw@127.0.0.1:{port}/postgres");
    let run = p.run(&[("DATABASE_URL", &url)]);
    run.assert_code(1);
    let backup = p.step("backup");
    assert_eq!(backup["status"], "failed");
    assert!(backup["summary"].as_str().unwrap().contains("cannot connect to postgres@127.0.0.1"), "{backup}");
    assert_eq!(p.step("migrate")["status"], "skipped");
    assert!(app.requests().is_empty(), "nothing after the failure ran");
    assert!(!run.all_output().contains("secret-pw") && !p.run_files_text().contains("secret-pw"));
    assert_eq!(status(&p)["status"], "failed");
}

#[test]
fn a_migration_slower_than_its_timeout_is_stopped_and_the_database_restored() {
    let pg = Postgres::start();
    pg.psql("postgres", "create table customers (id int); insert into customers values (1);");
    let before = pg.dump("postgres");
    let app = Server::fixed(Response::ok("ok"));
    let p = Project::new();
    deploy(&p, &app, "create table orders (id int);\nselect pg_sleep(4);\ninsert into orders values (1);", "1s");
    let run = p.run(&[("DATABASE_URL", &pg.url("postgres"))]);
    run.assert_code(1);
    let migrate = p.step("migrate");
    assert_eq!(
        (migrate["status"].as_str(), migrate["failure"].as_str()),
        (Some("failed"), Some("timeout")),
        "{migrate}"
    );
    let results = p.results();
    assert_eq!(results["rollback"]["ok"], true, "{results:#}");
    assert_eq!(results["rollback"]["steps"][0]["step"], "revert-app");
    // Whatever the server did with the abandoned statement, the end state is the backup.
    assert_eq!(pg.dump("postgres"), before);
    assert!(app.requests().is_empty());
}

#[test]
fn a_health_endpoint_that_hangs_up_is_retried_then_rolls_back() {
    let pg = Postgres::start();
    let before = pg.dump("postgres");
    let app = Server::fixed(Response::hang_up());
    let p = Project::new();
    deploy(&p, &app, "create table orders (id int);", "60s");
    let run = p.run(&[("DATABASE_URL", &pg.url("postgres"))]);
    run.assert_code(1);
    assert_eq!(app.requests().len(), 3, "one attempt and two retries");
    let probe = p.step("probe");
    assert_eq!(probe["status"], "failed");
    assert!(run.stdout.contains("rolled back: health check `probe` failed"), "{}", run.stdout);
    assert_eq!(pg.dump("postgres"), before, "the migration is undone");
    assert_eq!(status(&p)["status"], "failed");
}

/// (issue 25, #3) A step stopped by its timeout while its statement holds
/// a lock: the statement is cancelled and its connection closed with the
/// step, so the lock goes too; the next step (a rollback's revert
/// included) is not left waiting behind it.
#[test]
fn a_stopped_step_s_statement_and_its_lock_end_with_it() {
    let pg = Postgres::start();
    pg.psql("postgres", "create table customers (id int primary key); insert into customers values (1);");
    let p = Project::new();
    p.write("sql/lock.sql", "lock table customers in access exclusive mode;\nselect pg_sleep(120);\n");
    p.write("sql/read.sql", "set lock_timeout = '5s';\nupdate customers set id = id;\n");
    p.pipeline(
        "pipeline: p\ndatabases:\n  app: { url_env: DATABASE_URL }\nstages:\n  - name: s\n    steps:\n      \
         - name: backup\n        uses: pg-backup\n        with: { database: app }\n        grants: { databases: [app], fs: { write: [backups] } }\n      \
         - name: hold\n        uses: sql-apply\n        with: { database: app, files: [sql/lock.sql] }\n        \
         grants: { databases: [app], fs: { read: [sql] } }\n        timeout: 2s\n        blocking: false\n      \
         - name: next\n        uses: sql-apply\n        with: { database: app, files: [sql/read.sql] }\n        \
         grants: { databases: [app], fs: { read: [sql] } }\n",
    );
    let started = std::time::Instant::now();
    let run = p.deployhost(&["run", "pipeline.yaml"], &[("DATABASE_URL", &pg.url("postgres"))]);
    run.assert_code(0);
    assert_eq!(p.step("hold")["status"], "failed");
    assert!(p.step("hold")["summary"].as_str().unwrap().contains("timed out"), "{}", p.step("hold"));
    assert_eq!(p.step("next")["status"], "passed", "{}", p.step("next"));
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "the lock outlived its step");
    assert_eq!(
        pg.admin(
            "select count(*) from pg_stat_activity where query like '%pg_sleep(120)%' and pid <> pg_backend_pid()"
        ),
        "0"
    );
    let stopped = p.audit_events("hold", "limit");
    assert!(
        stopped.iter().any(|e| e["message"].as_str().unwrap_or_default().contains("cancelled the statements")),
        "{stopped:?}"
    );
}
