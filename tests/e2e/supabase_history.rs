//! The Supabase CLI's migration history, shared in both directions: rows
//! the CLI wrote are accepted as unchanged, rows deployhost writes are the
//! ones the CLI would write, an older CLI's table is upgraded, files are
//! applied as `supabase db push` applies them (`RESET ALL` between files,
//! `CREATE INDEX CONCURRENTLY` outside a transaction), `repair` refuses what
//! the CLI refuses, and the migration lock is not the state store's.

use crate::support::pg::Postgres;
use crate::support::{Project, Run};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Files in the patterns Supabase projects use, each with the statements
/// the Supabase CLI (pkg/parser `SplitAndTrim`) stores for it, worked out
/// by hand from the CLI's rules: comments stay with the statement after
/// them, a trailing comment is a statement of its own, a `BEGIN ATOMIC`
/// body and a dollar-quoted body are one statement each.
const CLI_FILES: &[(&str, &str, &[&str])] = &[
    (
        "20240101000000_notes.sql",
        "-- Notes, as a team writes them\n\
         create table public.notes (\n  id bigint generated always as identity primary key,\n  body text not null default E'first line\\nsecond; line',\n  tag text check (tag <> ';')\n);\n\n\
         create function public.add(a integer, b integer) returns integer\nlanguage sql immutable\nbegin atomic\n  select a + b;\nend;\n\n\
         create function public.touch() returns trigger language plpgsql as $fn$\nbegin\n  new.body := new.body || ';';\n  return new;\nend;\n$fn$;\n\
         -- trailing comment: nothing after this\n",
        &[
            "-- Notes, as a team writes them\ncreate table public.notes (\n  id bigint generated always as identity primary key,\n  body text not null default E'first line\\nsecond; line',\n  tag text check (tag <> ';')\n)",
            "create function public.add(a integer, b integer) returns integer\nlanguage sql immutable\nbegin atomic\n  select a + b;\nend",
            "create function public.touch() returns trigger language plpgsql as $fn$\nbegin\n  new.body := new.body || ';';\n  return new;\nend;\n$fn$",
            "-- trailing comment: nothing after this",
        ],
    ),
    (
        "20240101000100_seed_notes.sql",
        "insert into public.notes (body, tag) values ('it''s; fine', 'a');\n/* block; comment */ insert into public.notes (body) values (E'tab\\there');\n",
        &[
            "insert into public.notes (body, tag) values ('it''s; fine', 'a')",
            "/* block; comment */ insert into public.notes (body) values (E'tab\\there')",
        ],
    ),
];

/// A backup-then-migrate pipeline over `migrations/` (a migration needs a
/// blocking backup before it).
fn project(files: &[(&str, &str)], with: &str) -> Project {
    let p = Project::new();
    p.mkdir("migrations");
    for (name, sql) in files {
        p.write(&format!("migrations/{name}"), sql);
    }
    set_with(&p, with);
    p
}

fn set_with(p: &Project, with: &str) {
    p.pipeline(&format!(
        "pipeline: m\ndatabases:\n  app: {{ url_env: DATABASE_URL }}\nstages:\n  - name: schema\n    steps:\n      - name: backup\n        uses: pg-backup\n        with: {{ database: app }}\n        grants: {{ databases: [app], fs: {{ write: [backups] }} }}\n      - name: migrate\n        uses: supabase-migrate\n        with: {{ database: app, dir: migrations{with} }}\n        grants: {{ databases: [app], fs: {{ read: [migrations] }} }}\n"
    ));
}

fn cli_project() -> Project {
    project(&CLI_FILES.iter().map(|(name, sql, _)| (*name, *sql)).collect::<Vec<_>>(), "")
}

fn migrate(p: &Project, pg: &Postgres) -> Run {
    p.deployhost(&["run", "pipeline.yaml"], &[("DATABASE_URL", &pg.url("postgres"))])
}

fn summary(p: &Project) -> String {
    p.step("migrate")["summary"].as_str().unwrap().to_string()
}

/// `version` → its `statements`, read as JSON (NULL as `None`).
fn statements(pg: &Postgres, version: &str) -> Option<Vec<String>> {
    let json = pg.psql(
        "postgres",
        &format!("select to_json(statements) from supabase_migrations.schema_migrations where version = '{version}'"),
    );
    // psql prints NULL as nothing.
    if json.is_empty() { None } else { serde_json::from_str(&json).unwrap() }
}

