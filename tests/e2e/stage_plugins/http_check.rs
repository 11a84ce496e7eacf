//! `http-check` against a JSON-RPC endpoint on 127.0.0.1.

use super::{json_body, metric, one_step, output, summary};
use crate::support::Project;
use crate::support::http::{Response, Server};
use serde_json::json;

const TOKEN: &str = "rpc-token-7f3a9c";

fn rpc_server(answer: serde_json::Value) -> Server {
    Server::fixed(Response::json(200, &answer))
}

fn check(p: &Project, server: &Server, with: &str) {
    let grants = format!("{{ net: [\"{}\"], secrets: [rpc_token] }}", server.grant());
    one_step(p, "test-rpc", "http-check", with, &grants, &[("rpc_token", "RPC_TOKEN")]);
}

#[test]
fn rpc_call_passes_when_status_and_fields_match_and_sends_the_secret_header() {
    let server = rpc_server(json!({
        "jsonrpc": "2.0", "id": 1,
        "result": { "healthy": true, "block": { "number": 42.0 }, "peers": [{ "id": "a" }] }
    }));
    let p = Project::new();
    check(
        &p,
        &server,
        &format!(
            "{{ url: \"{}\", json: {{ jsonrpc: \"2.0\", method: node_status, id: 1 }}, headers: {{ X-Client: deployhost }}, header_secrets: {{ Authorization: \"Bearer rpc_token\" }}, expect_json: {{ result.healthy: true, \"/result/block/number\": 42, \"result.peers[0].id\": a }} }}",
            server.url("/rpc")
        ),
    );
    let run = p.run(&[("RPC_TOKEN", TOKEN)]);
    run.assert_code(0);

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST", "a json body makes the default method POST");
    assert_eq!(request.path, "/rpc");
    assert_eq!(request.header("authorization"), Some(format!("Bearer {TOKEN}").as_str()));
    assert_eq!(request.header("x-client"), Some("deployhost"));
    assert!(request.header("content-type").unwrap_or_default().starts_with("application/json"));
    assert_eq!(json_body(request), json!({ "jsonrpc": "2.0", "method": "node_status", "id": 1 }));

    assert_eq!(output(&p, "test-rpc", "status"), "200");
    assert!(summary(&p, "test-rpc").contains("3 field(s) as expected"), "{}", summary(&p, "test-rpc"));
    let latency = metric(&p, "test-rpc", "latency_ms").expect("a latency_ms metric");
    assert!(latency > 0.0 && latency < 60_000.0, "a real request takes some time: {latency}");
    let everything = format!("{}{}", run.all_output(), p.run_files_text());
    assert!(!everything.contains(TOKEN), "the token leaked into the run's output");
}

#[test]
fn rpc_check_fails_naming_the_field_the_expected_and_the_actual_value() {
    let server = rpc_server(json!({ "jsonrpc": "2.0", "result": { "healthy": false, "chain": "main" } }));
    let p = Project::new();
    check(
        &p,
        &server,
        &format!(
            "{{ url: \"{}\", method: post, json: {{ method: status }}, expect_json: {{ result.healthy: true, result.chain: main, result.version: \"2.1\" }} }}",
            server.url("/rpc")
        ),
    );
    p.run(&[("RPC_TOKEN", TOKEN)]).assert_code(1);
    let text = summary(&p, "test-rpc");
    assert!(text.contains("result.healthy: expected true, got false"), "{text}");
    assert!(text.contains("result.version: expected \"2.1\", but the response has no such field"), "{text}");
    assert!(!text.contains("result.chain"), "a matching field is not a problem: {text}");
    assert_eq!(output(&p, "test-rpc", "mismatches"), "2");
}

#[test]
fn unexpected_status_fails_with_the_status_and_the_body() {
    let server = Server::fixed(Response::new(503, "node is syncing"));
    let p = Project::new();
    check(&p, &server, &format!("{{ url: \"{}\", expect_status: 200 }}", server.url("/status")));
    p.run(&[("RPC_TOKEN", TOKEN)]).assert_code(1);
    assert_eq!(server.requests()[0].method, "GET");
    let text = summary(&p, "test-rpc");
    assert!(text.contains("status 503 (expected 200)") && text.contains("node is syncing"), "{text}");
    assert_eq!(output(&p, "test-rpc", "status"), "503");
}

#[test]
fn a_body_that_is_not_json_fails_when_fields_are_expected() {
    let server = Server::fixed(Response::ok("<html>proxy error</html>"));
    let p = Project::new();
    check(&p, &server, &format!("{{ url: \"{}\", expect_json: {{ ok: true }} }}", server.url("/")));
    p.run(&[("RPC_TOKEN", TOKEN)]).assert_code(1);
    let text = summary(&p, "test-rpc");
    assert!(text.contains("not JSON") && text.contains("proxy error"), "{text}");
}

#[test]
fn an_invalid_parameter_is_reported_by_name() {
    let server = rpc_server(json!({}));
    let p = Project::new();
    check(&p, &server, &format!("{{ url: \"{}\", expect_status: 999 }}", server.url("/")));
    p.run(&[("RPC_TOKEN", TOKEN)]).assert_code(1);
    assert!(summary(&p, "test-rpc").contains("expect_status: 999"), "{}", summary(&p, "test-rpc"));
    assert!(server.requests().is_empty(), "nothing is sent with invalid parameters");
}
