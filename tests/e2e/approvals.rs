//! Approvals bound to an identity (`approval: signed | github | name`):
//! real `ssh-keygen` with throwaway ed25519 keys made here, a loopback
//! stand-in for GitHub's REST API speaking its documented JSON, and the
//! real binary. Plus who started a run, `wait_timer` and `branches`.

use crate::support::http::{Request, Response, Server};
use crate::support::pg::Postgres;
use crate::support::{Project, Run};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Makes an ed25519 key pair `keys/NAME` (no passphrase); returns the
/// private key's path and the public key's `type base64` text.
pub(crate) fn key(p: &Project, name: &str) -> (PathBuf, String) {
    let dir = p.mkdir("keys");
    let path = dir.join(name);
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .status()
        .expect("ssh-keygen")
        .success();
    assert!(ok, "ssh-keygen could not make a key");
    let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
    let public = public.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    (path, public)
}

/// Signs `text` with `key` in `namespace` (what an approver does by hand).
fn sign(key: &Path, namespace: &str, text: &str) -> String {
    let mut child = Command::new("ssh-keygen")
        .args(["-q", "-Y", "sign", "-n", namespace, "-f"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A pipeline whose `prod` has `rules` (flow mapping body), one probe step.
fn pipeline(p: &Project, server: &Server, rules: &str, uses: &str) {
    p.pipeline(&format!(
        "pipeline: shop\nenvironment: prod\nenvironments:\n  prod: {{ {rules} }}\nstages:\n  - name: health\n    steps:\n      - name: probe\n        uses: {uses}\n        with: {{ url: \"{}\" }}\n        grants: {{ net: [\"{}\"] }}\n",
        server.url("/health"),
        server.grant()
    ));
}

const SIGNED: &str =
    "require_approval: true, approval: signed, allowed_signers: allowed_signers, approvers: [alice@example.com]";

/// alice and bob in allowed_signers (only alice is an approver in SIGNED);
/// mallory's key is nowhere.
struct Signers {
    alice: PathBuf,
    bob: PathBuf,
    mallory: PathBuf,
}

fn signers(p: &Project) -> Signers {
    let (alice, alice_pub) = key(p, "alice");
    let (bob, bob_pub) = key(p, "bob");
    let (mallory, _) = key(p, "mallory");
    p.write(
        "allowed_signers",
        &format!(
            "# git's allowed-signers format\nalice@example.com namespaces=\"deployhost-approval,git\" {alice_pub}\nbob@example.com {bob_pub}\n"
        ),
    );
    Signers { alice, bob, mallory }
}

fn dh(p: &Project, args: &[&str]) -> Run {
    p.deployhost(args, &[("DEPLOYHOST_ACTOR", "ci-bot")])
}

/// Starts a run of `version` that stops at the gate; its id.
fn waiting(p: &Project, version: &str, envs: &[(&str, &str)]) -> String {
    let run = p.deployhost(&["run", "pipeline.yaml", "--version", version], envs);
    run.assert_code(3);
    let line = run.stderr.lines().find(|l| l.contains("waits at the gate")).expect("a waiting run");
    line.split_whitespace().nth(1).unwrap().to_string()
}

fn status(p: &Project, id: &str) -> Value {
    serde_json::from_str(&dh(p, &["status", id, "--json"]).stdout).unwrap()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_signed_approval_verifies_and_shows_in_status_report_and_audit() {
    let server = Server::fixed(Response::ok("ok"));
    let p = Project::new();
    let keys = signers(&p);
    pipeline(&p, &server, SIGNED, "health-probe");
    let actor = [("DEPLOYHOST_ACTOR", "ci-bot")];
    let id = waiting(&p, "1.0.0", &actor);
    dh(&p, &["resume", &id]).assert_code(3);
    let typed = dh(&p, &["approve", &id, "--as", "alice@example.com"]);
    typed.assert_code(4);
    assert!(typed.stderr.contains("takes signed approvals"), "{}", typed.stderr);
    let typed =
        p.deployhost(&["run", "pipeline.yaml", "--version", "1.0.0", "--approved-by", "alice@example.com"], &actor);
    typed.assert_code(4);
    assert!(typed.stderr.contains("not a typed name"), "{}", typed.stderr);

    let approve = dh(&p, &["approve", &id, "--key", path(&keys.alice)]);
    approve.assert_code(0);
    assert!(approve.stdout.contains("signed by alice@example.com (key SHA256:"), "{}", approve.stdout);
    assert!(server.requests().is_empty(), "nothing runs before resume");
    dh(&p, &["resume", &id]).assert_code(0);
    assert_eq!(server.requests().len(), 1);

    let s = status(&p, &id);
    assert_eq!(s["status"], "passed");
    assert_eq!(s["run"]["who"], "ci-bot", "the starter is recorded");
    assert_eq!(s["approval"]["mode"], "signed");
    assert_eq!(s["approval"]["approver"], "alice@example.com");
    assert_eq!(s["approval"]["verified"], true);
    let signature = s["approval"]["signature"].as_str().unwrap();
    assert!(signature.starts_with("-----BEGIN SSH SIGNATURE-----"), "{signature}");
    let second_line = signature.lines().nth(1).unwrap();
    let text = dh(&p, &["status", &id]);
    assert!(text.stdout.contains("signed by alice@example.com (SSH signature verified"), "{}", text.stdout);
    assert!(text.stdout.contains(second_line), "{}", text.stdout);

    let md = dh(&p, &["report", &id]);
    assert!(md.stdout.contains("- [x] Approval recorded — signed by alice@example.com"), "{}", md.stdout);
    assert!(md.stdout.contains(second_line), "{}", md.stdout);
    let report: Value = serde_json::from_str(&dh(&p, &["report", &id, "--format", "json"]).stdout).unwrap();
    assert_eq!(report["approval"]["signature"], signature);
    let html = dh(&p, &["report", &id, "--format", "html"]).stdout;
    assert!(html.contains("signed by alice@example.com") && html.contains(second_line), "{html}");
    let audit = dh(&p, &["audit", "--run", &id]);
    assert!(audit.stdout.contains("approval  signed by alice@example.com"), "{}", audit.stdout);
    assert!(audit.stdout.contains(second_line), "{}", audit.stdout);
    let audit: Value = serde_json::from_str(&dh(&p, &["audit", "--run", &id, "--json"]).stdout).unwrap();
    assert_eq!(audit["approval"]["approver"], "alice@example.com");
    assert_eq!(audit["approval"]["signature"], signature);
}

#[test]
fn signed_approvals_refuse_wrong_keys_signers_runs_versions_and_namespaces() {
    let server = Server::fixed(Response::ok("ok"));
    let p = Project::new();
    let keys = signers(&p);
    pipeline(&p, &server, SIGNED, "health-probe");
    let actor = [("DEPLOYHOST_ACTOR", "ci-bot")];
    let first = waiting(&p, "2.0.0", &actor);
    let second = waiting(&p, "2.0.0", &actor);

    // A key no allowed signer holds.
    let wrong = dh(&p, &["approve", &second, "--key", path(&keys.mallory)]);
    wrong.assert_code(4);
    assert!(wrong.stderr.contains("not listed in") && wrong.stderr.contains("allowed_signers"), "{}", wrong.stderr);
    // An allowed signer who is not an approver.
    let bob = dh(&p, &["approve", &second, "--key", path(&keys.bob)]);
    bob.assert_code(4);
    assert!(bob.stderr.contains("bob@example.com, who is not a listed approver of `prod`"), "{}", bob.stderr);

    // A good signature of the first run, replayed for the second.
    dh(&p, &["approve", &first, "--key", path(&keys.alice)]).assert_code(0);
    let replay = p.write("replay.sig", status(&p, &first)["approval"]["signature"].as_str().unwrap());
    let replayed = dh(&p, &["approve", &second, "--signature", path(&replay)]);
    replayed.assert_code(4);
    assert!(replayed.stderr.contains("does not verify for this run"), "{}", replayed.stderr);

    // The second run's statement, with another version.
    let statement = dh(&p, &["approve", &second, "--print-statement"]);
    statement.assert_code(0);
    assert!(statement.stdout.starts_with("deployhost-approval-statement v2\n"), "{}", statement.stdout);
    assert!(statement.stdout.contains(&format!("run: \"{second}\"")), "{}", statement.stdout);
    assert!(statement.stdout.contains("step: \"probe "), "{}", statement.stdout);
    let other_version = statement.stdout.replace("version: \"2.0.0\"", "version: \"2.0.1\"");
    let forged = p.write("version.sig", &sign(&keys.alice, "deployhost-approval", &other_version));
    let refused = dh(&p, &["approve", &second, "--signature", path(&forged)]);
    refused.assert_code(4);
    assert!(refused.stderr.contains("does not verify for this run"), "{}", refused.stderr);

    // The right statement, signed in git's namespace (alice may sign there).
    let git = p.write("git.sig", &sign(&keys.alice, "git", &statement.stdout));
    let refused = dh(&p, &["approve", &second, "--signature", path(&git)]);
    refused.assert_code(4);
    assert!(refused.stderr.contains("namespace `git`, not `deployhost-approval`"), "{}", refused.stderr);
    dh(&p, &["resume", &second]).assert_code(3);
    assert_eq!(status(&p, &second)["run"]["approved_by"], Value::Null);

    // The right statement in the right namespace, signed elsewhere: accepted.
    let good = p.write("good.sig", &sign(&keys.alice, "deployhost-approval", &statement.stdout));
    dh(&p, &["approve", &second, "--signature", path(&good)]).assert_code(0);
    dh(&p, &["resume", &second]).assert_code(0);
    dh(&p, &["resume", &first]).assert_code(0);
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn a_signed_approval_does_not_cover_changed_plugins_or_a_lost_signers_file() {
    let server = Server::fixed(Response::ok("ok"));
    let p = Project::new();
    let keys = signers(&p);
    pipeline(&p, &server, SIGNED, "health-probe");
    let id = waiting(&p, "3.0.0", &[("DEPLOYHOST_ACTOR", "ci-bot")]);
    dh(&p, &["approve", &id, "--key", path(&keys.alice)]).assert_code(0);
    // Same step, other plugin bytes: the approval was not for these.
    pipeline(&p, &server, SIGNED, "http-check");
    let resume = dh(&p, &["resume", &id]);
    resume.assert_code(4);
    assert!(resume.stderr.contains("the plan changed since the run reached the gate"), "{}", resume.stderr);
    assert!(resume.stderr.contains("step probe"), "{}", resume.stderr);
    assert!(server.requests().is_empty(), "{:?}", server.requests());

    // Same plugin, another parameter: the signature does not cover it either.
    pipeline(&p, &server, SIGNED, "health-probe");
    let edited = std::fs::read_to_string(p.path().join("pipeline.yaml")).unwrap().replace("/health", "/other");
    p.pipeline(&edited);
    let resume = dh(&p, &["resume", &id]);
    resume.assert_code(4);
    assert!(resume.stderr.contains("the plan changed since the run reached the gate"), "{}", resume.stderr);
    assert!(server.requests().is_empty(), "{:?}", server.requests());

    pipeline(&p, &server, SIGNED, "health-probe");
    std::fs::remove_file(p.path().join("allowed_signers")).unwrap();
    let lost = dh(&p, &["resume", &id]);
    lost.assert_code(2);
    assert!(lost.stderr.contains("environments.prod.allowed_signers"), "{}", lost.stderr);
    assert!(lost.stderr.contains("cannot read the allowed-signers file"), "{}", lost.stderr);
    assert!(server.requests().is_empty());
}

#[test]
fn the_starter_may_not_approve_unless_allowed() {
    let server = Server::fixed(Response::ok("ok"));
    let p = Project::new();
    let keys = signers(&p);
    pipeline(&p, &server, SIGNED, "health-probe");
    let alice = [("DEPLOYHOST_ACTOR", "alice@example.com")];
    let id = waiting(&p, "4.0.0", &alice);
    let own = dh(&p, &["approve", &id, "--key", path(&keys.alice)]);
    own.assert_code(4);
    assert!(
        own.stderr.contains("alice@example.com started run") && own.stderr.contains("allow_self_approval"),
        "{}",
        own.stderr
    );

    pipeline(&p, &server, &format!("{SIGNED}, allow_self_approval: true"), "health-probe");
    let id = waiting(&p, "4.0.1", &alice);
    dh(&p, &["approve", &id, "--key", path(&keys.alice)]).assert_code(0);
    dh(&p, &["resume", &id]).assert_code(0);
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn a_wait_timer_holds_an_approved_run_at_the_gate() {
    let server = Server::fixed(Response::ok("ok"));
    let p = Project::new();
    pipeline(
        &p,
        &server,
        "require_approval: true, approval: name, approvers: [devops-lead], wait_timer: 2s",
        "health-probe",
    );
    let run = p.deployhost(&["run", "pipeline.yaml", "--approved-by", "devops-lead"], &[]);
    run.assert_code(3);
    assert!(run.stderr.contains("wait timer of 2s"), "{}", run.stderr);
    let line = run.stderr.lines().find(|l| l.contains("waits at the gate")).unwrap();
    let id = line.split_whitespace().nth(1).unwrap().to_string();
    let early = dh(&p, &["resume", &id]);
    early.assert_code(3);
    assert!(
        early.stderr.contains("the wait timer of `prod` (2s) has") && early.stderr.contains("left"),
        "{}",
        early.stderr
    );
    assert!(server.requests().is_empty());
    std::thread::sleep(Duration::from_millis(2100));
    dh(&p, &["resume", &id]).assert_code(0);
    assert_eq!(server.requests().len(), 1);
    assert_eq!(status(&p, &id)["run"]["approved_by"], "devops-lead");
}

fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .args(["-c", "user.email=dev@example.com", "-c", "user.name=dev", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "git {args:?}");
}

#[test]
fn a_run_from_a_ref_outside_branches_is_refused_before_any_step() {
    let server = Server::fixed(Response::ok("ok"));
    let p = Project::new();
    pipeline(&p, &server, "branches: [main, \"release/*\"]", "health-probe");
    git(p.path(), &["init", "-q"]);
    git(p.path(), &["commit", "-q", "--allow-empty", "-m", "init"]);
    git(p.path(), &["checkout", "-q", "-b", "feature/x"]);
    let refused = p.deployhost(&["run", "pipeline.yaml"], &[]);
    refused.assert_code(4);
    assert!(
        refused.stderr.contains("takes runs from main, release/* only; this run comes from `feature/x`"),
        "{}",
        refused.stderr
    );
    git(p.path(), &["checkout", "-q", "-b", "release/1.2"]);
    git(p.path(), &["config", "user.email", "dev@example.com"]);
    p.deployhost(&["run", "pipeline.yaml"], &[("USER", "shell-user")]).assert_code(0);
    assert_eq!(server.requests().len(), 1);
    // Outside CI, who started a run is git's user.email in the repository.
    let runs: Value = serde_json::from_str(&dh(&p, &["history", "--json"]).stdout).unwrap();
    assert_eq!(runs[0]["who"], "dev@example.com");
    // In GitHub Actions the ref is GITHUB_REF_NAME; `*` does not cross `/`.
    let actions =
        |r: &str| p.deployhost(&["run", "pipeline.yaml"], &[("GITHUB_ACTIONS", "true"), ("GITHUB_REF_NAME", r)]);
    actions("release/1.2/hotfix").assert_code(4);
    actions("main").assert_code(0);
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn a_typed_name_still_works_where_asked_for_and_says_it_is_not_verified() {
    let server = Server::fixed(Response::ok("ok"));
    let p = Project::new();
    pipeline(&p, &server, "require_approval: true, approval: name, approvers: [\"@devops-lead\"]", "health-probe");
    p.deployhost(&["run", "pipeline.yaml", "--approved-by", "devops-lead"], &[]).assert_code(0);
    let runs: Value = serde_json::from_str(&dh(&p, &["history", "--json"]).stdout).unwrap();
    let id = runs[0]["id"].as_str().unwrap();
    let md = dh(&p, &["report", id]).stdout;
    assert!(md.contains("- [x] Approval recorded — approved by devops-lead (a typed name, not verified)"), "{md}");
    assert!(dh(&p, &["status", id]).stdout.contains("approved by devops-lead (a typed name, not verified)"));
    assert_eq!(status(&p, id)["approval"]["verified"], false);
    let key = dh(&p, &["approve", id, "--key", "nowhere"]);
    assert_ne!(key.code, 0);
}

/// Issue 25, #12: with a typed-name approval nothing signs the plan, yet
/// `resume` of the approved run must still run only the plan recorded when
/// the run began, not the file as edited since.
#[test]
fn resume_runs_only_the_recorded_plan_whatever_the_approval_mode() {
    let server = Server::fixed(Response::ok("ok"));
    let p = Project::new();
    let rules = "require_approval: true, approval: name, approvers: [devops-lead]";
    pipeline(&p, &server, rules, "health-probe");
    let id = waiting(&p, "4.0.0", &[]);
    dh(&p, &["approve", &id, "--as", "devops-lead"]).assert_code(0);
    let approved = std::fs::read_to_string(p.path().join("pipeline.yaml")).unwrap();
    // After the approval, the step gains a shell.
    p.pipeline(&approved.replace("grants: { net: [", "grants: { exec: [sh], net: ["));
    let resume = dh(&p, &["resume", &id]);
    resume.assert_code(4);
    assert!(resume.stderr.contains("resume runs only the plan it recorded"), "{}", resume.stderr);
    assert!(resume.stderr.contains("step `probe`: grants.exec now [sh] (was [])"), "{}", resume.stderr);
    // Another parameter, same grants: named too.
    p.pipeline(&approved.replace("/health", "/other"));
    let resume = dh(&p, &["resume", &id]);
    resume.assert_code(4);
    assert!(resume.stderr.contains("step `probe`: its parameters"), "{}", resume.stderr);
    assert!(server.requests().is_empty(), "{:?}", server.requests());
    // The file as approved resumes.
    p.pipeline(&approved);
    dh(&p, &["resume", &id]).assert_code(0);
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn approval_rules_are_validated_with_their_position() {
    let server = Server::fixed(Response::ok("ok"));
    let p = Project::new();
    let check = |rules: &str, expect: &str| {
        pipeline(&p, &server, rules, "health-probe");
        let v = p.deployhost(&["validate", "pipeline.yaml"], &[]);
        v.assert_code(2);
        assert!(v.stderr.contains("pipeline.yaml:4:") && v.stderr.contains(expect), "{rules}\n{}", v.stderr);
    };
    check("require_approval: true, approvers: [a]", "say how approvers are identified: `approval: signed`");
    check("require_approval: true, approval: typed, approvers: [a]", "unknown variant `typed`");
    check("require_approval: true, approval: signed, approvers: [a]", "needs `allowed_signers: PATH`");
    check(
        "require_approval: true, approval: signed, allowed_signers: nope, approvers: [a]",
        "cannot read the allowed-signers file",
    );
    check("require_approval: true, approval: name, approvers: [a], wait_timers: 1s", "unknown field `wait_timers`");
    check("require_approval: true, approval: name, approvers: [a], wait_timer: soon", "`soon` is not a duration");
    check("branches: [\"\"]", "environments.prod.branches[0]: a branch pattern may not be empty");
    check("allow_self_approval: yes-please", "allow_self_approval");
}

/// A stand-in for GitHub's REST API: the run's approvals, the run, and
/// the membership of team acme/deployers (carol only).
fn github(approvals: Value, starter: &'static str) -> Server {
    Server::start(move |r: &Request, _| match r.path.as_str() {
        "/health" => Response::ok("ok"),
        "/repos/acme/shop/actions/runs/42/approvals" => Response::json(200, &approvals),
        "/repos/acme/shop/actions/runs/42" => Response::json(
            200,
            &json!({ "id": 42, "actor": { "login": "ci-bot" }, "triggering_actor": { "login": starter } }),
        ),
        "/orgs/acme/teams/deployers/memberships/carol" => {
            Response::json(200, &json!({ "state": "active", "role": "member" }))
        }
        _ => Response::json(404, &json!({ "message": "Not Found" })),
    })
}

fn review(login: &str, state: &str, environment: &str) -> Value {
    json!({ "environments": [{ "id": 1, "name": environment, "url": "https://github.com/acme/shop/deployments" }],
            "state": state, "user": { "login": login, "id": 7 }, "comment": format!("{state} by {login}") })
}

const GITHUB: &str = "require_approval: true, approval: github, approvers: [\"@devops-lead\", \"@acme/deployers\"]";

fn in_actions(p: &Project, server: &Server, rules: &str) -> Run {
    in_actions_with(p, server, rules, &[])
}

fn in_actions_with(p: &Project, server: &Server, rules: &str, extra: &[(&str, &str)]) -> Run {
    pipeline(p, server, rules, "health-probe");
    let api = server.url("");
    let summary = p.path().join("summary.md");
    let mut envs = vec![
        ("GITHUB_ACTIONS", "true"),
        ("GITHUB_API_URL", &api),
        ("GITHUB_REPOSITORY", "acme/shop"),
        ("GITHUB_RUN_ID", "42"),
        ("GITHUB_ACTOR", "ci-bot"),
        ("GITHUB_REF_NAME", "main"),
        ("GITHUB_TOKEN", "ghs_standin_token"),
        ("GITHUB_STEP_SUMMARY", summary.to_str().unwrap()),
    ];
    envs.extend_from_slice(extra);
    p.deployhost(&["run", "pipeline.yaml", "--version", "5.0.0"], &envs)
}

fn health_calls(server: &Server) -> usize {
    server.requests().iter().filter(|r| r.path == "/health").count()
}

#[test]
fn github_mode_takes_the_review_github_recorded() {
    // Approved by a listed login.
    let p = Project::new();
    let server = github(json!([review("devops-lead", "approved", "prod")]), "ci-bot");
    in_actions(&p, &server, GITHUB).assert_code(0);
    assert_eq!(health_calls(&server), 1);
    let asked = server.requests().into_iter().find(|r| r.path.ends_with("/approvals")).unwrap();
    assert_eq!(asked.header("authorization"), Some("Bearer ghs_standin_token"));
    assert_eq!(asked.header("accept"), Some("application/vnd.github+json"));
    assert_eq!(asked.header("x-github-api-version"), Some("2022-11-28"));
    let runs: Value = serde_json::from_str(&dh(&p, &["history", "--json"]).stdout).unwrap();
    let s = status(&p, runs[0]["id"].as_str().unwrap());
    assert_eq!(s["approval"]["mode"], "github");
    assert_eq!(s["approval"]["approver"], "devops-lead");
    assert_eq!(s["approval"]["detail"], "approved by devops-lead");
    let summary = std::fs::read_to_string(p.path().join("summary.md")).unwrap();
    assert!(summary.contains("approved by devops-lead in GitHub"), "{summary}");
    assert!(!summary.contains("ghs_standin_token"));

    // Rejected.
    let p = Project::new();
    let server = github(json!([review("devops-lead", "rejected", "prod")]), "ci-bot");
    let run = in_actions(&p, &server, GITHUB);
    run.assert_code(4);
    assert!(run.stderr.contains("devops-lead rejected the deployment to `prod` in GitHub"), "{}", run.stderr);
    assert_eq!(health_calls(&server), 0);

    // None for this environment (only staging was reviewed).
    let p = Project::new();
    let server = github(json!([review("devops-lead", "approved", "staging")]), "ci-bot");
    let run = in_actions(&p, &server, GITHUB);
    run.assert_code(4);
    assert!(run.stderr.contains("protected by required reviewers"), "{}", run.stderr);
    assert_eq!(health_calls(&server), 0);
    assert!(!run.all_output().contains("ghs_standin_token"));
}

#[test]
fn github_mode_resolves_teams_and_refuses_self_review() {
    // carol is an active member of @acme/deployers; team lookups need a
    // token with org access: DEPLOYHOST_GITHUB_TOKEN wins over GITHUB_TOKEN.
    let p = Project::new();
    let server = github(json!([review("carol", "approved", "prod")]), "ci-bot");
    in_actions_with(&p, &server, GITHUB, &[("DEPLOYHOST_GITHUB_TOKEN", "ghp_org_reader")]).assert_code(0);
    let team = server.requests().into_iter().find(|r| r.path == "/orgs/acme/teams/deployers/memberships/carol");
    assert_eq!(team.expect("a membership lookup").header("authorization"), Some("Bearer ghp_org_reader"));
    // dave is not.
    let p = Project::new();
    let server = github(json!([review("dave", "approved", "prod")]), "ci-bot");
    let run = in_actions(&p, &server, GITHUB);
    run.assert_code(4);
    assert!(run.stderr.contains("dave is not a listed approver of `prod`"), "{}", run.stderr);

    // The reviewer started the workflow run.
    let p = Project::new();
    let server = github(json!([review("devops-lead", "approved", "prod")]), "devops-lead");
    let run = in_actions(&p, &server, GITHUB);
    run.assert_code(4);
    assert!(run.stderr.contains("devops-lead started this workflow run and may not approve it"), "{}", run.stderr);
    assert_eq!(health_calls(&server), 0);
    in_actions(&p, &server, &format!("{GITHUB}, allow_self_approval: true")).assert_code(0);
    assert_eq!(health_calls(&server), 1);

    // Not an http(s) API.
    let p = Project::new();
    pipeline(&p, &server, GITHUB, "health-probe");
    let run = p.deployhost(
        &["run", "pipeline.yaml"],
        &[("GITHUB_API_URL", "file:///etc"), ("GITHUB_REPOSITORY", "acme/shop"), ("GITHUB_RUN_ID", "42")],
    );
    run.assert_code(2);
    assert!(run.stderr.contains("must be an http(s) URL"), "{}", run.stderr);
}

#[test]
fn a_signature_copied_into_the_shared_store_for_another_run_is_refused() {
    let pg = Postgres::start();
    pg.psql("postgres", "create database approvals_state");
    let state = pg.url("approvals_state");
    let server = Server::fixed(Response::ok("ok"));
    let p = Project::new();
    let keys = signers(&p);
    pipeline(&p, &server, SIGNED, "health-probe");
    let envs = [("DEPLOYHOST_STATE", state.as_str()), ("DEPLOYHOST_ACTOR", "ci-bot")];
    let first = waiting(&p, "6.0.0", &envs);
    let second = waiting(&p, "6.0.0", &envs);
    p.deployhost(&["approve", &first, "--key", path(&keys.alice)], &envs).assert_code(0);
    let stored = pg.psql("approvals_state", &format!("select signature from approvals where run_id = '{first}'"));
    assert!(stored.contains("BEGIN SSH SIGNATURE"), "{stored}");
    // Someone with write access to the store replays it for the second run.
    pg.psql(
        "approvals_state",
        &format!(
            "insert into approvals select '{second}', mode, approver, signature, detail, at from approvals where run_id = '{first}';
             update runs set approved_by = 'alice@example.com' where id = '{second}'"
        ),
    );
    let resume = p.deployhost(&["resume", &second], &envs);
    resume.assert_code(4);
    assert!(resume.stderr.contains("does not verify for this run"), "{}", resume.stderr);
    assert!(server.requests().is_empty());
    p.deployhost(&["resume", &first], &envs).assert_code(0);
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn no_grant_may_cover_the_allowed_signers_file() {
    // A step that could write allowed_signers could add its own key and sign
    // the next prod approval (found in review).
    let server = Server::fixed(Response::ok("ok"));
    let p = Project::new();
    signers(&p);
    p.mkdir("keys");
    std::fs::rename(p.path().join("allowed_signers"), p.path().join("keys/allowed_signers")).unwrap();
    let rules = SIGNED.replace("allowed_signers: allowed_signers", "allowed_signers: keys/allowed_signers");
    p.pipeline(&format!(
        "pipeline: shop\nenvironment: prod\nenvironments:\n  prod: {{ {rules} }}\nstages:\n  - name: s\n    steps:\n      - name: writer\n        uses: health-probe\n        with: {{ url: \"{}\" }}\n        grants: {{ net: [\"{}\"], fs: {{ write: [keys] }} }}\n",
        server.url("/health"),
        server.grant()
    ));
    let refused = dh(&p, &["validate", "pipeline.yaml"]);
    refused.assert_code(2);
    assert!(refused.stderr.contains("stages[0].steps[0].grants.fs.write[0]"), "{}", refused.stderr);
    assert!(refused.stderr.contains("the allowed_signers of environment `prod`"), "{}", refused.stderr);
    assert!(server.requests().is_empty());
}
