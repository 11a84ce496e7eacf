//! A stand-in for the Supabase Management API on 127.0.0.1, for pipelines
//! that deploy Edge Functions and check secrets: any project ref, a bearer
//! token, `GET/POST …/secrets` (names with SHA-256 digests), `GET …/functions`,
//! multipart `POST …/functions/deploy?slug=…[&bundleOnly=true]`, the bulk
//! `PUT …/functions`, `GET …/functions/{slug}/body` (the sources, as
//! multipart), `DELETE …/functions/{slug}`; functions are kept per project.

use super::http::{Request, Response, Server};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct State {
    pub secrets: BTreeMap<String, String>,
    /// Live functions: (project, slug) → the deploy.
    pub functions: BTreeMap<(String, String), Deploy>,
    bundled: BTreeMap<(String, String), Deploy>,
}

#[derive(Clone)]
pub struct Deploy {
    pub version: i64,
    pub metadata: Value,
    pub files: BTreeMap<String, String>,
}

pub struct ManagementApi {
    pub server: Server,
    pub state: Arc<Mutex<State>>,
}

impl ManagementApi {
    pub fn start(token: &'static str, secrets: &[(&str, &str)]) -> ManagementApi {
        let state = Arc::new(Mutex::new(State {
            secrets: secrets.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..State::default()
        }));
        let shared = state.clone();
        let server = Server::start(move |r, _| handle(&mut shared.lock().unwrap(), token, r));
        ManagementApi { server, state }
    }
}

/// The metadata and files of a multipart deploy.
fn read_form(r: &Request) -> Option<(Value, BTreeMap<String, String>)> {
    let boundary = r.header("content-type")?.split("boundary=").nth(1)?.to_string();
    let text = String::from_utf8_lossy(&r.body).into_owned();
    let (mut metadata, mut files) = (None, BTreeMap::new());
    for chunk in text.split(&format!("--{boundary}")).skip(1) {
        if chunk.starts_with("--") {
            break;
        }
        let (head, content) = chunk.split_once("\r\n\r\n")?;
        let content = content.strip_suffix("\r\n").unwrap_or(content);
        let quoted =
            |key: &str| Some(head[head.find(&format!("{key}=\""))? + key.len() + 2..].split('"').next()?.to_string());
        match (quoted("name").as_deref(), quoted("filename")) {
            (Some("metadata"), _) => metadata = serde_json::from_str(content).ok(),
            (Some("file"), Some(path)) => {
                files.insert(path, content.to_string());
            }
            _ => {}
        }
    }
    Some((metadata?, files))
}

fn describe(slug: &str, version: i64, metadata: &Value) -> Value {
    json!({ "id": format!("id-{slug}"), "slug": slug, "name": slug, "status": "ACTIVE", "version": version,
        "entrypoint_path": metadata["entrypoint_path"], "verify_jwt": metadata["verify_jwt"], "import_map": false,
        "created_at": 1_700_000_000, "updated_at": 1_700_000_000 })
}

fn handle(state: &mut State, token: &str, r: &Request) -> Response {
    if r.header("authorization") != Some(format!("Bearer {token}").as_str()) {
        return Response::json(401, &json!({ "message": "Unauthorized" }));
    }
    let Some(rest) = r.path.strip_prefix("/v1/projects/") else { return Response::status(404) };
    let (project, route) = rest.split_once('/').unwrap_or((rest, ""));
    let project = project.to_string();
    let (route, query) = route.split_once('?').unwrap_or((route, ""));
    let key = |slug: &str| (project.clone(), slug.to_string());
    match (r.method.as_str(), route) {
        ("GET", "secrets") => Response::json(
            200,
            &state.secrets.iter().map(|(k, v)| json!({ "name": k, "value": super::sha256(v.as_bytes()) })).collect(),
        ),
        ("POST", "secrets") => {
            let body: Value = serde_json::from_slice(&r.body).unwrap_or_default();
            for s in body.as_array().into_iter().flatten() {
                let (name, value) = (s["name"].as_str().unwrap_or_default(), s["value"].as_str().unwrap_or_default());
                state.secrets.insert(name.into(), value.into());
            }
            Response::json(201, &json!({}))
        }
        ("GET", "functions") => Response::json(
            200,
            &state
                .functions
                .iter()
                .filter(|((p, _), _)| *p == project)
                .map(|((_, s), d)| describe(s, d.version, &d.metadata))
                .collect(),
        ),
        ("POST", "functions/deploy") => {
            let slug = query.split('&').find_map(|kv| kv.strip_prefix("slug=")).unwrap_or_default().to_string();
            let Some((metadata, files)) = read_form(r) else {
                return Response::json(400, &json!({ "message": "not a deploy form" }));
            };
            let version = state.functions.get(&key(&slug)).map_or(1, |d| d.version + 1);
            let answer = describe(&slug, version, &metadata);
            let deploy = Deploy { version, metadata, files };
            if query.contains("bundleOnly=true") {
                state.bundled.insert(key(&slug), deploy);
            } else {
                state.functions.insert(key(&slug), deploy);
            }
            Response::json(201, &answer)
        }
        ("PUT", "functions") => {
            let body: Value = serde_json::from_slice(&r.body).unwrap_or_default();
            let mut live = Vec::new();
            for f in body.as_array().into_iter().flatten() {
                let slug = f["slug"].as_str().unwrap_or_default();
                if let Some(deploy) = state.bundled.remove(&key(slug)) {
                    live.push(describe(slug, deploy.version, &deploy.metadata));
                    state.functions.insert(key(slug), deploy);
                }
            }
            Response::json(200, &json!({ "functions": live }))
        }
        ("GET", route) if route.ends_with("/body") => {
            let slug = route.trim_start_matches("functions/").trim_end_matches("/body");
            let Some(deploy) = state.functions.get(&key(slug)) else {
                return Response::json(404, &json!({ "message": "Function not found" }));
            };
            let mut body = String::new();
            for (path, text) in &deploy.files {
                body.push_str(&format!(
                    "--b0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{path}\"\r\n\r\n{text}\r\n"
                ));
            }
            body.push_str("--b0undary--\r\n");
            Response::new(200, &body).header("content-type", "multipart/form-data; boundary=b0undary")
        }
        ("DELETE", route) if route.starts_with("functions/") => {
            state.functions.remove(&key(route.trim_start_matches("functions/")));
            Response::json(200, &json!({ "message": "deleted" }))
        }
        _ => Response::json(404, &json!({ "message": "Not found" })),
    }
}
