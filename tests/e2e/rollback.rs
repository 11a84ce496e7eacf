//! Rollback: triggers, compensations in reverse, the pipeline's own
//! rollback steps, and Slack/webhook notifications against local servers.

use crate::support::Project;
use crate::support::http::{Response, Server};
use crate::support::pg::Postgres;

fn deploy_pipeline(app: &Server, rollback: &str) -> String {
    format!(
        "pipeline: shop\nenvironment: staging\nversion: \"1.2.3\"\ndatabases:\n  app: {{ url_env: DATABASE_URL }}\nstages:\n  - name: schema\n    steps:\n      - name: backup\n        uses: pg-backup\n        with: {{ database: app }}\n        grants: {{ databases: [app], fs: {{ write: [backups] }} }}\n      - name: migrate\n        uses: supabase-migrate\n        with: {{ database: app, dir: migrations }}\n        grants: {{ databases: [app], fs: {{ read: [migrations] }} }}\n  - name: health\n    steps:\n      - name: probe\n        uses: health-probe\n        with: {{ url: \"{}\" }}\n        grants: {{ net: [\"{}\"] }}\n  - name: after\n    steps:\n      - name: never\n        uses: health-probe\n        with: {{ url: \"{}\" }}\n        grants: {{ net: [\"{}\"] }}\n{rollback}",
        app.url("/health"),
        app.grant(),
        app.url("/never"),
        app.grant()
    )
}

#[test]
fn failed_health_check_restores_the_database() {
    let pg = Postgres::start();
    let app = Server::start(|r, _| if r.path == "/health" { Response::status(503) } else { Response::ok("ok") });
    let p = Project::new();
    p.write("migrations/1_a.sql", "create table a (id int);\ninsert into a values (1);");
    p.pipeline(&deploy_pipeline(&app, "rollback:\n  on: [health_check_failure]\n"));
    pg.psql("postgres", "create table existing (id int); insert into existing values (7);");
    let before = pg.dump("postgres");

    let run = p.deployhost(&["run", "pipeline.yaml"], &[("DATABASE_URL", &pg.url("postgres"))]);
    run.assert_code(1);
    assert!(run.stdout.contains("rolled back: health check `probe` failed"), "{}", run.stdout);
    let results = p.results();
    let rollback = &results["rollback"];
    assert!(rollback["reason"].as_str().unwrap().contains("health check `probe` failed"));
    assert_eq!(rollback["ok"], true);
    assert_eq!(rollback["steps"][0]["step"], "revert-app");
    assert_eq!(rollback["steps"][0]["status"], "passed");
    assert_eq!(p.step("never")["status"], "skipped");
    assert!(app.requests().iter().all(|r| r.path != "/never"));
    assert_eq!(pg.dump("postgres"), before, "the database is back to the backup taken before the migration");
    assert_eq!(results["status"], "failed");
    let events: Vec<String> = p.audit().iter().map(|e| e["event"].as_str().unwrap().to_string()).collect();
    assert!(events.contains(&"rollback.start".to_string()) && events.contains(&"sql.revert".to_string()));
    assert!(!events.contains(&"sql.restore".to_string()), "the ledger is undone; the backup is not replayed");
}

#[test]
fn a_failed_migration_is_restored_too() {
    let pg = Postgres::start();
    let app = Server::fixed(Response::ok("ok"));
    let p = Project::new();
    p.write("migrations/1_a.sql", "create table a (id int);");
    p.write("migrations/2_b.sql", "create table b (id int);\nselect broken syntax here;");
    p.pipeline(&deploy_pipeline(&app, "rollback:\n  on: [health_check_failure]\n"));
    let before = pg.dump("postgres");
    p.deployhost(&["run", "pipeline.yaml"], &[("DATABASE_URL", &pg.url("postgres"))]).assert_code(1);
    // 1_a applied before 2_b failed: the rollback restores the backup.
    assert!(p.results()["rollback"]["reason"].as_str().unwrap().contains("blocking step `migrate` failed"));
    assert_eq!(pg.dump("postgres"), before, "fully restored, not half migrated");
}

