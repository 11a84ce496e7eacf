//! What the host does on a step's behalf is as confined as the step itself:
//! derived forms of secrets redacted everywhere, runtime text never run as
//! code, restores that trust only the host's own record, grants that cannot
//! reach deployhost's files, host programs that cannot outlive their step or
//! take tricks from a plugin, names that cannot lead to internal addresses,
//! plugin text neutralised in every output, plugin bytes part of promotion.

use crate::support::http::{Response, Server};
use crate::support::pg::Postgres;
use crate::support::{Project, hostile_step};
use std::time::{Duration, Instant};

fn log(p: &Project, step: &str) -> String {
    // A step that logged nothing has no log file.
    std::fs::read_to_string(p.last_run_dir().join(format!("logs/{step}.log"))).unwrap_or_default()
}

// ---- 1. Redaction -------------------------------------------------------

/// The token of a Slack webhook is its path: the `net.request` audit event
/// records paths, so masking the whole URL alone leaked it in clear.
#[test]
fn a_webhook_urls_token_appears_in_no_file_and_no_output() {
    let slack = Server::fixed(Response::ok("ok"));
    let token_path = "/services/T0AAAA1111/B0BBBB2222/Xq7ZmN4pL2vR8sT1uW3yK5aD";
    let hook = slack.url(token_path);
    let p = Project::new();
    p.pipeline(&format!(
        "pipeline: notify\nsecrets:\n  hook: {{ env: SLACK_WEBHOOK_URL }}\nstages:\n  - name: s\n    steps:\n      - name: notify\n        uses: slack-notify\n        with: {{ webhook_secret: hook, text: \"deployed\" }}\n        grants: {{ net: [\"{}\"], secrets: [hook] }}\n",
        slack.grant()
    ));
    let run = p.deployhost(&["run", "pipeline.yaml", "--output", "json"], &[("SLACK_WEBHOOK_URL", &hook)]);
    run.assert_code(0);
    assert_eq!(slack.requests()[0].path, token_path, "the stand-in got the real-shaped webhook");
    let requests = p.audit_events("notify", "net.request");
    assert_eq!(requests.len(), 1, "the request is audited");
    assert_eq!(requests[0]["path"], "***", "its path is masked: {}", requests[0]);
    let everything = format!("{}{}", run.all_output(), p.run_files_text());
    for part in ["Xq7ZmN4pL2vR8sT1uW3yK5aD", "T0AAAA1111/B0BBBB2222"] {
        assert!(!everything.contains(part), "the webhook token `{part}` leaked");
    }
}

/// A PEM-style key printed by a host program arrives line by line; no single
/// line equals the whole secret, so each line is a form of its own.
#[test]
fn a_multi_line_key_printed_by_a_host_program_is_masked_line_by_line() {
    let body = [
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7",
        "q9Jt0kYb3x2fRk1ZdHc8mN5vLp4wQeTy7uIoP1aSdFgHjKlZxCvB",
    ];
    let key = format!("-----BEGIN PRIVATE KEY-----\n{}\n{}\n-----END PRIVATE KEY-----\n", body[0], body[1]);
    let p = Project::new();
    p.write("keys/deploy.pem", &key);
    p.pipeline(
        "pipeline: k\nsecrets:\n  deploy_key: { file: keys/deploy.pem }\n  token: { env: TOKEN }\nstages:\n  - name: s\n    steps:\n      - name: show-key\n        run: cat keys/deploy.pem\n        grants: { exec: [cat], secrets: [deploy_key] }\n      - name: encode\n        run: sh -c 'printf %s \"$TOKEN\" | base64'\n        with: { secret_env: { TOKEN: token } }\n        grants: { exec: [sh], secrets: [token] }\n",
    );
    let token = "tok-3f9a8b7c6d5e4f3a2b1c";
    p.run(&[("TOKEN", token)]).assert_code(0);
    let shown = log(&p, "show-key");
    assert!(shown.contains("cat: ***"), "the key's lines are masked: {shown}");
    for line in body {
        assert!(!shown.contains(line), "a line of the key leaked: {shown}");
    }
    let encoded = log(&p, "encode");
    assert!(!encoded.contains("dG9rLTNmOWE4YjdjNmQ1ZTRmM2EyYjFj"), "the base64 form leaked: {encoded}");
    assert!(encoded.contains("sh: ***"), "{encoded}");
}

/// Cuts at 16 KiB (a log line) and 500 bytes (an audited warning) came
/// before redaction and left a secret minus its last bytes; metric names and
/// units were never redacted.
#[test]
fn cuts_and_metric_names_never_leave_part_of_a_secret() {
    let secret = "Zk8vQp2Lx9Rt4Wm7Yc3N";
    let p = Project::new();
    let digest = p.plugin("hostile");
    let mut yaml = String::from("pipeline: x\nsecrets:\n  s: { env: S }\nstages:\n  - name: s\n    steps:\n");
    yaml.push_str(&hostile_step("cut", &digest, "{ attack: secret-at-cut, name: s }", "{ secrets: [s] }"));
    yaml.push_str(&hostile_step("metric", &digest, "{ attack: secret-metric, name: s }", "{ secrets: [s] }"));
    p.pipeline(&yaml);
    p.run(&[("S", secret)]).assert_code(0);
    let files = p.run_files_text();
    let start = &secret[..8];
    assert!(!files.contains(start), "the start of the secret was left by a cut or a metric name");
    let metric = &p.step("metric")["metrics"][0];
    assert_eq!(metric["name"], "leak_***", "{metric}");
    assert_eq!(metric["unit"], "unit_***", "{metric}");
    assert!(p.audit_events("cut", "log").iter().any(|e| e["message"].as_str().unwrap().starts_with("yyy")));
}

