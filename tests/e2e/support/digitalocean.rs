//! A stand-in for the DigitalOcean App Platform API on 127.0.0.1: it checks
//! the bearer token and paths, serves each app (its spec and active
//! deployment), takes a spec update (`PUT /v2/apps/{id}`) or a new
//! deployment (`POST …/deployments`), walks the deployment through the
//! phases a test scripts, serves the build and deploy logs behind
//! `historic_urls`, and the rollback endpoints (validate, then rollback),
//! answering with the API's documented JSON shapes; every call is recorded.

use super::http::{Request, Response, Server};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// The deployment a deploy creates.
pub const DEPLOYMENT: &str = "b6bdf840-2854-4f87-a36c-5f231c617c84";
/// The deployment that was active before the one a test starts.
pub const PREVIOUS: &str = "3aa4d20e-5527-4c00-b496-601fbd22520a";
/// The deployment a rollback creates.
pub const ROLLBACK: &str = "9c1e7a52-0d44-4b8e-a1f0-7de2c3b4a5f6";
pub const BUILD_LOG: &str =
    "Step 4/9 : RUN npm ci\nnpm ERR! code ERESOLVE\nnpm ERR! could not resolve dependency: react@19\nbuild failed\n";

pub fn deployment(phase: &str, steps: Value) -> Response {
    deployment_of(DEPLOYMENT, phase, steps)
}

pub fn deployment_of(id: &str, phase: &str, steps: Value) -> Response {
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

/// An app spec with an image component (`api`) at `tag` and a source one.
pub fn app_spec(tag: &str) -> Value {
    json!({ "name": "shop", "region": "ams", "services": [
        { "name": "api", "http_port": 8080,
          "image": { "registry_type": "DOCR", "repository": "shop-api", "tag": tag } },
        { "name": "docs", "github": { "repo": "acme/docs", "branch": "main" } },
    ]})
}

fn body(request: &Request) -> Value {
    serde_json::from_slice(&request.body).unwrap_or(Value::Null)
}

/// The App Platform for `apps`, reachable with `token`. A deployment is
/// created PENDING_BUILD; the n-th poll of it answers `polls[n]` (the last
/// one repeats, across deployments); a wrong token or path gets the API's
/// error answer.
pub fn api(token: &'static str, apps: &[&str], polls: Vec<Response>) -> Server {
    let seen = AtomicUsize::new(0);
    let specs: Mutex<BTreeMap<String, Value>> =
        Mutex::new(apps.iter().map(|a| (a.to_string(), app_spec("1.0.0"))).collect());
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
        if request.header("authorization") != Some(format!("Bearer {token}").as_str()) {
            return Response::json(401, &json!({ "id": "unauthorized", "message": "Unable to authenticate you." }));
        }
        let path = request.path.as_str();
        let Some(rest) = path.strip_prefix("/v2/apps/") else { return not_found() };
        let id = rest.split(['/', '?']).next().unwrap_or_default().to_string();
        let mut specs = specs.lock().unwrap();
        let Some(spec) = specs.get_mut(&id) else { return not_found() };
        let app = format!("/v2/apps/{id}");
        let base = format!("{app}/deployments");
        match request.method.as_str() {
            "GET" if path == app => Response::json(
                200,
                &json!({ "app": { "id": id, "spec": spec,
                    "active_deployment": { "id": PREVIOUS, "phase": "ACTIVE" } } }),
            ),
            "PUT" if path == app => {
                *spec = body(request)["spec"].clone();
                Response::json(
                    200,
                    &json!({ "app": { "id": id, "spec": spec,
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
                if body(request)["deployment_id"] == PREVIOUS {
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