#[test]
fn without_a_rollback_block_nothing_is_undone() {
    let pg = Postgres::start();
    let app = Server::fixed(Response::status(500));
    let p = Project::new();
    p.write("migrations/1_a.sql", "create table a (id int);");
    p.pipeline(&deploy_pipeline(&app, ""));
    p.deployhost(&["run", "pipeline.yaml"], &[("DATABASE_URL", &pg.url("postgres"))]).assert_code(1);
    assert!(p.results().get("rollback").is_none());
    assert_eq!(pg.psql("postgres", "select to_regclass('public.a') is not null"), "t");
}

#[test]
fn error_rate_spike_runs_the_rollback_steps_with_the_reason() {
    // Half the requests fail: the probe's own threshold lets it pass, the
    // pipeline's trigger does not.
    let app = Server::start(|_, n| if n % 2 == 0 { Response::status(500) } else { Response::ok("ok") });
    let slack = Server::fixed(Response::ok("ok"));
    let incidents = Server::fixed(Response::status(201));
    let p = Project::new();
    p.pipeline(&format!(
        "pipeline: shop\nenvironment: prod\nversion: \"2.0.0\"\nsecrets:\n  oncall_webhook: {{ env: ONCALL_WEBHOOK }}\nstages:\n  - name: health\n    steps:\n      - name: error-budget\n        uses: health-probe\n        with: {{ url: \"{}\", samples: 10, interval: 1ms, max_error_rate: \"60%\" }}\n        grants: {{ net: [\"{}\"] }}\nrollback:\n  on: [health_check_failure, \"error_rate > 1%\", \"latency_p99 > 5s\"]\n  steps:\n    - name: notify-oncall\n      uses: slack-notify\n      with: {{ webhook_secret: oncall_webhook, text: \"Rollback of ${{VERSION}} on ${{ENVIRONMENT}}: ${{REASON}}\" }}\n      grants: {{ net: [\"{}\"], secrets: [oncall_webhook] }}\n    - name: create-incident\n      uses: webhook\n      with:\n        url: \"{}\"\n        body: {{ title: \"deploy ${{VERSION}} rolled back\", run: \"${{RUN_ID}}\", reason: \"${{REASON}}\" }}\n      grants: {{ net: [\"{}\"] }}\n",
        app.url("/"),
        app.grant(),
        slack.grant(),
        incidents.url("/incidents"),
        incidents.grant()
    ));
    let run = p.run(&[("ONCALL_WEBHOOK", &slack.url("/services/T000/B000/XXXX"))]);
    run.assert_code(1);
    assert_eq!(p.step("error-budget")["status"], "passed");
    let results = p.results();
    assert!(results["rollback"]["reason"].as_str().unwrap().starts_with("error_rate > 1%"), "{results:#}");

    let posts = slack.requests();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].path, "/services/T000/B000/XXXX");
    assert_eq!(posts[0].header("content-type"), Some("application/json"));
    let payload: serde_json::Value = serde_json::from_slice(&posts[0].body).unwrap();
    let text = payload["text"].as_str().unwrap();
    assert!(text.starts_with("Rollback of 2.0.0 on prod: error_rate > 1%"), "{text}");

    let incident: serde_json::Value = serde_json::from_slice(&incidents.requests()[0].body).unwrap();
    assert_eq!(incident["title"], "deploy 2.0.0 rolled back");
    assert_eq!(incident["run"], results["run_id"]);
    assert!(incident["reason"].as_str().unwrap().contains("error_rate"));
    assert_eq!(results["rollback"]["steps"].as_array().unwrap().len(), 2);
}

fn slack_pipeline(slack: &Server) -> String {
    format!(
        "pipeline: n\nsecrets:\n  hook: {{ env: HOOK }}\nstages:\n  - name: s\n    steps:\n      - name: notify\n        uses: slack-notify\n        with: {{ webhook_secret: hook, text: \"deployed\" }}\n        grants: {{ net: [\"{}\"], secrets: [hook] }}\n",
        slack.grant()
    )
}

#[test]
fn slack_rate_limits_are_retried_and_errors_reported() {
    let limited = Server::start(|_, n| if n == 0 { Response::new(429, "rate_limited") } else { Response::ok("ok") });
    let p = Project::new();
    p.pipeline(&slack_pipeline(&limited));
    p.run(&[("HOOK", &limited.url("/hook"))]).assert_code(0);
    assert_eq!(limited.requests().len(), 2);
    assert_eq!(p.step("notify")["outputs"]["attempts"], "2");

    let rejecting = Server::fixed(Response::new(400, "invalid_payload"));
    p.pipeline(&slack_pipeline(&rejecting));
    p.run(&[("HOOK", &rejecting.url("/hook"))]).assert_code(1);
    let step = p.step("notify");
    assert!(step["summary"].as_str().unwrap().contains("400: invalid_payload"), "{step}");
    assert_eq!(step["outputs"]["error"], "invalid_payload");
}

