//! Writing a plugin the way the README says: `plugin new`, `plugin build`,
//! pin the printed sha256, run it; `plugin inspect` on good and bad files.

use crate::support::Project;
use crate::support::http::{Response, Server};
use serde_json::Value;
use std::path::Path;

/// What cargo needs from the environment, and one target folder shared by
/// the tests so the SDK's dependencies are compiled once.
fn toolchain_env() -> Vec<(&'static str, String)> {
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugin-authoring");
    let mut env: Vec<(&str, String)> = ["HOME", "CARGO_HOME", "RUSTUP_HOME", "RUSTUP_TOOLCHAIN"]
        .into_iter()
        .filter_map(|k| Some((k, std::env::var(k).ok()?)))
        .collect();
    env.push(("CARGO_TARGET_DIR", target.display().to_string()));
    env
}

fn with_env(p: &Project, args: &[&str]) -> crate::support::Run {
    let env = toolchain_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    p.deployhost(args, &env)
}

#[test]
fn a_new_plugin_builds_pins_and_runs() {
    let p = Project::new();
    with_env(&p, &["plugin", "new", "price-check"]).assert_code(0);
    assert!(
        p.path().join("price-check/wit/world.wit").exists() && p.path().join("price-check/sdk/src/lib.rs").exists()
    );
    let refused = with_env(&p, &["plugin", "new", "price-check"]);
    refused.assert_code(1);
    assert!(refused.stderr.contains("already exists"), "{}", refused.stderr);
    let bad = with_env(&p, &["plugin", "new", "Price Check"]);
    assert!(bad.code != 0 && bad.stderr.contains("is not a plugin name"), "{}", bad.stderr);

    let build = with_env(&p, &["plugin", "build", "price-check", "--out", "price-check.wasm"]);
    build.assert_code(0);
    let digest = build.stdout.lines().find_map(|l| l.strip_prefix("sha256: ")).expect("the digest").to_string();
    assert_eq!(digest, crate::support::sha256(&std::fs::read(p.path().join("price-check.wasm")).unwrap()));
    assert!(build.stdout.contains("uses: ./price-check.wasm"), "{}", build.stdout);

    let server = Server::start(|r, _| if r.path == "/ok" { Response::ok("fine") } else { Response::status(404) });
    let step = |name: &str, path: &str| {
        format!(
            "      - name: {name}\n        uses: ./price-check.wasm\n        sha256: {digest}\n        blocking: false\n        with: {{ url: \"{}\" }}\n        grants: {{ net: [\"{}\"] }}\n",
            server.url(path),
            server.grant()
        )
    };
    p.pipeline(&format!(
        "pipeline: mine\nstages:\n  - name: check\n    steps:\n{}{}",
        step("up", "/ok"),
        step("gone", "/missing")
    ));
    p.run(&[]).assert_code(0);
    assert_eq!(p.step("up")["status"], "passed");
    assert_eq!(p.step("gone")["status"], "failed");
    assert!(p.step("gone")["summary"].as_str().unwrap().contains("answered 404, expected 200"), "{}", p.step("gone"));
    assert_eq!(p.audit_events("up", "net.request").len(), 1);

    let inspect = with_env(&p, &["plugin", "inspect", "price-check.wasm", "--json"]);
    inspect.assert_code(0);
    let info: Value = serde_json::from_str(&inspect.stdout).unwrap();
    assert_eq!(info["name"], "price-check");
    assert_eq!(info["sha256"], digest.as_str());
    assert_eq!(info["needs"][0], "net (url)");
    assert_eq!(info["exports"], serde_json::json!(["describe", "run"]));
    let imports: Vec<&str> = info["imports"].as_array().unwrap().iter().map(|i| i.as_str().unwrap()).collect();
    assert!(imports.contains(&"wasi:http/outgoing-handler@0.2.12"), "{imports:?}");
    assert!(imports.contains(&"deployhost:plugin/log@0.1.0"), "{imports:?}");
    assert_eq!(info["runs_here"], true);
}

#[test]
fn inspect_refuses_what_is_not_a_component() {
    let p = Project::new();
    p.write("notes.wasm", "not wasm at all");
    let run = p.deployhost(&["plugin", "inspect", "notes.wasm"], &[]);
    run.assert_code(1);
    assert!(run.stderr.contains("notes.wasm is not a WebAssembly component"), "{}", run.stderr);

    p.plugin("hostile");
    let hostile = p.deployhost(&["plugin", "inspect", "hostile.wasm"], &[]);
    hostile.assert_code(0);
    assert!(hostile.stdout.contains("imports:") && hostile.stdout.contains("wasi:filesystem"), "{}", hostile.stdout);
}

#[test]
fn a_new_python_plugin_builds_and_runs_with_its_grants() {
    let p = Project::new();
    p.deployhost(&["plugin", "new", "config-check", "--lang", "python"], &[]).assert_code(0);
    assert!(p.path().join("config-check/app.py").exists() && p.path().join("config-check/wit/world.wit").exists());

    // componentize-py comes from the venv scripts/test.sh installs.
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/python/.venv/bin");
    assert!(
        tools.join("componentize-py").exists(),
        "scripts/test.sh installs componentize-py into {}",
        tools.display()
    );
    let path = format!("{}:{}", tools.display(), std::env::var("PATH").unwrap_or_default());
    let cache = Project::shared_cache();
    let env = [("PATH", path.as_str()), (cache.0, cache.1.as_str())];
    let build = p.deployhost(&["plugin", "build", "config-check", "--out", "config-check.wasm"], &env);
    build.assert_code(0);
    assert!(build.stdout.contains("built config-check 0.1.0"), "{}", build.stdout);
    let digest = build.stdout.lines().find_map(|l| l.strip_prefix("sha256: ")).expect("the digest").to_string();

    p.write("config/app.toml", "[database]\nurl = \"postgres://db\"\n");
    p.pipeline(&format!(
        "pipeline: mine\nstages:\n  - name: check\n    steps:\n      - name: config\n        uses: ./config-check.wasm\n        sha256: {digest}\n        with: {{ path: config/app.toml, contains: [\"[database]\"] }}\n        grants: {{ fs: {{ read: [config] }} }}\n      - name: wrong\n        uses: ./config-check.wasm\n        sha256: {digest}\n        blocking: false\n        with: {{ path: config/app.toml, contains: [\"[cache]\"] }}\n        grants: {{ fs: {{ read: [config] }} }}\n"
    ));
    p.deployhost(&["run", "pipeline.yaml"], &env).assert_code(0);
    assert_eq!(p.step("config")["status"], "passed", "{}", p.step("config"));
    assert_eq!(p.step("wrong")["status"], "failed", "{}", p.step("wrong"));
}
