//! Stages, blocking, parallel steps, variables and overrides.

use crate::support::Project;
use crate::support::http::{Response, Server};
use std::time::Duration;

fn step(name: &str, server: &Server, path: &str, extra: &str) -> String {
    format!(
        "      - name: {name}\n        uses: health-probe\n        with: {{ url: \"{}\" }}\n        grants: {{ net: [\"{}\"] }}\n{extra}",
        server.url(path),
        server.grant()
    )
}

#[test]
fn failed_blocking_step_skips_the_rest() {
    let server = Server::start(|r, _| if r.path == "/down" { Response::status(500) } else { Response::ok("ok") });
    let p = Project::new();
    p.pipeline(&format!(
        "pipeline: x\nstages:\n  - name: one\n    steps:\n{}{}  - name: two\n    steps:\n{}",
        step("first", &server, "/up", ""),
        step("broken", &server, "/down", ""),
        step("never", &server, "/never", "")
    ));
    let run = p.run(&[]);
    run.assert_code(1);
    assert_eq!(p.step("first")["status"], "passed");
    assert_eq!(p.step("broken")["status"], "failed");
    assert_eq!(p.step("never")["status"], "skipped");
    assert!(server.requests().iter().all(|r| r.path != "/never"), "a skipped step must not run");
    assert_eq!(p.results()["status"], "failed");
}

#[test]
fn non_blocking_failure_lets_the_pipeline_pass() {
    let server = Server::start(|r, _| if r.path == "/down" { Response::status(500) } else { Response::ok("ok") });
    let p = Project::new();
    p.pipeline(&format!(
        "pipeline: x\nstages:\n  - name: one\n    steps:\n{}{}",
        step("optional", &server, "/down", "        blocking: false\n"),
        step("after", &server, "/up", "")
    ));
    let run = p.run(&[]);
    run.assert_code(0);
    assert_eq!(p.step("optional")["status"], "failed");
    assert_eq!(p.step("after")["status"], "passed");
    assert!(run.stdout.contains("non-blocking"));
}

#[test]
fn parallel_stage_runs_steps_concurrently() {
    let server = Server::fixed(Response::ok("ok").delayed(Duration::from_millis(400)));
    let p = Project::new();
    let steps: String = (0..4).map(|i| step(&format!("probe{i}"), &server, &format!("/{i}"), "")).collect();
    p.pipeline(&format!("pipeline: x\nstages:\n  - name: fan-out\n    parallel: true\n    steps:\n{steps}"));
    p.run(&[]).assert_code(0);
    assert_eq!(server.requests().len(), 4);
    assert!(
        server.max_in_flight() >= 2,
        "steps of a parallel stage overlap (max in flight {})",
        server.max_in_flight()
    );
    // Results keep the pipeline's order whatever order the steps finished in.
    let names: Vec<String> =
        p.results()["steps"].as_array().unwrap().iter().map(|s| s["step"].as_str().unwrap().to_string()).collect();
    assert_eq!(names, ["probe0", "probe1", "probe2", "probe3"]);
}

#[test]
fn variables_reach_the_plugin() {
    let server = Server::fixed(Response::ok("ok"));
    let p = Project::new();
    p.pipeline(&format!(
        "pipeline: shop\nenvironment: staging\nversion: \"${{DEPLOY_VERSION}}\"\nstages:\n  - name: s\n    steps:\n      - name: tagged\n        uses: health-probe\n        with:\n          url: \"{}\"\n          headers: {{ x-version: \"${{VERSION}}\", x-env: \"${{ENVIRONMENT}}\", x-team: \"${{TEAM:-core}}\" }}\n        grants: {{ net: [\"{}\"] }}\n",
        server.url("/"),
        server.grant()
    ));
    p.run(&[("DEPLOY_VERSION", "2.3.4")]).assert_code(0);
    let r = &server.requests()[0];
    assert_eq!(r.header("x-version"), Some("2.3.4"));
    assert_eq!(r.header("x-env"), Some("staging"));
    assert_eq!(r.header("x-team"), Some("core"));
    assert_eq!(p.results()["version"], "2.3.4");

    // --version and --env override the file.
    p.deployhost(&["run", "pipeline.yaml", "--version", "9.9.9", "--env", "uat"], &[]).assert_code(0);
    let r = &server.requests()[1];
    assert_eq!(r.header("x-version"), Some("9.9.9"));
    assert_eq!(r.header("x-env"), Some("uat"));
}

#[test]
fn dry_run_runs_nothing() {
    let server = Server::fixed(Response::ok("ok"));
    let p = Project::new();
    p.pipeline(&format!("pipeline: x\nstages:\n  - name: s\n    steps:\n{}", step("probe", &server, "/", "")));
    let run = p.deployhost(&["run", "pipeline.yaml", "--dry-run"], &[]);
    run.assert_code(0);
    assert!(run.stdout.contains("probe") && run.stdout.contains(&format!("net {}", server.grant())), "{}", run.stdout);
    assert!(run.stdout.contains("dry run"));
    assert!(server.requests().is_empty());
    assert!(!p.path().join(".deployhost/runs").exists());
}

#[test]
fn state_dir_flag_moves_the_run_folder() {
    let server = Server::fixed(Response::ok("ok"));
    let p = Project::new();
    p.pipeline(&format!("pipeline: x\nstages:\n  - name: s\n    steps:\n{}", step("probe", &server, "/", "")));
    p.deployhost(&["run", "pipeline.yaml", "--state-dir", "elsewhere"], &[]).assert_code(0);
    let runs = p.path().join("elsewhere/runs");
    let run = std::fs::read_dir(&runs).unwrap().next().expect("a run folder").unwrap().path();
    // `logs/` holds only the logs of steps that logged something.
    for file in ["audit.jsonl", "results.json", "logs"] {
        assert!(run.join(file).exists(), "{file} missing in {}", run.display());
    }
}
