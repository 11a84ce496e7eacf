//! Compiled plugins: a built-in's code is compiled when deployhost is
//! built, so no run compiles it; a plugin file's is kept in the on-disk
//! cache, so its second run compiles nothing, and a damaged or foreign
//! entry is compiled again, never loaded.

use crate::support::Project;
use crate::support::http::{Response, Server};
use serde_json::Value;
use std::path::PathBuf;

/// A pipeline whose one step is a plugin file (the test-only `noop`): the
/// cache is for plugins that are not built in.
fn file_plugin_project() -> Project {
    let p = Project::new();
    let digest = p.plugin("noop");
    p.pipeline(&format!(
        "pipeline: cached\nstages:\n  - name: s\n    steps:\n      - name: nothing\n        uses: ./noop.wasm\n        sha256: {digest}\n"
    ));
    p
}

/// How the run made each plugin ready, from its audit log.
fn loads(p: &Project) -> Vec<String> {
    let events: Vec<Value> = p.audit().into_iter().filter(|e| e["event"] == "plugin.load").collect();
    assert!(!events.is_empty(), "no plugin.load in the audit log");
    events.iter().map(|e| e["how"].as_str().unwrap().to_string()).collect()
}

fn cache_entries(p: &Project) -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir(p.path().join(".deployhost/cache")) else { return Vec::new() };
    let mut entries: Vec<PathBuf> =
        dir.map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "cwasm")).collect();
    entries.sort();
    entries
}

/// Issue 17: a first run, with an empty cache, compiles no built-in. Every
/// built-in a run uses is loaded from the code embedded at build time (the
/// audit log says so, with the time it took), and none is written to the
/// cache, as none was compiled.
#[test]
fn a_first_run_compiles_no_built_in() {
    let server = Server::fixed(Response::ok("up"));
    let p = Project::new();
    p.pipeline(&format!(
        "pipeline: first\nstages:\n  - name: s\n    parallel: true\n    steps:\n      - name: up\n        uses: health-probe\n        with: {{ url: \"{url}\" }}\n        grants: {{ net: [\"{grant}\"] }}\n      - name: check\n        uses: http-check\n        with: {{ url: \"{url}\", expect_status: 200 }}\n        grants: {{ net: [\"{grant}\"] }}\n      - name: hello\n        run: echo hi\n        grants: {{ exec: [echo] }}\n",
        url = server.url("/"),
        grant = server.grant()
    ));
    assert!(!p.path().join(".deployhost/cache").exists());
    let run = p.deployhost(&["-vv", "run", "pipeline.yaml"], &[]);
    run.assert_code(0);
    let events: Vec<Value> = p.audit().into_iter().filter(|e| e["event"] == "plugin.load").collect();
    let mut plugins: Vec<&str> = events.iter().map(|e| e["plugin"].as_str().unwrap()).collect();
    plugins.sort();
    assert_eq!(plugins, ["command", "health-probe", "http-check"]);
    for event in &events {
        assert_eq!(event["how"], "precompiled (built in)", "{event}");
        assert!(event["ms"].as_u64().unwrap() < 100, "loading embedded code took {event}");
    }
    assert!(!run.stderr.contains("how=compiled") && !run.stderr.contains("cache hit"), "{}", run.stderr);
    assert_eq!(run.stderr.matches("how=precompiled (built in)").count(), 3, "-vv says how each was made ready");
    assert_eq!(cache_entries(&p), Vec::<PathBuf>::new(), "nothing compiled, nothing cached");
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn second_run_compiles_nothing() {
    let p = file_plugin_project();
    p.run(&[]).assert_code(0);
    assert_eq!(loads(&p), ["compiled (cache miss)"]);
    let entries = cache_entries(&p);
    assert_eq!(entries.len(), 1);
    let written = std::fs::metadata(&entries[0]).unwrap().modified().unwrap();

    p.run(&[]).assert_code(0);
    assert_eq!(loads(&p), ["cache hit"]);
    assert_eq!(std::fs::metadata(&entries[0]).unwrap().modified().unwrap(), written, "a hit must not rewrite");
}

#[test]
fn validate_fills_the_cache_for_the_run() {
    let p = file_plugin_project();
    p.deployhost(&["validate", "pipeline.yaml"], &[]).assert_code(0);
    p.run(&[]).assert_code(0);
    assert_eq!(loads(&p), ["cache hit"]);
}

#[test]
fn corrupt_entry_is_compiled_again_and_replaced() {
    let p = file_plugin_project();
    p.run(&[]).assert_code(0);
    let entry = cache_entries(&p).remove(0);
    let mut bytes = std::fs::read(&entry).unwrap();
    let last = bytes.len() - 100;
    bytes[last] ^= 0xff;
    std::fs::write(&entry, &bytes).unwrap();

    p.run(&[]).assert_code(0);
    let how = loads(&p);
    assert!(how[0].starts_with("compiled again:") && how[0].contains("checksum mismatch"), "{how:?}");
    assert_ne!(std::fs::read(&entry).unwrap(), bytes, "the damaged entry must be replaced");

    p.run(&[]).assert_code(0);
    assert_eq!(loads(&p), ["cache hit"]);
}

#[test]
fn foreign_or_truncated_entries_are_not_loaded() {
    let p = file_plugin_project();
    p.run(&[]).assert_code(0);
    let entry = cache_entries(&p).remove(0);

    // Not our format at all: e.g. a raw wasmtime .cwasm dropped in place.
    std::fs::write(&entry, b"\x7fELF not a deployhost entry").unwrap();
    p.run(&[]).assert_code(0);
    assert!(loads(&p)[0].contains("is not a deployhost cache entry"), "{:?}", loads(&p));

    // A sound entry that anyone could have written.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o666)).unwrap();
    p.run(&[]).assert_code(0);
    assert!(loads(&p)[0].contains("writable by others"), "{:?}", loads(&p));
    let mode = std::fs::metadata(&entry).unwrap().permissions().mode();
    assert_eq!(mode & 0o022, 0, "the rebuilt entry is private again");

    // Cut short by a crash or a full disk.
    let bytes = std::fs::read(&entry).unwrap();
    std::fs::write(&entry, &bytes[..bytes.len() / 2]).unwrap();
    p.run(&[]).assert_code(0);
    assert!(loads(&p)[0].contains("checksum mismatch"), "{:?}", loads(&p));
}
