//! `deployhost verify`: a run's record cannot be edited unnoticed (issue 25,
//! #1). Each test runs a real deploy (backup, migration with its change
//! ledger, a plugin file), edits one part of its record the way someone
//! covering their tracks would, and expects `verify` to name it.

use crate::support::pg::Postgres;
use crate::support::{Project, Run, hostile_step};
use std::path::{Path, PathBuf};

/// A deployed run: backup, migrate (ledger on), and a plugin file.
fn deployed(pg: &Postgres) -> (Project, PathBuf) {
    let p = Project::new();
    let digest = p.plugin("hostile");
    p.write("migrations/1_a.sql", "create table a (id int);\n");
    let mut yaml = String::from(
        "pipeline: v\ndatabases:\n  app: { url_env: DATABASE_URL }\nstages:\n  - name: schema\n    steps:\n      - name: backup\n        uses: pg-backup\n        with: { database: app }\n        grants: { databases: [app], fs: { write: [backups] } }\n      - name: migrate\n        uses: supabase-migrate\n        with: { database: app, dir: migrations }\n        grants: { databases: [app], fs: { read: [migrations] } }\n  - name: after\n    steps:\n",
    );
    yaml.push_str(&hostile_step("check", &digest, "{ attack: say, name: fine }", "{}"));
    p.pipeline(&yaml);
    p.deployhost(&["run", "pipeline.yaml"], &[("DATABASE_URL", &pg.url("postgres"))]).assert_code(0);
    let dir = p.last_run_dir();
    assert!(dir.join("changes").read_dir().unwrap().next().is_some(), "the migration wrote its change ledger");
    (p, dir)
}

fn verify(p: &Project, dir: &Path) -> Run {
    p.deployhost(&["verify", dir.file_name().unwrap().to_str().unwrap()], &[])
}

fn broken(p: &Project, dir: &Path, names: &str) {
    let run = verify(p, dir);
    run.assert_code(1);
    assert!(
        run.stdout.contains("BROKEN") && run.all_output().contains(names),
        "expected `{names}`:\n{}",
        run.all_output()
    );
}

fn edit_lines(dir: &Path, edit: impl FnOnce(&mut Vec<String>)) {
    let path = dir.join("audit.jsonl");
    let mut lines: Vec<String> = std::fs::read_to_string(&path).unwrap().lines().map(str::to_string).collect();
    edit(&mut lines);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
}

/// The line index of the first `sql.dump` record.
fn dump_line(lines: &[String]) -> usize {
    lines.iter().position(|l| l.contains("\"event\":\"sql.dump\"")).expect("a sql.dump line")
}

#[test]
fn an_untouched_run_verifies_and_by_its_folder_too() {
    let pg = Postgres::start();
    let (p, dir) = deployed(&pg);
    let run = verify(&p, &dir);
    run.assert_code(0);
    for expected in
        ["chained to the one before", "results.json is as sealed", "changes/", "backup ", "hostile.wasm", "verified"]
    {
        assert!(run.stdout.contains(expected), "{expected}: {}", run.stdout);
    }
    let text = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
    assert!(text.lines().all(|l| l.starts_with("{\"prev\":\"")), "every line is chained");
    p.deployhost(&["verify", dir.to_str().unwrap()], &[]).assert_code(0);
}