fn versions(pg: &Postgres) -> Vec<String> {
    let out = pg.psql("postgres", "select version from supabase_migrations.schema_migrations order by version");
    out.lines().map(str::to_string).collect()
}

/// `ARRAY[…]` of dollar-quoted texts.
fn array(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("$cli${s}$cli$")).collect();
    format!("ARRAY[{}]::text[]", quoted.join(", "))
}

/// Applies the files with psql and records them as the CLI does: what a
/// project that ran `supabase db push` holds.
fn push_with_cli_rows(pg: &Postgres, p: &Project) {
    pg.psql(
        "postgres",
        "create schema supabase_migrations; create table supabase_migrations.schema_migrations (version text not null primary key, statements text[], name text)",
    );
    for (file, _, stmts) in CLI_FILES {
        pg.psql_file("postgres", &p.path().join("migrations").join(file));
        let (version, name) = file.trim_end_matches(".sql").split_once('_').unwrap();
        pg.psql(
            "postgres",
            &format!(
                "insert into supabase_migrations.schema_migrations (version, name, statements) values ('{version}', '{name}', {})",
                array(stmts)
            ),
        );
    }
}

#[test]
fn history_written_by_the_cli_is_accepted_as_unchanged() {
    let pg = Postgres::start();
    let p = cli_project();
    push_with_cli_rows(&pg, &p);
    migrate(&p, &pg).assert_code(0);
    assert!(summary(&p).starts_with("up to date (2 migrations applied before)"), "{}", summary(&p));
    assert_eq!(pg.psql("postgres", "select count(*) from public.notes"), "2", "nothing ran twice");

    // The guard still sees a real edit of a file the CLI applied.
    p.write(&format!("migrations/{}", CLI_FILES[1].0), &CLI_FILES[1].1.replace("'it''s; fine'", "'it''s; changed'"));
    migrate(&p, &pg).assert_code(1);
    assert!(summary(&p).contains("20240101000100_seed_notes.sql changed after they were applied"), "{}", summary(&p));
}

#[test]
fn history_deployhost_writes_is_what_the_cli_writes() {
    let pg = Postgres::start();
    let p = cli_project();
    migrate(&p, &pg).assert_code(0);
    for (file, _, expected) in CLI_FILES {
        let version = file.split('_').next().unwrap();
        assert_eq!(statements(&pg, version).unwrap(), *expected, "{file}");
    }
    assert_eq!(
        pg.psql("postgres", "select name from supabase_migrations.schema_migrations order by version"),
        "notes\nseed_notes"
    );
    assert_eq!(pg.psql("postgres", "select public.add(2, 3)"), "5");
    assert_eq!(pg.psql("postgres", "select body from public.notes where tag = 'a'"), "it's; fine");
}

#[test]
fn history_table_of_an_older_cli_is_upgraded() {
    let pg = Postgres::start();
    let p = cli_project();
    // An older CLI's table: `version` only, the first file applied.
    pg.psql(
        "postgres",
        "create schema supabase_migrations; create table supabase_migrations.schema_migrations (version text not null primary key); insert into supabase_migrations.schema_migrations values ('20240101000000')",
    );
    pg.psql_file("postgres", &p.path().join("migrations").join(CLI_FILES[0].0));

    // schema-verify reads the old table as it is (it must not alter it).
    p.write("verify.yaml", "pipeline: v\ndatabases:\n  app: { url_env: DATABASE_URL }\nstages:\n  - name: s\n    steps:\n      - name: verify\n        uses: schema-verify\n        with: { database: app, dir: migrations }\n        grants: { databases: [app], fs: { read: [migrations] } }\n");
    p.deployhost(&["run", "verify.yaml"], &[("DATABASE_URL", &pg.url("postgres"))]);
    let verify = p.step("verify")["summary"].as_str().unwrap().to_string();
    assert!(verify.contains("migration 20240101000100_seed_notes.sql is not applied"), "{verify}");
    assert!(!verify.contains("differs"), "{verify}");

    migrate(&p, &pg).assert_code(0);
    assert_eq!(p.step("migrate")["outputs"]["applied"], "20240101000100");
    let columns = pg.psql(
        "postgres",
        "select string_agg(column_name || ' ' || data_type, ', ' order by ordinal_position) from information_schema.columns where table_schema = 'supabase_migrations' and table_name = 'schema_migrations'",
    );
    assert_eq!(columns, "version text, statements ARRAY, name text");
    assert_eq!(statements(&pg, "20240101000000"), None, "the old row is left as the CLI left it");
    assert_eq!(statements(&pg, "20240101000100").unwrap(), CLI_FILES[1].2);
    migrate(&p, &pg).assert_code(0);
    assert!(summary(&p).starts_with("up to date"), "{}", summary(&p));
}

