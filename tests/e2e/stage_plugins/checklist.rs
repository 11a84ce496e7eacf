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

const REPO: &str = "acme/shop";
const GH_TOKEN: &str = "ghs_review_reader_0a1b2c";
const SHA: &str = "ecdd80bb57125d7ba9641ffaa4d7d2c19d3f3091";

/// A review as `GET /repos/{owner}/{repo}/pulls/{number}/reviews` lists it.
fn gh_review(id: u64, login: &str, state: &str) -> Value {
    serde_json::json!({
        "id": id, "node_id": format!("PRR_{id}"), "user": { "login": login, "id": id + 1000, "type": "User" },
        "body": "", "state": state, "author_association": "MEMBER", "submitted_at": format!("2026-11-30T08:{id:02}:00Z"),
        "commit_id": SHA, "html_url": format!("https://github.com/{REPO}/pull/42#pullrequestreview-{id}"),
    })
}

/// The GitHub REST API for one repository: pull request 42's reviews (as
/// `reviews` holds them at the time of the request), and the pull requests
/// associated with commit SHA; a request without the token gets 401.
fn github(reviews: std::sync::Arc<std::sync::Mutex<Value>>) -> Server {
    Server::start(move |r, _| {
        if r.header("authorization") != Some(format!("Bearer {GH_TOKEN}").as_str())
            || r.header("accept") != Some("application/vnd.github+json")
        {
            return Response::json(401, &serde_json::json!({ "message": "Bad credentials", "status": "401" }));
        }
        let path = r.path.split('?').next().unwrap_or_default();
        if path == format!("/repos/{REPO}/pulls/42/reviews") {
            Response::json(200, &reviews.lock().unwrap())
        } else if path == format!("/repos/{REPO}/commits/{SHA}/pulls") {
            Response::json(
                200,
                &serde_json::json!([{ "number": 42, "state": "closed", "merge_commit_sha": SHA,
                    "head": { "sha": "0d1c2b3a", "ref": "feature" }, "base": { "ref": "main" } }]),
            )
        } else {
            Response::json(404, &serde_json::json!({ "message": "Not Found", "status": "404" }))
        }
    })
}

#[test]
fn in_github_actions_the_code_review_is_ticked_from_two_approvals_on_the_pull_request() {
    use std::sync::{Arc, Mutex};
    let reviews = Arc::new(Mutex::new(serde_json::json!([])));
    let api = github(reviews.clone());
    let p = Project::new();
    p.pipeline("pipeline: shop\nenvironment: prod\nversion: \"3.1.0\"\nstages:\n  - name: pre-flight\n    steps:\n      - name: tests\n        run: \"true\"\n        grants: { exec: [\"true\"] }\n");
    p.run(&[]).assert_code(0);
    let run_id = p.results()["run_id"].as_str().unwrap().to_string();
    let event = p.write("event.json", "{\"action\": \"synchronize\", \"pull_request\": {\"number\": 42}}");
    let push = p.write("push.json", "{\"ref\": \"refs/heads/main\", \"after\": \"ecdd80bb\"}");
    let review_item = |event: &std::path::Path, token: &str| {
        let base = api.url("");
        let event = event.display().to_string();
        let env = [
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_API_URL", base.as_str()),
            ("GITHUB_REPOSITORY", REPO),
            ("GITHUB_EVENT_PATH", event.as_str()),
            ("GITHUB_SHA", SHA),
            ("GITHUB_TOKEN", token),
        ];
        let out = p.deployhost(&["report", &run_id, "--format", "json"], &env);
        out.assert_code(0);
        let report: Value = serde_json::from_str(&out.stdout).unwrap();
        let item =
            report["pre_deployment"].as_array().unwrap().iter().find(|i| i["key"] == "code_review").unwrap().clone();
        (item["done"] == true, item["evidence"].as_str().unwrap().to_string())
    };

    *reviews.lock().unwrap() = serde_json::json!([gh_review(1, "ana", "APPROVED"), gh_review(2, "bo", "COMMENTED")]);
    let (done, why) = review_item(&event, GH_TOKEN);
    assert!(!done, "one approval is not two: {why}");
    assert!(why.contains("pull request #42: approved by ana; 2 reviewers must approve"), "{why}");
    assert!(why.contains("awaits `deployhost attest"), "a person may still attest it: {why}");

    reviews.lock().unwrap().as_array_mut().unwrap().push(gh_review(3, "bo", "APPROVED"));
    let (done, why) = review_item(&event, GH_TOKEN);
    assert!(done, "{why}");
    assert_eq!(why, "pull request #42 approved by ana, bo");
    // A push to main: the pull request GitHub associates with the commit.
    let (done, why) = review_item(&push, GH_TOKEN);
    assert!(done && why == "pull request #42 approved by ana, bo", "{why}");
    let asked: Vec<String> = api.requests().iter().map(|r| r.path.clone()).collect();
    assert!(asked.contains(&format!("/repos/{REPO}/commits/{SHA}/pulls")), "{asked:?}");

    // A later request for changes by one of the approvers undoes the tick.
    reviews.lock().unwrap().as_array_mut().unwrap().push(gh_review(4, "bo", "CHANGES_REQUESTED"));
    let (done, why) = review_item(&event, GH_TOKEN);
    assert!(!done, "{why}");
    assert!(why.contains("pull request #42: changes requested by bo (approved by ana)"), "{why}");

    // A token GitHub refuses: said, not ticked, not a failure of the report.
    let (done, why) = review_item(&event, "ghs_wrong");
    assert!(!done && why.contains("answered 401") && why.contains("Bad credentials"), "{why}");
    let all = format!("{:?}", api.requests().iter().map(|r| r.headers.clone()).collect::<Vec<_>>());
    assert!(all.contains(GH_TOKEN), "the token went to the API");
    let report = p.deployhost(&["report", &run_id, "--format", "json"], &[]);
    assert!(!report.stdout.contains(GH_TOKEN) && !report.stdout.contains("ghs_wrong"));
}
