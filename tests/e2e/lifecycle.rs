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

const ENVIRONMENTS: &str = "environments:\n  dev: { auto_deploy: true }\n  staging: { requires: dev }\n  prod: { requires: staging, require_approval: true, approval: name, approvers: [\"@devops-lead\", \"@engineering-manager\"] }\n";

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
    let mut child = spawn_run(&p, &[]);
    wait_for(&slow, "/health");
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
    let child = spawn_run(&p, &[]);
    wait_for(&slow, "/health");
    let kill = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("stopped by SIGTERM"), "{stderr}");

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

fn run_id_from(stderr: &str) -> String {
    let at = stderr.find("run ").expect("a run id");
    stderr[at + 4..].split_whitespace().next().unwrap().to_string()
}

#[test]
fn an_approval_gate_waits_then_resumes() {
    let server = Server::fixed(Response::ok("ok"));
    let p = Project::new();
    pipeline(&p, &server, ENVIRONMENTS);
    deploy(&p, "dev", "4.0.0", &[]).assert_code(0);
    deploy(&p, "staging", "4.0.0", &[]).assert_code(0);
    let before = server.requests().len();

    let waiting = deploy(&p, "prod", "4.0.0", &[]);
    waiting.assert_code(3);
    let id = run_id_from(&waiting.stderr[waiting.stderr.find("waits at the gate").unwrap() - 40..]);
    let status: serde_json::Value =
        serde_json::from_str(&p.deployhost(&["status", &id, "--json"], &[]).stdout).unwrap();
    assert_eq!(status["status"], "awaiting-approval");
    p.deployhost(&["resume", &id], &[]).assert_code(3);
    p.deployhost(&["approve", &id, "--as", "intern"], &[]).assert_code(4);
    assert_eq!(server.requests().len(), before, "nothing runs before approval");

    p.deployhost(&["approve", &id, "--as", "@engineering-manager"], &[]).assert_code(0);
    p.deployhost(&["resume", &id], &[]).assert_code(0);
    assert_eq!(server.requests().len(), before + 1);
    let status: serde_json::Value =
        serde_json::from_str(&p.deployhost(&["status", &id, "--json"], &[]).stdout).unwrap();
    assert_eq!(status["status"], "passed");
    assert_eq!(status["run"]["approved_by"], "engineering-manager");
}

/// Promotes `version` to staging and leaves its prod run waiting at the gate.
fn waiting_in_prod(p: &Project, version: &str) -> String {
    deploy(p, "dev", version, &[]).assert_code(0);
    deploy(p, "staging", version, &[]).assert_code(0);
    let waiting = deploy(p, "prod", version, &[]);
    waiting.assert_code(3);
    run_id_from(&waiting.stderr[waiting.stderr.find("waits at the gate").unwrap() - 40..])
}

fn run_status(p: &Project, id: &str) -> serde_json::Value {
    serde_json::from_str(&p.deployhost(&["status", id, "--json"], &[]).stdout).unwrap()
}

#[test]
fn a_rejected_run_never_starts() {
    let server = Server::fixed(Response::ok("ok"));
    let p = Project::new();
    pipeline(&p, &server, ENVIRONMENTS);
    let id = waiting_in_prod(&p, "5.0.0");
    let before = server.requests().len();

    let stranger = p.deployhost(&["reject", &id, "--as", "intern"], &[]);
    stranger.assert_code(4);
    assert!(stranger.stderr.contains("`intern` may not decide"), "{}", stranger.stderr);
    p.deployhost(&["reject", &id, "--as", "@devops-lead", "--reason", "migration not reviewed"], &[]).assert_code(0);

    let status = run_status(&p, &id);
    assert_eq!(status["status"], "rejected");
    assert_eq!(status["run"]["reason"], "rejected by @devops-lead: migration not reviewed");
    p.deployhost(&["approve", &id, "--as", "devops-lead"], &[]).assert_code(4);
    let resume = p.deployhost(&["resume", &id], &[]);
    assert_ne!(resume.code, 0);
    assert!(resume.stderr.contains("is rejected"), "{}", resume.stderr);
    assert_eq!(server.requests().len(), before, "a rejected run runs nothing");
}

#[test]
fn an_approval_expires_after_its_window() {
    let server = Server::fixed(Response::ok("ok"));
    let p = Project::new();
    pipeline(
        &p,
        &server,
        &ENVIRONMENTS.replace("require_approval: true", "require_approval: true, approval_timeout: 1s"),
    );
    let id = waiting_in_prod(&p, "6.0.0");
    let approved = waiting_in_prod(&p, "6.0.1");
    p.deployhost(&["approve", &approved, "--as", "devops-lead"], &[]).assert_code(0);
    std::thread::sleep(Duration::from_millis(1500));
    let before = server.requests().len();

    let late = p.deployhost(&["approve", &id, "--as", "devops-lead"], &[]);
    late.assert_code(4);
    assert!(late.stderr.contains("approval window of `prod` (1s) ended"), "{}", late.stderr);
    assert_eq!(run_status(&p, &id)["status"], "expired");
    // Approved in time, but started too late: the go has expired as well.
    p.deployhost(&["resume", &approved], &[]).assert_code(4);
    assert_eq!(run_status(&p, &approved)["status"], "expired");
    assert_eq!(server.requests().len(), before);
}

