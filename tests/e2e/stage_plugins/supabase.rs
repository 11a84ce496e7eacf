//! `supabase-functions` against a stand-in for the Supabase Management API
//! on 127.0.0.1 that checks every request (token, paths, multipart body)
//! and keeps each function's version and sources, so a test can see a
//! deploy bump versions and a restore put the previous sources back. Like
//! the API, a deploy with `bundleOnly=true` bundles a version that is not
//! served until a bulk update (`PUT …/functions`) makes it live.

use super::{json_body, one_step, output, summary};
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
    /// Deployed as a bundle before the API kept sources: `/body` serves the bundle.
    legacy: bool,
}

#[derive(Default)]
struct Api {
    functions: BTreeMap<String, Deployed>,
    /// Bundles deployed with `bundleOnly=true`, by slug, waiting for a bulk update.
    bundled: BTreeMap<String, Deployed>,
    /// A function whose deploy the API refuses, as it does code that does not bundle.
    refuse: Option<String>,
    /// A function whose live (not bundle-only) deploy is refused.
    refuse_live: Option<String>,
    /// An API without the bulk update endpoint.
    no_bulk: bool,
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
        legacy: false,
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
        ("PUT", "") if api.no_bulk => error(404, "Not found"),
        ("PUT", "") => bulk_update(api, request),
        ("GET", r) if r.ends_with("/body") => match api.functions.get(&slug) {
            None => error(404, "Function not found"),
            Some(f) if f.legacy => {
                Response::new(200, "ESZIP2.1 legacy bundle bytes").header("content-type", "application/octet-stream")
            }
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
    let bundle_only = query.split('&').any(|kv| kv == "bundleOnly=true");
    if api.refuse.as_deref() == Some(slug) || (!bundle_only && api.refuse_live.as_deref() == Some(slug)) {
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
        legacy: false,
    };
    let answer = describe(slug, &function);
    if bundle_only {
        api.bundled.insert(slug.to_string(), function);
    } else {
        api.functions.insert(slug.to_string(), function);
    }
    Response::json(201, &answer)
}

/// `PUT /functions`: an array of functions as their deploys described them;
/// each bundled version named becomes live, with the settings given.
fn bulk_update(api: &mut Api, request: &Request) -> Response {
    let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(&request.body) else {
        return error(400, "the body must be an array of functions");
    };
    let mut live = Vec::new();
    for item in &items {
        let (Some(slug), Some(version)) = (item["slug"].as_str(), item["version"].as_i64()) else {
            return error(400, "each function needs slug and version");
        };
        if item["id"].as_str() != Some(format!("id-{slug}").as_str()) {
            return error(400, &format!("{slug}: id does not match"));
        }
        let Some(mut function) = api.bundled.remove(slug).filter(|f| f.version == version) else {
            return error(400, &format!("{slug}: no bundle of version {version}"));
        };
        function.verify_jwt = item["verify_jwt"].as_bool().unwrap_or(function.verify_jwt);
        live.push(describe(slug, &function));
        api.functions.insert(slug.to_string(), function);
    }
    Response::json(200, &json!({ "functions": live }))
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
    p.write("supabase/config.toml", "project_id = \"shop\"\n\n[api]\nport = 54321\n");
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
        "{{ net: [\"{}\"], secrets: [sb_token], fs: {{ read: [supabase], write: [backups] }} }}",
        api.server.grant()
    );
    one_step(p, "functions", "supabase-functions", &with, &grants, &[("sb_token", "SUPABASE_ACCESS_TOKEN")]);
}

