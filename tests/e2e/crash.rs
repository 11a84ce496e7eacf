//! The host dies at every step boundary of a deploy, and in the middle of
//! a migration: `status` tells what completed, nothing recorded is lost,
//! and `resume` or `rollback` leaves the database fully migrated or fully
//! restored, never in between.

use crate::support::Project;
use crate::support::http::{Response, Server};
use crate::support::pg::Postgres;
use serde_json::Value;
use std::time::Duration;

/// backup, migrate | api + web (parallel) | smoke: five steps.
const STEPS: [&str; 5] = ["backup", "migrate", "api", "web", "smoke"];

fn deploy_pipeline(app: &Server) -> String {
    let probe = |name: &str| {
        format!(
            "      - name: {name}\n        uses: health-probe\n        with: {{ url: \"{}\" }}\n        grants: {{ net: [\"{}\"] }}\n",
            app.url(&format!("/{name}")),
            app.grant()
        )
    };
    format!(
        "pipeline: shop\nenvironment: prod\nversion: \"7.0.0\"\ndatabases:\n  app: {{ url_env: DATABASE_URL }}\nstages:\n  - name: schema\n    steps:\n      - name: backup\n        uses: pg-backup\n        with: {{ database: app }}\n        grants: {{ databases: [app], fs: {{ write: [backups] }} }}\n      - name: migrate\n        uses: supabase-migrate\n        with: {{ database: app, dir: migrations }}\n        grants: {{ databases: [app], fs: {{ read: [migrations] }} }}\n  - name: health\n    parallel: true\n    steps:\n{}{}  - name: after\n    steps:\n{}",
        probe("api"),
        probe("web"),
        probe("smoke")
    )
}

fn project(app: &Server, second_migration: &str) -> Project {
    let p = Project::new();
    p.write(
        "migrations/1_orders.sql",
        "create table orders (id int primary key);\ninsert into orders values (1), (2);",
    );
    p.write("migrations/2_refunds.sql", second_migration);
    p.pipeline(&deploy_pipeline(app));
    p
}

fn status(p: &Project, id: &str) -> Value {
    serde_json::from_str(&p.deployhost(&["status", id, "--json"], &[]).stdout).unwrap()
}

fn only_run_id(p: &Project) -> String {
    let runs: Value = serde_json::from_str(&p.deployhost(&["history", "--json"], &[]).stdout).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs:#}");
    runs[0]["id"].as_str().unwrap().to_string()
}

fn fully_migrated(pg: &Postgres, db: &str) -> bool {
    pg.psql(db, "select to_regclass('public.orders') is not null and to_regclass('public.refunds') is not null") == "t"
}

#[test]
fn killed_at_every_step_boundary_resume_or_rollback_loses_nothing() {
    let pg = Postgres::start();
    let app = Server::fixed(Response::ok("ok"));
    for n in 1..=STEPS.len() {
        let db = format!("crash_{n}");
        pg.psql("postgres", &format!("create database {db}"));
        pg.psql(&db, "create table customers (id int); insert into customers values (7);");
        let before = pg.dump(&db);
        let p = project(&app, "create table refunds (id int);");
        let url = pg.url(&db);
        let env = [("DATABASE_URL", url.as_str())];
        let requests = |path: &str| app.requests().iter().filter(|r| r.path == path).count();
        let probes_before: Vec<usize> = ["/api", "/web", "/smoke"].iter().map(|p| requests(p)).collect();

        let killed =
            p.deployhost(&["run", "pipeline.yaml"], &[env[0], ("DEPLOYHOST_FAILPOINT", &format!("after-step:{n}"))]);
        assert_eq!(killed.code, -1, "died by a signal after step {n}: {}", killed.stderr);

        // What the state store says: the run is interrupted, after exactly n steps.
        let id = only_run_id(&p);
        let st = status(&p, &id);
        assert_eq!(st["status"], "interrupted", "after step {n}");
        let done: Vec<&str> = st["steps"].as_array().unwrap().iter().map(|s| s["step"].as_str().unwrap()).collect();
        let mut expected: Vec<&str> = STEPS[..n].to_vec();
        // The two health probes run together and are recorded together.
        if n == 3 {
            expected.push("web");
        }
        let mut sorted = done.clone();
        sorted.sort();
        expected.sort();
        assert_eq!(sorted, expected, "completed steps after a crash after step {n}");
        assert!(st["steps"].as_array().unwrap().iter().all(|s| s["status"] == "passed"));
        let results: Value =
            serde_json::from_str(&std::fs::read_to_string(p.last_run_dir().join("results.json")).unwrap()).unwrap();
        assert_eq!(results["steps"].as_array().unwrap().len(), done.len(), "results.json agrees with the store");
        // The dead run still holds prod: a new deploy is refused.
        p.deployhost(&["run", "pipeline.yaml"], &env).assert_code(4);

        if n % 2 == 1 {
            p.deployhost(&["resume", &id], &env).assert_code(0);
            assert!(fully_migrated(&pg, &db), "resumed after step {n}: fully migrated");
            assert_eq!(pg.psql(&db, "select count(*) from orders"), "2", "no migration applied twice");
            let probes_after: Vec<usize> = ["/api", "/web", "/smoke"].iter().map(|p| requests(p)).collect();
            let ran: Vec<usize> = probes_after.iter().zip(&probes_before).map(|(a, b)| a - b).collect();
            assert_eq!(ran, [1, 1, 1], "after step {n}, each probe ran exactly once across both processes");
            assert_eq!(status(&p, &id)["status"], "passed");
        } else {
            p.deployhost(&["rollback", &id], &env).assert_code(0);
            assert_eq!(pg.dump(&db), before, "rolled back after step {n}: fully restored");
            assert_eq!(status(&p, &id)["status"], "rolled-back");
        }
        // Either way the lock is gone and the environment can be deployed.
        p.deployhost(&["run", "pipeline.yaml"], &env).assert_code(0);
    }
}