/// Waits until `server` has seen a request for `path`.
fn wait_for(server: &Server, path: &str) {
    for _ in 0..200 {
        if server.requests().iter().any(|r| r.path == path) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no request for {path}");
}

fn spawn_run(p: &Project, envs: &[(&str, &str)]) -> std::process::Child {
    let mut cmd = std::process::Command::new(crate::support::BIN);
    cmd.args(["run", "pipeline.yaml"]).current_dir(p.path());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap()
}

#[test]
fn a_killed_run_resumes_from_its_first_incomplete_step() {
    // The first request for /slow hangs (the run is killed there); later ones answer.
    let server = Server::start(|r, _| {
        static HUNG: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if r.path == "/slow" && !HUNG.swap(true, std::sync::atomic::Ordering::SeqCst) {
            Response::ok("late").delayed(Duration::from_secs(20))
        } else {
            Response::ok("ok")
        }
    });
    let p = Project::new();
    let step = |name: &str, path: &str| {
        format!(
            "      - name: {name}\n        uses: health-probe\n        with: {{ url: \"{}\", timeout: 30s }}\n        grants: {{ net: [\"{}\"] }}\n",
            server.url(path),
            server.grant()
        )
    };
    p.pipeline(&format!(
        "pipeline: shop\nstages:\n  - name: s\n    steps:\n{}{}{}",
        step("first", "/first"),
        step("second", "/slow"),
        step("third", "/third")
    ));
    let mut child = spawn_run(&p, &[]);
    wait_for(&server, "/slow");
    child.kill().unwrap();
    child.wait().unwrap();

    let runs: serde_json::Value = serde_json::from_str(&p.deployhost(&["history", "--json"], &[]).stdout).unwrap();
    let id = runs[0]["id"].as_str().unwrap().to_string();
    let status = p.deployhost(&["status", &id], &[]);
    assert!(status.stdout.contains("interrupted") && status.stdout.contains("passed   s/first"), "{}", status.stdout);

    p.deployhost(&["resume", &id], &[]).assert_code(0);
    let count = |path: &str| server.requests().iter().filter(|r| r.path == path).count();
    assert_eq!(count("/first"), 1, "a completed step is not run again");
    assert_eq!(count("/slow"), 2);
    assert_eq!(count("/third"), 1);
    let results = p.results();
    assert_eq!(results["run_id"], id.as_str());
    assert_eq!(results["status"], "passed");
    assert_eq!(results["steps"].as_array().unwrap().len(), 3);
    p.deployhost(&["resume", &id], &[]).assert_code(1);
}

#[test]
fn a_killed_run_can_be_rolled_back_instead() {
    let pg = crate::support::pg::Postgres::start();
    let hang = Server::fixed(Response::ok("late").delayed(Duration::from_secs(20)));
    let p = Project::new();
    p.write("migrations/1_a.sql", "create table a (id int);");
    p.pipeline(&format!(
        "pipeline: shop\ndatabases:\n  app: {{ url_env: DATABASE_URL }}\nstages:\n  - name: schema\n    steps:\n      - name: backup\n        uses: pg-backup\n        with: {{ database: app }}\n        grants: {{ databases: [app], fs: {{ write: [backups] }} }}\n      - name: migrate\n        uses: supabase-migrate\n        with: {{ database: app, dir: migrations }}\n        grants: {{ databases: [app], fs: {{ read: [migrations] }} }}\n  - name: health\n    steps:\n      - name: probe\n        uses: health-probe\n        with: {{ url: \"{}\", timeout: 30s }}\n        grants: {{ net: [\"{}\"] }}\n",
        hang.url("/health"),
        hang.grant()
    ));
    let before = pg.dump("postgres");
    let url = pg.url("postgres");
    let mut child = spawn_run(&p, &[("DATABASE_URL", &url)]);
    wait_for(&hang, "/health");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(pg.psql("postgres", "select to_regclass('public.a') is not null"), "t", "the migration had completed");

    let runs: serde_json::Value = serde_json::from_str(&p.deployhost(&["history", "--json"], &[]).stdout).unwrap();
    let id = runs[0]["id"].as_str().unwrap().to_string();
    let rollback = p.deployhost(&["rollback", &id], &[("DATABASE_URL", &url)]);
    rollback.assert_code(0);
    assert!(rollback.stdout.contains("rolled back: manual rollback of run"), "{}", rollback.stdout);
    assert_eq!(p.results()["status"], "rolled-back");
    assert_eq!(pg.dump("postgres"), before, "the database is back to the backup");
    assert_eq!(p.results()["rollback"]["steps"][0]["step"], "revert-app");
    assert_eq!(hang.requests().len(), 1, "a rollback runs no stage again");
    // The lock went with the rollback.
    let unlock = p.deployhost(&["unlock", "--env", "default"], &[]);
    assert!(unlock.stdout.contains("was not locked"), "{}", unlock.stdout);
}

#[test]
fn wider_grants_than_in_staging_need_an_approver_to_accept_them() {
    let server = Server::fixed(Response::ok("ok"));
    let p = Project::new();
    let write = |extra_net: &str| {
        p.pipeline(&format!(
            "pipeline: shop\nenvironment: dev\n{ENVIRONMENTS}stages:\n  - name: health\n    steps:\n      - name: probe\n        uses: health-probe\n        with: {{ url: \"http://${{APP_HOST}}/health\" }}\n        grants: {{ net: [\"${{APP_HOST}}\"{extra_net}] }}\n"
        ))
    };
    write("");
    let host = server.grant();
    let envs = [("APP_HOST", host.as_str())];
    let deploy = |env: &str, extra: &[&str]| {
        let mut args = vec!["run", "pipeline.yaml", "--env", env, "--version", "5.0.0"];
        args.extend_from_slice(extra);
        p.deployhost(&args, &envs)
    };
    deploy("dev", &[]).assert_code(0);
    deploy("staging", &[]).assert_code(0);

    // Grants are compared as written: `${APP_HOST}` is the same grant
    // whatever it expands to; a new host is not.
    write(", \"evil.example.com\"");
    let refused = deploy("prod", &["--approved-by", "devops-lead"]);
    refused.assert_code(4);
    assert!(refused.stderr.contains("grants more than when version 5.0.0 passed in `staging`"), "{}", refused.stderr);
    assert!(refused.stderr.contains("step `probe`: net `evil.example.com`"), "{}", refused.stderr);
    assert!(!refused.stderr.contains("APP_HOST"), "{}", refused.stderr);
    deploy("prod", &["--approved-by", "devops-lead", "--accept-grants", "intern"]).assert_code(4);
    deploy("prod", &["--approved-by", "devops-lead", "--accept-grants", "@engineering-manager"]).assert_code(0);
    let runs: serde_json::Value =
        serde_json::from_str(&p.deployhost(&["history", "--env", "prod", "--json"], &[]).stdout).unwrap();
    assert_eq!(runs[0]["grants_accepted_by"], "engineering-manager");
    assert_eq!(runs[0]["status"], "passed");
}

/// `unlock` does not break the lock of a run whose process is alive: two
/// deploys would then migrate the same environment at once. `--force`
/// needs a reason, which the run keeps.
#[test]
fn unlock_refuses_while_the_holder_is_alive_unless_forced_with_a_reason() {
    let hang = Server::start(|_, _| Response::ok("late").delayed(Duration::from_secs(20)));
    let p = Project::new();
    p.pipeline(&format!(
        "pipeline: shop\nstages:\n  - name: health\n    steps:\n      - name: probe\n        uses: health-probe\n        with: {{ url: \"{}\", timeout: 30s }}\n        grants: {{ net: [\"{}\"] }}\n",
        hang.url("/health"),
        hang.grant()
    ));
    let mut child = spawn_run(&p, &[]);
    wait_for(&hang, "/health");
    let refused = p.deployhost(&["unlock", "--env", "default"], &[]);
    refused.assert_code(4);
    assert!(
        refused.stderr.contains("may still be deploying") && refused.stderr.contains("alive on this machine"),
        "{}",
        refused.stderr
    );
    let second = p.deployhost(&["run", "pipeline.yaml"], &[]);
    second.assert_code(4);

    let no_reason = p.deployhost(&["unlock", "--env", "default", "--force"], &[]);
    no_reason.assert_code(2);
    let forced = p.deployhost(&["unlock", "--env", "default", "--force", "--reason", "runner lost"], &[]);
    forced.assert_code(0);
    assert!(forced.stdout.contains("unlocked `default`"), "{}", forced.stdout);
    child.kill().unwrap();
    child.wait().unwrap();
    let runs: serde_json::Value = serde_json::from_str(&p.deployhost(&["history", "--json"], &[]).stdout).unwrap();
    let text = runs.to_string();
    assert!(text.contains("lock broken by deployhost unlock --force: runner lost"), "{text}");
}
