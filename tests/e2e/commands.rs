//! `validate`, `audit`, `plugins`: what operators read before and after a run.

use crate::support::http::{Response, Server};
use crate::support::{Project, hostile_step};
use serde_json::Value;

fn probe_with_extra_grants(server: &Server) -> String {
    format!(
        "pipeline: x\nsecrets:\n  token: {{ env: TOKEN }}\nstages:\n  - name: s\n    steps:\n      - name: probe\n        uses: health-probe\n        with: {{ url: \"{}\" }}\n        grants: {{ net: [\"{}\"], secrets: [token], fs: {{ write: [reports] }} }}\n        limits: {{ memory: 64MiB }}\n",
        server.url("/"),
        server.grant()
    )
}

#[test]
fn validate_accepts_a_good_pipeline() {
    let server = Server::fixed(Response::ok("ok"));
    let p = Project::new();
    p.pipeline(&probe_with_extra_grants(&server));
    let run = p.deployhost(&["validate", "pipeline.yaml"], &[]);
    run.assert_code(0);
    assert!(run.stdout.contains("ok (1 stages, 1 steps)"), "{}", run.stdout);
    assert!(server.requests().is_empty());
}

#[test]
fn audit_shows_grants_needs_and_over_grants() {
    let server = Server::fixed(Response::ok("ok"));
    let p = Project::new();
    p.pipeline(&probe_with_extra_grants(&server));
    let run = p.deployhost(&["audit", "pipeline.yaml"], &[]);
    run.assert_code(0);
    let out = &run.stdout;
    assert!(out.contains("s/probe  health-probe  sha256:"), "{out}");
    assert!(out.contains(&server.grant()));
    assert!(out.contains("memory 64MiB"));
    assert!(out.contains("OVER-GRANT secrets"), "secrets are granted but not needed: {out}");
    assert!(out.contains("OVER-GRANT fs.write"), "{out}");
    assert!(!out.contains("OVER-GRANT net"), "the probe needs net: {out}");

    let json = p.deployhost(&["audit", "pipeline.yaml", "--json"], &[]);
    json.assert_code(0);
    let rows: Value = serde_json::from_str(&json.stdout).unwrap();
    let row = &rows[0];
    assert_eq!(row["step"], "probe");
    assert_eq!(row["net"][0], server.grant());
    assert_eq!(row["secrets"][0], "token");
    assert_eq!(row["fs_write"][0], "/reports");
    assert_eq!(row["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(row["over_grants"].as_array().unwrap().len(), 2);
}

#[test]
fn audit_of_a_run_compares_granted_and_used() {
    let server = Server::fixed(Response::ok("ok"));
    let p = Project::new();
    let digest = p.plugin("hostile");
    p.pipeline(&format!(
        "{}{}",
        probe_with_extra_grants(&server),
        hostile_step("snoop", &digest, "{ attack: read-file, path: /etc/passwd }", "{ fs: { read: [reports] } }")
    ));
    p.mkdir("reports");
    p.run(&[("TOKEN", "abcdef")]).assert_code(0);
    let run_id = p.last_run_dir().file_name().unwrap().to_string_lossy().to_string();

    let text = p.deployhost(&["audit", "--run", &run_id], &[]);
    text.assert_code(0);
    assert!(text.stdout.contains(&format!("{}:{}", "127.0.0.1", server.port)), "{}", text.stdout);
    assert!(text.stdout.contains("UNUSED    secrets: 1 granted, 0 read"), "{}", text.stdout);
    assert!(text.stdout.contains("DENIED    fs.denied"), "{}", text.stdout);

    let json = p.deployhost(&["audit", "--run", &run_id, "--json"], &[]);
    let report: Value = serde_json::from_str(&json.stdout).unwrap();
    let probe = report["steps"].as_array().unwrap().iter().find(|s| s["step"] == "probe").unwrap();
    assert_eq!(probe["used"]["hosts"][0], server.grant());
    assert_eq!(probe["status"], "passed");
    let snoop = report["steps"].as_array().unwrap().iter().find(|s| s["step"] == "snoop").unwrap();
    assert!(snoop["denials"][0].as_str().unwrap().contains("/etc/passwd"));

    let missing = p.deployhost(&["audit", "--run", "no-such-run"], &[]);
    missing.assert_code(1);
    assert!(missing.stderr.contains("no-such-run"));
}

#[test]
fn plugins_lists_builtins_with_digest_and_needs() {
    let p = Project::new();
    let run = p.deployhost(&["plugins", "--json"], &[]);
    run.assert_code(0);
    let list: Value = serde_json::from_str(&run.stdout).unwrap();
    let probe =
        list.as_array().unwrap().iter().find(|r| r["name"] == "health-probe").expect("health-probe is built in");
    assert_eq!(probe["sha256"].as_str().unwrap().len(), 64);
    assert!(probe["needs"][0].as_str().unwrap().starts_with("net"));
    assert!(list.as_array().unwrap().iter().all(|r| r["name"] != "hostile"), "test plugins are not built in");
    let text = p.deployhost(&["plugins"], &[]);
    assert!(text.stdout.contains("health-probe 0.1.0  sha256:"));
}

/// A listing piped into a reader that stops early (`| head -1`) ends
/// quietly, without a panic about a broken pipe.
#[test]
fn a_listing_whose_reader_stops_early_ends_quietly() {
    use std::process::{Command, Stdio};
    let p = Project::new();
    let mut child = Command::new(crate::support::BIN)
        .args(["plugins", "--json"])
        .current_dir(p.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{stderr}");
    assert_ne!(out.status.code(), Some(101), "{stderr}");
}
