//! A hostile plugin attacks its sandbox. Every attack must be denied or
//! stopped, show in the audit log, and leave the host running the rest of
//! the pipeline.

use crate::support::Project;
use crate::support::attack::Attack;
use crate::support::http::{Response, Server};

const CONFIG_READ: &str = "{ fs: { read: [config] } }";

fn with_config(p: &Project) {
    p.write("config/app.toml", "name = 'shop'\n");
    p.write("outside.txt", "not granted\n");
}

#[test]
fn filesystem_escapes_are_denied_and_audited() {
    let a = Attack::run(
        &[
            ("etc-passwd", "{ attack: read-file, path: /etc/passwd }", CONFIG_READ),
            ("dotdot", "{ attack: read-file, path: config/../../../../etc/passwd }", CONFIG_READ),
            ("dotdot-sibling", "{ attack: read-file, path: config/../outside.txt }", CONFIG_READ),
            ("symlink-abs", "{ attack: read-file, path: config/etc-link/passwd }", CONFIG_READ),
            ("symlink-rel", "{ attack: read-file, path: config/up-link }", CONFIG_READ),
            ("allowed-read", "{ attack: read-file, path: config/app.toml }", CONFIG_READ),
            ("root-listing", "{ attack: list-dir, path: / }", CONFIG_READ),
        ],
        &[],
        |p| {
            with_config(p);
            std::os::unix::fs::symlink("/etc", p.path().join("config/etc-link")).unwrap();
            std::os::unix::fs::symlink("../outside.txt", p.path().join("config/up-link")).unwrap();
        },
    );
    for step in ["etc-passwd", "dotdot", "dotdot-sibling", "symlink-abs", "symlink-rel"] {
        a.assert_denied(step);
    }
    a.assert_audited("etc-passwd", "fs.denied", "path", "/etc/passwd");
    a.assert_audited("dotdot", "fs.denied", "path", "../");
    a.assert_audited("dotdot-sibling", "fs.denied", "path", "outside.txt");
    a.assert_audited("symlink-abs", "fs.denied", "path", "etc-link/passwd");
    a.assert_audited("symlink-rel", "fs.denied", "path", "up-link");
    // The control: a granted file is readable, and its read is audited.
    assert!(a.result("allowed-read").starts_with("escaped: 14 bytes"), "{}", a.result("allowed-read"));
    a.assert_audited("allowed-read", "fs", "path", "/config/app.toml");
    // `/` is an empty folder: nothing of the host is visible there.
    assert_eq!(a.result("root-listing"), "escaped: 0 entries");
}

#[test]
fn writes_need_a_write_grant() {
    let a = Attack::run(
        &[
            ("write-readonly", "{ attack: write-file, path: config/evil.txt }", CONFIG_READ),
            ("write-outside", "{ attack: write-file, path: /tmp/deployhost-evil.txt }", "{ fs: { write: [reports] } }"),
            (
                "rename-out",
                "{ attack: rename, path: \"config/app.toml -> reports/stolen.toml\" }",
                "{ fs: { read: [config], write: [reports] } }",
            ),
            ("write-granted", "{ attack: write-file, path: reports/out.txt }", "{ fs: { write: [reports] } }"),
        ],
        &[],
        with_config,
    );
    a.assert_denied("write-readonly");
    a.assert_audited("write-readonly", "fs.denied", "path", "/config/evil.txt");
    assert!(!a.p.path().join("config/evil.txt").exists());
    a.assert_denied("write-outside");
    a.assert_audited("write-outside", "fs.denied", "path", "/tmp/deployhost-evil.txt");
    assert!(!std::path::Path::new("/tmp/deployhost-evil.txt").exists());
    a.assert_denied("rename-out");
    assert!(a.p.path().join("config/app.toml").exists(), "a rename out of a read-only grant must not move the file");
    a.assert_audited("rename-out", "fs.denied", "path", "reports/stolen.toml");
    // The control: a write grant allows writing, and the folder was created.
    assert_eq!(std::fs::read_to_string(a.p.path().join("reports/out.txt")).unwrap(), "pwned");
    a.assert_audited("write-granted", "fs", "path", "/reports/out.txt");
}

#[test]
fn network_needs_a_net_grant() {
    let target = Server::fixed(Response::ok("secret data"));
    let url = target.url("/data");
    let a = Attack::run(
        &[
            ("no-grant", &format!("{{ attack: http, url: \"{url}\" }}"), "{}"),
            ("wrong-port", &format!("{{ attack: http, url: \"{url}\" }}"), "{ net: [\"127.0.0.1:1\"] }"),
            (
                "name-for-ip",
                &format!("{{ attack: http, url: \"http://localhost:{}/data\" }}", target.port),
                &format!("{{ net: [\"{}\"] }}", target.grant()),
            ),
        ],
        &[],
        |_| {},
    );
    for step in ["no-grant", "wrong-port", "name-for-ip"] {
        a.assert_denied(step);
    }
    assert!(target.requests().is_empty(), "no request may reach a host that was not granted");
    a.assert_audited("no-grant", "net.denied", "allow_with", &target.grant());
    a.assert_audited("name-for-ip", "net.denied", "host", "localhost");
    let message = a.p.step("no-grant")["summary"].as_str().unwrap().to_string();
    assert!(
        message.contains("no-grant") && message.contains(&target.grant()),
        "the denial names step and host: {message}"
    );
    // The attacks did not disturb the final, granted probe.
    assert_eq!(a.server.requests().len(), 1);
}

