//! `supabase-functions` against a stand-in for the Supabase Management API
//! on 127.0.0.1 that checks every request (token, paths, multipart body)
//! and keeps each function's version and sources, so a test can see a
//! deploy bump versions and a restore put the previous sources back.

use super::{one_step, output, summary};
use crate::support::Project;
use crate::support::http::{Request, Response, Server};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

const REF: &str = "abcdefghijklmnopqrst";
const TOKEN: &str = "sbp_5f0c2d9e8a7b6c5d4e3f";
const OLD_HELLO: &str = "Deno.serve(() => new Response(\"hello v3\"));\n";
const NEW_HELLO: &str =
    "import { cors } from \"../_shared/cors.ts\";\nDeno.serve(() => new Response(\"hello v4\", { headers: cors }));\n";

#[derive(Debug, Clone)]
struct Deployed {
    version: i64,
    entrypoint: String,
    verify_jwt: bool,
    files: BTreeMap<String, String>,
}

#[derive(Default)]
struct Api {
    functions: BTreeMap<String, Deployed>,
    /// A function whose deploy the API refuses, as it does code that does not bundle.
    refuse: Option<String>,
}

struct FakeSupabase {
    server: Server,
    api: Arc<Mutex<Api>>,
}

impl FakeSupabase {
    fn start(api: Api) -> FakeSupabase {
        let api = Arc::new(Mutex::new(api));
        let shared = api.clone();
        let server = Server::start(move |request, _| handle(&mut shared.lock().unwrap(), request));
        FakeSupabase { server, api }
    }

    fn function(&self, slug: &str) -> Option<Deployed> {
        self.api.lock().unwrap().functions.get(slug).cloned()
    }
}

fn deployed(version: i64, files: &[(&str, &str)]) -> Deployed {
    Deployed {
        version,
        entrypoint: files[0].0.to_string(),
        verify_jwt: true,
        files: files.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    }
}

fn error(status: u16, message: &str) -> Response {
    Response::json(status, &json!({ "message": message }))
}

/// The function as the API lists it; paths come back as URLs, as they do.
fn describe(slug: &str, f: &Deployed) -> Value {
    json!({
        "id": format!("id-{slug}"), "slug": slug, "name": slug, "status": "ACTIVE", "version": f.version,
        "entrypoint_path": format!("file:///src/{}", f.entrypoint), "verify_jwt": f.verify_jwt,
        "import_map": false, "created_at": 1_700_000_000, "updated_at": 1_700_000_000,
    })
}

fn handle(api: &mut Api, request: &Request) -> Response {
    if request.header("authorization") != Some(format!("Bearer {TOKEN}").as_str()) {
        return error(401, "Unauthorized");
    }
    let prefix = format!("/v1/projects/{REF}/functions");
    let Some(rest) = request.path.strip_prefix(&prefix) else {
        return error(404, "Project not found");
    };
    let (route, query) = rest.split_once('?').unwrap_or((rest, ""));
    let slug = route.trim_start_matches('/').split('/').next().unwrap_or_default().to_string();
    match (request.method.as_str(), route) {
        ("GET", "") => Response::json(200, &api.functions.iter().map(|(s, f)| describe(s, f)).collect::<Value>()),
        ("POST", "/deploy") => deploy(api, request, query),
        ("GET", r) if r.ends_with("/body") => match api.functions.get(&slug) {
            None => error(404, "Function not found"),
            Some(_) if request.header("accept") != Some("multipart/form-data") => {
                error(406, "this stand-in only serves the unbundled sources (Accept: multipart/form-data)")
            }
            Some(f) => sources_response(f),
        },
        ("DELETE", _) => match api.functions.remove(&slug) {
            Some(_) => Response::json(200, &json!({ "message": format!("Successfully deleted function {slug}") })),
            None => error(404, "Function not found"),
        },
        _ => error(404, "Not found"),
    }
}