/// Waits until a query containing `text` runs on the server, or is gone.
fn wait_for_query(pg: &Postgres, text: &str, running: bool) {
    let sql = format!(
        "select count(*) from pg_stat_activity where query like '%{text}%' and pid <> pg_backend_pid() and state = 'active'"
    );
    for _ in 0..300 {
        if (pg.psql("postgres", &sql) != "0") == running {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the query with {text} never {}", if running { "started" } else { "ended" });
}

#[test]
fn killed_in_the_middle_of_a_migration() {
    let pg = Postgres::start();
    let app = Server::fixed(Response::ok("ok"));
    for (db, then) in [("mid_resume", "resume"), ("mid_rollback", "rollback")] {
        pg.psql("postgres", &format!("create database {db}"));
        let before = pg.dump(db);
        let p = project(&app, "create table refunds (id int);\nselect pg_sleep(2);\ninsert into refunds values (1);");
        let url = pg.url(db);
        let env = [("DATABASE_URL", url.as_str())];
        let mut child = std::process::Command::new(crate::support::BIN)
            .args(["run", "pipeline.yaml"])
            .current_dir(p.path())
            .env("DATABASE_URL", &url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        wait_for_query(&pg, "pg_sleep", true);
        child.kill().unwrap();
        child.wait().unwrap();
        // The server finishes or aborts what it was sent; never half of a migration.
        wait_for_query(&pg, "pg_sleep", false);
        let refunds = pg.psql(db, "select to_regclass('public.refunds') is not null");
        if refunds == "t" {
            assert_eq!(pg.psql(db, "select count(*) from refunds"), "1", "a migration is whole or absent");
        }

        let id = only_run_id(&p);
        let st = status(&p, &id);
        assert_eq!(st["status"], "interrupted");
        let done: Vec<&str> = st["steps"].as_array().unwrap().iter().map(|s| s["step"].as_str().unwrap()).collect();
        assert_eq!(done, ["backup"], "the migration had not completed");

        p.deployhost(&[then, &id], &env).assert_code(0);
        if then == "resume" {
            assert!(fully_migrated(&pg, db));
            assert_eq!(pg.psql(db, "select count(*) from refunds"), "1");
            assert_eq!(status(&p, &id)["status"], "passed");
        } else {
            assert_eq!(pg.dump(db), before, "fully restored");
            let st = status(&p, &id);
            assert_eq!(st["status"], "rolled-back");
            let steps: Vec<(&str, &str)> = st["steps"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| (s["step"].as_str().unwrap(), s["status"].as_str().unwrap()))
                .collect();
            assert_eq!(steps, [("backup", "passed"), ("migrate", "failed"), ("revert-app", "passed")]);
        }
    }
}

#[test]
fn sigterm_at_every_step_boundary_records_the_run_and_frees_the_environment() {
    let pg = Postgres::start();
    let app = Server::fixed(Response::ok("ok"));
    for n in 1..STEPS.len() {
        let db = format!("term_{n}");
        pg.psql("postgres", &format!("create database {db}"));
        let p = project(&app, "create table refunds (id int);");
        let url = pg.url(&db);
        let stopped = p.deployhost(
            &["run", "pipeline.yaml"],
            &[("DATABASE_URL", &url), ("DEPLOYHOST_FAILPOINT", &format!("sigterm-after-step:{n}"))],
        );
        assert_eq!(stopped.code, 130, "after step {n}: {}{}", stopped.stdout, stopped.stderr);
        assert!(stopped.stderr.contains("stopped by SIGTERM"), "{}", stopped.stderr);
        let id = only_run_id(&p);
        let st = status(&p, &id);
        assert_eq!(st["status"], "interrupted", "after step {n}");
        let done = st["steps"].as_array().unwrap().len();
        assert!(done >= n, "at least the {n} recorded steps stay recorded ({done})");
        // The lock went with the signal: the next deploy runs at once.
        p.deployhost(&["run", "pipeline.yaml"], &[("DATABASE_URL", &url)]).assert_code(0);
        assert!(fully_migrated(&pg, &db));
    }
}