#[test]
fn a_changed_removed_or_moved_audit_line_is_named() {
    let pg = Postgres::start();
    let (p, dir) = deployed(&pg);
    let original = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
    let restore = || std::fs::write(dir.join("audit.jsonl"), &original).unwrap();

    // The dump's digest swapped for another backup's (line n+1 breaks).
    let mut at = 0;
    edit_lines(&dir, |lines| {
        at = dump_line(lines);
        lines[at] = lines[at].replacen("\"sha256\":\"", "\"sha256\":\"0", 1);
    });
    broken(&p, &dir, &format!("line {} does not follow line {}", at + 2, at + 1));
    restore();

    // A denial removed.
    edit_lines(&dir, |lines| {
        at = dump_line(lines);
        lines.remove(at);
    });
    broken(&p, &dir, &format!("line {} does not follow line {}", at + 1, at));
    restore();

    // Two lines swapped.
    edit_lines(&dir, |lines| {
        at = dump_line(lines);
        lines.swap(at, at + 1);
    });
    broken(&p, &dir, &format!("line {} does not follow line {}", at + 1, at));
    restore();

    // The last line (run.end) cut: every link holds, the seal does not.
    let mut count = 0;
    edit_lines(&dir, |lines| {
        lines.pop();
        count = lines.len();
    });
    broken(&p, &dir, &format!("audit.jsonl: line {} onwards was removed", count + 1));
    restore();
    verify(&p, &dir).assert_code(0);
}

