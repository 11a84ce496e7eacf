//! The migration lint (`supabase-migrate`, through the host's `lint` on
//! PostgreSQL's own parser): every pending file is linted before any of
//! them runs; a class the pipeline blocks stops the deploy with nothing
//! changed, an acknowledged finding passes with its reason in the report,
//! and the errors (`COMMIT` mid-file, `CONCURRENTLY` inside the file's
//! transaction) are refused whatever the pipeline says.

use crate::support::pg::Postgres;
use crate::support::{Project, Run};

const NOTES: &str = "create table notes (id bigint primary key, title text, color text);
insert into notes values (1, 'a', 'red'), (2, 'a', null), (3, 'b', 'blue');";

fn pipeline(p: &Project, lint: &str) {
    p.pipeline(&format!(
        "pipeline: m\ndatabases:\n  app: {{ url_env: DATABASE_URL }}\nstages:\n  - name: schema\n    steps:\n      \
         - name: backup\n        uses: pg-backup\n        with: {{ database: app }}\n        \
         grants: {{ databases: [app], fs: {{ write: [backups] }} }}\n      - name: migrate\n        uses: supabase-migrate\n        with: {{ database: app, dir: migrations{lint} }}\n        \
         grants: {{ databases: [app], fs: {{ read: [migrations] }} }}\n"
    ));
}

fn migrate(p: &Project, pg: &Postgres) -> Run {
    p.deployhost(&["run", "pipeline.yaml"], &[("DATABASE_URL", &pg.url("postgres"))])
}

