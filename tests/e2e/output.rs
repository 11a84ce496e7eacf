//! What a run shows people and machines: JSON events (docs/events.md),
//! JUnit XML, the HTML report in a real headless Chromium, the terminal
//! with and without a tty, `-q`/`-v`, completions and `--help` examples.

use crate::support::http::{Response, Server};
use crate::support::{BIN, Project, Run, hostile_step};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

const SECRET: &str = "t0p-s3cret-webhook-value";

/// Three stages: a probe that passes (or fails with `/down`), a hostile
/// step that prints its secret and tries a host it was not granted, and a
/// last probe.
fn pipeline(p: &Project, server: &Server, health_path: &str, rollback: &str) {
    let digest = p.plugin("hostile");
    let mut yaml = format!(
        "pipeline: shop\nenvironment: staging\nversion: \"1.2.3\"\nsecrets:\n  hook: {{ env: HOOK }}\nstages:\n  - name: health\n    steps:\n      - name: probe\n        uses: health-probe\n        with: {{ url: \"{}\" }}\n        grants: {{ net: [\"{}\"] }}\n  - name: sneaky\n    parallel: true\n    steps:\n",
        server.url(health_path),
        server.grant()
    );
    yaml.push_str(&hostile_step("leaky", &digest, "{ attack: print-secret, name: hook }", "{ secrets: [hook] }"));
    yaml.push_str(&hostile_step("curious", &digest, "{ attack: http, url: \"http://127.0.0.1:9/x\" }", "{}"));
    yaml.push_str(&format!(
        "  - name: after\n    steps:\n      - name: last\n        uses: health-probe\n        with: {{ url: \"{}\" }}\n        grants: {{ net: [\"{}\"] }}\n{rollback}",
        server.url("/up"),
        server.grant()
    ));
    p.pipeline(&yaml);
}

fn events(run: &Run) -> Vec<Value> {
    run.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {l}")))
        .collect()
}

fn names(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["event"].as_str().unwrap()).collect()
}

/// The fields docs/events.md promises for each event.
fn required(event: &str) -> &'static [&'static str] {
    const STEP: &[&str] = &[
        "stage", "step", "plugin", "sha256", "status", "failure", "blocking", "started", "ms", "summary", "outputs",
        "metrics", "log",
    ];
    match event {
        "run.started" => &["pipeline", "environment", "version", "file", "resumed", "rollback_only"],
        "stage.started" => &["stage", "parallel", "steps"],
        "step.started" => &["stage", "step", "plugin"],
        "step.finished" | "rollback.step" => STEP,
        "denial" => &["step", "capability", "audit_event", "detail"],
        "rollback.started" => &["reason"],
        "rollback.finished" => &["ok"],
        "run.finished" => &["status", "exit_code", "reason", "steps", "rollback", "ms"],
        other => panic!("undocumented event {other}"),
    }
}

/// Checks every line against the schema and the documented order; returns
/// the events.
fn check_stream(run: &Run) -> Vec<Value> {
    let events = events(run);
    let run_id = events[0]["run"].as_str().expect("run id").to_string();
    let mut stage = String::new();
    let mut open_steps: Vec<String> = Vec::new();
    let mut in_rollback = false;
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["v"], 1, "schema version: {e}");
        assert_eq!(e["run"], run_id.as_str(), "{e}");
        assert!(humantime::parse_rfc3339(e["ts"].as_str().unwrap()).is_ok(), "ts is RFC 3339: {e}");
        let name = e["event"].as_str().unwrap();
        for field in required(name) {
            assert!(e.get(*field).is_some(), "{name} lacks `{field}`: {e}");
        }
        match name {
            "run.started" => assert_eq!(i, 0, "run.started comes first"),
            "run.finished" => assert_eq!(i, events.len() - 1, "run.finished comes last"),
            "stage.started" => {
                assert!(open_steps.is_empty() && !in_rollback, "a stage starts after the last one ended: {e}");
                stage = e["stage"].as_str().unwrap().to_string();
            }
            "step.started" => {
                assert_eq!(e["stage"], stage.as_str(), "{e}");
                open_steps.push(e["step"].as_str().unwrap().to_string());
            }
            "step.finished" => {
                assert_eq!(e["stage"], stage.as_str(), "{e}");
                let step = e["step"].as_str().unwrap();
                if e["status"] == "skipped" {
                    assert!(!open_steps.iter().any(|s| s == step), "a skipped step never started: {e}");
                } else {
                    let at = open_steps.iter().position(|s| s == step).expect("step.finished after its step.started");
                    open_steps.remove(at);
                }
            }
            "denial" => {}
            "rollback.started" => in_rollback = true,
            "rollback.step" => assert!(in_rollback, "{e}"),
            "rollback.finished" => {
                assert!(in_rollback, "{e}");
                in_rollback = false;
            }
            _ => unreachable!(),
        }
    }
    assert!(open_steps.is_empty(), "steps that never finished: {open_steps:?}");
    assert_eq!(names(&events).last(), Some(&"run.finished"));
    events
}

