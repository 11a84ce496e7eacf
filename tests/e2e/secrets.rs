//! Secrets reach only the steps they are granted to, and their values never
//! reach a log, the audit, a report or the terminal.

use crate::support::{Project, hostile_step};

const VALUE: &str = "s3cr3t-hooks-value-42";

fn pipeline(p: &Project, steps: &[(&str, &str, &str)]) {
    let digest = p.plugin("hostile");
    let mut yaml = String::from(
        "pipeline: x\nsecrets:\n  slack_webhook: { env: SLACK_WEBHOOK_URL }\n  db_password: { file: secrets/db.txt }\nstages:\n  - name: s\n    steps:\n",
    );
    for (name, with, grants) in steps {
        yaml.push_str(&hostile_step(name, &digest, with, grants));
    }
    p.write("secrets/db.txt", "file-secret-value\n");
    p.pipeline(&yaml);
}

#[test]
fn granted_secret_is_readable_and_its_read_audited_by_name() {
    let p = Project::new();
    pipeline(
        &p,
        &[
            ("granted", "{ attack: secret, name: slack_webhook }", "{ secrets: [slack_webhook] }"),
            ("from-file", "{ attack: secret, name: db_password }", "{ secrets: [db_password] }"),
            ("not-granted", "{ attack: secret, name: db_password }", "{ secrets: [slack_webhook] }"),
        ],
    );
    p.run(&[("SLACK_WEBHOOK_URL", VALUE)]).assert_code(0);
    assert_eq!(p.step("granted")["outputs"]["result"], format!("escaped: {} chars", VALUE.len()));
    assert_eq!(p.step("from-file")["outputs"]["result"], "escaped: 17 chars");
    let denied = p.step("not-granted");
    assert!(denied["outputs"]["result"].as_str().unwrap().starts_with("denied"), "{denied}");
    let reads = p.audit_events("granted", "secret.read");
    assert_eq!(reads.len(), 1);
    assert_eq!(reads[0]["name"], "slack_webhook");
    assert_eq!(p.audit_events("not-granted", "secret.denied")[0]["name"], "db_password");
}

#[test]
fn secret_values_never_appear_in_any_output() {
    let p = Project::new();
    pipeline(&p, &[("leaker", "{ attack: print-secret, name: slack_webhook }", "{ secrets: [slack_webhook] }")]);
    let run = p.run(&[("SLACK_WEBHOOK_URL", VALUE)]);
    run.assert_code(0);
    let everything = format!("{}{}", run.all_output(), p.run_files_text());
    assert!(!everything.contains(VALUE), "the secret leaked somewhere in the run's output");
    // It was printed, logged and reported: each place shows the mask instead.
    let log = std::fs::read_to_string(p.last_run_dir().join("logs/leaker.log")).unwrap();
    assert!(log.contains("the secret is ***"), "{log}");
    assert_eq!(p.step("leaker")["outputs"]["leak"], "***");
}

#[test]
fn missing_secret_value_is_a_clear_error() {
    let p = Project::new();
    pipeline(&p, &[("granted", "{ attack: secret, name: slack_webhook }", "{ secrets: [slack_webhook] }")]);
    let run = p.run(&[]);
    run.assert_code(2);
    assert!(run.stderr.contains("secrets.slack_webhook") && run.stderr.contains("SLACK_WEBHOOK_URL"), "{}", run.stderr);
}

