//! The PostgreSQL state backend (`--state postgres://…`): two "CI runners"
//! (separate folders, separate run folders) share history, promotion
//! evidence and environment locks through one database.

use crate::support::Project;
use crate::support::http::{Response, Server};
use crate::support::pg::{PASSWORD, Postgres};
use std::time::Duration;

const ENVIRONMENTS: &str = "environments:\n  dev: {}\n  staging: { requires: dev }\n";

fn runner(server: &Server, path: &str) -> Project {
    let p = Project::new();
    p.pipeline(&format!(
        "pipeline: shop\n{ENVIRONMENTS}stages:\n  - name: health\n    steps:\n      - name: probe\n        uses: health-probe\n        with: {{ url: \"{}\", timeout: 30s }}\n        grants: {{ net: [\"{}\"] }}\n        timeout: 60s\n",
        server.url(path),
        server.grant()
    ));
    p
}

fn deploy(p: &Project, state: &str, env: &str, version: &str) -> crate::support::Run {
    p.deployhost(&["run", "pipeline.yaml", "--env", env, "--version", version], &[("DEPLOYHOST_STATE", state)])
}

#[test]
fn runners_share_promotion_evidence_history_and_locks() {
    let pg = Postgres::start();
    pg.psql("postgres", "create database deploy_state");
    let state = pg.url("deploy_state");
    let server = Server::start(|r, _| {
        if r.path == "/slow" { Response::ok("late").delayed(Duration::from_secs(3)) } else { Response::ok("ok") }
    });
    let (a, b) = (runner(&server, "/health"), runner(&server, "/health"));

    deploy(&a, &state, "dev", "1.0.0").assert_code(0);
    // Runner B never ran dev itself: with its own local state it is refused...
    let alone = b.deployhost(&["run", "pipeline.yaml", "--env", "staging", "--version", "1.0.0"], &[]);
    alone.assert_code(4);
    // ...and with the shared store it sees runner A's evidence.
    deploy(&b, &state, "staging", "1.0.0").assert_code(0);
    let history = b.deployhost(&["history", "--json"], &[("DEPLOYHOST_STATE", &state)]);
    let runs: serde_json::Value = serde_json::from_str(&history.stdout).unwrap();
    let envs: Vec<&str> = runs.as_array().unwrap().iter().map(|r| r["environment"].as_str().unwrap()).collect();
    assert_eq!(envs, ["staging", "dev"]);
    assert!(!history.all_output().contains(PASSWORD), "the store's password is never printed");

    // Four runners deploy to staging at once: exactly one holds the lock.
    let racers: Vec<Project> = (0..4).map(|_| runner(&server, "/slow")).collect();
    let children: Vec<std::process::Child> = racers
        .iter()
        .map(|p| {
            std::process::Command::new(crate::support::BIN)
                .args(["run", "pipeline.yaml", "--env", "dev", "--version", "2.0.0"])
                .current_dir(p.path())
                .env("DEPLOYHOST_STATE", &state)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outcomes: Vec<(i32, String)> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
        })
        .collect();
    let codes: Vec<i32> = outcomes.iter().map(|(c, _)| *c).collect();
    assert_eq!(codes.iter().filter(|c| **c == 0).count(), 1, "{outcomes:#?}");
    assert_eq!(codes.iter().filter(|c| **c == 4).count(), 3, "{outcomes:#?}");
    assert!(outcomes.iter().filter(|(c, _)| *c == 4).all(|(_, e)| e.contains("environment `dev` is locked by run")));
    assert_eq!(server.requests().iter().filter(|r| r.path == "/slow").count(), 1, "only the lock holder ran");
}

#[test]
fn a_bad_state_url_is_a_clear_error_without_the_password() {
    let p = Project::new();
    let run = p.deployhost(&["history"], &[("DEPLOYHOST_STATE", "postgres://ci:hunter2@127.0.0.1:1/state")]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("the --state database") && run.stderr.contains("cannot connect"), "{}", run.stderr);
    assert!(!run.all_output().contains("hunter2"));
    // An unset CI secret arrives empty: local state, as without it.
    p.deployhost(&["history"], &[("DEPLOYHOST_STATE", "")]).assert_code(0);
    let wrong = p.deployhost(&["history", "--state", "mysql://x"], &[]);
    assert_ne!(wrong.code, 0);
    assert!(wrong.stderr.contains("--state takes a PostgreSQL URL"), "{}", wrong.stderr);
}

#[test]
fn the_schema_is_applied_when_the_database_has_not_seen_it() {
    let pg = Postgres::start();
    pg.psql("postgres", "create database deploy_state");
    let state = pg.url("deploy_state");
    let p = Project::new();
    let history = || {
        p.deployhost(&["history", "--json"], &[("DEPLOYHOST_STATE", &state)]).assert_code(0);
    };
    let tables = || {
        pg.psql(
            "deploy_state",
            "select string_agg(tablename, ',' order by tablename) from pg_tables where schemaname = 'public'",
        )
    };
    let all = "approvals,attestations,deployhost_schema,locks,runs,steps";

    // A new database gets every table, approvals' and attestations' too,
    // and the schema's fingerprint.
    history();
    assert_eq!(tables(), all);
    let fingerprint = pg.psql("deploy_state", "select fingerprint from deployhost_schema");
    assert!(fingerprint.parse::<i64>().is_ok_and(|f| f > 0), "{fingerprint}");

    // Seen before: nothing is applied again (a table dropped behind the
    // fingerprint's back stays dropped).
    pg.psql("deploy_state", "drop table attestations");
    history();
    assert_eq!(tables(), "approvals,deployhost_schema,locks,runs,steps");

    // Another deployhost's fingerprint, or an older one's database with
    // none: the schema is applied and the fingerprint is this one's.
    pg.psql("deploy_state", "update deployhost_schema set fingerprint = 7");
    history();
    assert_eq!(tables(), all);
    pg.psql("deploy_state", "drop table deployhost_schema; drop table attestations");
    history();
    assert_eq!(tables(), all);
    assert_eq!(
        pg.psql("deploy_state", "select count(*), max(fingerprint) from deployhost_schema"),
        format!("1|{fingerprint}")
    );
}