fn sources_response(f: &Deployed) -> Response {
    let boundary = "stand-in-boundary-42";
    let mut body = String::new();
    for (path, text) in &f.files {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{path}\"\r\n\r\n{text}\r\n"
        ));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    Response::new(200, &body).header("content-type", &format!("multipart/form-data; boundary={boundary}"))
}

/// `POST /deploy?slug=…`: a `metadata` part and one `file` part per source.
fn deploy(api: &mut Api, request: &Request, query: &str) -> Response {
    let Some(slug) = query.split('&').find_map(|kv| kv.strip_prefix("slug=")) else {
        return error(400, "slug is required");
    };
    let content_type = request.header("content-type").unwrap_or_default();
    let Some(boundary) = content_type.strip_prefix("multipart/form-data; boundary=") else {
        return error(415, &format!("expected multipart/form-data, got {content_type}"));
    };
    let (metadata, files) = match read_form(&String::from_utf8_lossy(&request.body), boundary) {
        Ok(form) => form,
        Err(e) => return error(400, &e),
    };
    let Some(entrypoint) = metadata["entrypoint_path"].as_str() else {
        return error(400, "metadata.entrypoint_path is required");
    };
    if !files.contains_key(entrypoint) {
        return error(400, &format!("Entrypoint path does not exist - {entrypoint}"));
    }
    if api.refuse.as_deref() == Some(slug) {
        return error(
            400,
            &format!(
                "Failed to bundle the function (reason: The module's source code could not be parsed: Expected ';' at file:///src/{entrypoint}:1:6)."
            ),
        );
    }
    let version = api.functions.get(slug).map_or(1, |f| f.version + 1);
    let function = Deployed {
        version,
        entrypoint: entrypoint.to_string(),
        verify_jwt: metadata["verify_jwt"].as_bool().unwrap_or(true),
        files,
    };
    let answer = describe(slug, &function);
    api.functions.insert(slug.to_string(), function);
    Response::json(201, &answer)
}

/// The metadata JSON and the files of a multipart form.
fn read_form(body: &str, boundary: &str) -> Result<(Value, BTreeMap<String, String>), String> {
    let mut metadata = None;
    let mut files = BTreeMap::new();
    let end = format!("--{boundary}--");
    if !body.trim_end().ends_with(&end) {
        return Err("the form does not end with its closing boundary".into());
    }
    for chunk in body.split(&format!("--{boundary}")).skip(1) {
        if chunk.starts_with("--") {
            break;
        }
        let (head, content) = chunk.split_once("\r\n\r\n").ok_or("a part without headers")?;
        let content = content.strip_suffix("\r\n").ok_or("a part not followed by CRLF")?;
        let quoted = |key: &str| {
            let start = head.find(&format!("{key}=\""))? + key.len() + 2;
            Some(head[start..].split('"').next()?.to_string())
        };
        match (quoted("name").as_deref(), quoted("filename")) {
            (Some("metadata"), _) => metadata = Some(serde_json::from_str(content).map_err(|e| e.to_string())?),
            (Some("file"), Some(path)) => {
                files.insert(path, content.to_string());
            }
            other => return Err(format!("unexpected part {other:?}")),
        }
    }
    Ok((metadata.ok_or("no metadata part")?, files))
}

fn project() -> Project {
    let p = Project::new();
    p.write("supabase/functions/hello/index.ts", NEW_HELLO);
    p.write("supabase/functions/goodbye/index.ts", "Deno.serve(() => new Response(\"bye\"));\n");
    p.write("supabase/functions/_shared/cors.ts", "export const cors = { \"Access-Control-Allow-Origin\": \"*\" };\n");
    p.write("supabase/functions/README.md", "not a function\n");
    p.mkdir("backups");
    p
}

