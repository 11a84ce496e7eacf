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