fn find<'a>(events: &'a [Value], event: &str, step: &str) -> &'a Value {
    events.iter().find(|e| e["event"] == event && e["step"] == step).unwrap_or_else(|| panic!("no {event} for {step}"))
}

#[test]
fn json_events_of_a_passing_run_follow_the_schema_and_hide_secrets() {
    let server = Server::fixed(Response::ok("ok"));
    let p = Project::new();
    pipeline(&p, &server, "/up", "");
    let run = p.deployhost(&["run", "pipeline.yaml", "--output", "json"], &[("HOOK", SECRET)]);
    run.assert_code(0);
    assert!(!run.stdout.contains(SECRET), "the secret reached the events:\n{}", run.stdout);
    let events = check_stream(&run);
    let names = names(&events);
    assert_eq!(names.iter().filter(|n| **n == "stage.started").count(), 3);
    assert_eq!(names.iter().filter(|n| **n == "step.finished").count(), 4);
    let started = &events[0];
    assert_eq!(started["pipeline"], "shop");
    assert_eq!(started["environment"], "staging");
    assert_eq!(started["version"], "1.2.3");
    let probe = find(&events, "step.finished", "probe");
    assert_eq!(probe["status"], "passed");
    assert!(probe["ms"].as_u64().is_some() && probe["sha256"].as_str().unwrap().len() == 64);
    let leaky = find(&events, "step.finished", "leaky");
    assert_eq!(leaky["outputs"]["leak"], "***", "outputs are redacted: {leaky}");
    let denial = find(&events, "denial", "curious");
    assert_eq!(denial["capability"], "net");
    assert_eq!(denial["audit_event"], "net.denied");
    assert_eq!(denial["detail"]["host"], "127.0.0.1", "{denial}");
    let finished = events.last().unwrap();
    assert_eq!(finished["status"], "passed");
    assert_eq!(finished["exit_code"], 0);
    assert_eq!((finished["steps"]["passed"].as_u64(), finished["steps"]["failed"].as_u64()), (Some(3), Some(1)));
    assert!(finished["ms"].as_u64().is_some(), "{finished}");
    assert_eq!(finished["run"], p.results()["run_id"]);
    assert!(run.stderr.is_empty(), "stdout carries the events, stderr stays quiet: {}", run.stderr);
}

fn junit(path: &Path) -> String {
    std::fs::read_to_string(path).expect("JUnit file written")
}