// ---- 2. Runtime variables are data ---------------------------------------

/// A rollback `run:` that uses the reason: before, `${REASON}` was spliced
/// into the command line, so a reason with backticks broke the rollback and
/// `$(…)` in it ran on the host.
#[test]
fn a_rollback_reason_is_passed_as_data_and_never_run() {
    let marker = std::env::temp_dir().join(format!("deployhost-reason-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let reason = format!("health check `api` failed; $(touch {}) `touch {}`", marker.display(), marker.display());
    let p = Project::new();
    let digest = p.plugin("hostile");
    let mut yaml = String::from("pipeline: r\nstages:\n  - name: s\n    steps:\n");
    yaml.push_str(&hostile_step("check", &digest, &format!("{{ attack: fail, name: {reason:?} }}"), "{}"));
    yaml = yaml.replace("blocking: false", "blocking: true");
    yaml.push_str(
        "rollback:\n  on: [health_check_failure]\n  steps:\n    - name: tell-shell\n      run: sh -c 'echo \"rolled back - $REASON\"'\n      grants: { exec: [sh] }\n    - name: tell-echo\n      run: echo rolled back - ${REASON}\n      grants: { exec: [echo] }\n",
    );
    p.pipeline(&yaml);
    let run = p.run(&[]);
    run.assert_code(1);
    let results = p.results();
    assert_eq!(results["rollback"]["ok"], true, "the rollback completed: {}", results["rollback"]);
    assert!(!marker.exists(), "the reason was executed on the host");
    for step in ["tell-shell", "tell-echo"] {
        let text = log(&p, step);
        assert!(text.contains("`api` failed; $(touch"), "{step} printed the reason verbatim: {text}");
    }
}

#[test]
fn a_shell_script_splicing_the_reason_is_refused_with_the_fix() {
    let p = Project::new();
    p.pipeline(
        "pipeline: r\nstages:\n  - name: s\n    steps:\n      - name: ok\n        run: echo hi\n        grants: { exec: [echo] }\nrollback:\n  on: [health_check_failure]\n  steps:\n    - name: tell\n      run: bash -c \"echo rollback ${REASON}\"\n      grants: { exec: [bash] }\n",
    );
    let run = p.deployhost(&["validate", "pipeline.yaml"], &[]);
    run.assert_code(2);
    assert!(run.stderr.contains("pipeline.yaml:12:"), "{}", run.stderr);
    assert!(run.stderr.contains("rollback.steps[0].run") && run.stderr.contains("\"$REASON\""), "{}", run.stderr);
}

// ---- 3. Restores trust only the host's record -----------------------------

/// The rollback of these restores the backup (`ledger: false`): what they
/// attack is the restore.
fn restore_pipeline(app: &Server, tamper: &str) -> String {
    format!(
        "pipeline: shop\ndatabases:\n  app: {{ url_env: DATABASE_URL }}\nstages:\n  - name: schema\n    steps:\n      - name: backup\n        uses: pg-backup\n        with: {{ database: app, name: app.dump }}\n        grants: {{ databases: [app], fs: {{ write: [backups] }} }}\n{tamper}      - name: migrate\n        uses: supabase-migrate\n        with: {{ database: app, dir: migrations, ledger: false }}\n        grants: {{ databases: [app], fs: {{ read: [migrations] }} }}\n  - name: health\n    steps:\n      - name: probe\n        uses: health-probe\n        with: {{ url: \"{}\" }}\n        grants: {{ net: [\"{}\"] }}\nrollback:\n  on: [health_check_failure]\n",
        app.url("/health"),
        app.grant()
    )
}

/// A step with only a write grant on `backups` swaps the dump for a forgery
/// and deletes the manifest beside it: the rollback must not replay it.
#[test]
fn a_swapped_backup_with_its_manifest_deleted_is_refused() {
    let pg = Postgres::start();
    pg.psql("postgres", "create database forged");
    pg.psql("forged", "create table forged_marker (id int)");
    let app = Server::fixed(Response::status(503));
    let p = Project::new();
    p.mkdir("forged");
    pg.dump_custom("forged", &p.path().join("forged/forged.dump"));
    p.write("migrations/1_a.sql", "create table a (id int);");
    let digest = p.plugin("hostile");
    let mut tamper = hostile_step(
        "swap",
        &digest,
        "{ attack: copy, path: \"/forged/forged.dump -> /backups/app.dump\" }",
        "{ fs: { read: [forged], write: [backups] } }",
    );
    tamper.push_str(&hostile_step(
        "unlink",
        &digest,
        "{ attack: remove-file, path: /backups/app.dump.json }",
        "{ fs: { write: [backups] } }",
    ));
    p.pipeline(&restore_pipeline(&app, &tamper));
    pg.psql("postgres", "create table existing (id int)");

    let run = p.deployhost(&["run", "pipeline.yaml"], &[("DATABASE_URL", &pg.url("postgres"))]);
    run.assert_code(1);
    assert!(p.audit_events("backup", "sql.dump")[0]["bytes"].as_u64().unwrap() > 0, "a real backup was taken");
    assert_eq!(p.step("swap")["outputs"]["result"].as_str().unwrap().split(':').next(), Some("escaped"));
    assert!(!p.path().join("backups/app.dump.json").exists(), "the manifest is gone");
    let results = p.results();
    assert_eq!(results["rollback"]["ok"], false, "{}", results["rollback"]);
    let restore = &results["rollback"]["steps"][0];
    assert!(restore["summary"].as_str().unwrap().contains("changed since it was taken"), "{restore}");
    let tables = pg.psql(
        "postgres",
        "select string_agg(tablename, ',' order by tablename) from pg_tables where schemaname = 'public'",
    );
    assert!(!tables.contains("forged_marker"), "the forgery was restored: {tables}");
    assert!(tables.contains("existing"), "a refused restore changes nothing: {tables}");
}

/// A symlink planted at the manifest's name (by an earlier step with the same
/// write grant) pointing out of the grant: the host neither writes through
/// it nor reads through it.
#[test]
fn a_symlinked_manifest_is_never_followed() {
    let pg = Postgres::start();
    let p = Project::new();
    p.mkdir("backups");
    let victim = p.write("victim.txt", "host file\n");
    std::os::unix::fs::symlink("../victim.txt", p.path().join("backups/app.dump.json")).unwrap();
    p.pipeline(
        "pipeline: b\ndatabases:\n  app: { url_env: DATABASE_URL }\nstages:\n  - name: s\n    steps:\n      - name: backup\n        uses: pg-backup\n        with: { database: app, name: app.dump }\n        grants: { databases: [app], fs: { write: [backups] } }\n",
    );
    let run = p.deployhost(&["run", "pipeline.yaml"], &[("DATABASE_URL", &pg.url("postgres"))]);
    run.assert_code(1);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "host file\n", "the host wrote through the symlink");
    let step = p.step("backup");
    assert!(step["summary"].as_str().unwrap().contains("symlink"), "{step}");
    let denied = p.audit_events("backup", "fs.denied");
    assert!(denied.iter().any(|e| e["reason"].as_str().unwrap_or_default().contains("symlink")), "{denied:?}");
}

// ---- 4. Grants cannot reach deployhost's files --------------------------

#[test]
fn grants_may_not_cover_the_state_folder_or_secret_files() {
    let p = Project::new();
    p.write("keys/db.txt", "pw\n");
    p.write("conf/db.url", "postgres://u:p@127.0.0.1/db\n");
    p.pipeline(
        "pipeline: g\nsecrets:\n  pw: { file: keys/db.txt }\ndatabases:\n  app: { url_file: conf/db.url }\nstages:\n  - name: s\n    steps:\n      - name: everything\n        run: echo hi\n        grants: { exec: [echo], fs: { write: [\".\"] } }\n      - name: state\n        run: echo hi\n        grants: { exec: [echo], fs: { read: [.deployhost/runs] } }\n      - name: keys\n        run: echo hi\n        grants: { exec: [echo], fs: { read: [keys, conf] } }\n",
    );
    let run = p.deployhost(&["validate", "pipeline.yaml"], &[]);
    run.assert_code(2);
    for expected in [
        "pipeline.yaml:11:",
        "stages[0].steps[0].grants.fs.write[0]",
        "state folder",
        "stages[0].steps[1].grants.fs.read[0]",
        "stages[0].steps[2].grants.fs.read[0]",
        "secret `pw`",
        "stages[0].steps[2].grants.fs.read[1]",
        "url_file of database `app`",
    ] {
        assert!(run.stderr.contains(expected), "missing {expected:?} in:\n{}", run.stderr);
    }
}

// ---- 5. Host programs ----------------------------------------------------

#[test]
fn a_plugin_may_not_pass_loader_or_shell_function_variables() {
    let p = Project::new();
    p.pipeline(
        "pipeline: e\nstages:\n  - name: s\n    steps:\n      - name: preload\n        run: echo hi\n        with: { env: { LD_PRELOAD: /tmp/evil.so } }\n        grants: { exec: [echo] }\n        blocking: false\n      - name: function\n        run: echo hi\n        with: { env: { \"BASH_FUNC_echo%%\": \"() { id; }\" } }\n        grants: { exec: [echo] }\n",
    );
    p.run(&[]).assert_code(1);
    for (step, name) in [("preload", "LD_PRELOAD"), ("function", "BASH_FUNC_echo%%")] {
        let outcome = p.step(step);
        assert_eq!(outcome["status"], "failed");
        assert!(outcome["summary"].as_str().unwrap().contains(&format!("may not pass `{name}`")), "{outcome}");
        assert_eq!(p.audit_events(step, "exec.denied")[0]["env"], name);
    }
}

/// A program that leaves a child running (holding its output open) used to
/// keep its step waiting, and the child outlived the step.
#[test]
fn a_programs_children_do_not_outlive_it() {
    let p = Project::new();
    let tag = format!("{}", 4000 + std::process::id() % 1000);
    p.pipeline(&format!(
        "pipeline: e\nstages:\n  - name: s\n    steps:\n      - name: spawn\n        run: sh -c 'sleep 3{tag} & echo started'\n        grants: {{ exec: [sh] }}\n"
    ));
    let started = Instant::now();
    p.run(&[]).assert_code(0);
    assert!(started.elapsed() < Duration::from_secs(20), "the step waited for its program's child");
    std::thread::sleep(Duration::from_millis(200));
    let ps = std::process::Command::new("ps").args(["-eo", "args"]).output().unwrap();
    let ps = String::from_utf8_lossy(&ps.stdout);
    assert!(!ps.lines().any(|l| l.trim() == format!("sleep 3{tag}")), "the child outlived its step");
}

#[test]
fn programs_are_not_taken_from_a_write_grant_on_path() {
    let p = Project::new();
    let tools = p.mkdir("tools");
    p.write("tools/deploy-tool", "#!/bin/sh\necho planted\n");
    std::process::Command::new("chmod").arg("+x").arg(tools.join("deploy-tool")).status().unwrap();
    p.pipeline(
        "pipeline: e\nstages:\n  - name: s\n    steps:\n      - name: plant\n        run: echo hi\n        grants: { exec: [echo], fs: { write: [tools] } }\n      - name: use\n        run: deploy-tool\n        grants: { exec: [deploy-tool] }\n",
    );
    let path = format!("{}:{}", tools.display(), std::env::var("PATH").unwrap_or_default());
    p.run(&[("PATH", &path)]).assert_code(1);
    let step = p.step("use");
    assert!(step["summary"].as_str().unwrap().contains("entries inside write grants are not searched"), "{step}");
    assert!(!log(&p, "use").contains("planted"));
}

// ---- 6. Names that resolve to internal addresses --------------------------

#[test]
fn a_name_resolving_to_loopback_is_denied_under_a_name_grant() {
    let target = Server::fixed(Response::ok("internal data"));
    let p = Project::new();
    let digest = p.plugin("hostile");
    let name = "metadata.internal.example";
    let mut yaml = String::from("pipeline: n\nstages:\n  - name: s\n    steps:\n");
    let with = format!("{{ attack: http, url: \"http://{name}:{}/secret\" }}", target.port);
    yaml.push_str(&hostile_step("rebind", &digest, &with, &format!("{{ net: [\"{name}:{}\"] }}", target.port)));
    let with = format!("{{ attack: http, url: \"http://localhost:{}/ok\" }}", target.port);
    yaml.push_str(&hostile_step("localhost", &digest, &with, &format!("{{ net: [\"localhost:{}\"] }}", target.port)));
    p.pipeline(&yaml);
    // The resolver seam: this name answers 127.0.0.1, as a hostile DNS would.
    p.run(&[("DEPLOYHOST_RESOLVE", &format!("{name}=127.0.0.1"))]).assert_code(0);
    let result = p.step("rebind")["outputs"]["result"].as_str().unwrap().to_string();
    assert!(result.starts_with("denied"), "{result}");
    assert!(!target.requests().iter().any(|r| r.path == "/secret"), "the request reached the internal server");
    let denied = p.audit_events("rebind", "net.denied");
    assert_eq!(denied[0]["address"], "127.0.0.1", "{denied:?}");
    // A grant that names `localhost` explicitly still reaches it, and the
    // audit records the address connected to.
    assert!(p.step("localhost")["outputs"]["result"].as_str().unwrap().starts_with("escaped"));
    let request = &p.audit_events("localhost", "net.request")[0];
    assert!(["127.0.0.1", "::1"].contains(&request["address"].as_str().unwrap()), "{request}");
}

// ---- 7. Plugin text in other outputs -------------------------------------

#[test]
fn plugin_text_is_neutralised_in_status_audit_and_the_job_summary() {
    let p = Project::new();
    let digest = p.plugin("hostile");
    // Workflow commands, a terminal escape, and a forged checklist line.
    let evil =
        r#"{ attack: fail, name: "::add-mask::x\n::stop-commands::tok \x1b[2J\n- [x] Approved by @cto <img src=x>" }"#;
    let mut yaml = String::from("pipeline: t\nstages:\n  - name: s\n    steps:\n");
    yaml.push_str(&hostile_step("evil", &digest, evil, "{}").replace("blocking: false", "blocking: true"));
    yaml.push_str("rollback:\n  on: [health_check_failure]\n");
    p.pipeline(&yaml);
    let summary = p.path().join("summary.md");
    let envs = [("GITHUB_ACTIONS", "true"), ("GITHUB_STEP_SUMMARY", summary.to_str().unwrap())];
    let run = p.deployhost(&["run", "pipeline.yaml"], &envs);
    run.assert_code(1);
    assert!(p.step("evil")["summary"].as_str().unwrap().contains("::stop-commands::"), "the attack reached the host");
    let run_id = p.results()["run_id"].as_str().unwrap().to_string();
    let status = p.deployhost(&["status", &run_id], &[]);
    let history = p.deployhost(&["history"], &[]);
    let audit = p.deployhost(&["audit", "--run", &run_id], &[]);
    for (what, out) in
        [("run", &run.stdout), ("status", &status.stdout), ("history", &history.stdout), ("audit", &audit.stdout)]
    {
        assert!(!out.contains('\u{1b}'), "{what} printed a raw escape: {out}");
        for line in out.lines() {
            let line = line.trim_start();
            assert!(!line.starts_with("::add-mask") && !line.starts_with("::stop-commands"), "{what}: {line}");
        }
    }
    assert!(status.stdout.contains("\\x0a::stop-commands"), "status shows the text escaped: {}", status.stdout);
    let md = std::fs::read_to_string(summary).unwrap();
    assert!(md.contains("rolled back"), "{md}");
    assert!(!md.lines().any(|l| l.starts_with("- [x] Approved by")), "a forged checklist line: {md}");
    assert!(md.contains("\\<img src=x\\>"), "HTML shown escaped: {md}");
    assert!(!md.replace("\\<", "").contains('<'), "raw HTML in the summary: {md}");
}

// ---- 8. Promotion compares plugin bytes -----------------------------------

#[test]
fn changed_plugin_bytes_since_the_required_environment_are_refused() {
    let p = Project::new();
    let digest = p.plugin("hostile");
    let pipeline = |digest: &str| {
        let mut yaml = String::from(
            "pipeline: promo\nenvironments:\n  dev: {}\n  staging: { requires: dev }\nstages:\n  - name: s\n    steps:\n",
        );
        yaml.push_str(&hostile_step("check", digest, "{ attack: say, name: fine }", "{}"));
        yaml
    };
    p.pipeline(&pipeline(&digest));
    p.deployhost(&["run", "pipeline.yaml", "--env", "dev", "--version", "1.0.0"], &[]).assert_code(0);
    // Other bytes under the same step name: a custom section appended.
    let mut bytes = std::fs::read(p.path().join("hostile.wasm")).unwrap();
    bytes.extend_from_slice(&[0, 5, 4, b'p', b'a', b'd', b'1']);
    std::fs::write(p.path().join("hostile.wasm"), &bytes).unwrap();
    let changed = crate::support::sha256(&bytes);
    p.pipeline(&pipeline(&changed));
    let refused = p.deployhost(&["run", "pipeline.yaml", "--env", "staging", "--version", "1.0.0"], &[]);
    refused.assert_code(4);
    assert!(refused.stderr.contains(&format!("step `check`: plugin sha256 `{changed}`")), "{}", refused.stderr);
    let accepted = p.deployhost(
        &["run", "pipeline.yaml", "--env", "staging", "--version", "1.0.0", "--accept-grants", "@lead"],
        &[],
    );
    accepted.assert_code(0);
}

// ---- 9. Cache entries are authenticated ----------------------------------

/// Someone who can write the cache folder but does not hold its key (before:
/// anyone, as an entry carried only a digest of itself) re-checksums an
/// entry: it is compiled again, not loaded as native code.
#[test]
fn a_cache_entry_checksummed_without_the_key_is_not_loaded() {
    // A plugin file: built-ins' code is embedded, not cached.
    let p = Project::new();
    let digest = p.plugin("noop");
    p.pipeline(&format!(
        "pipeline: cached\nstages:\n  - name: s\n    steps:\n      - name: nothing\n        uses: ./noop.wasm\n        sha256: {digest}\n"
    ));
    p.run(&[]).assert_code(0);
    let cache = p.path().join(".deployhost/cache");
    let entry = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .expect("a cache entry");
    use std::os::unix::fs::PermissionsExt as _;
    let key_mode = std::fs::metadata(cache.join("key")).unwrap().permissions().mode();
    assert_eq!(key_mode & 0o077, 0, "the key is private");
    // The entry's own format, its checksum line recomputed as a plain sha256.
    let bytes = std::fs::read(&entry).unwrap();
    let magic_end = bytes.iter().position(|&b| b == b'\n').unwrap() + 1;
    let payload = &bytes[magic_end + 65..];
    let forged = [&bytes[..magic_end], crate::support::sha256(payload).as_bytes(), b"\n", payload].concat();
    std::fs::write(&entry, &forged).unwrap();
    p.run(&[]).assert_code(0);
    let loads: Vec<String> = p
        .audit()
        .into_iter()
        .filter(|e| e["event"] == "plugin.load")
        .map(|e| e["how"].as_str().unwrap().to_string())
        .collect();
    assert!(loads[0].starts_with("compiled again:") && loads[0].contains("checksum mismatch"), "{loads:?}");
}

/// Requests all sent before any is waited for: past the cap of 16 in flight
/// a request is refused, so a step cannot hold unbounded sockets and tasks.
#[test]
fn in_flight_requests_are_capped() {
    let server = Server::fixed(Response::ok("slow").delayed(Duration::from_millis(300)));
    let p = Project::new();
    let digest = p.plugin("hostile");
    let mut yaml = String::from("pipeline: n\nstages:\n  - name: s\n    steps:\n");
    let with = format!("{{ attack: parallel-http, url: \"{}\", count: 40 }}", server.url("/x"));
    yaml.push_str(&hostile_step("flood", &digest, &with, &format!("{{ net: [\"{}\"] }}", server.grant())));
    p.pipeline(&yaml);
    p.run(&[]).assert_code(0);
    let step = p.step("flood");
    let answered: usize = step["outputs"]["answered"].as_str().unwrap().parse().unwrap();
    assert!((1..=16).contains(&answered), "{step}");
    assert_eq!(step["outputs"]["refused"], (40 - answered).to_string());
    assert!(server.max_in_flight() <= 16, "the server saw {} at once", server.max_in_flight());
    let limits = p.audit_events("flood", "limit");
    assert!(limits.iter().any(|e| e["kind"] == "http_in_flight"), "{limits:?}");
}

/// A step opening connection after connection, holding each: past 8 the
/// host refuses, so one step cannot take the server's connection slots.
#[test]
fn database_connections_per_step_are_capped() {
    let pg = Postgres::start();
    let p = Project::new();
    let digest = p.plugin("hostile");
    let mut yaml =
        String::from("pipeline: d\ndatabases:\n  app: { url_env: DATABASE_URL }\nstages:\n  - name: s\n    steps:\n");
    yaml.push_str(&hostile_step(
        "hog",
        &digest,
        "{ attack: db-connections, name: app, count: 30 }",
        "{ databases: [app] }",
    ));
    p.pipeline(&yaml);
    p.run(&[("DATABASE_URL", &pg.url("postgres"))]).assert_code(0);
    let step = p.step("hog");
    assert_eq!(
        (step["outputs"]["opened"].as_str(), step["outputs"]["refused"].as_str()),
        (Some("8"), Some("22")),
        "{step}"
    );
    let limits = p.audit_events("hog", "limit");
    assert!(limits.iter().any(|e| e["kind"] == "db_connections"), "{limits:?}");
    assert_eq!(p.audit_events("hog", "sql.open").len(), 8);
}

// ---- 8. Host resource limits are configurable and audited when hit --------

/// A step opening connections past its `limits.db_connections` is refused
/// there, and a raised limit lets it hold more.
#[test]
fn database_connection_limit_is_configurable_and_audited() {
    let pg = Postgres::start();
    let p = Project::new();
    let digest = p.plugin("hostile");
    let mut yaml =
        String::from("pipeline: d\ndatabases:\n  app: { url_env: DATABASE_URL }\nstages:\n  - name: s\n    steps:\n");
    for (name, limit) in [("three", 3), ("twelve", 12)] {
        yaml.push_str(&hostile_step(
            name,
            &digest,
            "{ attack: db-connections, name: app, count: 14 }",
            "{ databases: [app] }",
        ));
        yaml.push_str(&format!("        limits: {{ db_connections: {limit} }}\n"));
    }
    p.pipeline(&yaml);
    p.run(&[("DATABASE_URL", &pg.url("postgres"))]).assert_code(0);
    for (name, opened) in [("three", 3), ("twelve", 12)] {
        let step = p.step(name);
        let refused = (14 - opened).to_string();
        assert_eq!(
            (step["outputs"]["opened"].as_str(), step["outputs"]["refused"].as_str()),
            (Some(opened.to_string().as_str()), Some(refused.as_str())),
            "{step}"
        );
        let limits = p.audit_events(name, "limit");
        let hit = limits.iter().find(|e| e["kind"] == "db_connections").unwrap_or_else(|| panic!("{limits:?}"));
        assert_eq!(hit["limit"], opened);
        assert!(hit["message"].as_str().unwrap().contains("raise limits.db_connections"), "{hit}");
    }
}

/// `limits.http_requests` lowers (and raises) how many requests wait at once.
#[test]
fn in_flight_request_limit_is_configurable() {
    let server = Server::fixed(Response::ok("slow").delayed(Duration::from_millis(300)));
    let p = Project::new();
    let digest = p.plugin("hostile");
    let mut yaml = String::from("pipeline: n\nstages:\n  - name: s\n    steps:\n");
    let with = format!("{{ attack: parallel-http, url: \"{}\", count: 10 }}", server.url("/x"));
    yaml.push_str(&hostile_step("four", &digest, &with, &format!("{{ net: [\"{}\"] }}", server.grant())));
    yaml.push_str("        limits: { http_requests: 4 }\n");
    p.pipeline(&yaml);
    p.run(&[]).assert_code(0);
    let step = p.step("four");
    let answered: usize = step["outputs"]["answered"].as_str().unwrap().parse().unwrap();
    assert!((1..=4).contains(&answered), "{step}");
    assert!(server.max_in_flight() <= 4, "the server saw {} at once", server.max_in_flight());
    let limits = p.audit_events("four", "limit");
    assert!(limits.iter().any(|e| e["kind"] == "http_in_flight" && e["limit"] == 4), "{limits:?}");
}

/// A query whose rows add up to more than `limits.query_result`: the host
/// stops reading there (the server is told to cancel), the step's
/// transaction is rolled back, the plugin gets an error naming the limit,
/// and the cap is audited. A raised limit lets the same query through.
#[test]
fn a_query_result_over_its_limit_is_refused_rolled_back_and_audited() {
    let pg = Postgres::start();
    let p = Project::new();
    let digest = p.plugin("hostile");
    let mut yaml =
        String::from("pipeline: q\ndatabases:\n  app: { url_env: DATABASE_URL }\nstages:\n  - name: s\n    steps:\n");
    // 3 million rows of 1 KiB: if the host read on to the end it would
    // buffer 3 GiB, or wait for them all to cross the wire.
    yaml.push_str(&hostile_step(
        "huge",
        &digest,
        "{ attack: big-query, name: app, path: huge_marker, count: 3000000 }",
        "{ databases: [app] }",
    ));
    yaml.push_str("        limits: { query_result: 1MiB }\n");
    yaml.push_str(&hostile_step(
        "raised",
        &digest,
        "{ attack: big-query, name: app, path: raised_marker, count: 2000 }",
        "{ databases: [app] }",
    ));
    yaml.push_str("        limits: { query_result: 4MiB }\n");
    p.pipeline(&yaml);
    let started = Instant::now();
    p.run(&[("DATABASE_URL", &pg.url("postgres"))]).assert_code(0);
    assert!(started.elapsed() < Duration::from_secs(60), "the host read the whole result: {:?}", started.elapsed());

    let huge = p.step("huge");
    let result = huge["outputs"]["result"].as_str().unwrap();
    assert!(result.starts_with("denied:") && result.contains("limits.query_result (1MiB)"), "{huge}");
    assert_eq!(huge["outputs"]["usable_after"], "true", "the connection serves after the refusal: {huge}");
    let limits = p.audit_events("huge", "limit");
    let hit = limits.iter().find(|e| e["kind"] == "query_result").unwrap_or_else(|| panic!("{limits:?}"));
    assert_eq!(hit["limit"], 1 << 20);
    assert_eq!((&hit["cancelled"], &hit["rolled_back"]), (&serde_json::json!(true), &serde_json::json!(true)), "{hit}");
    eprintln!("query_result: refused after {} rows; whole run {:?}", hit["rows_read"], started.elapsed());
    assert!(hit["rows_read"].as_u64().unwrap() <= 1100, "{hit}");
    assert!(hit["statement"].as_str().unwrap().contains("generate_series"), "{hit}");
    let marker = pg.psql("postgres", "select coalesce(to_regclass('huge_marker')::text, 'none')");
    assert_eq!(marker.trim(), "none", "the refused step's transaction was committed");

    let raised = p.step("raised");
    assert_eq!(raised["outputs"]["result"], "escaped: 2000 rows", "{raised}");
    assert!(p.audit_events("raised", "limit").is_empty());
    let marker = pg.psql("postgres", "select coalesce(to_regclass('raised_marker')::text, 'none')");
    assert_eq!(marker.trim(), "raised_marker");
}

// ---- 9. Grant roots are opened without following symlinks -----------------

/// A step with a write grant on `data` replaces `data/reports` with a
/// symlink to a folder no step is granted; the next step, granted only
/// `data/reports`, must not be led there.
#[test]
fn a_grant_replaced_by_a_symlink_by_an_earlier_step_is_not_followed() {
    let p = Project::new();
    p.mkdir("data/reports");
    let outside = p.mkdir("outside");
    let digest = p.plugin("hostile");
    let mut yaml = String::from("pipeline: l\nstages:\n  - name: s\n    steps:\n");
    yaml.push_str(&hostile_step(
        "plant",
        &digest,
        "{ attack: symlink, path: \"../outside -> /data/reports\" }",
        "{ fs: { write: [data] } }",
    ));
    yaml.push_str(&hostile_step(
        "follow",
        &digest,
        "{ attack: write-file, path: /data/reports/pwned.txt }",
        "{ fs: { write: [data/reports] } }",
    ));
    yaml.push_str(&hostile_step(
        "deeper",
        &digest,
        "{ attack: write-file, path: /data/reports/2026/pwned.txt }",
        "{ fs: { write: [data/reports/2026] } }",
    ));
    p.pipeline(&yaml);
    p.run(&[]).assert_code(0);
    assert_eq!(p.step("plant")["outputs"]["result"], "escaped: linked", "the link was planted");
    assert!(p.path().join("data/reports").symlink_metadata().unwrap().file_type().is_symlink());
    for name in ["follow", "deeper"] {
        let step = p.step(name);
        assert_eq!(step["status"], "failed", "{step}");
        let summary = step["summary"].as_str().unwrap();
        assert!(summary.contains("`/data/reports`") && summary.contains("symlink"), "{step}");
    }
    let landed: Vec<_> = std::fs::read_dir(&outside).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(landed.is_empty(), "a write landed outside the grant: {landed:?}");
}

// ---- 10. A host program cannot read the host's environment ----------------

/// A granted program (`sh`) reads `/proc/$PPID/environ`, the host's own
/// environment, where a value it was not given lives. The host is
/// non-dumpable, and its programs lose the capabilities that would let root
/// read a non-dumpable process anyway (CAP_SYS_PTRACE, CAP_SYS_ADMIN,
/// CAP_PERFMON): the read fails and the value is nowhere.
#[test]
fn a_host_program_cannot_read_the_hosts_environment() {
    let p = Project::new();
    let value = format!("ungranted-{}-k9QxT2", std::process::id());
    p.pipeline(
        "pipeline: e\nstages:\n  - name: s\n    steps:\n      - name: snoop\n        run: sh -c 'tr \"\\\\0\" \" \" < /proc/$PPID/cmdline; echo; cat /proc/$PPID/environ'\n        grants: { exec: [sh] }\n",
    );
    let run = p.run(&[("DEPLOYHOST_TEST_UNGRANTED", &value)]);
    run.assert_code(1);
    let log = log(&p, "snoop");
    assert!(log.contains("deployhost") && log.contains(" run"), "$PPID is the host: {log}");
    assert!(log.contains("Permission denied"), "{log}");
    let everything = format!("{}{}", run.all_output(), p.run_files_text());
    assert!(!everything.contains(&value), "the host's environment leaked to its program");
}

/// Started as root (CI containers), a program keeps root's access to files
/// and nothing else: it reads and writes in a folder another uid owns
/// (a container's checkout, a `postgres`-owned work folder), while its
/// effective and bounding sets hold only the four file capabilities.
#[test]
fn a_program_started_as_root_keeps_only_roots_access_to_files() {
    let uid = std::process::Command::new("id").arg("-u").output().unwrap();
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        eprintln!("skipped: the host does not run as root here");
        return;
    }
    use std::os::unix::fs::PermissionsExt as _;
    let p = Project::new();
    let owned = p.write("owned/data.txt", "read-through-dac\n").parent().unwrap().to_path_buf();
    std::os::unix::fs::chown(&owned, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&owned, std::fs::Permissions::from_mode(0o700)).unwrap();
    p.pipeline(
        "pipeline: e\nstages:\n  - name: s\n    steps:\n      - name: files\n        run: sh -c 'cat \"$PWD/owned/data.txt\" && echo written > owned/new.txt && grep -E \"^Cap(Eff|Bnd|Amb):\" /proc/self/status'\n        grants: { exec: [sh] }\n",
    );
    let run = p.run(&[]);
    let log = log(&p, "files");
    run.assert_code(0);
    assert!(log.contains("read-through-dac"), "{log}");
    assert_eq!(std::fs::read_to_string(owned.join("new.txt")).unwrap(), "written\n");
    for set in ["CapEff", "CapBnd", "CapAmb"] {
        assert!(log.contains(&format!("{set}:\t000000000000000f")), "{set} is not the four file capabilities: {log}");
    }
}

