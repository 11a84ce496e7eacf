//! A step plugin written in Python (`plugins/python/py-file-check`, built
//! from source with componentize-py) against the same WIT world as the Rust
//! ones: pinned by sha256 like any file plugin, it gets exactly its grants,
//! and every denial is audited. Each `deployhost` call compiles the ~18 MB
//! component afresh, so each test makes few calls and checks much per call.

use crate::support::Project;
use crate::support::http::{Response, Server};
use serde_json::Value;

const PLUGIN: &str = "py-file-check";
const TOKEN: &str = "py-token-5e1f0c77";
const CONFIG: &str = "name = 'shop'\nversion = '1.2.3'\n";

/// A project with the plugin, `config/app.toml`, a file outside every grant,
/// and a pipeline of `steps`, each (name, with, grants).
fn project(steps: &[(&str, String, String)]) -> Project {
    let p = Project::new();
    let digest = p.python_plugin(PLUGIN);
    p.write("config/app.toml", CONFIG);
    p.write("outside.txt", "not granted\n");
    let mut yaml = String::from(
        "pipeline: py\nsecrets:\n  api_token: { env: API_TOKEN }\nstages:\n  - name: checks\n    steps:\n",
    );
    for (name, with, grants) in steps {
        yaml.push_str(&format!(
            "      - name: {name}\n        uses: ./{PLUGIN}.wasm\n        sha256: {digest}\n        blocking: false\n        with: {with}\n        grants: {grants}\n"
        ));
    }
    p.pipeline(&yaml);
    p
}

fn summary(p: &Project, step: &str) -> String {
    p.step(step)["summary"].as_str().unwrap_or_default().to_string()
}

fn assert_failed(p: &Project, step: &str, says: &str) {
    let outcome = p.step(step);
    assert_eq!(outcome["status"], "failed", "{step}: {outcome}");
    assert!(summary(p, step).contains(says), "{step} should say {says:?}: {outcome}");
}

fn assert_audited(p: &Project, step: &str, event: &str, field: &str, contains: &str) {
    let events = p.audit_events(step, event);
    assert!(
        events.iter().any(|e| e[field].as_str().unwrap_or_default().contains(contains)),
        "no {event} with {field} containing {contains:?} for {step}: {events:#?}"
    );
}