fn existing_hello() -> Api {
    let hello = deployed(3, &[("hello/index.ts", OLD_HELLO), ("_shared/cors.ts", "export const cors = {};\n")]);
    Api { functions: BTreeMap::from([("hello".to_string(), hello)]), ..Api::default() }
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
    assert_eq!(hello.files["supabase/functions/hello/index.ts"], NEW_HELLO);
    assert!(hello.files.contains_key("supabase/functions/_shared/cors.ts"), "the shared code it imports is uploaded");
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
            format!("POST {prefix}/deploy?slug=goodbye&bundleOnly=true"),
            format!("POST {prefix}/deploy?slug=hello&bundleOnly=true"),
            format!("PUT {prefix}"),
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
fn an_api_error_body_is_reported_and_nothing_goes_live() {
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
    assert!(text.contains("nothing went live (bundled before it: goodbye)"), "{text}");
    assert_eq!(api.function("hello").unwrap().version, 3, "the refused deploy changed nothing");
    assert!(api.function("goodbye").is_none(), "goodbye was bundled, never served");
    assert!(api.server.requests().iter().all(|r| r.method != "PUT"), "no bulk update after a failed bundle");
    let outputs = &p.step("functions")["outputs"];
    assert!(outputs.get("compensate").is_none(), "nothing is live, nothing to compensate: {outputs}");
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

/// A project laid out as `supabase init` and a team leave it: config.toml
/// with per-function settings, a shared import map, code outside the
/// function's folder, a local `.env`, tests and notes beside the code.
fn configured_project() -> Project {
    let p = Project::new();
    p.write(
        "supabase/config.toml",
        r#"project_id = "shop"

[api]
port = 54321
schemas = ["public"]

[functions.stripe-webhook]
verify_jwt = false
static_files = ["./functions/stripe-webhook/templates/*.html"]

[functions.old-report]
enabled = false
"#,
    );
    p.write("supabase/functions/import_map.json", r#"{ "imports": { "shared/": "./_shared/", "zod": "npm:zod@3" } }"#);
    p.write(
        "supabase/functions/hello/index.ts",
        "import { z } from \"zod\";\nimport { cors } from \"shared/cors.ts\";\nimport { money } from \"../../lib/money.ts\";\nDeno.serve(async () => {\n  const { lazy } = await import(\"./lazy.ts\");\n  return new Response(lazy() + money(1), { headers: cors });\n});\n",
    );
    p.write("supabase/functions/hello/lazy.ts", "export const lazy = () => \"lazy\";\n");
    p.write("supabase/functions/hello/index.test.ts", "import \"./index.ts\";\nDeno.test(\"hello\", () => {});\n");
    p.write("supabase/functions/hello/.env", "STRIPE_SECRET_KEY=sk_live_do_not_upload_4242\n");
    p.write("supabase/functions/_shared/cors.ts", "export const cors = { \"Access-Control-Allow-Origin\": \"*\" };\n");
    p.write("supabase/functions/_shared/unused.ts", "export const unused = 1;\n");
    p.write("supabase/functions/.env", "SUPABASE_SERVICE_ROLE_KEY=service_role_do_not_upload\n");
    p.write("supabase/lib/money.ts", "export const money = (n: number) => `${n} EUR`;\n");
    p.write(
        "supabase/functions/stripe-webhook/index.ts",
        "import { cors } from \"../_shared/cors.ts\";\nDeno.serve(() => new Response(\"ok\", { headers: cors }));\n",
    );
    p.write("supabase/functions/stripe-webhook/templates/receipt.html", "<p>thanks</p>\n");
    p.write("supabase/functions/stripe-webhook/templates/.env.html", "leak\n");
    p.write("supabase/functions/old-report/index.ts", "Deno.serve(() => new Response(\"old\"));\n");
    p.mkdir("backups");
    p
}

#[test]
fn config_toml_settings_are_deployed_and_only_the_reachable_files_are_uploaded() {
    let api = FakeSupabase::start(existing_hello());
    let p = configured_project();
    pipeline(&p, &api, "");
    let run = p.run(&[("SUPABASE_ACCESS_TOKEN", TOKEN)]);
    run.assert_code(0);

    // verify_jwt = false in config.toml reaches the live function; the others keep the default.
    let webhook = api.function("stripe-webhook").unwrap();
    assert!(!webhook.verify_jwt, "the webhook must keep answering without a JWT");
    assert!(api.function("hello").unwrap().verify_jwt);
    assert_eq!(output(&p, "functions", "verify_jwt.stripe-webhook"), "false");
    assert_eq!(output(&p, "functions", "verify_jwt.hello"), "true");
    let deploys: Vec<Request> = api.server.requests().into_iter().filter(|r| r.method == "POST").collect();
    let webhook_form =
        String::from_utf8_lossy(&deploys.iter().find(|r| r.path.contains("slug=stripe-webhook")).unwrap().body)
            .into_owned();
    assert!(webhook_form.contains("\"verify_jwt\":false"), "{webhook_form}");

    // Disabled in config.toml: not deployed.
    assert!(api.function("old-report").is_none());
    assert_eq!(output(&p, "functions", "skipped"), "old-report");

    // hello: the entry point, what it imports (statically, dynamically, through
    // the fallback import map, from outside the functions folder) and the map.
    let hello: Vec<String> = api.function("hello").unwrap().files.keys().cloned().collect();
    assert_eq!(
        hello,
        [
            "supabase/functions/_shared/cors.ts",
            "supabase/functions/hello/index.ts",
            "supabase/functions/hello/lazy.ts",
            "supabase/functions/import_map.json",
            "supabase/lib/money.ts",
        ]
    );
    let webhook: Vec<String> = webhook.files.keys().cloned().collect();
    assert_eq!(
        webhook,
        [
            "supabase/functions/_shared/cors.ts",
            "supabase/functions/import_map.json",
            "supabase/functions/stripe-webhook/index.ts",
            "supabase/functions/stripe-webhook/templates/receipt.html",
        ]
    );
    // No .env, test or unused file went over the wire, in any request.
    for request in api.server.requests() {
        let body = String::from_utf8_lossy(&request.body);
        for never in ["do_not_upload", "leak", "Deno.test", "unused"] {
            assert!(!body.contains(never), "`{never}` was sent in {} {}", request.method, request.path);
        }
    }
    // Both went live together, in one bulk update.
    let puts: Vec<Request> = api.server.requests().into_iter().filter(|r| r.method == "PUT").collect();
    assert_eq!(puts.len(), 1);
    let slugs: Vec<String> =
        json_body(&puts[0]).as_array().unwrap().iter().map(|f| f["slug"].as_str().unwrap().to_string()).collect();
    assert_eq!(slugs, ["hello", "stripe-webhook"]);
}

#[test]
fn a_legacy_bundle_is_backed_up_as_it_came_the_gap_recorded_and_the_deploy_goes_on() {
    let mut existing = existing_hello();
    existing.functions.get_mut("hello").unwrap().legacy = true;
    let api = FakeSupabase::start(existing);
    let p = project();
    pipeline(&p, &api, "");
    let run = p.run(&[("SUPABASE_ACCESS_TOKEN", TOKEN)]);
    run.assert_code(0);
    assert_eq!(api.function("hello").unwrap().version, 4);
    assert_eq!(output(&p, "functions", "backup_gaps"), "hello");
    let text = summary(&p, "functions");
    assert!(text.contains("no sources saved for hello (legacy bundle"), "{text}");
    let log = std::fs::read_to_string(p.last_run_dir().join("logs/functions.log")).unwrap();
    assert!(log.contains("hello: deployed as a bundle (application/octet-stream"), "{log}");
    let folder = serde_json::from_str::<Value>(&output(&p, "functions", "compensate")).unwrap()["restore_from"]
        .as_str()
        .unwrap()
        .to_string();
    let bundle = std::fs::read_to_string(p.path().join(&folder).join("hello/legacy-bundle.bin")).unwrap();
    assert_eq!(bundle, "ESZIP2.1 legacy bundle bytes");

    // A restore puts back what it can and says what it cannot.
    pipeline(&p, &api, &format!(", restore_from: \"{folder}\""));
    p.run(&[("SUPABASE_ACCESS_TOKEN", TOKEN)]).assert_code(1);
    let text = summary(&p, "functions");
    assert!(text.contains("restoring `hello`") && text.contains("no sources of v3 were saved"), "{text}");
    assert!(text.contains("restored: goodbye deleted"), "{text}");
    assert!(api.function("goodbye").is_none());
}

#[test]
fn without_a_bulk_update_a_failure_puts_back_every_function_already_switched() {
    let mut existing = existing_hello();
    existing.no_bulk = true;
    existing.refuse_live = Some("hello".into());
    let api = FakeSupabase::start(existing);
    let p = project();
    pipeline(&p, &api, "");
    p.run(&[("SUPABASE_ACCESS_TOKEN", TOKEN)]).assert_code(1);
    let text = summary(&p, "functions");
    assert!(text.contains("deploying `hello` failed"), "{text}");
    assert!(text.contains("switched before it and put back: goodbye deleted (it was new)"), "{text}");
    assert!(api.function("goodbye").is_none(), "goodbye went live, then was put back");
    assert_eq!(api.function("hello").unwrap().version, 3);
    let outputs = &p.step("functions")["outputs"];
    assert!(outputs.get("compensate").is_none(), "everything was put back: {outputs}");
}
