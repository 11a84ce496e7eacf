//! `supabase-secrets` against a stand-in for the Management API's secrets
//! endpoints on 127.0.0.1: `GET` lists each name with the SHA-256 digest
//! of its value, `POST` takes `[{name, value}]`, as `supabase secrets list`
//! and `set` use them.

use super::{json_body, one_step, output, summary};
use crate::support::http::{Response, Server};
use crate::support::{Project, sha256};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

const REF: &str = "abcdefghijklmnopqrst";
const TOKEN: &str = "sbp_5f0c2d9e8a7b6c5d4e3f";
const RESEND: &str = "re_live_7d1c0b9a8f7e6d5c";

fn api(initial: &[(&str, &str)]) -> (Server, Arc<Mutex<BTreeMap<String, String>>>) {
    let secrets: Arc<Mutex<BTreeMap<String, String>>> =
        Arc::new(Mutex::new(initial.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()));
    let shared = secrets.clone();
    let server = Server::start(move |r, _| {
        if r.header("authorization") != Some(format!("Bearer {TOKEN}").as_str()) {
            return Response::json(401, &json!({ "message": "Unauthorized" }));
        }
        if r.path != format!("/v1/projects/{REF}/secrets") {
            return Response::json(404, &json!({ "message": "Not found" }));
        }
        let mut secrets = shared.lock().unwrap();
        match r.method.as_str() {
            "GET" => Response::json(
                200,
                &secrets.iter().map(|(k, v)| json!({ "name": k, "value": sha256(v.as_bytes()) })).collect::<Value>(),
            ),
            "POST" => {
                for item in json_body(r).as_array().unwrap() {
                    secrets.insert(item["name"].as_str().unwrap().into(), item["value"].as_str().unwrap().into());
                }
                Response::json(201, &json!({}))
            }
            _ => Response::status(405),
        }
    });
    (server, secrets)
}

fn pipeline(p: &Project, server: &Server, extra: &str) {
    let with = format!(
        "{{ token_secret: sb_token, project_ref: {REF}, api_url: \"{}\", require: [STRIPE_SECRET_KEY, RESEND_API_KEY]{extra} }}",
        server.url("")
    );
    let grants = format!("{{ net: [\"{}\"], secrets: [sb_token, resend_key] }}", server.grant());
    one_step(
        p,
        "secrets",
        "supabase-secrets",
        &with,
        &grants,
        &[("sb_token", "SUPABASE_ACCESS_TOKEN"), ("resend_key", "RESEND_API_KEY")],
    );
}

const ENV: &[(&str, &str)] = &[("SUPABASE_ACCESS_TOKEN", TOKEN), ("RESEND_API_KEY", RESEND)];

#[test]
fn a_missing_function_secret_fails_the_check_by_name() {
    let (server, _) = api(&[("STRIPE_SECRET_KEY", "sk_live_1"), ("SUPABASE_URL", "https://x.supabase.co")]);
    let p = Project::new();
    pipeline(&p, &server, "");
    p.run(ENV).assert_code(1);
    let text = summary(&p, "secrets");
    assert!(text.contains(&format!("function secrets missing in {REF}: RESEND_API_KEY")), "{text}");
    assert_eq!(output(&p, "secrets", "missing"), "RESEND_API_KEY");
    assert!(server.requests().iter().all(|r| r.method == "GET"), "a check changes nothing");
}

#[test]
fn set_writes_a_granted_value_once_and_never_shows_it() {
    let (server, secrets) = api(&[("STRIPE_SECRET_KEY", "sk_live_1")]);
    let p = Project::new();
    pipeline(&p, &server, ", set: { RESEND_API_KEY: resend_key }");
    let run = p.run(ENV);
    run.assert_code(0);
    assert_eq!(secrets.lock().unwrap()["RESEND_API_KEY"], RESEND);
    assert_eq!(output(&p, "secrets", "set"), "RESEND_API_KEY");
    assert!(summary(&p, "secrets").contains("2 function secret(s) configured"), "{}", summary(&p, "secrets"));
    let posts = server.requests().into_iter().filter(|r| r.method == "POST").count();
    assert_eq!(posts, 1);
    assert!(!format!("{}{}", run.all_output(), p.run_files_text()).contains(RESEND), "the value leaked");

    // The same value again: the digest matches, nothing is written.
    p.run(ENV).assert_code(0);
    let posts = server.requests().into_iter().filter(|r| r.method == "POST").count();
    assert_eq!(posts, 1, "an unchanged secret is not written again");
    assert!(p.step("secrets")["outputs"].get("set").is_none());
}

#[test]
fn reserved_names_are_refused_before_any_call() {
    let (server, _) = api(&[]);
    let p = Project::new();
    pipeline(&p, &server, ", set: { SUPABASE_URL: resend_key }");
    p.run(ENV).assert_code(1);
    let text = summary(&p, "secrets");
    assert!(text.contains("`SUPABASE_URL`: names starting with SUPABASE_ are reserved by the platform"), "{text}");
    assert!(server.requests().is_empty());
}
