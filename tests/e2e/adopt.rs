//! What a newcomer adopting a project reads first: the plugins' parameters,
//! `--version` wherever a pipeline is loaded, the dry-run plan, who ran,
//! the report on a terminal, and the generated workflow.

use crate::support::Project;
use crate::support::http::{Response, Server};
use serde_json::Value;

/// A probe of `server` and an RLS check of database `app`, with the
/// version from `${DEPLOY_VERSION}`.
fn pipeline(server: &Server) -> String {
    format!(
        "pipeline: adopt\nenvironment: prod\nversion: \"${{DEPLOY_VERSION}}\"\ndatabases:\n  app: {{ url_env: DATABASE_URL }}\n\
         environments:\n  prod: {{ approvers: [ada, grace] }}\nstages:\n  - name: s\n    steps:\n      \
         - name: probe\n        uses: health-probe\n        with: {{ url: \"{}\" }}\n        grants: {{ net: [\"{}\"] }}\n      \
         - name: rls\n        uses: rls-test\n        blocking: false\n        \
         with: {{ database: app, matrix: [{{ as: visitor, role: anon, checks: [{{ sql: select 1, rows: 1 }}] }}] }}\n        \
         grants: {{ databases: [{{ name: app, roles: [anon] }}] }}\n",
        server.url("/"),
        server.grant()
    )
}

const NO_DB: (&str, &str) = ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/postgres");

#[test]
fn plugins_lists_each_plugins_parameters_as_text() {
    let p = Project::new();
    let text = p.deployhost(&["plugins"], &[]);
    text.assert_code(0);
    let mut lines = text.stdout.lines().skip_while(|l| !l.starts_with("rls-test "));
    let first = lines.next().expect("rls-test is listed");
    let rls: Vec<&str> = std::iter::once(first).chain(lines.take_while(|l| l.starts_with(' '))).collect();
    let rls = rls.join("\n");
    assert!(rls.contains("SQLSTATE 42501"), "a real description: {rls}");
    assert!(rls.contains("with.database (string, required):"), "{rls}");
    assert!(rls.contains("with.matrix (list, required): [{ as: employee, role: authenticated"), "{rls}");
    // The same parameters as `--json`.
    let list: Value = serde_json::from_str(&p.deployhost(&["plugins", "--json"], &[]).stdout).unwrap();
    for plugin in list.as_array().unwrap() {
        for param in plugin["params"].as_array().unwrap() {
            let line = format!("with.{} ({}", param["name"].as_str().unwrap(), param["kind"].as_str().unwrap());
            assert!(text.stdout.contains(&line), "{} lacks {line}", plugin["name"]);
        }
    }
}

#[test]
fn every_command_that_loads_a_pipeline_takes_version_and_says_so() {
    let server = Server::fixed(Response::ok("ok"));
    let p = Project::new();
    p.pipeline(&pipeline(&server));
    for command in ["validate", "audit"] {
        let without = p.deployhost(&[command, "pipeline.yaml"], &[NO_DB]);
        assert_ne!(without.code, 0, "{command}");
        assert!(
            without.stderr.contains("DEPLOY_VERSION is not set") && without.stderr.contains("or give `--version`"),
            "{command}: {}",
            without.stderr
        );
        p.deployhost(&[command, "pipeline.yaml", "--version", "1.2.3"], &[NO_DB]).assert_code(0);
    }
}

#[test]
fn the_dry_run_plan_lists_every_grant_audit_lists() {
    let server = Server::fixed(Response::ok("ok"));
    let p = Project::new();
    p.pipeline(&pipeline(&server));
    let plan = p.deployhost(&["run", "pipeline.yaml", "--dry-run", "--version", "1"], &[NO_DB]);
    plan.assert_code(0);
    assert!(plan.stdout.contains("databases app (roles: anon)"), "{}", plan.stdout);
    assert!(plan.stdout.contains(&format!("net {}", server.grant())), "{}", plan.stdout);
    assert!(!plan.stdout.contains("grants: none"), "{}", plan.stdout);
    let audit = p.deployhost(&["audit", "pipeline.yaml", "--version", "1", "--json"], &[NO_DB]);
    let rows: Value = serde_json::from_str(&audit.stdout).unwrap();
    assert_eq!(rows[1]["databases"], serde_json::json!(["app (roles: anon)"]));
}

