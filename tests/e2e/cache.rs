//! The on-disk cache of compiled plugins: the second run compiles nothing,
//! and a damaged or foreign entry is compiled again, never loaded.

use crate::support::Project;
use crate::support::http::{Response, Server};
use serde_json::Value;
use std::path::PathBuf;

fn probe_project(server: &Server) -> Project {
    let p = Project::new();
    p.pipeline(&format!(
        "pipeline: cached\nstages:\n  - name: health\n    steps:\n      - name: up\n        uses: health-probe\n        with: {{ url: \"{}\" }}\n        grants: {{ net: [\"{}\"] }}\n",
        server.url("/"),
        server.grant()
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
    let mut entries: Vec<PathBuf> = std::fs::read_dir(p.path().join(".deployhost/cache"))
        .expect("no cache folder")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    entries.sort();
    entries
}

#[test]
fn second_run_compiles_nothing() {
    let server = Server::fixed(Response::ok("up"));
    let p = probe_project(&server);
    p.run(&[]).assert_code(0);
    assert_eq!(loads(&p), ["compiled (cache miss)"]);
    let entries = cache_entries(&p);
    assert_eq!(entries.len(), 1);
    let written = std::fs::metadata(&entries[0]).unwrap().modified().unwrap();

    p.run(&[]).assert_code(0);
    assert_eq!(loads(&p), ["cache hit"]);
    assert_eq!(std::fs::metadata(&entries[0]).unwrap().modified().unwrap(), written, "a hit must not rewrite");
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn validate_fills_the_cache_for_the_run() {
    let server = Server::fixed(Response::ok("up"));
    let p = probe_project(&server);
    p.deployhost(&["validate", "pipeline.yaml"], &[]).assert_code(0);
    p.run(&[]).assert_code(0);
    assert_eq!(loads(&p), ["cache hit"]);
}

#[test]
fn corrupt_entry_is_compiled_again_and_replaced() {
    let server = Server::fixed(Response::ok("up"));
    let p = probe_project(&server);
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
    let server = Server::fixed(Response::ok("up"));
    let p = probe_project(&server);
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
    assert_eq!(server.requests().len(), 4, "every run still probed");
}