#[test]
fn a_failing_run_ends_with_its_exit_code_and_a_junit_file() {
    let server = Server::start(|r, _| if r.path == "/down" { Response::status(503) } else { Response::ok("ok") });
    let p = Project::new();
    pipeline(&p, &server, "/down", "");
    let run = p
        .deployhost(&["run", "pipeline.yaml", "--output", "json", "--junit", "reports/junit.xml"], &[("HOOK", SECRET)]);
    run.assert_code(1);
    let events = check_stream(&run);
    let probe = find(&events, "step.finished", "probe");
    assert_eq!(probe["status"], "failed");
    assert_eq!(probe["failure"], "reported");
    assert_eq!(find(&events, "step.finished", "last")["status"], "skipped");
    let finished = events.last().unwrap();
    assert_eq!((finished["status"].as_str(), finished["exit_code"].as_i64()), (Some("failed"), Some(1)));
    assert_eq!(finished["steps"]["failed"], 1);
    assert_eq!(finished["steps"]["skipped"], 3);
    assert!(finished["reason"].as_str().unwrap().contains("blocking step `probe` failed"), "{finished}");

    let xml = junit(&p.path().join("reports/junit.xml"));
    assert!(!xml.contains(SECRET));
    let doc = roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("JUnit is not XML ({e}):\n{xml}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    assert_eq!(
        (root.attribute("tests"), root.attribute("failures"), root.attribute("skipped")),
        (Some("4"), Some("1"), Some("3"))
    );
    let suites: Vec<_> = root.children().filter(|n| n.has_tag_name("testsuite")).collect();
    let suite_names: Vec<_> = suites.iter().map(|s| s.attribute("name").unwrap()).collect();
    assert_eq!(suite_names, ["health", "sneaky", "after"]);
    for suite in &suites {
        let cases = suite.children().filter(|n| n.has_tag_name("testcase")).count();
        assert_eq!(suite.attribute("tests"), Some(cases.to_string().as_str()));
        assert!(suite.attribute("time").unwrap().parse::<f64>().is_ok());
        assert_eq!(suite.attribute("timestamp").unwrap().len(), 19, "xs:dateTime without zone");
    }
    let probe = suites[0].children().find(|n| n.has_tag_name("testcase")).unwrap();
    assert_eq!(probe.attribute("name"), Some("probe"));
    assert_eq!(probe.attribute("classname"), Some("shop.health"));
    let ms = p.step("probe")["ms"].as_u64().expect("the probe's ms in results.json");
    assert_eq!(
        probe.attribute("time"),
        Some(format!("{:.3}", ms as f64 / 1000.0).as_str()),
        "time is the step's, in seconds"
    );
    let failure = probe.children().find(|n| n.has_tag_name("failure")).expect("<failure>");
    assert!(failure.attribute("message").unwrap().contains("503"), "{xml}");
    let skipped = suites[2].descendants().filter(|n| n.has_tag_name("skipped")).count();
    assert_eq!(skipped, 1);
}

#[test]
fn a_rollback_streams_its_events_and_its_own_test_suite() {
    let server = Server::start(|r, _| if r.path == "/down" { Response::status(503) } else { Response::ok("ok") });
    let incidents = Server::fixed(Response::status(201));
    let p = Project::new();
    let rollback = format!(
        "rollback:\n  on: [health_check_failure]\n  steps:\n    - name: open-incident\n      uses: webhook\n      with: {{ url: \"{}\", body: {{ reason: \"${{REASON}}\" }} }}\n      grants: {{ net: [\"{}\"] }}\n",
        incidents.url("/incidents"),
        incidents.grant()
    );
    pipeline(&p, &server, "/down", &rollback);
    let run = p.deployhost(&["run", "pipeline.yaml", "--output=json", "--junit=junit.xml"], &[("HOOK", SECRET)]);
    run.assert_code(1);
    let events = check_stream(&run);
    let names = names(&events);
    let at = |n: &str| names.iter().position(|x| *x == n).unwrap_or_else(|| panic!("no {n}: {names:?}"));
    assert!(at("rollback.started") < at("rollback.step") && at("rollback.step") < at("rollback.finished"));
    assert!(events[at("rollback.started")]["reason"].as_str().unwrap().contains("health check `probe` failed"));
    assert_eq!(events[at("rollback.step")]["step"], "open-incident");
    assert_eq!(events[at("rollback.step")]["status"], "passed");
    assert_eq!(events[at("rollback.finished")]["ok"], true);
    let finished = events.last().unwrap();
    assert_eq!(finished["rollback"]["ok"], true);
    assert_eq!(finished["exit_code"], 1);
    assert_eq!(incidents.requests().len(), 1);

    let xml = junit(&p.path().join("junit.xml"));
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let rollback_suite = doc
        .descendants()
        .find(|n| n.has_tag_name("testsuite") && n.attribute("name") == Some("rollback"))
        .unwrap_or_else(|| panic!("no rollback suite:\n{xml}"));
    assert_eq!(rollback_suite.attribute("tests"), Some("1"));
    assert_eq!(rollback_suite.attribute("failures"), Some("0"));
}

