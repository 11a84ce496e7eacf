//! Plugins that try to exhaust the host rather than escape it: loops that
//! keep calling the host, and reports of megabytes. Each is stopped or cut,
//! audited, and the host carries on, and so does the rollback.

use crate::support::attack::Attack;
use crate::support::http::{Response, Server};
use crate::support::{Project, hostile_step};

#[test]
fn a_loop_of_log_calls_is_stopped_by_its_timeout() {
    // Unlike a pure spin, this loop spends its time in host calls.
    let a = Attack::run_with(&[("attack", "{ attack: log-loop }", "{}", "        timeout: 1s\n")], &[], |_| {});
    let step = a.p.step("attack");
    assert_eq!(step["failure"], "timeout", "{step}");
    assert!(step["ms"].as_u64().unwrap() < 10_000, "stopped near its timeout: {step}");
    assert!(a.p.audit_events("attack", "limit").iter().any(|e| e["kind"] == "timeout"));
    let log = a.p.last_run_dir().join("logs/attack.log");
    assert!(std::fs::metadata(log).unwrap().len() <= 8 * 1024 * 1024 + 4096, "the log stays capped");
}

#[test]
fn a_loop_of_denied_calls_cannot_flood_the_audit_log() {
    let a = Attack::run_with(
        &[("attack", "{ attack: fs-loop, path: /etc/passwd }", "{}", "        timeout: 2s\n")],
        &[],
        |_| {},
    );
    assert_eq!(a.p.step("attack")["failure"], "timeout");
    let denials = a.p.audit_events("attack", "fs.denied").len() as u64;
    assert!(denials > 0 && denials <= 10_000, "{denials} denials written");
    let capped = a.p.audit_events("attack", "audit.capped");
    assert_eq!(capped.len(), 1, "the audit says events were dropped");
    assert!(capped[0]["dropped"].as_u64().unwrap() > 0);
    // The step's end is still recorded after the cap.
    assert_eq!(a.p.audit_events("attack", "step.end").len(), 1);
}

#[test]
fn a_huge_report_is_cut_and_said() {
    let a = Attack::run(&[("attack", "{ attack: huge-report, count: 8 }", "{}")], &[], |_| {});
    let step = a.p.step("attack");
    let summary = step["summary"].as_str().unwrap();
    assert!(summary.len() < 10_000 && summary.ends_with("bytes]"), "summary of {} bytes", summary.len());
    let outputs = step["outputs"].as_object().unwrap();
    assert!(outputs.len() <= 256, "{} outputs kept", outputs.len());
    assert!(outputs["big"].as_str().unwrap().len() < 20_000);
    assert!(step["metrics"].as_array().unwrap().len() <= 256);
    let results = std::fs::metadata(a.p.last_run_dir().join("results.json")).unwrap().len();
    assert!(results < 8 << 20, "results.json is {results} bytes");
    assert!(a.p.audit_events("attack", "limit").iter().any(|e| e["kind"] == "report"), "the cut is audited");
    // The healthy step after it ran (checked by Attack::run) and the
    // state store kept the run.
    let history = a.p.deployhost(&["history", "--json"], &[]);
    assert!(history.stdout.contains("attacks"), "{}", history.all_output());
}

#[test]
fn a_runaway_blocking_step_still_lets_the_rollback_run() {
    let p = Project::new();
    let server = Server::fixed(Response::ok("ok"));
    let digest = p.plugin("hostile");
    let attack =
        hostile_step("attack", &digest, "{ attack: alloc }", "{}").replace("blocking: false", "blocking: true");
    p.pipeline(&format!(
        "pipeline: attacks\nrollback:\n  steps:\n    - name: notify\n      uses: health-probe\n      with: {{ url: \"{}\" }}\n      grants: {{ net: [\"{}\"] }}\nstages:\n  - name: s\n    steps:\n{attack}        limits: {{ memory: 32MiB }}\n",
        server.url("/rollback"),
        server.grant()
    ));
    p.run(&[]).assert_code(1);
    assert_eq!(p.step("attack")["failure"], "memory");
    let results = p.results();
    assert_eq!(results["rollback"]["ok"], true, "{results:#}");
    assert_eq!(results["rollback"]["steps"][0]["status"], "passed", "{results:#}");
    assert_eq!(server.requests().len(), 1, "the rollback step reached its host");
}

/// Plugins that grab memory until stopped, in one parallel stage, each
/// under its own `limits.memory`; the largest (300 MiB) is over the default,
/// so the instance pool is sized past the default too.
fn memory_hogs(p: &Project) {
    let digest = p.plugin("hostile");
    let mut yaml = String::from("pipeline: hogs\nstages:\n  - name: hogs\n    parallel: true\n    steps:\n");
    for (name, limit) in [("hog-16", "16MiB"), ("hog-100", "100MiB"), ("hog-300", "300MiB")] {
        yaml.push_str(&hostile_step(name, &digest, "{ attack: alloc }", "{}"));
        yaml.push_str(&format!("        limits: {{ memory: {limit} }}\n"));
    }
    p.pipeline(&yaml);
}