/// Deploys `version` with one more migration than the one before.
fn deploy_version(p: &Project, pg: &Postgres, app: &Server, version: u32) {
    p.write(&format!("migrations/{version}_v{version}.sql"), &format!("create table v{version} (id int);"));
    p.pipeline(
        &deploy_pipeline(app, "rollback:\n  on: [health_check_failure]\n").replace("1.2.3", &version.to_string()),
    );
    p.deployhost(&["run", "pipeline.yaml"], &[("DATABASE_URL", &pg.url("postgres"))]).assert_code(0);
}

fn statuses(p: &Project) -> Vec<(String, String)> {
    let runs: serde_json::Value = serde_json::from_str(&p.deployhost(&["history", "--json"], &[]).stdout).unwrap();
    runs.as_array()
        .unwrap()
        .iter()
        .map(|r| (r["version"].as_str().unwrap().to_string(), r["status"].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn rolling_an_environment_back_by_hand_undoes_runs_newest_first() {
    let pg = Postgres::start();
    let app = Server::fixed(Response::ok("ok"));
    let p = Project::new();
    let url = pg.url("postgres");
    let mut schemas = vec![pg.app_schema("postgres")];
    for version in 1..=3 {
        deploy_version(&p, &pg, &app, version);
        schemas.push(pg.app_schema("postgres"));
    }
    // A user's write after the deploys: no rollback may lose it.
    pg.psql("postgres", "insert into v1 values (42);");

    // A version that never passed there is refused, naming what did.
    let refused = p.deployhost(&["rollback", "--env", "staging", "--to", "0.9"], &[("DATABASE_URL", &url)]);
    refused.assert_code(4);
    assert!(refused.stderr.contains("versions deployed there: 3, 2, 1"), "{}", refused.stderr);

    // --dry-run lists and changes nothing.
    let dry = p.deployhost(&["rollback", "--env", "staging", "--dry-run"], &[("DATABASE_URL", &url)]);
    dry.assert_code(0);
    assert!(
        dry.stdout.contains("back to version 2, undoing 1 run(s)") && dry.stdout.contains("version 3"),
        "{}",
        dry.stdout
    );
    assert_eq!(pg.psql("postgres", "select count(*) from v1"), "1");

    // The current deploy (3) is undone: the database is as version 2 left it.
    let one = p.deployhost(&["rollback", "--env", "staging"], &[("DATABASE_URL", &url)]);
    one.assert_code(0);
    assert!(one.stdout.contains("rolled back: manual rollback of `staging` to version 2"), "{}", one.stdout);
    assert_eq!(pg.app_schema("postgres"), schemas[2]);
    assert_eq!(pg.psql("postgres", "select string_agg(id::text, ',') from v1"), "42", "the user's row stays");
    assert_eq!(statuses(&p)[0], ("3".to_string(), "rolled-back".to_string()));

    // Version 2 is now current, and ${PREVIOUS_VERSION} comes from it.
    let to_one = p.deployhost(&["rollback", "--env", "staging", "--to", "1"], &[("DATABASE_URL", &url)]);
    to_one.assert_code(0);
    assert_eq!(pg.app_schema("postgres"), schemas[1], "back to what version 1 deployed");
    assert_eq!(pg.psql("postgres", "select string_agg(id::text, ',') from v1"), "42", "the user's row stays");
    assert_eq!(
        pg.psql(
            "postgres",
            "select string_agg(version, ',' order by version) from supabase_migrations.schema_migrations"
        ),
        "1",
        "the history is what version 1 left"
    );
    let statuses = statuses(&p);
    assert_eq!(
        statuses,
        [("3", "rolled-back"), ("2", "rolled-back"), ("1", "passed")].map(|(v, s)| (v.to_string(), s.to_string()))
    );
    let again = p.deployhost(&["rollback", "--env", "staging", "--to", "1"], &[("DATABASE_URL", &url)]);
    again.assert_code(0);
    assert!(again.stdout.contains("already at version 1"), "{}", again.stdout);
}