fn pipeline(p: &Project, api: &FakeSupabase, extra: &str) {
    let with = format!(
        "{{ token_secret: sb_token, project_ref: {REF}, api_url: \"{}\", functions_dir: supabase/functions, backup_dir: backups{extra} }}",
        api.server.url("")
    );
    let grants = format!(
        "{{ net: [\"{}\"], secrets: [sb_token], fs: {{ read: [supabase/functions], write: [backups] }} }}",
        api.server.grant()
    );
    one_step(p, "functions", "supabase-functions", &with, &grants, &[("sb_token", "SUPABASE_ACCESS_TOKEN")]);
}

fn existing_hello() -> Api {
    let hello = deployed(3, &[("hello/index.ts", OLD_HELLO), ("_shared/cors.ts", "export const cors = {};\n")]);
    Api { functions: BTreeMap::from([("hello".to_string(), hello)]), refuse: None }
}

#[test]
fn deploy_saves_the_previous_sources_bumps_versions_and_restore_from_puts_them_back() {
    let api = FakeSupabase::start(existing_hello());
    let p = project();
    pipeline(&p, &api, "");
    let run = p.run(&[("SUPABASE_ACCESS_TOKEN", TOKEN)]);
    run.assert_code(0);

    let hello = api.function("hello").unwrap();
    assert_eq!(hello.version, 4);
    assert_eq!(hello.files["hello/index.ts"], NEW_HELLO);
    assert!(hello.files.contains_key("_shared/cors.ts"), "shared code is uploaded with each function");
    assert_eq!(api.function("goodbye").unwrap().version, 1);
    assert_eq!(output(&p, "functions", "version.hello"), "4");
    assert_eq!(output(&p, "functions", "version.goodbye"), "1");

    // The previous sources were fetched before anything was deployed.
    let requests = api.server.requests();
    let order: Vec<String> = requests.iter().map(|r| format!("{} {}", r.method, r.path)).collect();
    let prefix = format!("/v1/projects/{REF}/functions");
    assert_eq!(
        order,
        [
            format!("GET {prefix}"),
            format!("GET {prefix}/hello/body"),
            format!("POST {prefix}/deploy?slug=goodbye"),
            format!("POST {prefix}/deploy?slug=hello"),
        ]
    );
    let compensate: Value = serde_json::from_str(&output(&p, "functions", "compensate")).unwrap();
    let folder = compensate["restore_from"].as_str().unwrap().to_string();
    assert!(folder.starts_with("backups/supabase-functions-"), "{folder}");
    let saved = std::fs::read_dir(p.path().join(&folder).join("hello")).unwrap();
    let saved: Vec<String> = saved.map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap()).collect();
    assert!(saved.contains(&OLD_HELLO.to_string()), "the backup holds the previous hello: {saved:?}");
    assert!(!format!("{}{}", run.all_output(), p.run_files_text()).contains(TOKEN), "the token leaked");

    // What a rollback runs: the same step with the compensation's params.
    pipeline(&p, &api, &format!(", restore_from: \"{folder}\""));
    p.run(&[("SUPABASE_ACCESS_TOKEN", TOKEN)]).assert_code(0);
    let hello = api.function("hello").unwrap();
    assert_eq!(hello.version, 5, "a restore is a new deploy of the old sources");
    assert_eq!(hello.files["hello/index.ts"], OLD_HELLO);
    assert_eq!(hello.files["_shared/cors.ts"], "export const cors = {};\n");
    assert_eq!(hello.entrypoint, "hello/index.ts");
    assert!(api.function("goodbye").is_none(), "a function that did not exist before is deleted");
    let deletes: Vec<Request> = api.server.requests().into_iter().filter(|r| r.method == "DELETE").collect();
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0].path, format!("{prefix}/goodbye"));
    assert_eq!(output(&p, "functions", "version.hello"), "5");
    let text = summary(&p, "functions");
    assert!(text.contains("goodbye deleted") && text.contains("hello back to the sources of v3"), "{text}");
}

