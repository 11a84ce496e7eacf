//! `pipelines/prod.yaml` itself, end to end: the seed's workflow with real
//! pytest and ruff, a real PostgreSQL per environment, the service, Slack,
//! the incident tool, the Supabase Management API, Odoo's JSON-RPC and the
//! DigitalOcean App Platform API as local servers. Promotion, the approval gate, a
//! failed health check that rolls back, and recovery from a crash.

use crate::support::digitalocean::{self, PREVIOUS};
use crate::support::http::{Request, Response, Server};
use crate::support::management_api::ManagementApi;
use crate::support::odoo::{FakeOdoo, Module};
use crate::support::pg::Postgres;
use crate::support::{Project, Run};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

const ENVIRONMENTS: [&str; 4] = ["dev", "staging", "uat", "prod"];
const SUPABASE_TOKEN: &str = "sbp_prod_pipeline_0a1b2c3d";
const ODOO_KEY: &str = "odoo_prod_pipeline_9f8e7d6c";
const DO_TOKEN: &str = "dop_v1_prod_pipeline_5a4b3c";
/// prod.yaml's `DO_APP_ID` per environment (uat deploys to staging's app).
const DEV_APP: &str = "5b0e7f4c-2d1a-4e8b-9c3f-0a1b2c3d4e01";
const STAGING_APP: &str = "5b0e7f4c-2d1a-4e8b-9c3f-0a1b2c3d4e02";
const PROD_APP: &str = "5b0e7f4c-2d1a-4e8b-9c3f-0a1b2c3d4e04";

/// Each environment's Odoo database as the server has it before a deploy:
/// expense_sync not installed yet, expense_approval at its previous version;
/// the addons path already carries the manifests' versions.
fn odoo_databases() -> Vec<(&'static str, Vec<(&'static str, Module)>)> {
    ["ipai_dev", "ipai_staging", "ipai_prod"]
        .into_iter()
        .map(|db| {
            (
                db,
                vec![
                    ("expense_sync", Module { id: 51, state: "uninstalled", installed: "", on_disk: "17.0.1.0.0" }),
                    (
                        "expense_approval",
                        Module { id: 52, state: "installed", installed: "17.0.1.1.0", on_disk: "17.0.1.2.0" },
                    ),
                ],
            )
        })
        .collect()
}