/// Headless Chromium from Debian (scripts/prerequisites.sh installs it).
fn chromium(args: &[&str], profile: &Path) -> std::process::Output {
    let out = Command::new("timeout")
        .arg("120")
        .arg("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("chromium is not installed: run scripts/test.sh (scripts/prerequisites.sh installs it)");
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

#[test]
fn html_report_renders_in_chromium_and_escapes_everything() {
    let server = Server::start(|r, _| if r.path == "/down" { Response::status(503) } else { Response::ok("ok") });
    let p = Project::new();
    pipeline(&p, &server, "/up", "");
    let hostile_version = "<script>document.title='pwned'</script><img src=x onerror=alert(1)>";
    p.deployhost(&["run", "pipeline.yaml", "--version", hostile_version], &[("HOOK", SECRET)]).assert_code(0);
    let run_id = p.results()["run_id"].as_str().unwrap().to_string();
    let report = p.deployhost(&["report", &run_id, "--format", "html"], &[]);
    report.assert_code(0);
    let html = &report.stdout;
    assert!(!html.contains(SECRET));
    assert!(!html.contains("<script") && !html.contains("<img"), "untrusted text is escaped");
    for external in [" src=\"", " href=\"", "<link", "@import", "url("] {
        assert!(!html.contains(external), "self-contained: found {external}");
    }
    let page = p.write("report.html", html);
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}", page.display());

    let dom = String::from_utf8(chromium(&["--dump-dom", &url], profile.path()).stdout).unwrap();
    assert!(dom.contains("<title>Deployment of shop &lt;script&gt;"), "the title is text: {dom}");
    assert!(!dom.contains("pwned</title>") && !dom.contains("<script"), "nothing injected");
    for id in ["id=\"run\"", "id=\"timeline\"", "id=\"steps\"", "id=\"audit\"", "class=\"checklist\""] {
        assert!(dom.contains(id), "the parsed page lacks {id}");
    }
    assert_eq!(dom.matches("class=\"bar ").count(), 4, "one timeline bar per step");
    assert_eq!(dom.matches("class=\"bar failed\"").count(), 1, "the denied step's bar is red");
    assert!(dom.contains("class=\"denied\">net.denied"), "the denial is in the audit table's denied cell");

    let shot = p.path().join("report.png");
    chromium(&[&format!("--screenshot={}", shot.display()), "--window-size=1280,1600", &url], profile.path());
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000, "a real screenshot, not a blank page");
    if let Ok(dir) = std::env::var("DEPLOYHOST_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, Path::new(&dir).join("report.png")).unwrap();
    }
}

fn failing_command_pipeline(p: &Project) {
    p.pipeline(
        "pipeline: checks\nstages:\n  - name: pre-flight\n    steps:\n      - name: ok\n        run: sh -c \"echo fine; sleep 0.4\"\n        grants: { exec: [sh] }\n      - name: tests\n        run: sh -c \"for i in $(seq 1 30); do echo line-$i; done; exit 3\"\n        grants: { exec: [sh] }\n",
    );
}

#[test]
fn plain_output_has_no_escape_codes_and_the_failing_log_in_full() {
    let p = Project::new();
    failing_command_pipeline(&p);
    let run = p.deployhost(&["run", "pipeline.yaml", "--junit", "junit.xml"], &[("TERM", "xterm-256color")]);
    run.assert_code(1);
    let xml = junit(&p.path().join("junit.xml"));
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let failure = doc.descendants().find(|n| n.has_tag_name("failure")).expect("<failure>");
    assert_eq!(failure.attribute("type"), Some("reported"));
    assert!(failure.text().unwrap().contains("sh: line-30"), "the log's tail is in the failure: {xml}");
    assert!(!run.stdout.contains('\x1b'), "not a terminal: no escape codes\n{}", run.stdout);
    assert!(run.stdout.contains("line-1\n") && run.stdout.contains("line-30"), "the whole log: {}", run.stdout);
    let ok_log = "sh: fine";
    assert!(!run.stdout.contains(ok_log), "a passing step's log stays collapsed: {}", run.stdout);

    let quiet = p.deployhost(&["run", "pipeline.yaml", "-q"], &[]);
    quiet.assert_code(1);
    assert!(!quiet.stdout.contains("stage") && !quiet.stdout.contains("ok  "), "{}", quiet.stdout);
    assert!(quiet.stdout.contains("FAIL") && quiet.stdout.contains("failed (1 step(s) failed)"), "{}", quiet.stdout);

    let verbose = p.deployhost(&["run", "pipeline.yaml", "-v"], &[]);
    assert!(verbose.stderr.contains("INFO") && verbose.stderr.contains("run starting"), "{}", verbose.stderr);
    assert!(!verbose.stdout.contains("INFO"), "logs go to stderr only");
    let debug = p.deployhost(&["run", "pipeline.yaml"], &[("RUST_LOG", "deployhost=debug")]);
    assert!(debug.stderr.contains("DEBUG") && debug.stderr.contains("step starting"), "{}", debug.stderr);
}