fn assert_stopped_at_their_limits(p: &Project) {
    for (name, limit) in [("hog-16", "16MiB"), ("hog-100", "100MiB"), ("hog-300", "300MiB")] {
        let hog = p.step(name);
        assert_eq!(hog["failure"], "memory", "{hog}");
        assert!(hog["summary"].as_str().unwrap().contains(&format!("memory limit of {limit}")), "{hog}");
        let limit = p.audit_events(name, "limit");
        assert!(limit.iter().any(|e| e["kind"] == "memory"), "{limit:?}");
    }
}

/// Issue 17: steps' instances come from the pooling allocator, and each
/// step's `limits.memory` is still what stops it (the store's limiter is
/// asked before the pool's own maximum), reported as a memory stop.
#[test]
fn memory_limits_hold_with_pooled_instances() {
    let p = Project::new();
    memory_hogs(&p);
    let run = p.deployhost(&["-vv", "run", "pipeline.yaml"], &[]);
    run.assert_code(0);
    assert!(run.stderr.contains("instances pooled"), "{}", run.stderr);
    assert!(
        run.stderr.contains("steps=3") && run.stderr.contains(&format!("max_memory={}", 300 << 20)),
        "{}",
        run.stderr
    );
    assert_stopped_at_their_limits(&p);
}

/// Where the pool's address space cannot be reserved (`ulimit -v`), the
/// engine allocates on demand and the run is the same.
#[test]
fn without_address_space_for_the_pool_steps_are_allocated_on_demand() {
    let p = Project::new();
    memory_hogs(&p);
    let out = std::process::Command::new("sh")
        .args(["-c", "ulimit -v 16777216 && exec \"$0\" -vv run pipeline.yaml", crate::support::BIN])
        .current_dir(p.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("instance pool unavailable, allocating on demand"), "{stderr}");
    assert_stopped_at_their_limits(&p);
}

/// Header maps live in the host, not in the plugin's memory: a plugin
/// keeping 20,000 of 30 KB each (600 MB) is stopped once its resource table
/// holds about its memory limit's worth, and one header map may not hold
/// 120 KiB.
#[test]
fn header_maps_a_plugin_keeps_in_the_host_are_bounded_by_its_memory_limit() {
    let hoard = "        limits: { memory: 32MiB }\n";
    let a = Attack::run_with(&[("hoard", "{ attack: hoard-fields, count: 20000 }", "{}", hoard)], &[], |_| {});
    let step = a.p.step("hoard");
    assert_eq!((step["status"].as_str(), step["failure"].as_str()), (Some("failed"), Some("memory")), "{step}");
    assert!(step["summary"].as_str().unwrap().contains("1024 resources"), "{step}");
    assert!(step["ms"].as_u64().unwrap() < 10_000, "stopped at once: {step}");
    let a = Attack::run(&[("big", "{ attack: big-field }", "{}")], &[], |_| {});
    let step = a.p.step("big");
    assert_eq!(step["status"], "failed", "{step}");
    assert!(step["summary"].as_str().unwrap().contains("total size of fields exceeds limit"), "{step}");
}

/// A response the plugin keeps with its body unread holds a connection:
/// it counts against `limits.http_requests` until it is read or dropped,
/// so a step cannot pile up sockets from a server that trickles.
#[test]
fn responses_a_plugin_keeps_open_count_against_its_request_limit() {
    let server = Server::fixed(Response::ok(&"x".repeat(100)).trickled(std::time::Duration::from_millis(100)));
    let p = Project::new();
    let digest = p.plugin("hostile");
    let mut yaml = String::from("pipeline: n\nstages:\n  - name: s\n    steps:\n");
    let with = format!("{{ attack: hold-responses, url: \"{}\", count: 10 }}", server.url("/x"));
    yaml.push_str(&hostile_step("hold", &digest, &with, &format!("{{ net: [\"{}\"] }}", server.grant())));
    yaml.push_str("        limits: { http_requests: 4 }\n");
    p.pipeline(&yaml);
    p.run(&[]).assert_code(0);
    let step = p.step("hold");
    assert_eq!(
        (step["outputs"]["held"].as_str(), step["outputs"]["refused"].as_str()),
        (Some("4"), Some("6")),
        "{step}"
    );
    let limits = p.audit_events("hold", "limit");
    assert!(limits.iter().any(|e| e["kind"] == "http_in_flight" && e["limit"] == 4), "{limits:?}");
}
