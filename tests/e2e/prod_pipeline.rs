//! `pipelines/prod.yaml` itself, end to end: the seed's workflow with real
//! pytest and ruff, a real PostgreSQL per environment, the service, Slack
//! and the incident tool as local servers. Promotion, the approval gate, a
//! failed health check that rolls back, and recovery from a crash.

use crate::support::http::{Request, Response, Server};
use crate::support::management_api::ManagementApi;
use crate::support::pg::Postgres;
use crate::support::{Project, Run};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

const ENVIRONMENTS: [&str; 4] = ["dev", "staging", "uat", "prod"];
const SUPABASE_TOKEN: &str = "sbp_prod_pipeline_0a1b2c3d";

struct Prod {
    pg: Postgres,
    p: Project,
    app: Server,
    /// While set, `/health/db` answers 503.
    db_down: Arc<AtomicBool>,
    slack: Server,
    incidents: Server,
    supabase: ManagementApi,
}

impl Prod {
    fn new() -> Prod {
        let pg = Postgres::start();
        let p = Project::new();
        p.with_example_pipelines();
        // Created by the deploy role from template1, which holds the
        // Supabase shape (support/pg.rs): auth, storage, extensions, roles.
        for env in ENVIRONMENTS {
            pg.psql("postgres", &format!("create database {env}"));
        }
        let db_down = Arc::new(AtomicBool::new(false));
        let down = db_down.clone();
        let app = Server::start(move |r: &Request, _| {
            if r.path == "/health/db" && down.load(Ordering::SeqCst) {
                Response::status(503)
            } else {
                Response::ok("{\"status\":\"ok\"}")
            }
        });
        Prod {
            pg,
            p,
            app,
            db_down,
            slack: Server::fixed(Response::ok("ok")),
            incidents: Server::fixed(Response::ok("{}")),
            supabase: ManagementApi::start(
                SUPABASE_TOKEN,
                &[("ODOO_WEBHOOK_SECRET", "whsec_1"), ("RESEND_API_KEY", "re_1")],
            ),
        }
    }

