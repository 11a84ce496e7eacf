//! `digitalocean-app` against the stand-in for the App Platform API on
//! 127.0.0.1 (support/digitalocean.rs), which the prod pipeline's test
//! shares.

use super::{json_body, metric, one_step, output, summary};
use crate::support::Project;
use crate::support::digitalocean::{self, DEPLOYMENT, PREVIOUS, app_spec, deployment};
use crate::support::http::{Request, Response, Server};
use serde_json::{Value, json};

const APP: &str = "4f6c71e2-1e90-4762-9fee-6cc4a0a9f2cf";
const TOKEN: &str = "dop_v1_0a1b2c3d4e5f";

fn api(polls: Vec<Response>) -> Server {
    digitalocean::api(TOKEN, &[APP], polls)
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