#[test]
fn an_api_error_body_is_reported_and_the_compensation_still_offered() {
    let mut existing = existing_hello();
    existing.refuse = Some("hello".into());
    let api = FakeSupabase::start(existing);
    let p = project();
    pipeline(&p, &api, ", functions: [goodbye, hello]");
    p.run(&[("SUPABASE_ACCESS_TOKEN", TOKEN)]).assert_code(1);
    let text = summary(&p, "functions");
    assert!(text.contains("deploying `hello` failed"), "{text}");
    assert!(
        text.contains("HTTP 400: Failed to bundle the function (reason: The module's source code could not be parsed"),
        "{text}"
    );
    assert!(text.contains("deployed before it: goodbye v1"), "{text}");
    assert_eq!(api.function("hello").unwrap().version, 3, "the refused deploy changed nothing");
    assert_eq!(output(&p, "functions", "version.goodbye"), "1");
    let compensate: Value = serde_json::from_str(&output(&p, "functions", "compensate")).unwrap();
    assert!(compensate["restore_from"].as_str().is_some(), "goodbye was deployed: a rollback must be able to undo it");
}

#[test]
fn a_wrong_token_fails_before_anything_is_deployed() {
    let api = FakeSupabase::start(existing_hello());
    let p = project();
    pipeline(&p, &api, "");
    p.run(&[("SUPABASE_ACCESS_TOKEN", "sbp_wrong")]).assert_code(1);
    let text = summary(&p, "functions");
    assert!(text.contains("nothing deployed") && text.contains("HTTP 401: Unauthorized"), "{text}");
    assert!(api.server.requests().iter().all(|r| r.method == "GET"), "no deploy was attempted");
    assert_eq!(api.function("hello").unwrap().version, 3);
}

#[test]
fn a_restore_refuses_a_backup_of_another_project() {
    let api = FakeSupabase::start(existing_hello());
    let p = project();
    p.write(
        "backups/other/manifest.json",
        r#"{ "project_ref": "zzzzzzzzzzzzzzzzzzzz", "functions": [{ "slug": "hello", "previous": null }] }"#,
    );
    pipeline(&p, &api, ", restore_from: backups/other");
    p.run(&[("SUPABASE_ACCESS_TOKEN", TOKEN)]).assert_code(1);
    assert!(
        summary(&p, "functions").contains("backup of project zzzzzzzzzzzzzzzzzzzz"),
        "{}",
        summary(&p, "functions")
    );
    assert!(api.function("hello").is_some(), "nothing was deleted");
    assert!(api.server.requests().is_empty());
}

#[test]
fn a_failed_health_check_redeploys_the_previous_functions_through_the_exported_compensation() {
    let api = FakeSupabase::start(existing_hello());
    let app = Server::fixed(Response::status(503));
    let p = project();
    pipeline(&p, &api, "");
    let mut yaml = std::fs::read_to_string(p.path().join("pipeline.yaml")).unwrap();
    yaml.push_str(&format!(
        "  - name: health\n    steps:\n      - name: probe\n        uses: health-probe\n        with: {{ url: \"{}\" }}\n        grants: {{ net: [\"{}\"] }}\nrollback:\n  on: [health_check_failure]\n",
        app.url("/health"),
        app.grant()
    ));
    p.pipeline(&yaml);

    let run = p.run(&[("SUPABASE_ACCESS_TOKEN", TOKEN)]);
    run.assert_code(1);
    assert!(run.stdout.contains("rolled back: health check `probe` failed"), "{}", run.stdout);
    let results = p.results();
    let rollback = &results["rollback"];
    assert_eq!(rollback["ok"], true, "{rollback:#}");
    assert_eq!(rollback["steps"][0]["step"], "compensate-functions");
    assert_eq!(rollback["steps"][0]["status"], "passed");
    let hello = api.function("hello").unwrap();
    assert_eq!(hello.files["hello/index.ts"], OLD_HELLO, "the previous sources are live again");
    assert_eq!(hello.version, 5);
    assert!(api.function("goodbye").is_none(), "the function this deploy added is gone");
    assert!(!format!("{}{}", run.all_output(), p.run_files_text()).contains(TOKEN), "the token leaked");
}