#[test]
fn passes_with_its_grants_and_is_denied_without_them() {
    let service = Server::fixed(Response::ok("{\"version\": \"1.2.3\"}"));
    let elsewhere = Server::fixed(Response::ok("not granted"));
    let net = format!("[\"{}\"]", service.grant());
    let digest = crate::support::sha256(CONFIG.as_bytes());
    let p = project(&[
        (
            "granted",
            format!(
                "{{ path: config/app.toml, contains: [\"version = '1.2.3'\"], sha256: {digest}, url: \"{}\", body_contains: \"1.2.3\", token_secret: api_token }}",
                service.url("/version")
            ),
            format!("{{ fs: {{ read: [config] }}, net: {net}, secrets: [api_token] }}"),
        ),
        (
            "wrong-content",
            "{ path: config/app.toml, contains: \"version = '9.9.9'\" }".into(),
            "{ fs: { read: [config] } }".into(),
        ),
        ("read-outside", "{ path: outside.txt }".into(), "{ fs: { read: [config] } }".into()),
        ("read-etc", "{ path: /etc/passwd }".into(), "{ fs: { read: [config] } }".into()),
        (
            "ungranted-host",
            format!("{{ path: config/app.toml, url: \"{}\" }}", elsewhere.url("/")),
            format!("{{ fs: {{ read: [config] }}, net: {net} }}"),
        ),
        (
            "secret-refused",
            format!("{{ path: config/app.toml, url: \"{}\", token_secret: api_token }}", service.url("/version")),
            format!("{{ fs: {{ read: [config] }}, net: {net} }}"),
        ),
    ]);
    // Non-blocking steps: the run passes once every step has run.
    let cache = Project::shared_cache();
    p.run(&[("API_TOKEN", TOKEN), (cache.0, &cache.1)]).assert_code(0);

    // With its grants: the file, the GET with the secret as a bearer token,
    // the report's outputs and metrics, and each use audited.
    let granted = p.step("granted");
    assert_eq!(granted["status"], "passed", "{granted}");
    assert_eq!(granted["outputs"]["sha256"], digest);
    assert_eq!(granted["outputs"]["bytes"], CONFIG.len().to_string());
    assert_eq!(granted["outputs"]["http_status"], "200");
    let metrics: Vec<&str> = granted["metrics"].as_array().unwrap().iter().filter_map(|m| m["name"].as_str()).collect();
    assert_eq!(metrics, ["file_bytes", "latency_ms"]);
    let requests = service.requests();
    assert_eq!(requests.len(), 1, "only the granted step reached the service");
    assert_eq!(requests[0].path, "/version");
    assert_eq!(requests[0].header("authorization"), Some(format!("Bearer {TOKEN}").as_str()));
    assert_audited(&p, "granted", "fs", "path", "/config/app.toml");
    assert_audited(&p, "granted", "secret.read", "name", "api_token");
    assert_audited(&p, "granted", "net.request", "path", "/version");
    let log = std::fs::read_to_string(p.last_run_dir().join("logs/granted.log")).unwrap();
    assert!(log.contains("info: GET ") && log.contains(": 200 in "), "the log import reaches the step log: {log}");
    assert!(!p.run_files_text().contains(TOKEN), "the secret never reaches the run's files");

    // A failed check: the report says what differs; its warning is audited.
    assert_failed(&p, "wrong-content", "does not contain \"version = '9.9.9'\"");
    assert_audited(&p, "wrong-content", "log", "message", "9.9.9");

    // Reads outside the fs grant: denied by the host and audited.
    assert_failed(&p, "read-outside", "cannot read `outside.txt`");
    assert_audited(&p, "read-outside", "fs.denied", "path", "outside.txt");
    assert_failed(&p, "read-etc", "cannot read `/etc/passwd`");
    assert_audited(&p, "read-etc", "fs.denied", "path", "/etc/passwd");

    // HTTP to a host outside the net grant: never sent, audited, and the
    // message names the step and the grant that would allow it.
    assert!(elsewhere.requests().is_empty(), "no request may reach a host that was not granted");
    assert_failed(&p, "ungranted-host", &elsewhere.grant());
    assert!(summary(&p, "ungranted-host").contains("ungranted-host"));
    assert_audited(&p, "ungranted-host", "net.denied", "allow_with", &elsewhere.grant());

    // A secret the step was not granted: refused, and the refusal audited.
    assert_failed(&p, "secret-refused", "may not read secret `api_token`");
    assert_audited(&p, "secret-refused", "secret.denied", "name", "api_token");

    // `audit --run`: what each step used and which of its requests were refused.
    let run_id = p.last_run_dir().file_name().unwrap().to_string_lossy().to_string();
    let audit = p.deployhost(&["audit", "--run", &run_id, "--json"], &[]);
    audit.assert_code(0);
    let report: Value = serde_json::from_str(&audit.stdout).unwrap();
    let step = |name: &str| report["steps"].as_array().unwrap().iter().find(|s| s["step"] == name).unwrap().clone();
    let used = &step("granted")["used"];
    assert_eq!(used["hosts"][0], service.grant());
    assert_eq!(used["secrets_read"][0], "api_token");
    assert_eq!(used["files_read"][0], "/config/app.toml");
    let denials = step("ungranted-host")["denials"].to_string();
    assert!(denials.contains("net.denied"), "{denials}");
}

#[test]
fn with_keys_are_checked_against_its_describe() {
    let p = project(&[
        ("typo", "{ path: config/app.toml, contians: [shop] }".into(), "{ fs: { read: [config] } }".into()),
        ("no-path", "{ contains: [shop] }".into(), "{ fs: { read: [config] } }".into()),
    ]);
    let cache = Project::shared_cache();
    let run = p.run(&[(cache.0, &cache.1)]);
    run.assert_code(2);
    for expected in [
        "pipeline.yaml:11:",
        "stages[0].steps[0].with.contians",
        "plugin `py-file-check` has no parameter `contians` (it takes: path, contains, sha256, url, expect",
        "stages[0].steps[1].with",
        "needs parameter `path`",
    ] {
        assert!(run.stderr.contains(expected), "should say {expected:?}:\n{}", run.stderr);
    }
    assert!(!p.path().join(".deployhost/runs").exists(), "nothing ran");
}

#[test]
fn audit_shows_its_declared_needs_and_over_grants() {
    let p = project(&[(
        "check",
        "{ path: config/app.toml }".into(),
        "{ fs: { read: [config], write: [reports] }, secrets: [api_token] }".into(),
    )]);
    let cache = Project::shared_cache();
    let run = p.deployhost(&["audit", "pipeline.yaml", "--json"], &[(cache.0, &cache.1)]);
    run.assert_code(0);
    let rows: Value = serde_json::from_str(&run.stdout).unwrap();
    let row = &rows[0];
    assert_eq!(row["plugin"], format!("./{PLUGIN}.wasm"));
    let needs = row["needs"].to_string();
    for need in ["fs.read (path)", "net (url)", "secrets (token_secret)"] {
        assert!(needs.contains(need), "declared need {need:?} in {needs}");
    }
    // It declared no file writes: the write grant is flagged, the read and
    // the secret (it may use one) are not.
    let over = row["over_grants"].to_string();
    assert!(over.contains("fs.write") && !over.contains("secrets") && !over.contains("fs.read"), "{over}");
}