    fn env(&self, env: &str, version: &str) -> Vec<(String, String)> {
        let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/tools/preflight-venv/bin");
        assert!(
            tools.join("pytest").exists(),
            "pytest is missing: scripts/test.sh installs it into {}",
            tools.display()
        );
        let path = format!("{}:{}", tools.display(), std::env::var("PATH").unwrap_or_default());
        [
            ("PATH", path),
            ("DATABASE_URL", self.pg.url(env)),
            ("DEPLOY_VERSION", version.to_string()),
            ("APP_HOST", self.app.grant()),
            ("SLACK_HOST", self.slack.grant()),
            ("SLACK_WEBHOOK_URL", self.slack.url("/services/deploys")),
            ("ONCALL_WEBHOOK_URL", self.slack.url("/services/oncall")),
            ("INCIDENT_URL", self.incidents.url("/incidents")),
            ("INCIDENT_HOST", self.incidents.grant()),
            ("USER", "release-bot".to_string()),
            ("SUPABASE_ACCESS_TOKEN", SUPABASE_TOKEN.to_string()),
            ("SUPABASE_API_URL", self.supabase.server.url("")),
            ("SUPABASE_API_HOST", self.supabase.server.grant()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn deployhost(&self, args: &[&str], env: &str, version: &str) -> Run {
        let vars = self.env(env, version);
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.p.deployhost(args, &vars)
    }

    fn run(&self, env: &str, version: &str, extra: &[&str]) -> Run {
        let mut args = vec!["run", "pipelines/prod.yaml", "--env", env, "--version", version];
        args.extend_from_slice(extra);
        self.deployhost(&args, env, version)
    }

    fn slack_texts(&self, path: &str) -> Vec<String> {
        self.slack
            .requests()
            .iter()
            .filter(|r| r.path == path)
            .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap()["text"].as_str().unwrap().to_string())
            .collect()
    }
}

fn run_id(run: &Run) -> String {
    let text = run.all_output();
    let at = text.find("run 2").expect("a run id in the output");
    text[at + 4..].split_whitespace().next().unwrap().trim_end_matches(':').to_string()
}

#[test]
fn promotes_through_staging_and_the_approval_gate_to_prod() {
    let prod = Prod::new();

    let early = prod.run("prod", "1.0.0", &["--approved-by", "devops-lead"]);
    early.assert_code(4);
    assert!(early.stderr.contains("requires version 1.0.0 to have passed in `uat` first"), "{}", early.stderr);

    let dev = prod.run("dev", "1.0.0", &[]);
    dev.assert_code(0);
    for step in ["tests", "lint", "format", "migrations-apply", "odoo-dependencies", "backup", "migrate", "verify"] {
        assert_eq!(prod.p.step(step)["status"], "passed", "{step}: {}", prod.p.step(step));
    }
    for step in ["secrets-configured", "functions-deploy", "rpc-tests", "rls-matrix", "error-budget"] {
        assert_eq!(prod.p.step(step)["status"], "passed", "{step}: {}", prod.p.step(step));
    }
    let tests_log = std::fs::read_to_string(prod.p.last_run_dir().join("logs/tests.log")).unwrap();
    assert!(
        tests_log.contains("6 passed") && tests_log.contains("Required test coverage of 90% reached"),
        "{tests_log}"
    );
    assert_eq!(
        prod.slack_texts("/services/deploys").last().unwrap(),
        &format!("Deployed 1.0.0 to dev (run {})", run_id(&dev))
    );

    prod.run("staging", "1.0.0", &[]).assert_code(0);
    // UAT sign-off is its approval.
    prod.run("uat", "1.0.0", &["--approved-by", "qa-lead"]).assert_code(0);
    let waiting = prod.run("prod", "1.0.0", &[]);
    waiting.assert_code(3);
    let id = run_id(&waiting);
    assert_eq!(
        prod.pg.psql("prod", "select to_regclass('public.expenses') is null"),
        "t",
        "nothing ran before approval"
    );
    prod.deployhost(&["approve", &id, "--as", "@engineering-manager"], "prod", "1.0.0").assert_code(0);
    prod.deployhost(&["resume", &id], "prod", "1.0.0").assert_code(0);

    assert_eq!(prod.pg.psql("prod", "select count(*) from supabase_migrations.schema_migrations"), "3");
    // What only people can vouch for, attested by a listed approver.
    let mut attest = vec!["attest", id.as_str(), "--as", "@devops-lead"];
    for item in ["code_review", "security", "oncall", "window", "incident_team", "critical_paths", "dashboards"] {
        attest.extend(["--item", item]);
    }
    for item in ["alerts", "sla", "error_tracking", "changelog", "runbook"] {
        attest.extend(["--item", item]);
    }
    prod.deployhost(&attest, "prod", "1.0.0").assert_code(0);
    let report: Value =
        serde_json::from_str(&prod.deployhost(&["report", &id, "--format", "json"], "prod", "1.0.0").stdout).unwrap();
    assert_eq!(report["status"], "passed", "{report:#}");
    let unticked: Vec<&Value> = ["pre_deployment", "post_deployment"]
        .iter()
        .flat_map(|list| report[list].as_array().unwrap())
        .filter(|item| item["done"] != true)
        .collect();
    assert!(unticked.is_empty(), "every checklist item is ticked from evidence: {unticked:#?}");
    assert_eq!(report["migrations_applied"].as_array().unwrap().len(), 3);
    let history: Value =
        serde_json::from_str(&prod.deployhost(&["history", "--json"], "prod", "1.0.0").stdout).unwrap();
    let envs: Vec<(&str, &str)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["environment"].as_str().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(envs, [("prod", "passed"), ("uat", "passed"), ("staging", "passed"), ("dev", "passed")]);
    assert_eq!(history[0]["approved_by"], "engineering-manager");
    // config.toml's `verify_jwt = false` reached the webhook, in every project.
    let state = prod.supabase.state.lock().unwrap();
    let webhooks: Vec<&Value> = state
        .functions
        .iter()
        .filter(|((_, slug), _)| slug == "expense-webhook")
        .map(|(_, d)| &d.metadata["verify_jwt"])
        .collect();
    assert_eq!(webhooks.len(), 3, "dev's, staging's (uat deploys there too) and prod's project");
    assert!(webhooks.iter().all(|v| **v == Value::Bool(false)), "{webhooks:?}");
}

#[test]
fn a_failed_health_check_rolls_prod_back_and_pages_on_call() {
    let prod = Prod::new();
    prod.run("dev", "1.0.0", &[]).assert_code(0);
    let before = prod.pg.dump("dev");

    // 1.1.0 brings a migration, and the service's database check fails after it.
    prod.p.write(
        "pipelines/examples/supabase/supabase/migrations/20240201000100_receipts.sql",
        "create table public.receipts (id bigint generated always as identity primary key, expense_id bigint);",
    );
    prod.db_down.store(true, Ordering::SeqCst);
    let failed = prod.run("dev", "1.1.0", &[]);
    failed.assert_code(1);
    assert!(failed.stdout.contains("rolled back: health check `database` failed"), "{}", failed.stdout);
    assert_eq!(prod.p.step("migrate")["outputs"]["applied"], "20240201000100");
    assert_eq!(prod.pg.dump("dev"), before, "the database is back to the backup taken before the migration");

    let oncall = prod.slack_texts("/services/oncall");
    assert_eq!(oncall.len(), 1);
    assert!(oncall[0].starts_with("Rollback of 1.1.0 on dev: health check `database` failed"), "{oncall:?}");
    let incident: Value = serde_json::from_slice(&prod.incidents.requests()[0].body).unwrap();
    assert_eq!(incident["previous_version"], "1.0.0");
    assert_eq!(incident["title"], "Rollback of 1.1.0 on dev");
    assert!(prod.slack_texts("/services/deploys").iter().all(|t| !t.contains("1.1.0")), "no success message");
}

#[test]
fn a_crashed_prod_deploy_resumes_where_it_stopped() {
    let prod = Prod::new();
    // Dies right after `migrate` (step 8: tests, lint, format, migrations-apply,
    // odoo-dependencies, secrets-configured, backup, migrate).
    let mut vars = prod.env("dev", "2.0.0");
    vars.push(("DEPLOYHOST_FAILPOINT".into(), "after-step:8".into()));
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let crashed = prod.p.deployhost(&["run", "pipelines/prod.yaml", "--env", "dev", "--version", "2.0.0"], &vars);
    assert_eq!(crashed.code, -1, "{}", crashed.stderr);

    let history: Value = serde_json::from_str(&prod.deployhost(&["history", "--json"], "dev", "2.0.0").stdout).unwrap();
    let id = history[0]["id"].as_str().unwrap().to_string();
    let status = prod.deployhost(&["status", &id], "dev", "2.0.0");
    assert!(
        status.stdout.contains(": interrupted") && status.stdout.contains("8 step(s) completed"),
        "{}",
        status.stdout
    );
    assert_eq!(prod.pg.psql("dev", "select count(*) from supabase_migrations.schema_migrations"), "3");

    prod.deployhost(&["resume", &id], "dev", "2.0.0").assert_code(0);
    let results = prod.p.results();
    assert_eq!(results["status"], "passed");
    assert_eq!(results["steps"].as_array().unwrap().len(), 19);
    let migrate_runs = prod.p.audit().iter().filter(|e| e["event"] == "grant" && e["step"] == "migrate").count();
    assert_eq!(migrate_runs, 1, "the completed migration is not run again");
    assert_eq!(prod.slack_texts("/services/deploys").len(), 1);
}