#[test]
fn host_environment_is_invisible() {
    let a = Attack::run(
        &[("env", "{ attack: env, name: DEPLOYHOST_TEST_TOKEN }", "{}")],
        &[("DEPLOYHOST_TEST_TOKEN", "tok-123456"), ("HOME", "/root")],
        |_| {},
    );
    a.assert_denied("env");
    assert_eq!(a.result("env"), "denied: no environment variables");
    assert!(!a.p.audit_events("env", "env.denied").is_empty());
}

#[test]
fn runaway_plugins_are_stopped() {
    let a = Attack::run_with(
        &[
            ("spin", "{ attack: spin }", "{}", "        timeout: 1s\n"),
            ("sleep", "{ attack: sleep }", "{}", "        timeout: 1s\n"),
            ("hog", "{ attack: alloc }", "{}", "        limits: { memory: 32MiB }\n"),
            ("crash", "{ attack: panic }", "{}", ""),
        ],
        &[],
        |_| {},
    );
    let spin = a.p.step("spin");
    assert_eq!(spin["status"], "failed");
    assert_eq!(spin["failure"], "timeout", "{spin}");
    assert!(spin["summary"].as_str().unwrap().contains("timed out after 1s"));
    assert!(spin["ms"].as_u64().unwrap() < 10_000, "the spin was stopped near its timeout: {spin}");
    assert!(a.p.audit_events("spin", "limit").iter().any(|e| e["kind"] == "timeout"));

    let sleep = a.p.step("sleep");
    assert_eq!(sleep["failure"], "timeout", "{sleep}");

    let hog = a.p.step("hog");
    assert_eq!(hog["failure"], "memory", "{hog}");
    assert!(hog["summary"].as_str().unwrap().contains("memory limit of 32MiB"));
    assert!(a.p.audit_events("hog", "limit").iter().any(|e| e["kind"] == "memory"));

    let crash = a.p.step("crash");
    assert_eq!(crash["failure"], "crash", "{crash}");
    let log = std::fs::read_to_string(a.p.last_run_dir().join("logs/crash.log")).unwrap();
    assert!(log.contains("panicked on purpose"), "the panic message reaches the step log: {log}");
}

#[test]
fn output_floods_are_capped() {
    let a = Attack::run(
        &[
            ("log-flood", "{ attack: log-flood, count: 100000 }", "{}"),
            ("stdout-flood", "{ attack: stdout-flood, count: 20000 }", "{}"),
        ],
        &[],
        |_| {},
    );
    for step in ["log-flood", "stdout-flood"] {
        let log = a.p.last_run_dir().join(format!("logs/{step}.log"));
        let size = std::fs::metadata(&log).unwrap().len();
        assert!(size <= 8 * 1024 * 1024 + 4096, "{step} log is capped, got {size} bytes");
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("bytes dropped"), "{step}: the log says it was cut");
    }
}

#[test]
fn stack_overflow_is_stopped() {
    let a = Attack::run(&[("recurse", "{ attack: recurse }", "{}")], &[], |_| {});
    let step = a.p.step("recurse");
    assert_eq!(step["failure"], "crash", "{step}");
    assert!(step["summary"].as_str().unwrap().contains("stack overflowed"), "{step}");
}

#[test]
fn redirects_and_address_tricks_are_checked_like_any_request() {
    let elsewhere = Server::fixed(Response::ok("secret data"));
    let granted = Server::fixed(Response::redirect(&elsewhere.url("/data")));
    let grant = format!("{{ net: [\"{}\"] }}", granted.grant());
    let port = granted.port;
    let a = Attack::run(
        &[
            ("redirect", &format!("{{ attack: follow-redirect, url: \"{}\" }}", granted.url("/go")), &grant),
            ("decimal-ip", &format!("{{ attack: http, url: \"http://2130706433:{port}/\" }}"), &grant),
            ("mapped-ipv6", &format!("{{ attack: http, url: \"http://[::ffff:127.0.0.1]:{port}/\" }}"), &grant),
            (
                "userinfo",
                &format!("{{ attack: http, url: \"http://127.0.0.1:{port}@{}/\" }}", elsewhere.grant()),
                &grant,
            ),
        ],
        &[],
        |_| {},
    );
    for step in ["redirect", "decimal-ip", "mapped-ipv6", "userinfo"] {
        a.assert_denied(step);
    }
    assert_eq!(granted.requests().len(), 1, "only the first hop of the redirect reached the granted host");
    assert!(elsewhere.requests().is_empty(), "no request reached a host that was not granted");
    a.assert_audited("redirect", "net.denied", "allow_with", &elsewhere.grant());
    a.assert_audited("decimal-ip", "net.denied", "host", "2130706433");
}
