//! `deployhost report`: the seed's 28 checklist items, each ticked only
//! from evidence in the run or, for what a person vouches for, an
//! attestation by a listed approver (`deployhost attest`), recorded with
//! its time in the state store.

use crate::support::Project;
use crate::support::http::{Response, Server};
use serde_json::Value;

fn report(p: &Project, run_id: &str) -> Value {
    let out = p.deployhost(&["report", run_id, "--format", "json"], &[]);
    out.assert_code(0);
    serde_json::from_str(&out.stdout).unwrap()
}

fn ticked(report: &Value) -> Vec<String> {
    ["pre_deployment", "post_deployment"]
        .iter()
        .flat_map(|list| report[list].as_array().unwrap())
        .filter(|i| i["done"] == true)
        .map(|i| i["key"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_report_lists_28_items_and_ticks_none_without_evidence_or_attestation() {
    let app = Server::fixed(Response::ok("up"));
    let slack = Server::fixed(Response::ok("ok"));
    let p = Project::new();
    p.pipeline(&format!(
        "pipeline: shop\nenvironment: prod\nversion: \"3.1.0\"\nenvironments:\n  prod: {{ approvers: [\"@devops-lead\"] }}\nsecrets:\n  hook: {{ env: HOOK }}\nstages:\n  - name: pre-flight\n    steps:\n      - name: tests\n        run: \"true\"\n        grants: {{ exec: [\"true\"] }}\n  - name: health\n    steps:\n      - name: api\n        uses: health-probe\n        with: {{ url: \"{}\" }}\n        grants: {{ net: [\"{}\"] }}\n  - name: notify\n    steps:\n      - name: slack\n        uses: slack-notify\n        with: {{ webhook_secret: hook, text: \"deployed ${{VERSION}}\" }}\n        grants: {{ net: [\"{}\"], secrets: [hook] }}\n",
        app.url("/health"),
        app.grant(),
        slack.grant()
    ));
    p.run(&[("HOOK", &slack.url("/services/T0/B0/x"))]).assert_code(0);
    let run_id = p.results()["run_id"].as_str().unwrap().to_string();

    let first = report(&p, &run_id);
    let pre = first["pre_deployment"].as_array().unwrap();
    let post = first["post_deployment"].as_array().unwrap();
    assert_eq!((pre.len(), post.len()), (16, 12), "the seed's 16 + 12 items");
    assert_eq!(first["checklist_items"], 28);
    let mut keys: Vec<&str> = pre.iter().chain(post).map(|i| i["key"].as_str().unwrap()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 28, "every item has its own key");
    // Exactly what this run shows: a test step, a passing health check, a
    // Slack message; nothing about staging, UAT, backups, reviews or people.
    let mut shown = ticked(&first);
    shown.sort();
    assert_eq!(
        shown,
        ["health", "health_configured", "logs_clean", "postmortem", "release_notes", "slack", "stakeholders", "tests"]
    );
    let review = pre.iter().find(|i| i["key"] == "code_review").unwrap();
    assert!(review["evidence"].as_str().unwrap().contains("awaits `deployhost attest"), "{review}");

    // Only a listed approver attests, only items a person can vouch for.
    let stranger = p.deployhost(&["attest", &run_id, "--item", "code_review", "--as", "mallory"], &[]);
    stranger.assert_code(4);
    assert!(stranger.stderr.contains("`mallory` is not a listed approver of `prod`"), "{}", stranger.stderr);
    let evidence_only = p.deployhost(&["attest", &run_id, "--item", "backup", "--as", "@devops-lead"], &[]);
    evidence_only.assert_code(2);
    assert!(evidence_only.stderr.contains("`backup` is not an item a person attests"), "{}", evidence_only.stderr);
    assert_eq!(ticked(&report(&p, &run_id)).len(), 8, "refused attestations tick nothing");

    let ok =
        p.deployhost(&["attest", &run_id, "--item", "code_review", "--item", "oncall", "--as", "devops-lead"], &[]);
    ok.assert_code(0);
    assert!(ok.stdout.contains("`code_review` attested by devops-lead at 20"), "{}", ok.stdout);
    let second = report(&p, &run_id);
    assert_eq!(second["checklist_ticked"], 10);
    let review = second["pre_deployment"].as_array().unwrap().iter().find(|i| i["key"] == "code_review").unwrap();
    assert!(review["evidence"].as_str().unwrap().starts_with("attested by devops-lead at 20"), "{review}");
    assert_eq!(second["attestations"].as_array().unwrap().len(), 2);

    let markdown = p.deployhost(&["report", &run_id], &[]);
    assert!(markdown.stdout.contains("Checklist: 10 of 28 items ticked."), "{}", markdown.stdout);
    assert!(
        markdown.stdout.contains("- [x] Code review approved (2+ reviewers) — attested by devops-lead"),
        "{}",
        markdown.stdout
    );
    assert!(markdown.stdout.contains("- [ ] Migrations backed up"), "{}", markdown.stdout);
}

#[test]
fn a_rolled_back_deploy_shows_its_rollback_in_the_report_and_the_page() {
    let app = Server::fixed(Response::status(503));
    let p = Project::new();
    p.pipeline(&format!(
        "pipeline: shop\nenvironment: prod\nversion: \"3.2.0\"\nstages:\n  - name: health\n    steps:\n      - name: api\n        uses: health-probe\n        with: {{ url: \"{}\" }}\n        grants: {{ net: [\"{}\"] }}\nrollback:\n  on: [health_check_failure]\n",
        app.url("/health"),
        app.grant()
    ));
    p.run(&[]).assert_code(1);
    let run_id = p.results()["run_id"].as_str().unwrap().to_string();
    let markdown = p.deployhost(&["report", &run_id], &[]);
    markdown.assert_code(0);
    assert!(
        markdown.stdout.contains("## Rollback\n\nRolled back (completed): health check \\`api\\` failed"),
        "{}",
        markdown.stdout
    );
    assert!(markdown.stdout.contains("- [ ] Post-mortem scheduled (if issues) — rolled back"), "{}", markdown.stdout);
    assert!(markdown.stdout.contains("- [ ] Health checks passing"), "{}", markdown.stdout);
    let json = report(&p, &run_id);
    assert_eq!(json["rollback"]["reason"], "health check `api` failed");
    let html = p.deployhost(&["report", &run_id, "--format", "html"], &[]);
    assert!(html.stdout.contains("rollback completed: health check `api` failed"), "{}", html.stdout);
}