#[test]
fn settings_a_file_changes_are_reset_before_the_next() {
    let pg = Postgres::start();
    // pg_dump's header empties search_path for the rest of the session.
    let p = project(
        &[
            (
                "1_dump.sql",
                "select pg_catalog.set_config('search_path', '', false);\ncreate table public.a (id int);\n",
            ),
            ("2_next.sql", "create table b (id int);\n"),
        ],
        "",
    );
    migrate(&p, &pg).assert_code(0);
    assert_eq!(pg.psql("postgres", "select to_regclass('public.b') is not null"), "t");
    assert_eq!(versions(&pg), ["1", "2"]);
}

#[test]
fn create_index_concurrently_applies_as_with_the_cli() {
    let pg = Postgres::start();
    let files = [
        ("1_notes.sql", "create table notes (id int, body text);\ninsert into notes values (1, 'x');\n"),
        ("2_index.sql", "-- no lock on notes while it builds\ncreate index concurrently notes_body on notes (body);\n"),
    ];
    // The dry run cannot try it inside its transaction, and says so.
    let p = project(&files, ", dry_run: true");
    migrate(&p, &pg).assert_code(0);
    assert!(summary(&p).contains("not tried") && summary(&p).contains("2_index.sql#1"), "{}", summary(&p));
    assert_eq!(pg.psql("postgres", "select to_regclass('public.notes') is null"), "t", "a dry run changes nothing");

    set_with(&p, "");
    migrate(&p, &pg).assert_code(0);
    assert!(summary(&p).contains("ran outside a transaction: 2_index.sql#1"), "{}", summary(&p));
    assert_eq!(pg.psql("postgres", "select indisvalid from pg_index where indexrelid = 'notes_body'::regclass"), "t");
    assert_eq!(versions(&pg), ["1", "2"]);

    // After another statement of its file it cannot run (the CLI's pipeline
    // refuses it too): the lint refuses the file before anything runs.
    p.write("migrations/3_late.sql", "create table more (id int);\ncreate index concurrently more_id on more (id);\n");
    migrate(&p, &pg).assert_code(1);
    let s = summary(&p);
    assert!(
        s.contains("refused before anything ran: 3_late.sql:2:1: ban-concurrent-index-creation-in-transaction (error)")
            && s.contains("must come first in its file"),
        "{s}"
    );
    assert!(s.contains("nothing was applied"), "{s}");
    assert_eq!(pg.psql("postgres", "select to_regclass('public.more') is null"), "t");

    // First in its file it commits at once: a later failure does not undo it.
    p.write(
        "migrations/3_late.sql",
        "create index concurrently notes_id on notes (id);\ncreate table more (id int);\ncreate tabel oops (id int);\n",
    );
    migrate(&p, &pg).assert_code(1);
    let s = summary(&p);
    assert!(
        s.contains("failed at statement 3") && s.contains("statement(s) 1 of it had committed before the failure"),
        "{s}"
    );
    assert_eq!(pg.psql("postgres", "select to_regclass('public.notes_id') is not null"), "t");
    assert_eq!(pg.psql("postgres", "select to_regclass('public.more') is null"), "t");
    assert_eq!(versions(&pg), ["1", "2"]);
}

