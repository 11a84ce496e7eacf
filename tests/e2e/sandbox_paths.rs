//! Path tricks against the filesystem sandbox: each attack is its own
//! pipeline, must be denied, audited with the path tried, and leave the
//! host running the healthy step after it.

use crate::support::Project;
use crate::support::attack::Attack;

const CONFIG_READ: &str = "{ fs: { read: [config] } }";
const REPORTS_WRITE: &str = "{ fs: { read: [config], write: [reports] } }";

fn with_config(p: &Project) {
    p.write("config/app.toml", "name = 'shop'\n");
    p.write("config/sub/inner.txt", "inner\n");
    p.write("outside.txt", "not granted\n");
}

/// One hostile step with `with`, granted `grants`, after `setup`.
fn attack(with: &str, grants: &str, setup: impl Fn(&Project)) -> Attack {
    Attack::run(&[("attack", with, grants)], &[], setup)
}

#[test]
fn dotdot_after_a_symlink_inside_the_grant_is_denied() {
    let a = attack("{ attack: read-file, path: config/sub-link/../../outside.txt }", CONFIG_READ, |p| {
        with_config(p);
        std::os::unix::fs::symlink("sub", p.path().join("config/sub-link")).unwrap();
    });
    a.assert_denied("attack");
    a.assert_audited("attack", "fs.denied", "path", "sub-link/../../outside.txt");
}

#[test]
fn double_slashes_do_not_leave_the_grant() {
    let a = Attack::run(
        &[
            ("attack", "{ attack: read-file, path: \"//config//..//..//outside.txt\" }", CONFIG_READ),
            // The control: `//` inside the grant still reaches the granted file.
            ("control", "{ attack: read-file, path: \"//config//app.toml\" }", CONFIG_READ),
        ],
        &[],
        with_config,
    );
    a.assert_denied("attack");
    a.assert_audited("attack", "fs.denied", "path", "outside.txt");
    assert!(a.result("control").starts_with("escaped: 14 bytes"), "{}", a.result("control"));
}

#[test]
fn dot_segments_do_not_leave_the_grant() {
    let a = Attack::run(
        &[
            ("attack", "{ attack: read-file, path: \"/./config/./.././outside.txt\" }", CONFIG_READ),
            ("control", "{ attack: read-file, path: \"/config/./sub/./inner.txt\" }", CONFIG_READ),
        ],
        &[],
        with_config,
    );
    a.assert_denied("attack");
    a.assert_audited("attack", "fs.denied", "path", "outside.txt");
    assert!(a.result("control").starts_with("escaped: 6 bytes"), "{}", a.result("control"));
}

#[test]
fn unicode_look_alike_folder_is_not_the_granted_one() {
    // `dаta` with a Cyrillic `а` (U+0430) exists next to the granted `data`.
    let a = attack("{ attack: read-file, path: \"/d\u{430}ta/secret.txt\" }", "{ fs: { read: [data] } }", |p| {
        p.write("data/ok.txt", "ok\n");
        p.write("d\u{430}ta/secret.txt", "look-alike secret\n");
    });
    a.assert_denied("attack");
    a.assert_audited("attack", "fs.denied", "path", "/d\u{430}ta/secret.txt");
}

#[test]
fn a_64_kib_path_fails_cleanly() {
    let a = attack("{ attack: long-path, path: /config, count: 65536 }", CONFIG_READ, with_config);
    a.assert_denied("attack");
    let events = a.p.audit_events("attack", "fs");
    let event = events.iter().find(|e| e["error"].is_string()).expect("the failed open is audited");
    // The audit keeps the start of the path, not 64 KiB of it.
    let path = event["path"].as_str().unwrap();
    assert!(path.starts_with("/config/aaaa") && path.len() < 4096, "{} bytes", path.len());
}

#[test]
fn a_thousand_nested_components_fail_cleanly() {
    let a = attack("{ attack: nested-path, path: /config, name: \"sub/\", count: 1000 }", CONFIG_READ, with_config);
    a.assert_denied("attack");
    assert!(!a.p.audit_events("attack", "fs").is_empty(), "the failed open is audited");
}

#[test]
fn a_thousand_dotdots_are_denied() {
    let a = attack("{ attack: nested-path, path: /config, name: \"../\", count: 1000 }", CONFIG_READ, with_config);
    a.assert_denied("attack");
    a.assert_audited("attack", "fs.denied", "path", "../../../");
}

#[test]
fn hard_link_from_a_write_grant_to_a_file_outside_is_denied() {
    let a = attack("{ attack: hard-link, path: \"/reports/../outside.txt -> /reports/stolen\" }", REPORTS_WRITE, |p| {
        with_config(p);
        p.mkdir("reports");
    });
    a.assert_denied("attack");
    a.assert_audited("attack", "fs.denied", "path", "outside.txt");
    assert!(!a.p.path().join("reports/stolen").exists());
}

#[test]
fn hard_link_of_a_read_only_file_into_a_write_grant_is_denied() {
    // A link would let the step write the read-only file through the copy.
    let a = attack("{ attack: hard-link, path: \"/config/app.toml -> /reports/app.toml\" }", REPORTS_WRITE, |p| {
        with_config(p);
        p.mkdir("reports");
    });
    a.assert_denied("attack");
    a.assert_audited("attack", "fs.denied", "op", "link-write");
    assert!(!a.p.path().join("reports/app.toml").exists());
}

#[test]
fn a_step_cannot_read_another_steps_folder() {
    let a = Attack::run(
        &[
            ("writer", "{ attack: write-file, path: /private-a/token.txt }", "{ fs: { write: [private-a] } }"),
            ("reader", "{ attack: read-file, path: /private-a/token.txt }", "{ fs: { read: [shared-b] } }"),
        ],
        &[],
        |p| {
            p.mkdir("shared-b");
        },
    );
    assert!(a.result("writer").starts_with("escaped"), "the writer's own grant works: {}", a.result("writer"));
    assert!(a.p.path().join("private-a/token.txt").exists());
    a.assert_denied("reader");
    a.assert_audited("reader", "fs.denied", "path", "/private-a/token.txt");
}