/// Runs deployhost under a pseudo-terminal (util-linux `script`).
fn on_a_terminal(p: &Project, envs: &[(&str, &str)]) -> String {
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &format!("{BIN} run pipeline.yaml"), "/dev/null"])
        .current_dir(p.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TERM", "xterm-256color");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("script (util-linux) runs a command on a pseudo-terminal");
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn colour_only_on_a_terminal_and_never_with_no_color() {
    let p = Project::new();
    failing_command_pipeline(&p);
    let tty = on_a_terminal(&p, &[]);
    assert!(tty.contains("\x1b[31mFAIL\x1b[0m"), "red on a terminal: {tty:?}");
    assert!(tty.contains("line-30"), "{tty:?}");
    assert!(
        tty.contains("s  running") && SPINNER.iter().any(|c| tty.contains(*c)),
        "a live line while `ok` runs: {tty:?}"
    );
    let no_color = on_a_terminal(&p, &[("NO_COLOR", "1")]);
    assert!(no_color.contains("FAIL") && no_color.contains("line-30"), "{no_color:?}");
    let sgr = regex_free_sgr(&no_color);
    assert!(sgr.is_empty(), "NO_COLOR: colour codes {sgr:?} in {no_color:?}");
}

const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/// The SGR (colour) sequences in `text`: ESC [ digits/semicolons m.
fn regex_free_sgr(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (i, _) in text.match_indices("\x1b[") {
        let rest = &text[i + 2..];
        let len = rest.find(|c: char| !(c.is_ascii_digit() || c == ';')).unwrap_or(rest.len());
        if rest[len..].starts_with('m') {
            found.push(format!("ESC[{}m", &rest[..len]));
        }
    }
    found
}

#[test]
fn completions_and_help_examples() {
    let p = Project::new();
    for shell in ["bash", "zsh", "fish"] {
        let run = p.deployhost(&["completions", shell], &[]);
        run.assert_code(0);
        for word in ["run", "report", "rollback", "output", "junit"] {
            assert!(run.stdout.contains(word), "{shell} completions lack {word}");
        }
    }
    p.deployhost(&["completions", "tcsh"], &[]).assert_code(2);
    for command in [
        "run",
        "history",
        "status",
        "approve",
        "resume",
        "rollback",
        "report",
        "ci",
        "unlock",
        "validate",
        "audit",
        "plugins",
        "completions",
    ] {
        let help = p.deployhost(&[command, "--help"], &[]);
        help.assert_code(0);
        assert!(help.stdout.contains("Example"), "`{command} --help` has no example:\n{}", help.stdout);
        assert!(help.stdout.contains(&format!("deployhost {command}")), "{}", help.stdout);
    }
}

#[test]
fn sigterm_ends_the_stream_with_an_interrupted_run_and_a_junit_file() {
    use std::io::BufRead;
    let slow = Server::start(|r, _| {
        if r.path == "/slow" {
            Response::ok("ok").delayed(std::time::Duration::from_secs(20))
        } else {
            Response::ok("ok")
        }
    });
    let p = Project::new();
    p.pipeline(&format!(
        "pipeline: shop\nstages:\n  - name: s\n    steps:\n      - name: fast\n        uses: health-probe\n        with: {{ url: \"{}\" }}\n        grants: {{ net: [\"{g}\"] }}\n      - name: slow\n        uses: health-probe\n        with: {{ url: \"{}\", timeout: 60s }}\n        grants: {{ net: [\"{g}\"] }}\n",
        slow.url("/fast"),
        slow.url("/slow"),
        g = slow.grant()
    ));
    let mut child = Command::new(BIN)
        .args(["run", "pipeline.yaml", "--output", "json", "--junit", "junit.xml"])
        .current_dir(p.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let started_slow = line.contains("\"step.started\"") && line.contains("\"slow\"");
        seen.push(line);
        if started_slow {
            break;
        }
    }
    let kill = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    seen.extend(lines.map(Result::unwrap));
    assert_eq!(child.wait().unwrap().code(), Some(130));
    let last: Value = serde_json::from_str(seen.last().unwrap()).unwrap();
    assert_eq!(last["event"], "run.finished", "{seen:#?}");
    assert_eq!((last["status"].as_str(), last["exit_code"].as_i64()), (Some("interrupted"), Some(130)));
    assert_eq!(last["reason"], "stopped by SIGTERM");
    assert_eq!(last["steps"]["passed"], 1);

    let xml = junit(&p.path().join("junit.xml"));
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let root = doc.root_element();
    assert_eq!((root.attribute("tests"), root.attribute("errors")), (Some("2"), Some("1")), "{xml}");
    let error = doc.descendants().find(|n| n.has_tag_name("error")).expect("<error>");
    assert_eq!(error.attribute("message"), Some("stopped by SIGTERM"));
}

#[test]
fn a_run_waiting_at_the_gate_prints_only_run_finished() {
    let server = Server::fixed(Response::ok("ok"));
    let p = Project::new();
    p.pipeline(&format!(
        "pipeline: shop\nenvironments:\n  prod: {{ require_approval: true, approval: name, approvers: [lead] }}\nstages:\n  - name: s\n    steps:\n      - name: probe\n        uses: health-probe\n        with: {{ url: \"{}\" }}\n        grants: {{ net: [\"{}\"] }}\n",
        server.url("/"),
        server.grant()
    ));
    let run = p.deployhost(&["run", "pipeline.yaml", "--env", "prod", "--output", "json"], &[]);
    run.assert_code(3);
    let events = events(&run);
    assert_eq!(events.len(), 1, "{}", run.stdout);
    let e = &events[0];
    assert_eq!((e["event"].as_str(), e["status"].as_str()), (Some("run.finished"), Some("awaiting-approval")));
    assert_eq!(e["exit_code"], 3);
    let history: Value = serde_json::from_str(&p.deployhost(&["history", "--json"], &[]).stdout).unwrap();
    assert_eq!(history[0]["status"], "awaiting-approval");
    assert_eq!(e["run"], history[0]["id"], "the waiting run's id");
    assert!(server.requests().is_empty());
}

#[test]
fn a_stage_named_rollback_is_a_stage_like_any_other() {
    let server = Server::start(|r, _| if r.path == "/down" { Response::status(503) } else { Response::ok("ok") });
    let incidents = Server::fixed(Response::status(201));
    let p = Project::new();
    p.pipeline(&format!(
        "pipeline: shop\nenvironment: staging\nversion: \"1\"\nstages:\n  - name: rollback\n    steps:\n      - name: user-step\n        uses: health-probe\n        with: {{ url: \"{up}\" }}\n        grants: {{ net: [\"{grant}\"] }}\n  - name: verify\n    steps:\n      - name: probe\n        uses: health-probe\n        with: {{ url: \"{down}\" }}\n        grants: {{ net: [\"{grant}\"] }}\nrollback:\n  on: [health_check_failure]\n  steps:\n    - name: open-incident\n      uses: webhook\n      with: {{ url: \"{incident}\" }}\n      grants: {{ net: [\"{incident_grant}\"] }}\n",
        up = server.url("/up"),
        down = server.url("/down"),
        grant = server.grant(),
        incident = incidents.url("/incidents"),
        incident_grant = incidents.grant(),
    ));
    let run = p.deployhost(&["run", "pipeline.yaml", "--output=json", "--junit=junit.xml"], &[]);
    run.assert_code(1);
    // The user's stage streams its step like any other stage's.
    let events = check_stream(&run);
    assert_eq!(find(&events, "step.started", "user-step")["stage"], "rollback");
    assert_eq!(find(&events, "step.finished", "user-step")["status"], "passed");
    assert_eq!(find(&events, "rollback.step", "open-incident")["status"], "passed");
    let started: Vec<&str> =
        events.iter().filter(|e| e["event"] == "step.started").map(|e| e["step"].as_str().unwrap()).collect();
    assert_eq!(started, ["user-step", "probe"], "rollback steps are not stage steps");
    assert_eq!(incidents.requests().len(), 1);

    // results.json: the stage's step among the steps, the rollback's apart.
    let results = p.results();
    let steps: Vec<&str> = results["steps"].as_array().unwrap().iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(steps, ["user-step", "probe"]);
    let rollback: Vec<&str> =
        results["rollback"]["steps"].as_array().unwrap().iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(rollback, ["open-incident"]);

    // JUnit: two suites called `rollback`, each with only its own steps.
    let xml = junit(&p.path().join("junit.xml"));
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let suites: Vec<Vec<&str>> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testsuite") && n.attribute("name") == Some("rollback"))
        .map(|s| s.children().filter(|c| c.has_tag_name("testcase")).filter_map(|c| c.attribute("name")).collect())
        .collect();
    assert_eq!(suites, [vec!["user-step"], vec!["open-incident"]], "{xml}");
}