/// Issue 25, #5: a step granted a database on the state store's server
/// ends the host's state-store session (`pg_terminate_backend`); the store
/// connects again and the run is recorded to its end.
#[test]
fn a_step_that_ends_the_state_store_s_session_does_not_stop_the_record() {
    use crate::support::hostile_step;
    let pg = Postgres::start();
    pg.psql("postgres", "create database deploy_state");
    let p = Project::new();
    let digest = p.plugin("hostile");
    let kill = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'deploy_state'";
    let mut yaml = String::from(
        "pipeline: shop\ndatabases:\n  app: { url_env: DATABASE_URL }\nstages:\n  - name: s\n    steps:\n",
    );
    yaml.push_str(&hostile_step(
        "cut",
        &digest,
        &format!("{{ attack: sql-switch, name: app, path: \"{kill}\" }}"),
        "{ databases: [app] }",
    ));
    yaml.push_str("  - name: t\n    steps:\n");
    yaml.push_str(&hostile_step("after", &digest, "{ attack: say, name: fine }", "{}"));
    p.pipeline(&yaml);
    let state = pg.url("deploy_state");
    let run =
        p.deployhost(&["run", "pipeline.yaml"], &[("DATABASE_URL", &pg.url("postgres")), ("DEPLOYHOST_STATE", &state)]);
    run.assert_code(0);
    assert!(run.stderr.contains("the state store's session ended"), "{}", run.stderr);
    let history = p.deployhost(&["history", "--json"], &[("DEPLOYHOST_STATE", &state)]);
    let runs: serde_json::Value = serde_json::from_str(&history.stdout).unwrap();
    assert_eq!(runs[0]["status"], "passed", "{runs:#}");
    let id = runs[0]["id"].as_str().unwrap();
    let status = p.deployhost(&["status", id, "--json"], &[("DEPLOYHOST_STATE", &state)]);
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(status["steps"].as_array().unwrap().len(), 2, "{status:#}");
}

/// Issue 25, #5, what the reconnection must not do: the server commits a
/// state-store transaction and the session ends before its answer arrives
/// (played by a failpoint at each transaction of a run in turn). The store
/// asks the server whether it committed (`txid_status`) before it runs
/// anything again: every run is recorded once, with its steps once, and its
/// environment lock released.
#[test]
fn a_commit_whose_answer_is_lost_is_not_applied_twice() {
    use crate::support::hostile_step;
    let pg = Postgres::start();
    pg.psql("postgres", "create database deploy_state");
    let state = pg.url("deploy_state");
    let p = Project::new();
    let digest = p.plugin("hostile");
    let mut yaml = String::from("pipeline: shop\nenvironments:\n  prod: {}\nstages:\n  - name: s\n    steps:\n");
    yaml.push_str(&hostile_step("one", &digest, "{ attack: say, name: fine }", "{}"));
    yaml.push_str(&hostile_step("two", &digest, "{ attack: say, name: fine }", "{}"));
    p.pipeline(&yaml);
    // A first run makes the store's tables; each later one has five
    // transactions: begin (the lock and the run), the previous version,
    // two steps, the end (the seal, the lock's release).
    p.deployhost(&["run", "pipeline.yaml", "--env", "prod"], &[("DEPLOYHOST_STATE", &state)]).assert_code(0);
    let runs = 6;
    for n in 1..runs {
        let failpoint = format!("state-commit-answer-lost:{n}");
        let run = p.deployhost(
            &["run", "pipeline.yaml", "--env", "prod"],
            &[("DEPLOYHOST_STATE", &state), ("DEPLOYHOST_FAILPOINT", &failpoint)],
        );
        run.assert_code(0);
        assert!(run.stderr.contains(&format!("failpoint {failpoint}")), "{n}: {}", run.stderr);
        assert!(run.stderr.contains("the state store's session ended"), "{n}: {}", run.stderr);
    }
    let history = p.deployhost(&["history", "--json"], &[("DEPLOYHOST_STATE", &state)]);
    let history: serde_json::Value = serde_json::from_str(&history.stdout).unwrap();
    let history = history.as_array().unwrap();
    assert_eq!(history.len(), runs, "{history:#?}");
    for run in history {
        assert_eq!(run["status"], "passed", "{run:#}");
        let id = run["id"].as_str().unwrap();
        let status = p.deployhost(&["status", id, "--json"], &[("DEPLOYHOST_STATE", &state)]);
        let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
        assert_eq!(status["steps"].as_array().unwrap().len(), 2, "{status:#}");
    }
    assert_eq!(pg.psql("deploy_state", "select count(*) from locks"), "0");
}