/// A variable behind a declared secret (or a database URL) is never
/// expanded into the file: `${DEPLOY_TOKEN}` in another step's `with:`
/// would hand the token to a step that was not granted it, and print it.
#[test]
fn a_secret_s_variable_cannot_be_expanded_into_the_file() {
    let p = Project::new();
    p.pipeline(
        "pipeline: p\nsecrets:\n  deploy_token: { env: DEPLOY_TOKEN }\ndatabases:\n  app: { url_env: DATABASE_URL }\n\
         stages:\n  - name: s\n    steps:\n      - name: leak\n        uses: health-probe\n        \
         with: { url: \"http://127.0.0.1:9/?t=${DEPLOY_TOKEN}\", body_contains: \"${DATABASE_URL}\" }\n        grants: { net: [\"127.0.0.1:9\"] }\n",
    );
    let token = "ghp_leakme0123456789abcdefghijklmnopqrstu";
    let envs = [("DEPLOY_TOKEN", token), ("DATABASE_URL", "postgres://u:hunter2@127.0.0.1/db")];
    for command in [&["validate", "pipeline.yaml"][..], &["run", "pipeline.yaml"][..]] {
        let out = p.deployhost(command, &envs);
        out.assert_code(2);
        let text = out.all_output();
        assert!(text.contains("pipeline.yaml:11:") && text.contains("stages[0].steps[0].with.url"), "{text}");
        assert!(text.contains("stages[0].steps[0].with.body_contains"), "{text}");
        assert!(text.contains("`${DEPLOY_TOKEN}` holds secret `deploy_token`"), "{text}");
        assert!(text.contains("`${DATABASE_URL}` holds the URL of database `app`"), "{text}");
        assert!(!text.contains(token) && !text.contains("hunter2"), "a value leaked: {text}");
    }
    assert!(!p.path().join(".deployhost/runs").exists() || p.run_files_text().find(token).is_none());
}

/// Issue 25, #14: the database password reached `pg_dump` as `PGPASSWORD`,
/// readable in `/proc/<pid>/environ` by any process of the same user, a
/// host program of a parallel step included. A step with `exec: [sh]`
/// reads every process's environment the whole time a dump runs (held
/// back by a lock, so it is slow) and must find the password nowhere.
#[test]
fn the_database_password_is_in_no_host_tool_s_environment() {
    use crate::support::pg::{PASSWORD, Postgres};
    let pg = Postgres::start();
    let client = pg.client("postgres");
    client.app("CREATE TABLE public.orders (id int)").unwrap();
    let p = Project::new();
    p.write(
        "scan.sh",
        &format!(
            "found=''; dumps=0; readable=0; i=0\nwhile [ $i -lt 60 ]; do\n  for d in /proc/[0-9]*; do\n    if grep -qs -- '{PASSWORD}' $d/environ; then found=\"$found $d\"; fi\n    if grep -qs pg_dump $d/cmdline; then dumps=$((dumps+1)); if cat $d/environ >/dev/null 2>&1; then readable=$((readable+1)); fi; fi\n  done\n  i=$((i+1)); sleep 0.1\ndone\necho \"pg_dump seen $dumps times, its environment readable $readable times; password in the environment of:$found.\"\n[ -z \"$found\" ]\n"
        ),
    );
    p.pipeline(
        "pipeline: x\ndatabases:\n  app: { url_env: DATABASE_URL }\nstages:\n  - name: s\n    parallel: true\n    steps:\n      - name: backup\n        uses: pg-backup\n        with: { database: app }\n        grants: { databases: [app], fs: { write: [backups] } }\n      - name: scan\n        run: sh scan.sh\n        grants: { exec: [sh] }\n",
    );
    // The dump waits for this lock for 3 s, its process alive the while.
    let holder = std::thread::spawn(move || {
        client.app("BEGIN; LOCK TABLE public.orders IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(3); COMMIT;")
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    let run = p.deployhost(&["run", "pipeline.yaml"], &[("DATABASE_URL", &pg.url("postgres"))]);
    holder.join().unwrap().unwrap();
    let log = p.run_files_text();
    let line = log.lines().find(|l| l.contains("pg_dump seen")).unwrap_or_else(|| panic!("{}", run.all_output()));
    assert!(!line.contains("seen 0 times"), "the scan ran while pg_dump did: {line}");
    // As root, a host program keeps no capability to read a root tool's
    // environment (row 86), so the scan proves something only as another
    // user; `backup::tests::the_password_reaches_the_tool_through_a_private_file_not_its_environment`
    // checks the tool's environment in process either way.
    let root = std::process::Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    assert!(root || !line.contains("readable 0 times"), "the scan could not read pg_dump's environment: {line}");
    assert!(line.ends_with("environment of:."), "{line}");
    run.assert_code(0);
    assert_eq!(p.step("backup")["status"], "passed");
}