#[test]
fn history_status_and_report_name_who_ran_and_who_may_attest() {
    let server = Server::fixed(Response::ok("ok"));
    let p = Project::new();
    let yaml = pipeline(&server).replace("- name: probe\n", "- name: probe_check\n");
    p.pipeline(&yaml[..yaml.find("      - name: rls\n").unwrap()]);
    // The environment is cleared: no $USER, no GITHUB_ACTOR, no git.
    p.deployhost(&["run", "pipeline.yaml", "--env", "prod", "--version", "1"], &[NO_DB]).assert_code(0);
    let whoami = std::process::Command::new("whoami").output().unwrap();
    let me = String::from_utf8(whoami.stdout).unwrap().trim().to_string();
    assert!(!me.is_empty());
    let history = p.deployhost(&["history"], &[]);
    assert!(history.stdout.contains(&format!(" {me} ")) && !history.stdout.contains("unknown"), "{}", history.stdout);
    let id = p.results()["run_id"].as_str().unwrap().to_string();
    let status = p.deployhost(&["status", &id], &[]);
    assert!(status.stdout.contains(&format!("· by {me}\n")), "{}", status.stdout);

    // Piped: Markdown; `--format text` (a terminal's default): no escapes.
    let markdown = p.deployhost(&["report", &id], &[]).stdout;
    assert!(markdown.contains("probe\\_check") && markdown.contains("**"), "{markdown}");
    let text = p.deployhost(&["report", &id, "--format", "text"], &[]).stdout;
    // On a real terminal (util-linux `script` gives it one) text is the default.
    let tty = std::process::Command::new("script")
        .args(["-qec", &format!("{} report {id}", crate::support::BIN), "/dev/null"])
        .current_dir(p.path())
        .output()
        .unwrap();
    let tty = String::from_utf8_lossy(&tty.stdout).replace('\r', "");
    assert_eq!(tty, text, "a terminal gets the text report");
    assert!(text.contains("probe_check") && !text.contains("\\_") && !text.contains("**"), "{text}");
    assert!(!text.lines().any(|l| l.starts_with('#')), "{text}");
    // Who may attest, from the environment's approvers.
    let want =
        format!("`deployhost attest {id} --item code_review --as NAME` by one of the approvers of `prod`: ada, grace");
    assert!(text.contains(&want), "{text}");
}

#[test]
fn the_workflow_keeps_state_and_backups_and_warns_of_loopback_urls() {
    let server = Server::fixed(Response::ok("ok"));
    let p = Project::new();
    let backup = "      - name: backup\n        uses: pg-backup\n        with: { database: app }\n        \
                  grants: { databases: [app], fs: { write: [backups] } }\n";
    p.pipeline(&format!("{}{backup}", pipeline(&server)));
    let ci = p.deployhost(&["ci", "github", "pipeline.yaml"], &[]);
    ci.assert_code(0);
    assert!(ci.stderr.contains("is a loopback URL"), "{}", ci.stderr);
    let workflow = std::fs::read_to_string(p.path().join(".github/workflows/deploy.yml")).unwrap();
    assert!(
        workflow.contains("# WARNING: pipeline.yaml: stages[0].steps[0].with.url: http://127.0.0.1:"),
        "{workflow}"
    );
    assert!(workflow.contains("path: .deployhost/\n          include-hidden-files: true"), "{workflow}");
    assert!(
        workflow.contains("name: deployhost-prod-backups\n          path: |\n            backups/\n"),
        "{workflow}"
    );
    crate::ci::actionlint(&p.path().join(".github/workflows/deploy.yml"));
}