// ---- 11. A restore is audited statement by statement ----------------------

/// A backup whose contents are made to trip a statement splitter: a
/// function body with `;` and `$$` inside a dollar quote, an `E'…'` string
/// with `\'`, a quoted name with `;`, and rows holding tabs, newlines,
/// backslashes and a line that is only `\.`. The rollback replays it through
/// the host's own connection one statement at a time, each audited, and the
/// database equals the pre-run dump exactly.
#[test]
fn a_restore_is_audited_statement_by_statement_and_exact() {
    let pg = Postgres::start();
    pg.psql(
        "postgres",
        "create table \"odd;name\" (id int primary key, body text);\n\
         insert into \"odd;name\" values (1, E'tab\\there\\nnew line\\n\\\\.\\nback\\\\slash'), (2, 'semi; colon'), (3, E'it\\'s');\n\
         create function tricky() returns text language plpgsql as $body$ begin return 'a;b' || $$;$$; end $body$;",
    );
    let before = pg.dump("postgres");
    let app = Server::fixed(Response::status(503));
    let p = Project::new();
    p.write("migrations/1_a.sql", "create table a (id int); delete from \"odd;name\" where id = 2;");
    p.pipeline(&restore_pipeline(&app, ""));
    let run = p.deployhost(&["run", "pipeline.yaml"], &[("DATABASE_URL", &pg.url("postgres"))]);
    run.assert_code(1);
    let results = p.results();
    assert_eq!(results["rollback"]["ok"], true, "{}", results["rollback"]);
    assert_eq!(pg.dump("postgres"), before, "the restore is not exact");

    let step = results["rollback"]["steps"][0]["step"].as_str().unwrap().to_string();
    let replayed: Vec<_> = p.audit_events(&step, "sql").into_iter().filter(|e| e["restore"] == true).collect();
    let statements: Vec<&str> = replayed.iter().map(|e| e["statement"].as_str().unwrap()).collect();
    assert_eq!((statements.first(), statements.last()), (Some(&"BEGIN"), Some(&"COMMIT")), "{statements:?}");
    let function = statements.iter().filter(|s| s.starts_with("CREATE FUNCTION public.tricky()")).count();
    assert_eq!(function, 1, "the function is one statement: {statements:?}");
    let copy = replayed
        .iter()
        .find(|e| e["statement"].as_str().unwrap().starts_with("COPY public.\"odd;name\""))
        .unwrap_or_else(|| panic!("{statements:?}"));
    assert_eq!(copy["rows"], 3, "{copy}");
    let restore = &p.audit_events(&step, "sql.restore")[0];
    assert_eq!(restore["statements"].as_u64(), Some(replayed.len() as u64 - 2), "{restore}");
}

