//! The state store: history, status, environment locks, crash leftovers,
//! promotion rules and approvals.

use crate::support::Project;
use crate::support::http::{Response, Server};
use std::time::Duration;

fn pipeline(p: &Project, server: &Server, environments: &str) {
    p.pipeline(&format!(
        "pipeline: shop\nenvironment: dev\n{environments}stages:\n  - name: health\n    steps:\n      - name: probe\n        uses: health-probe\n        with: {{ url: \"{}\", headers: {{ x-version: \"${{VERSION}}\", x-previous: \"${{PREVIOUS_VERSION}}\" }} }}\n        grants: {{ net: [\"{}\"] }}\n",
        server.url("/health"),
        server.grant()
    ));
}

const ENVIRONMENTS: &str = "environments:\n  dev: { auto_deploy: true }\n  staging: { requires: dev }\n  prod: { requires: staging, require_approval: true, approvers: [\"@devops-lead\", \"@engineering-manager\"] }\n";

fn deploy(p: &Project, env: &str, version: &str, extra: &[&str]) -> crate::support::Run {
    let mut args = vec!["run", "pipeline.yaml", "--env", env, "--version", version];
    args.extend_from_slice(extra);
    p.deployhost(&args, &[("USER", "ci-bot")])
}

#[test]
fn history_and_status_record_every_run() {
    let server = Server::fixed(Response::ok("ok"));
    let p = Project::new();
    pipeline(&p, &server, "");
    deploy(&p, "dev", "1.0.0", &[]).assert_code(0);
    deploy(&p, "dev", "1.1.0", &[]).assert_code(0);
    // The second run saw what the first deployed.
    assert_eq!(server.requests()[1].header("x-previous"), Some("1.0.0"));
    assert_eq!(server.requests()[0].header("x-previous"), Some(""));

    let history = p.deployhost(&["history", "--json"], &[]);
    history.assert_code(0);
    let runs: serde_json::Value = serde_json::from_str(&history.stdout).unwrap();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["version"], "1.1.0", "newest first");
    assert_eq!(runs[0]["status"], "passed");
    assert_eq!(runs[0]["who"], "ci-bot");
    let id = runs[0]["id"].as_str().unwrap();
    let status = p.deployhost(&["status", id], &[]);
    status.assert_code(0);
    assert!(status.stdout.contains(&format!("run {id}: passed")), "{}", status.stdout);
    assert!(status.stdout.contains("passed   health/probe"), "{}", status.stdout);
    let none = p.deployhost(&["history", "--env", "prod"], &[]);
    assert!(none.stdout.contains("no runs yet"));
}

#[test]
fn a_killed_run_leaves_a_lock_that_only_unlock_breaks() {
    let slow = Server::fixed(Response::ok("ok").delayed(Duration::from_secs(20)));
    let p = Project::new();
    pipeline(&p, &slow, "");
    let mut child = std::process::Command::new(crate::support::BIN)
        .args(["run", "pipeline.yaml"])
        .current_dir(p.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if !slow.requests().is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!slow.requests().is_empty(), "the run reached its step");
    child.kill().unwrap(); // SIGKILL: no cleanup at all
    child.wait().unwrap();

    let runs: serde_json::Value = serde_json::from_str(&p.deployhost(&["history", "--json"], &[]).stdout).unwrap();
    let id = runs[0]["id"].as_str().unwrap().to_string();
    let status = p.deployhost(&["status", &id], &[]);
    assert!(status.stdout.contains(&format!("run {id}: interrupted")), "{}", status.stdout);

    let fast = Server::fixed(Response::ok("ok"));
    pipeline(&p, &fast, "");
    let refused = p.deployhost(&["run", "pipeline.yaml"], &[]);
    refused.assert_code(4);
    assert!(
        refused.stderr.contains(&format!("locked by run {id}"))
            && refused.stderr.contains("deployhost unlock --env dev"),
        "{}",
        refused.stderr
    );
    assert!(fast.requests().is_empty(), "a refused run runs nothing");

    let unlock = p.deployhost(&["unlock", "--env", "dev"], &[]);
    assert!(unlock.stdout.contains(&id), "{}", unlock.stdout);
    p.deployhost(&["run", "pipeline.yaml"], &[]).assert_code(0);
    let status = p.deployhost(&["status", &id, "--json"], &[]);
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(status["status"], "interrupted");
}

#[test]
fn promotion_requires_the_same_version_to_pass_first() {
    let server = Server::fixed(Response::ok("ok"));
    let p = Project::new();
    pipeline(&p, &server, ENVIRONMENTS);
    let refused = deploy(&p, "staging", "2.0.0", &[]);
    refused.assert_code(4);
    assert!(
        refused
            .stderr
            .contains("`staging` requires version 2.0.0 to have passed in `dev` first; nothing has passed there yet"),
        "{}",
        refused.stderr
    );
    deploy(&p, "dev", "2.0.0", &[]).assert_code(0);
    deploy(&p, "staging", "2.0.0", &[]).assert_code(0);
    let refused = deploy(&p, "staging", "2.1.0", &[]);
    refused.assert_code(4);
    assert!(refused.stderr.contains("the last version that passed there is 2.0.0"), "{}", refused.stderr);
    let undeclared = deploy(&p, "qa", "2.0.0", &[]);
    undeclared.assert_code(2);
    assert!(undeclared.stderr.contains("environment `qa` is not declared"));
}

#[test]
fn prod_needs_a_listed_approver() {
    let server = Server::fixed(Response::ok("ok"));
    let p = Project::new();
    pipeline(&p, &server, ENVIRONMENTS);
    deploy(&p, "dev", "3.0.0", &[]).assert_code(0);
    deploy(&p, "staging", "3.0.0", &[]).assert_code(0);
    let waiting = deploy(&p, "prod", "3.0.0", &[]);
    waiting.assert_code(3);
    assert!(
        waiting.stderr.contains("requires approval by one of @devops-lead, @engineering-manager"),
        "{}",
        waiting.stderr
    );
    let stranger = deploy(&p, "prod", "3.0.0", &["--approved-by", "intern"]);
    stranger.assert_code(4);
    assert!(stranger.stderr.contains("`intern` may not approve"));
    let requests_before = server.requests().len();
    deploy(&p, "prod", "3.0.0", &["--approved-by", "devops-lead"]).assert_code(0);
    assert_eq!(server.requests().len(), requests_before + 1);
    let runs: serde_json::Value =
        serde_json::from_str(&p.deployhost(&["history", "--env", "prod", "--json"], &[]).stdout).unwrap();
    assert_eq!(runs[0]["approved_by"], "devops-lead");
}

#[test]
fn sigterm_stops_the_run_records_it_and_releases_the_lock() {
    let slow = Server::fixed(Response::ok("ok").delayed(Duration::from_secs(20)));
    let p = Project::new();
    pipeline(&p, &slow, "");
    let child = std::process::Command::new(crate::support::BIN)
        .args(["run", "pipeline.yaml"])
        .current_dir(p.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if !slow.requests().is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let kill = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("stopped by SIGTERM"));

    let results = p.results();
    assert_eq!(results["status"], "interrupted");
    assert_eq!(results["reason"], "stopped by SIGTERM");
    let runs: serde_json::Value = serde_json::from_str(&p.deployhost(&["history", "--json"], &[]).stdout).unwrap();
    assert_eq!(runs[0]["status"], "interrupted");
    // The lock went with it: the next run starts at once.
    let fast = Server::fixed(Response::ok("ok"));
    pipeline(&p, &fast, "");
    p.deployhost(&["run", "pipeline.yaml"], &[]).assert_code(0);
}
