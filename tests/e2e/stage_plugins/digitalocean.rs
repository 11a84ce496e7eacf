//! `digitalocean-app` against a stand-in for the App Platform API on
//! 127.0.0.1: it checks the token and paths, and walks a deployment
//! through the phases a test scripts.

use super::{json_body, metric, one_step, output, summary};
use crate::support::Project;
use crate::support::http::{Request, Response, Server};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};

const APP: &str = "4f6c71e2-1e90-4762-9fee-6cc4a0a9f2cf";
const DEPLOYMENT: &str = "b6bdf840-2854-4f87-a36c-5f231c617c84";
const TOKEN: &str = "dop_v1_0a1b2c3d4e5f";

fn deployment(phase: &str, steps: Value) -> Response {
    Response::json(
        200,
        &json!({ "deployment": {
            "id": DEPLOYMENT, "cause": "manual", "phase": phase,
            "progress": { "success_steps": 1, "total_steps": 3, "steps": steps },
        }}),
    )
}

/// Answers the create with PENDING_BUILD, then the n-th poll with
/// `polls[n]` (the last one repeats); a wrong token or path gets the
/// API's error answer.
fn api(polls: Vec<Response>) -> Server {
    let seen = AtomicUsize::new(0);
    Server::start(move |request: &Request, _| {
        if request.header("authorization") != Some(format!("Bearer {TOKEN}").as_str()) {
            return Response::json(401, &json!({ "id": "unauthorized", "message": "Unable to authenticate you." }));
        }
        let base = format!("/v2/apps/{APP}/deployments");
        match (request.method.as_str(), request.path.as_str()) {
            ("POST", path) if path == base => deployment("PENDING_BUILD", json!([])),
            ("GET", path) if path == format!("{base}/{DEPLOYMENT}") => {
                let n = seen.fetch_add(1, Ordering::SeqCst);
                polls[n.min(polls.len() - 1)].clone()
            }
            _ => Response::json(
                404,
                &json!({ "id": "not_found", "message": "The resource you were accessing could not be found." }),
            ),
        }
    })
}

fn pipeline(p: &Project, server: &Server, app: &str, extra: &str) {
    let with = format!(
        "{{ token_secret: do_token, app_id: \"{app}\", api_url: \"{}\", poll_interval: 20ms{extra} }}",
        server.url("")
    );
    let grants = format!("{{ net: [\"{}\"], secrets: [do_token] }}", server.grant());
    one_step(p, "deploy-app", "digitalocean-app", &with, &grants, &[("do_token", "DIGITALOCEAN_TOKEN")]);
}

fn gets(server: &Server) -> usize {
    server.requests().iter().filter(|r| r.method == "GET").count()
}

#[test]
fn a_deployment_is_polled_through_its_phases_until_active() {
    let server = api(vec![
        deployment("BUILDING", json!([])),
        // A passing hiccup of the API is retried, not a failure.
        Response::json(503, &json!({ "id": "service_unavailable", "message": "try again" })),
        deployment("DEPLOYING", json!([])),
        deployment("ACTIVE", json!([])),
    ]);
    let p = Project::new();
    pipeline(&p, &server, APP, ", force_build: true");
    p.run(&[("DIGITALOCEAN_TOKEN", TOKEN)]).assert_code(0);
    let create = &server.requests()[0];
    assert_eq!(
        (create.method.as_str(), create.path.as_str()),
        ("POST", format!("/v2/apps/{APP}/deployments").as_str())
    );
    assert_eq!(json_body(create), json!({ "force_build": true }));
    assert_eq!(gets(&server), 4, "polled until ACTIVE, through one 503");
    assert_eq!(output(&p, "deploy-app", "deployment_id"), DEPLOYMENT);
    assert_eq!(output(&p, "deploy-app", "phase"), "ACTIVE");
    assert!(summary(&p, "deploy-app").contains("is ACTIVE"), "{}", summary(&p, "deploy-app"));
    assert!(metric(&p, "deploy-app", "deploy_seconds").is_some());
    let log = std::fs::read_to_string(p.last_run_dir().join("logs/deploy-app.log")).unwrap();
    assert!(log.contains("try again"), "the retried 503 is logged: {log}");
}

#[test]
fn an_error_phase_fails_with_the_failing_step_and_its_reason() {
    let steps = json!([
        { "name": "build", "status": "SUCCESS" },
        { "name": "deploy", "status": "ERROR", "steps": [
            { "name": "web", "component_name": "web", "status": "ERROR",
              "reason": { "code": "DeployContainerHealthChecksFailed", "message": "Your app failed its health checks on port 8080." } }
        ]},
    ]);
    let server = api(vec![deployment("ERROR", steps)]);
    let p = Project::new();
    pipeline(&p, &server, APP, "");
    p.run(&[("DIGITALOCEAN_TOKEN", TOKEN)]).assert_code(1);
    let text = summary(&p, "deploy-app");
    assert!(
        text.contains(&format!("deployment {DEPLOYMENT} ended ERROR: step web (component web): Your app failed its health checks on port 8080.")),
        "{text}"
    );
    assert_eq!(output(&p, "deploy-app", "phase"), "ERROR");
}

#[test]
fn a_canceled_deployment_fails() {
    let server = api(vec![deployment("CANCELED", json!([]))]);
    let p = Project::new();
    pipeline(&p, &server, APP, "");
    p.run(&[("DIGITALOCEAN_TOKEN", TOKEN)]).assert_code(1);
    assert!(summary(&p, "deploy-app").contains("ended CANCELED"), "{}", summary(&p, "deploy-app"));
}

#[test]
fn an_api_error_body_is_reported() {
    let server = api(vec![deployment("ACTIVE", json!([]))]);
    let p = Project::new();
    pipeline(&p, &server, "00000000-0000-0000-0000-000000000000", "");
    p.run(&[("DIGITALOCEAN_TOKEN", TOKEN)]).assert_code(1);
    let text = summary(&p, "deploy-app");
    assert!(text.contains("HTTP 404: not_found: The resource you were accessing could not be found."), "{text}");
    assert_eq!(gets(&server), 0);

    p.run(&[("DIGITALOCEAN_TOKEN", "dop_v1_wrong")]).assert_code(1);
    assert!(summary(&p, "deploy-app").contains("HTTP 401: unauthorized: Unable to authenticate you."));
}

#[test]
fn a_deployment_that_never_settles_times_out_with_its_last_phase() {
    let server = api(vec![deployment("BUILDING", json!([]))]);
    let p = Project::new();
    pipeline(&p, &server, APP, ", timeout: 300ms");
    p.run(&[("DIGITALOCEAN_TOKEN", TOKEN)]).assert_code(1);
    let text = summary(&p, "deploy-app");
    assert!(text.contains("still BUILDING after 300ms"), "{text}");
    assert!(gets(&server) >= 3, "it kept polling until the timeout");
}