struct Prod {
    pg: Postgres,
    p: Project,
    app: Server,
    /// While set, `/health/db` answers 503.
    db_down: Arc<AtomicBool>,
    slack: Server,
    incidents: Server,
    supabase: ManagementApi,
    odoo: FakeOdoo,
    digitalocean: Server,
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
            odoo: FakeOdoo::start("deploy", ODOO_KEY, odoo_databases()),
            digitalocean: digitalocean::api(
                DO_TOKEN,
                &[DEV_APP, STAGING_APP, PROD_APP],
                vec![digitalocean::deployment("ACTIVE", serde_json::json!([]))],
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
            ("ODOO_URL", self.odoo.server.url("")),
            ("ODOO_HOST", self.odoo.server.grant()),
            ("ODOO_API_KEY", ODOO_KEY.to_string()),
            ("DIGITALOCEAN_TOKEN", DO_TOKEN.to_string()),
            ("DIGITALOCEAN_API_URL", self.digitalocean.url("")),
            ("DIGITALOCEAN_API_HOST", self.digitalocean.grant()),
            ("DIGITALOCEAN_POLL_INTERVAL", "20ms".to_string()),
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

    /// The App Platform calls that changed something: (method, path).
    fn do_changes(&self) -> Vec<(String, String)> {
        self.digitalocean
            .requests()
            .into_iter()
            .filter(|r| r.method != "GET")
            .map(|r| (r.method.clone(), r.path.clone()))
            .collect()
    }

    /// The `execute_kw` module calls Odoo received for `database`: (method, record ids).
    fn odoo_module_calls(&self, database: &str) -> Vec<(String, Value)> {
        self.odoo
            .calls()
            .into_iter()
            .filter(|c| c.service == "object" && c.args[0] == database)
            .map(|c| {
                assert_eq!(c.args[1], 2, "the uid `authenticate` answered");
                assert_eq!(c.args[2], ODOO_KEY, "each call carries the API key");
                assert_eq!(c.args[3], "ir.module.module");
                (c.method, c.args[5].clone())
            })
            .filter(|(m, _)| m.starts_with("button_immediate"))
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
    for step in ["secrets-configured", "functions-deploy", "rpc-tests", "rls-matrix", "odoo-upgrade", "app-deploy"] {
        assert_eq!(prod.p.step(step)["status"], "passed", "{step}: {}", prod.p.step(step));
    }
    assert_eq!(prod.p.step("error-budget")["status"], "passed");
    // Odoo's external API: dev's database logged in with the API key, the
    // new addon installed, the other upgraded, both at their manifests' versions.
    assert_eq!(
        prod.odoo_module_calls("ipai_dev"),
        [
            ("button_immediate_install".to_string(), serde_json::json!([[51]])),
            ("button_immediate_upgrade".to_string(), serde_json::json!([[52]]))
        ]
    );
    let login = prod.odoo.calls().into_iter().find(|c| c.method == "authenticate").unwrap();
    assert_eq!(login.args[..3], [Value::from("ipai_dev"), Value::from("deploy"), Value::from(ODOO_KEY)]);
    assert_eq!(prod.p.step("odoo-upgrade")["outputs"]["version.expense_approval"], "17.0.1.2.0");
    assert!(prod.odoo_module_calls("ipai_prod").is_empty(), "prod's Odoo is untouched by a dev run");
    // The App Platform: dev's app spec now runs the image at 1.0.0.
    assert_eq!(prod.do_changes(), [("PUT".to_string(), format!("/v2/apps/{DEV_APP}"))]);
    let put = prod.digitalocean.requests().into_iter().find(|r| r.method == "PUT").unwrap();
    let spec: Value = serde_json::from_slice(&put.body).unwrap();
    assert_eq!(spec["spec"]["services"][0]["image"]["tag"], "1.0.0");
    assert_eq!(prod.p.step("app-deploy")["outputs"]["previous_deployment_id"], PREVIOUS);
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
    // uat upgraded staging's database again; prod's got its own install.
    let staging: Vec<(String, String)> =
        prod.odoo_module_calls("ipai_staging").into_iter().map(|(m, ids)| (m, ids.to_string())).collect();
    assert_eq!(
        staging,
        [
            ("button_immediate_install", "[[51]]"),
            ("button_immediate_upgrade", "[[52]]"),
            ("button_immediate_upgrade", "[[51,52]]")
        ]
        .map(|(m, ids)| (m.to_string(), ids.to_string())),
        "staging installs and upgrades; uat, on the same database, upgrades both"
    );
    assert_eq!(prod.odoo_module_calls("ipai_prod").len(), 2);
    assert_eq!(prod.odoo.state("ipai_prod", "expense_sync").state, "installed");
    assert_eq!(prod.odoo.state("ipai_prod", "expense_approval").installed, "17.0.1.2.0");
    assert_eq!(
        prod.do_changes(),
        [DEV_APP, STAGING_APP, STAGING_APP, PROD_APP].map(|app| ("PUT".to_string(), format!("/v2/apps/{app}"))),
        "one spec update per deploy, no rollback"
    );
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

    // The service went to 1.1.0, and the rollback took the app back to the
    // deployment active before: validated, then rolled back.
    let changes = prod.do_changes();
    assert_eq!(
        changes[changes.len() - 3..],
        [
            ("PUT".to_string(), format!("/v2/apps/{DEV_APP}")),
            ("POST".to_string(), format!("/v2/apps/{DEV_APP}/rollback/validate")),
            ("POST".to_string(), format!("/v2/apps/{DEV_APP}/rollback")),
        ],
        "{changes:?}"
    );
    let rollback = prod.digitalocean.requests().into_iter().rfind(|r| r.path.ends_with("/rollback")).unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&rollback.body).unwrap()["deployment_id"], PREVIOUS);
    let results = prod.p.results();
    let compensation = results["rollback"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "compensate-app-deploy")
        .unwrap_or_else(|| panic!("no compensation of app-deploy: {:#}", results["rollback"]));
    assert_eq!(compensation["status"], "passed", "{compensation:#}");
    assert!(!prod.p.run_files_text().contains(DO_TOKEN) && !prod.p.run_files_text().contains(ODOO_KEY));
    // The report and its page show the app's rollback among the others.
    let id = run_id(&failed);
    let markdown = prod.deployhost(&["report", &id], "dev", "1.1.0");
    assert!(
        markdown.stdout.contains(&format!("- compensate-app-deploy passed: rolled back to deployment {PREVIOUS}")),
        "{}",
        markdown.stdout
    );
    let html = prod.deployhost(&["report", &id, "--format", "html"], "dev", "1.1.0");
    assert!(html.stdout.contains("compensate-app-deploy"), "{}", html.stdout);
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
    assert_eq!(results["steps"].as_array().unwrap().len(), 21);
    let migrate_runs = prod.p.audit().iter().filter(|e| e["event"] == "grant" && e["step"] == "migrate").count();
    assert_eq!(migrate_runs, 1, "the completed migration is not run again");
    assert_eq!(prod.slack_texts("/services/deploys").len(), 1);
}
