//! `digitalocean-app` against a stand-in for the App Platform API on
//! 127.0.0.1: it checks the token and paths, walks a deployment through
//! the phases a test scripts, serves the app (its spec and active
//! deployment), the build and deploy logs behind `historic_urls`, and the
//! rollback endpoints (validate, then rollback), recording every call.

use super::{json_body, metric, one_step, output, summary};
use crate::support::Project;
use crate::support::http::{Request, Response, Server};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

const APP: &str = "4f6c71e2-1e90-4762-9fee-6cc4a0a9f2cf";
const DEPLOYMENT: &str = "b6bdf840-2854-4f87-a36c-5f231c617c84";
/// The deployment that was active before the one a test starts.
const PREVIOUS: &str = "3aa4d20e-5527-4c00-b496-601fbd22520a";
/// The deployment a rollback creates.
const ROLLBACK: &str = "9c1e7a52-0d44-4b8e-a1f0-7de2c3b4a5f6";
const TOKEN: &str = "dop_v1_0a1b2c3d4e5f";
const BUILD_LOG: &str =
    "Step 4/9 : RUN npm ci\nnpm ERR! code ERESOLVE\nnpm ERR! could not resolve dependency: react@19\nbuild failed\n";

fn deployment(phase: &str, steps: Value) -> Response {
    deployment_of(DEPLOYMENT, phase, steps)
}

fn deployment_of(id: &str, phase: &str, steps: Value) -> Response {
    Response::json(
        200,
        &json!({ "deployment": {
            "id": id, "cause": "manual", "phase": phase,
            "progress": { "success_steps": 1, "total_steps": 3, "steps": steps },
        }}),
    )
}

fn not_found() -> Response {
    Response::json(404, &json!({ "id": "not_found", "message": "The resource you were accessing could not be found." }))
}

fn app_spec(tag: &str) -> Value {
    json!({ "name": "shop", "region": "ams", "services": [
        { "name": "api", "http_port": 8080,
          "image": { "registry_type": "DOCR", "repository": "shop-api", "tag": tag } },
        { "name": "docs", "github": { "repo": "acme/docs", "branch": "main" } },
    ]})
}

/// Answers the create with PENDING_BUILD, then the n-th poll with
/// `polls[n]` (the last one repeats); a wrong token or path gets the
/// API's error answer.
fn api(polls: Vec<Response>) -> Server {
    let seen = AtomicUsize::new(0);
    let port: Arc<OnceLock<u16>> = Arc::new(OnceLock::new());
    let own = port.clone();
    let server = Server::start(move |request: &Request, _| {
        let logs = format!("http://127.0.0.1:{}", own.get().copied().unwrap_or_default());
        if request.path == "/historic/build.log" {
            return Response::ok(BUILD_LOG);
        }
        if request.path == "/historic/deploy.log" {
            return Response::ok("deploy: waiting for the build\n");
        }
        if request.header("authorization") != Some(format!("Bearer {TOKEN}").as_str()) {
            return Response::json(401, &json!({ "id": "unauthorized", "message": "Unable to authenticate you." }));
        }
        let app = format!("/v2/apps/{APP}");
        let base = format!("{app}/deployments");
        let path = request.path.as_str();
        match request.method.as_str() {
            "GET" if path == app => Response::json(
                200,
                &json!({ "app": { "id": APP, "spec": app_spec("1.0.0"),
                    "active_deployment": { "id": PREVIOUS, "phase": "ACTIVE" } } }),
            ),
            "PUT" if path == app => {
                let spec = json_body(request)["spec"].clone();
                Response::json(
                    200,
                    &json!({ "app": { "id": APP, "spec": spec,
                        "active_deployment": { "id": PREVIOUS, "phase": "ACTIVE" },
                        "pending_deployment": { "id": DEPLOYMENT, "phase": "PENDING_BUILD" } } }),
                )
            }
            "POST" if path == base => deployment("PENDING_BUILD", json!([])),
            "GET" if path == format!("{base}/{DEPLOYMENT}") => {
                let n = seen.fetch_add(1, Ordering::SeqCst);
                polls[n.min(polls.len() - 1)].clone()
            }
            "GET" if path.starts_with(&format!("{base}/{DEPLOYMENT}/logs?")) => {
                let kind = if path.contains("type=BUILD") { "build" } else { "deploy" };
                Response::json(
                    200,
                    &json!({ "live_url": "", "historic_urls": [format!("{logs}/historic/{kind}.log")] }),
                )
            }
            "POST" if path == format!("{app}/rollback/validate") => {
                if json_body(request)["deployment_id"] == PREVIOUS {
                    Response::json(
                        200,
                        &json!({ "valid": true, "warnings": [
                        { "code": "image_source_missing", "message": "component api will be rebuilt" } ] }),
                    )
                } else {
                    Response::json(
                        200,
                        &json!({ "valid": false,
                        "error": { "code": "incompatible_phase", "message": "deployment is not ACTIVE or SUPERSEDED" } }),
                    )
                }
            }
            "POST" if path == format!("{app}/rollback") => deployment_of(ROLLBACK, "PENDING_DEPLOY", json!([])),
            "GET" if path == format!("{base}/{ROLLBACK}") => deployment_of(ROLLBACK, "ACTIVE", json!([])),
            _ => not_found(),
        }
    });
    port.set(server.port).unwrap();
    server
}

fn pipeline(p: &Project, server: &Server, app: &str, extra: &str) {
    let with = format!(
        "{{ token_secret: do_token, app_id: \"{app}\", api_url: \"{}\", poll_interval: 20ms{extra} }}",
        server.url("")
    );
    let grants = format!("{{ net: [\"{}\"], secrets: [do_token] }}", server.grant());
    one_step(p, "deploy-app", "digitalocean-app", &with, &grants, &[("do_token", "DIGITALOCEAN_TOKEN")]);
}

