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