#[test]
fn repair_refuses_what_the_cli_refuses() {
    let pg = Postgres::start();
    let p = project(&[("1_a.sql", "create table a (id int);\n-- done\n")], "");
    migrate(&p, &pg).assert_code(0);

    // Applied without a local file: refused, nothing written.
    set_with(&p, ", repair: { status: applied, versions: [\"1\", \"99\"] }");
    migrate(&p, &pg).assert_code(1);
    let s = summary(&p);
    assert!(s.contains("version(s) 99 have no migration file in migrations"), "{s}");
    assert_eq!(versions(&pg), ["1"]);

    set_with(&p, ", repair: { status: reverted, versions: [\"v1\"] }");
    migrate(&p, &pg).assert_code(1);
    assert!(summary(&p).contains("v1 is not a version number"), "{}", summary(&p));

    // Applied with its file: the row is rewritten from the file, as the CLI's upsert does.
    pg.psql("postgres", "update supabase_migrations.schema_migrations set statements = null, name = null");
    set_with(&p, ", repair: { status: applied, versions: [\"1\"] }");
    migrate(&p, &pg).assert_code(0);
    assert_eq!(statements(&pg, "1").unwrap(), ["create table a (id int)", "-- done"]);
    assert_eq!(pg.psql("postgres", "select name from supabase_migrations.schema_migrations"), "a");

    // Reverted deletes the rows, and runs no SQL.
    set_with(&p, ", repair: { status: reverted, versions: [\"1\", \"5\"] }");
    migrate(&p, &pg).assert_code(0);
    assert!(summary(&p).contains("1 history row(s) deleted"), "{}", summary(&p));
    assert!(versions(&pg).is_empty());
    assert_eq!(pg.psql("postgres", "select to_regclass('public.a') is not null"), "t");
}

/// `const NAME: i64 = 0x…;` in a source file of this repository.
fn key_in(source: &str, name: &str) -> i64 {
    let line = source.lines().find(|l| l.contains(&format!("const {name}: i64 ="))).expect(name);
    let hex = line.split("0x").nth(1).unwrap().trim_end_matches(';').replace('_', "");
    i64::from_str_radix(&hex, 16).unwrap()
}

fn lock_held(pg: &Postgres, key: i64) -> bool {
    let sql = format!(
        "select count(*) from pg_locks where locktype = 'advisory' and granted and ((classid::bigint << 32) | objid::bigint) = {key}"
    );
    pg.psql("postgres", &sql) == "1"
}

/// Another session holding advisory lock `key`, as the state store or a
/// second deploy would.
struct Holder<'a> {
    pg: &'a Postgres,
    key: i64,
    child: Child,
}

impl<'a> Holder<'a> {
    fn take(pg: &'a Postgres, key: i64) -> Holder<'a> {
        let child = Command::new("psql")
            .args(["-X", "-q", "-d", &pg.url("postgres"), "-c"])
            .arg(format!("select pg_advisory_lock({key}); select pg_sleep(60)"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("psql");
        let holder = Holder { pg, key, child };
        for _ in 0..200 {
            if lock_held(pg, key) {
                return holder;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the advisory lock {key} was never taken");
    }
}

impl Drop for Holder<'_> {
    fn drop(&mut self) {
        // The server notices a killed client only after pg_sleep: end the
        // session from the server side.
        let sql = format!(
            "select pg_terminate_backend(pid) from pg_locks where locktype = 'advisory' and ((classid::bigint << 32) | objid::bigint) = {}",
            self.key
        );
        self.pg.psql("postgres", &sql);
        let _ = self.child.kill();
        let _ = self.child.wait();
        while lock_held(self.pg, self.key) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn migration_lock_is_not_the_state_stores() {
    let state_key = key_in(include_str!("../../host/src/state/postgres.rs"), "STATE_LOCK");
    let migrate_key = key_in(include_str!("../../plugins/supabase-migrate/src/lib.rs"), "LOCK_KEY");
    assert_ne!(state_key, migrate_key);
    let pg = Postgres::start();
    let p = project(&[("1_a.sql", "create table a (id int);")], ", lock_wait: 1s");

    // A state store transaction in the same database does not stop a migration…
    let holder = Holder::take(&pg, state_key);
    let run = migrate(&p, &pg);
    drop(holder);
    run.assert_code(0);
    assert_eq!(versions(&pg), ["1"]);

    // …while another migration does.
    p.write("migrations/2_b.sql", "create table b (id int);");
    let holder = Holder::take(&pg, migrate_key);
    let run = migrate(&p, &pg);
    drop(holder);
    run.assert_code(1);
    assert!(summary(&p).contains("held the lock"), "{}", summary(&p));
    assert_eq!(versions(&pg), ["1"]);
}