/// How often the deployment was polled.
fn polls(server: &Server) -> usize {
    let path = format!("/v2/apps/{APP}/deployments/{DEPLOYMENT}");
    server.requests().iter().filter(|r| r.method == "GET" && r.path == path).count()
}

fn posts(server: &Server) -> Vec<Request> {
    server.requests().into_iter().filter(|r| r.method == "POST").collect()
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
    let create = &posts(&server)[0];
    assert_eq!(
        (create.method.as_str(), create.path.as_str()),
        ("POST", format!("/v2/apps/{APP}/deployments").as_str())
    );
    assert_eq!(json_body(create), json!({ "force_build": true }));
    assert_eq!(polls(&server), 4, "polled until ACTIVE, through one 503");
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
    // The build and deploy logs, fetched from the URLs the API handed out.
    let log = std::fs::read_to_string(p.last_run_dir().join("logs/deploy-app.log")).unwrap();
    assert!(log.contains("BUILD | npm ERR! code ERESOLVE") && log.contains("BUILD | build failed"), "{log}");
    assert!(log.contains("DEPLOY | deploy: waiting for the build"), "{log}");
    let outputs = &p.step("deploy-app")["outputs"];
    assert!(outputs.get("compensate").is_none(), "a failed deployment left the previous one active: {outputs}");
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
    assert!(posts(&server).is_empty(), "nothing was deployed");

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
    assert!(polls(&server) >= 3, "it kept polling until the timeout");
}

#[test]
fn an_image_tag_is_deployed_through_an_app_spec_update() {
    let server = api(vec![deployment("DEPLOYING", json!([])), deployment("ACTIVE", json!([]))]);
    let p = Project::new();
    pipeline(&p, &server, APP, ", image_tag: \"1.1.0\"");
    p.run(&[("DIGITALOCEAN_TOKEN", TOKEN)]).assert_code(0);
    let puts: Vec<Request> = server.requests().into_iter().filter(|r| r.method == "PUT").collect();
    assert_eq!(puts.len(), 1);
    let spec = &json_body(&puts[0])["spec"];
    assert_eq!(spec["services"][0]["image"]["tag"], "1.1.0");
    assert_eq!(spec["services"][0]["image"]["repository"], "shop-api");
    assert_eq!(spec["services"][1], app_spec("1.0.0")["services"][1], "a source component is left alone");
    assert!(posts(&server).is_empty(), "the spec update started the deployment; no second one");
    assert_eq!(output(&p, "deploy-app", "image_tag"), "1.1.0");
    assert_eq!(output(&p, "deploy-app", "previous_deployment_id"), PREVIOUS);
    let compensate: Value = serde_json::from_str(&output(&p, "deploy-app", "compensate")).unwrap();
    assert_eq!(compensate, json!({ "rollback_to": PREVIOUS }));
}

#[test]
fn a_deploy_followed_by_a_failed_health_check_rolls_back_to_the_previous_deployment() {
    let server = api(vec![deployment("BUILDING", json!([])), deployment("ACTIVE", json!([]))]);
    let app = Server::fixed(Response::status(503));
    let p = Project::new();
    pipeline(&p, &server, APP, ", image_tag: \"1.1.0\"");
    let mut yaml = std::fs::read_to_string(p.path().join("pipeline.yaml")).unwrap();
    yaml.push_str(&format!(
        "  - name: health\n    steps:\n      - name: probe\n        uses: health-probe\n        with: {{ url: \"{}\" }}\n        grants: {{ net: [\"{}\"] }}\nrollback:\n  on: [health_check_failure]\n",
        app.url("/health"),
        app.grant()
    ));
    p.pipeline(&yaml);
    let run = p.run(&[("DIGITALOCEAN_TOKEN", TOKEN)]);
    run.assert_code(1);
    assert!(run.stdout.contains("rolled back: health check `probe` failed"), "{}", run.stdout);

    // The rollback validated, then rolled back to the deployment active before.
    let calls: Vec<String> = posts(&server).iter().map(|r| r.path.clone()).collect();
    assert_eq!(calls, [format!("/v2/apps/{APP}/rollback/validate"), format!("/v2/apps/{APP}/rollback")]);
    let rollback = &posts(&server)[1];
    assert_eq!(json_body(rollback), json!({ "deployment_id": PREVIOUS, "skip_pin": true }));
    let results = p.results();
    assert_eq!(results["rollback"]["ok"], true, "{:#}", results["rollback"]);
    let step = &results["rollback"]["steps"][0];
    assert_eq!(step["step"], "compensate-deploy-app");
    assert_eq!(step["status"], "passed");
    assert!(step["summary"].as_str().unwrap().contains(&format!("rolled back to deployment {PREVIOUS}")), "{step:#}");
    assert!(!format!("{}{}", run.all_output(), p.run_files_text()).contains(TOKEN), "the token leaked");
}

#[test]
fn a_rollback_the_api_says_is_invalid_is_refused_with_its_reason() {
    let server = api(vec![deployment("ACTIVE", json!([]))]);
    let p = Project::new();
    pipeline(&p, &server, APP, &format!(", rollback_to: \"{DEPLOYMENT}\""));
    p.run(&[("DIGITALOCEAN_TOKEN", TOKEN)]).assert_code(1);
    let text = summary(&p, "deploy-app");
    assert!(
        text.contains("cannot roll back to") && text.contains("incompatible_phase: deployment is not ACTIVE"),
        "{text}"
    );
    assert_eq!(posts(&server).len(), 1, "only the validation was sent");
}