#[test]
fn an_edited_results_json_or_ledger_or_backup_is_named() {
    let pg = Postgres::start();
    let (p, dir) = deployed(&pg);
    let results = dir.join("results.json");
    let original = std::fs::read_to_string(&results).unwrap();
    std::fs::write(&results, original.replace("\"summary\":\"", "\"summary\":\"nothing to see: ")).unwrap();
    broken(&p, &dir, "results.json was edited after the run was sealed");
    std::fs::write(&results, &original).unwrap();
    verify(&p, &dir).assert_code(0);

    let ledger = dir.join("changes").read_dir().unwrap().next().unwrap().unwrap().path();
    let kept = std::fs::read(&ledger).unwrap();
    std::fs::write(&ledger, [&kept[..], b"\n"].concat()).unwrap();
    broken(&p, &dir, &format!("{}: sha256", ledger.file_name().unwrap().to_str().unwrap()));
    std::fs::write(&ledger, &kept).unwrap();

    let backup = std::fs::read_dir(p.path().join("backups"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|f| f.extension().is_some_and(|e| e == "dump"))
        .expect("a backup");
    std::fs::write(&backup, b"not the dump").unwrap();
    broken(&p, &dir, "backup ");
}

/// The audit log re-chained and both seals rewritten after the `sql.dump`
/// line was taken out: what someone who can write the run folder and the
/// state store can do. `verify` alone cannot see it (the known limit); the
/// provenance an auditor's key signed before does, from the run folder
/// alone (issue 25, the signed attestation).
#[test]
fn a_signed_provenance_catches_a_re_chained_and_re_sealed_record() {
    let pg = Postgres::start();
    let (p, dir) = deployed(&pg);
    let run_id = dir.file_name().unwrap().to_str().unwrap().to_string();
    let (auditor, public) = crate::approvals::key(&p, "auditor");
    let (stranger, _) = crate::approvals::key(&p, "stranger");
    p.write("auditors", &format!("auditor@example.com namespaces=\"deployhost-attestation\" {public}\n"));
    let key = auditor.to_str().unwrap();
    let signed = p.deployhost(&["provenance", &run_id, "--key", key], &[]);
    signed.assert_code(0);
    let envelope = dir.join("provenance.json");
    let statement = statement_of(&envelope);
    assert_eq!(statement["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(statement["predicate"]["run_id"], run_id.as_str());
    let names: Vec<&str> =
        statement["subject"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    for expected in ["audit.jsonl", "results.json", "changes/app.jsonl", "plugin:pg-backup", "plugin:./hostile.wasm"] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }
    assert!(names.iter().any(|n| n.starts_with("backup:")), "{names:?}");
    let envelope_arg = envelope.to_str().unwrap();
    let with_provenance = |state_dir: &str| {
        p.deployhost(
            &[
                "--state-dir",
                state_dir,
                "verify",
                dir.to_str().unwrap(),
                "--provenance",
                envelope_arg,
                "--allowed-signers",
                "auditors",
            ],
            &[],
        )
    };
    let good = with_provenance(".deployhost");
    good.assert_code(0);
    assert!(good.stdout.contains("as signed by auditor@example.com"), "{}", good.stdout);
    // Offline: the run folder and the provenance, no state store.
    let offline = with_provenance("elsewhere");
    offline.assert_code(0);
    assert!(offline.stdout.contains("the provenance's signature stands"), "{}", offline.stdout);

    // A key the auditors' file does not list, and a signature moved onto
    // another statement, do not stand.
    let stranger_file = dir.join("stranger.json");
    let by_stranger = p.deployhost(
        &["provenance", &run_id, "--key", stranger.to_str().unwrap(), "--out", stranger_file.to_str().unwrap()],
        &[],
    );
    by_stranger.assert_code(0);
    let refused = p.deployhost(
        &["verify", &run_id, "--provenance", stranger_file.to_str().unwrap(), "--allowed-signers", "auditors"],
        &[],
    );
    refused.assert_code(1);
    assert!(refused.stdout.contains("not listed in"), "{}", refused.stdout);
    std::fs::remove_file(&stranger_file).unwrap();

    // The rewrite: the dump's line goes, the chain and both seals are made again.
    let mut lines: Vec<String> =
        std::fs::read_to_string(dir.join("audit.jsonl")).unwrap().lines().map(str::to_string).collect();
    lines.remove(dump_line(&lines));
    let (text, head, count) = rechain(&run_id, &lines);
    std::fs::write(dir.join("audit.jsonl"), text).unwrap();
    let results_path = dir.join("results.json");
    let mut results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&results_path).unwrap()).unwrap();
    results["seal"]["audit"] = serde_json::json!({ "sha256": head, "lines": count });
    std::fs::write(&results_path, serde_json::to_string_pretty(&results).unwrap()).unwrap();
    let mut unsealed = results.clone();
    unsealed.as_object_mut().unwrap().remove("seal");
    let mut seal = results["seal"].clone();
    seal["results"] = serde_json::json!(sha256_hex(&serde_json::to_vec(&unsealed).unwrap()));
    let db = rusqlite::Connection::open(p.path().join(".deployhost/state.db")).unwrap();
    db.execute("UPDATE runs SET seal = ?1 WHERE id = ?2", (seal.to_string(), &run_id)).unwrap();
    drop(db);
    verify(&p, &dir).assert_code(0);
    let caught = with_provenance(".deployhost");
    caught.assert_code(1);
    assert!(caught.stdout.contains("BROKEN  audit.jsonl: sha256"), "{}", caught.stdout);
    assert!(caught.stdout.contains("the provenance signed"), "{}", caught.stdout);
    // A record that does not verify is not signed.
    edit_lines(&dir, |lines| {
        lines.remove(1);
    });
    let refused = p.deployhost(&["provenance", &run_id, "--key", key, "--out", "again.json"], &[]);
    refused.assert_code(4);
    assert!(refused.stderr.contains("does not verify"), "{}", refused.stderr);
}

/// The statement inside a DSSE envelope.
fn statement_of(envelope: &Path) -> serde_json::Value {
    use base64::Engine;
    let envelope: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(envelope).unwrap()).unwrap();
    assert_eq!(envelope["payloadType"], "application/vnd.in-toto+json");
    let payload = base64::engine::general_purpose::STANDARD.decode(envelope["payload"].as_str().unwrap()).unwrap();
    serde_json::from_slice(&payload).unwrap()
}

/// `lines` chained again from `run_id`'s genesis, as the audit log chains
/// them: the text, its head and its line count.
fn rechain(run_id: &str, lines: &[String]) -> (String, String, u64) {
    let mut prev = sha256_hex(run_id.as_bytes());
    let mut text = String::new();
    for line in lines {
        let body = line.split_once(",").map(|(_, rest)| rest).unwrap();
        let chained = format!("{{\"prev\":\"{prev}\",{body}");
        prev = sha256_hex(chained.as_bytes());
        text.push_str(&chained);
        text.push('\n');
    }
    (text, prev, lines.len() as u64)
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