fn text(v: &serde_json::Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn no_history(pg: &Postgres) -> String {
    pg.psql("postgres", "select to_regclass('supabase_migrations.schema_migrations') is null")
}

#[test]
fn a_blocked_deploy_changes_nothing_and_an_acknowledged_one_passes() {
    let pg = Postgres::start();
    pg.psql("postgres", NOTES);
    let schema = pg.app_schema("postgres");
    let p = Project::new();
    p.write(
        "migrations/20240102000000_index.sql",
        "-- look notes up by title\ncreate index notes_title on notes (title);\n",
    );
    p.write("migrations/20240103000000_drop.sql", "alter table notes\n  drop column color;\n");
    p.write(
        "migrations/20240104000000_unique.sql",
        "create unique index concurrently if not exists notes_title_u on notes (title);\n",
    );

    // Production's policy: locking, destructive and data-dependent findings block.
    pipeline(&p, ", lint: { block: [locking, destructive, data-dependent] }");
    migrate(&p, &pg).assert_code(1);
    let step = p.step("migrate");
    let summary = text(&step["summary"]);
    assert!(summary.starts_with("lint blocked the deploy (3 finding(s)"), "{summary}");
    assert!(
        summary.contains(
            "20240102000000_index.sql:2:1: require-concurrent-index-creation (locking): CREATE INDEX without \
             CONCURRENTLY blocks every write to notes"
        ) && summary.contains("takes SHARE on notes; fix: CREATE INDEX CONCURRENTLY"),
        "{summary}"
    );
    assert!(
        summary.contains("20240103000000_drop.sql:1:1: ban-drop-column (destructive): drops notes.color")
            && summary.contains("takes ACCESS EXCLUSIVE on notes"),
        "{summary}"
    );
    // The data-dependent finding was checked against the target, read-only.
    assert!(
        summary.contains("20240104000000_unique.sql:1:1: unique-on-existing-rows (data-dependent)")
            && summary.contains("checked on the target: 1 row(s) in the way, it will fail"),
        "{summary}"
    );
    assert!(summary.contains("nothing was applied") && summary.contains("acknowledge"), "{summary}");
    assert_eq!(text(&step["outputs"]["failed_version"]), "20240102000000");
    assert_eq!(text(&step["outputs"]["lint_blocked"]).lines().count(), 3);
    assert_eq!(pg.app_schema("postgres"), schema, "a blocked deploy changes nothing");
    assert_eq!(no_history(&pg), "t", "not even the history table");

    // Acknowledged, each with a reason: the deploy passes and says so.
    std::fs::remove_file(p.path().join("migrations/20240104000000_unique.sql")).unwrap();
    pipeline(
        &p,
        ", lint: { block: [locking, destructive], acknowledge: [\
         { rule: require-concurrent-index-creation, file: 20240102000000_index.sql, reason: \"notes has 3 rows\" }, \
         { rule: ban-drop-column, file: 20240103000000_drop.sql, reason: \"color unused since v41\" }] }",
    );
    migrate(&p, &pg).assert_code(0);
    let step = p.step("migrate");
    let summary = text(&step["summary"]);
    assert!(summary.starts_with("applied 2 migration(s)"), "{summary}");
    assert!(summary.contains("lint: 2 finding(s): 1 locking, 1 destructive (2 acknowledged: "), "{summary}");
    assert!(summary.contains("acknowledged: color unused since v41"), "{summary}");
    let acknowledged = text(&step["outputs"]["lint_acknowledged"]);
    assert_eq!(acknowledged.lines().count(), 2, "{acknowledged}");
    assert!(acknowledged.contains("require-concurrent-index-creation") && acknowledged.contains("notes has 3 rows"));
    assert_eq!(pg.psql("postgres", "select to_regclass('public.notes_title') is not null"), "t");
    assert_eq!(
        pg.psql(
            "postgres",
            "select count(*) from pg_attribute where attrelid = 'notes'::regclass and attname = 'color'"
        ),
        "0"
    );
    assert_eq!(
        pg.psql(
            "postgres",
            "select string_agg(version, ',' order by version) from supabase_migrations.schema_migrations"
        ),
        "20240102000000,20240103000000"
    );

    // A table an earlier file of the same deploy creates is nobody's yet:
    // an index on it, in the next file, does not block.
    p.write("migrations/20240105000000_tags.sql", "create table tags (id bigint primary key, name text);\n");
    p.write("migrations/20240106000000_tags_name.sql", "create index tags_name on tags (name);\n");
    pipeline(&p, ", lint: { block: [locking, destructive] }");
    migrate(&p, &pg).assert_code(0);
    let lint = text(&p.step("migrate")["outputs"]["lint"]);
    assert!(
        lint.starts_with("20240106000000_tags_name.sql:1:1: require-concurrent-index-creation (locking)")
            && lint.contains("moot: its table does not exist on the target yet"),
        "{lint}"
    );
    assert_eq!(pg.psql("postgres", "select to_regclass('public.tags_name') is not null"), "t");
}

#[test]
fn commit_mid_file_and_concurrently_in_a_transaction_are_refused_whatever_the_policy() {
    let pg = Postgres::start();
    pg.psql("postgres", NOTES);
    let schema = pg.app_schema("postgres");
    let p = Project::new();
    p.write("migrations/20240102000000_a.sql", "create table a (id bigint);\ncommit;\ncreate table b (id bigint);\n");
    p.write(
        "migrations/20240103000000_index.sql",
        "create table c (id bigint);\n  create index concurrently if not exists notes_title on notes (title);\n",
    );
    // No class blocked, and both acknowledged: still refused.
    pipeline(
        &p,
        ", lint: { acknowledge: [{ rule: commit-mid-file, file: 20240102000000_a.sql, reason: \"we know\" }] }",
    );
    migrate(&p, &pg).assert_code(1);
    let summary = text(&p.step("migrate")["summary"]);
    assert!(summary.starts_with("refused before anything ran: "), "{summary}");
    assert!(summary.contains("20240102000000_a.sql:2:1: commit-mid-file (error)"), "{summary}");
    assert!(summary.contains("supabase/cli#5047"), "{summary}");
    assert!(
        summary.contains("20240103000000_index.sql:2:3: ban-concurrent-index-creation-in-transaction (error)")
            && summary.contains("must come first in its file"),
        "{summary}"
    );
    assert!(summary.ends_with("nothing was applied"), "{summary}");
    assert_eq!(pg.app_schema("postgres"), schema);
    assert_eq!(no_history(&pg), "t");
}

#[test]
fn the_lint_checks_the_rows_in_the_way_read_only_and_a_dry_run_fails_where_it_said() {
    let pg = Postgres::start();
    pg.psql("postgres", NOTES);
    let schema = pg.app_schema("postgres");
    let p = Project::new();
    p.write("migrations/20240102000000_title.sql", "alter table notes alter column title set not null;\n");
    p.write("migrations/20240103000000_color.sql", "alter table notes\n  alter column color set not null;\n");
    p.pipeline(
        "pipeline: m\ndatabases:\n  app: { url_env: DATABASE_URL }\nstages:\n  - name: pre-flight\n    steps:\n      \
         - name: migrate\n        uses: supabase-migrate\n        with: { database: app, dir: migrations, dry_run: true }\n        \
         grants: { databases: [app], fs: { read: [migrations] } }\n",
    );
    // Not blocked (no class is), the rehearsal runs, and fails where the
    // lint said it would.
    migrate(&p, &pg).assert_code(1);
    let step = p.step("migrate");
    let summary = text(&step["summary"]);
    assert!(
        summary.starts_with("20240103000000_color.sql failed at statement 1")
            && summary.contains("contains null values (SQLSTATE 23502)")
            && summary.ends_with("nothing was changed (dry run)"),
        "{summary}"
    );
    let lint = text(&step["outputs"]["lint"]);
    assert!(
        lint.contains(
            "20240102000000_title.sql:1:1: not-null-on-existing-rows (data-dependent): SET NOT NULL fails if a row of \
             notes holds NULL in title"
        ) && lint.contains("checked on the target: no row in the way"),
        "{lint}"
    );
    assert!(
        lint.contains("20240103000000_color.sql:1:1: not-null-on-existing-rows")
            && lint.contains("checked on the target: 1 row(s) in the way, it will fail"),
        "{lint}"
    );
    assert_eq!(lint.lines().count(), 4, "{lint}");
    assert_eq!(pg.app_schema("postgres"), schema);
}

#[test]
fn in_github_actions_the_findings_are_annotations_at_their_file_and_line() {
    let pg = Postgres::start();
    pg.psql("postgres", NOTES);
    let p = Project::new();
    p.write(
        "migrations/20240102000000_index.sql",
        "-- look notes up by title\ncreate index notes_title on notes (title);\n",
    );
    p.write("migrations/20240103000000_drop.sql", "alter table notes\n  drop column color;\n");
    pipeline(&p, ", lint: { block: [locking] }");
    let run =
        p.deployhost(&["run", "pipeline.yaml"], &[("DATABASE_URL", &pg.url("postgres")), ("GITHUB_ACTIONS", "true")]);
    run.assert_code(1);
    // The blocked finding is an error, the other one a warning, each at its
    // file (from the pipeline's folder), line and column.
    assert!(
        run.stdout.contains(
            "::error file=migrations/20240102000000_index.sql,line=2,col=1,title=migrate%3A require-concurrent-index-creation::\
             20240102000000_index.sql:2:1: require-concurrent-index-creation (locking)"
        ),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(
            "::warning file=migrations/20240103000000_drop.sql,line=1,col=1,title=migrate%3A ban-drop-column::"
        ),
        "{}",
        run.stdout
    );
}