// ---- Files the host writes for people are never written through a link ---

/// `run --junit reports/junit.xml` where `reports` is a step's write grant:
/// the step plants `reports/junit.xml` as a symlink to the pipeline file.
/// The host refuses to follow it; the pipeline file is untouched.
#[test]
fn the_junit_file_is_never_written_through_a_planted_symlink() {
    let p = Project::new();
    let digest = p.plugin("hostile");
    p.mkdir("reports");
    let mut yaml = String::from("pipeline: x\nstages:\n  - name: s\n    steps:\n");
    yaml.push_str(&hostile_step(
        "plant",
        &digest,
        "{ attack: symlink, path: \"../pipeline.yaml -> /reports/junit.xml\" }",
        "{ fs: { write: [reports] } }",
    ));
    p.pipeline(&yaml);
    let before = std::fs::read_to_string(p.path().join("pipeline.yaml")).unwrap();
    let run = p.deployhost(&["run", "pipeline.yaml", "--junit", "reports/junit.xml"], &[]);
    assert!(
        p.path().join("reports/junit.xml").symlink_metadata().unwrap().file_type().is_symlink(),
        "the step planted its link: {}",
        run.all_output()
    );
    assert_eq!(std::fs::read_to_string(p.path().join("pipeline.yaml")).unwrap(), before, "written through the link");
    assert!(
        run.stderr.contains("cannot write the JUnit file") && run.stderr.contains("not followed"),
        "{}",
        run.stderr
    );
}

/// (issue 25, #10) A step granted the pipeline's own folder could rewrite
/// the pipeline file (a `run: sh` step for the next run or a `resume`):
/// no grant may cover it.
#[test]
fn no_grant_may_cover_the_pipeline_file_itself() {
    let p = Project::new();
    std::fs::create_dir_all(p.path().join("pipelines")).unwrap();
    let yaml = "pipeline: p\nstages:\n  - name: s\n    steps:\n      - name: rewrite\n        uses: noop\n        grants: { fs: { write: [.] } }\n";
    std::fs::write(p.path().join("pipelines/p.yaml"), yaml).unwrap();
    let run = p.deployhost(&["validate", "pipelines/p.yaml"], &[]);
    run.assert_code(2);
    assert!(
        run.stderr.contains("stages[0].steps[0].grants.fs.write[0]")
            && run.stderr.contains("covers the pipeline file itself"),
        "{}",
        run.stderr
    );
}
