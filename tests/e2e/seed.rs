//! The `supabase-seed` step: `[db.seed]` of `supabase/config.toml`, each
//! seed file run once and recorded in `supabase_migrations.seed_files`
//! exactly as the Supabase CLI records it (path `supabase/…`, sha256 hex of
//! the file), so a seed that inserts a user deploys twice.

use crate::support::pg::Postgres;
use crate::support::{Project, Run, sha256};

const CONFIG: &str = "\
project_id = \"shop\"

[db]
port = 54322

[db.seed]
enabled = true
sql_paths = ['./seed.sql', './seeds/*.sql']
";

/// A seed as Supabase projects write them: a user, inserted plainly (a
/// second run would fail with `duplicate key … \"users_pkey\"`).
const SEED: &str = "\
insert into auth.users (instance_id, id, aud, role, email, raw_user_meta_data)
values ('00000000-0000-0000-0000-000000000000', '33333333-3333-4333-8333-000000000001', 'authenticated',
        'authenticated', 'seed@example.com', '{\"full_name\":\"Seed\"}');
";

const NOTES: &str = "\
create table if not exists public.notes (id int primary key, body text not null);
insert into public.notes values (1, 'welcome');
";

fn pipeline(environment: &str, with: &str) -> String {
    format!(
        "pipeline: seed\nenvironment: {environment}\ndatabases:\n  app: {{ url_env: DATABASE_URL }}\nstages:\n  - name: db\n    steps:\n      - name: backup\n        uses: pg-backup\n        with: {{ database: app }}\n        grants: {{ databases: [app], fs: {{ write: [backups] }} }}\n      - name: seed\n        uses: supabase-seed\n        with: {with}\n        grants: {{ databases: [app], fs: {{ read: [supabase] }} }}\n"
    )
}

fn project() -> Project {
    let p = Project::new();
    p.write("supabase/config.toml", CONFIG);
    p.write("supabase/seed.sql", SEED);
    p.write("supabase/seeds/01_notes.sql", NOTES);
    p.write("supabase/seeds/README.md", "not a seed");
    p.pipeline(&pipeline("dev", "{ database: app }"));
    p
}

fn run(p: &Project, pg: &Postgres) -> Run {
    p.deployhost(&["run", "pipeline.yaml", "--version", "1"], &[("DATABASE_URL", &pg.url("postgres"))])
}

/// `seed_files` as `path=hash` lines, in path order.
fn seed_files(pg: &Postgres) -> String {
    pg.admin("select string_agg(path || '=' || hash, E'\\n' order by path) from supabase_migrations.seed_files")
}

fn users(pg: &Postgres) -> String {
    pg.admin("select count(*) from auth.users where email like 'seed%@example.com'")
}

#[test]
fn a_seed_runs_once_and_a_changed_seed_only_gets_its_hash_updated() {
    let pg = Postgres::start();
    let p = project();

    // 1: both files run, recorded as the CLI records them.
    run(&p, &pg).assert_code(0);
    let step = p.step("seed");
    assert_eq!(step["status"], "passed", "{step:#}");
    assert_eq!(step["outputs"]["seeded"], "supabase/seed.sql,supabase/seeds/01_notes.sql", "{step:#}");
    assert_eq!(
        seed_files(&pg),
        format!(
            "supabase/seed.sql={}\nsupabase/seeds/01_notes.sql={}",
            sha256(SEED.as_bytes()),
            sha256(NOTES.as_bytes())
        )
    );
    assert_eq!(users(&pg), "1");
    assert_eq!(pg.admin("select string_agg(body, ',') from public.notes"), "welcome");
    assert_eq!(
        pg.admin(
            "select string_agg(column_name || ' ' || data_type || ' ' || is_nullable, ', ' order by ordinal_position) \
             from information_schema.columns where table_schema = 'supabase_migrations' and table_name = 'seed_files'"
        ),
        "path text NO, hash text NO"
    );

    // 2: the same files again: nothing runs (the user would be a duplicate).
    run(&p, &pg).assert_code(0);
    let step = p.step("seed");
    assert_eq!(step["status"], "passed", "{step:#}");
    assert_eq!(step["outputs"]["seeded"], "", "{step:#}");
    assert_eq!(step["outputs"]["up_to_date"], "supabase/seed.sql,supabase/seeds/01_notes.sql", "{step:#}");
    assert_eq!(users(&pg), "1");

    // 3: the seed changed: its hash is updated, the file is not run again.
    let changed = format!(
        "{SEED}insert into auth.users (instance_id, id, aud, role, email) values ('00000000-0000-0000-0000-000000000000', \
         '33333333-3333-4333-8333-000000000002', 'authenticated', 'authenticated', 'seed2@example.com');\n"
    );
    p.write("supabase/seed.sql", &changed);
    run(&p, &pg).assert_code(0);
    let step = p.step("seed");
    assert_eq!(step["outputs"]["rehashed"], "supabase/seed.sql", "{step:#}");
    assert_eq!(step["outputs"]["up_to_date"], "supabase/seeds/01_notes.sql", "{step:#}");
    assert!(step["summary"].as_str().unwrap().contains("hash updated (changed, not run again): supabase/seed.sql"));
    assert_eq!(users(&pg), "1", "a changed seed is not run again");
    assert_eq!(
        seed_files(&pg),
        format!(
            "supabase/seed.sql={}\nsupabase/seeds/01_notes.sql={}",
            sha256(changed.as_bytes()),
            sha256(NOTES.as_bytes())
        )
    );

    // 4: a new seed that fails: nothing of it stays, and it is not recorded.
    p.write("supabase/seeds/02_broken.sql", "insert into public.notes values (2, 'half');\nselect 1/0;\n");
    run(&p, &pg).assert_code(1);
    let step = p.step("seed");
    assert_eq!(step["status"], "failed", "{step:#}");
    let summary = step["summary"].as_str().unwrap();
    assert!(
        summary.contains("supabase/seeds/02_broken.sql (supabase/seeds/02_broken.sql) failed: division by zero"),
        "{summary}"
    );
    assert_eq!(pg.admin("select count(*) from public.notes"), "1");
    assert_eq!(pg.admin("select count(*) from supabase_migrations.seed_files where path like '%broken%'"), "0");
}

#[test]
fn seeds_follow_the_config_and_skip_production_unless_named() {
    let pg = Postgres::start();
    let p = project();

    // Production is not seeded unless the step names it.
    p.pipeline(&pipeline("prod", "{ database: app }"));
    run(&p, &pg).assert_code(0);
    let step = p.step("seed");
    assert_eq!(step["status"], "skipped", "{step:#}");
    assert!(step["summary"].as_str().unwrap().contains("give the step `environments: [prod]`"), "{step:#}");
    assert_eq!(users(&pg), "0");

    // `enabled = false` in config.toml: skipped, said why.
    p.write("supabase/config.toml", &CONFIG.replace("enabled = true", "enabled = false"));
    p.pipeline(&pipeline("prod", "{ database: app, environments: [prod] }"));
    run(&p, &pg).assert_code(0);
    let step = p.step("seed");
    assert_eq!(step["status"], "skipped", "{step:#}");
    assert!(step["summary"].as_str().unwrap().contains("[db.seed] enabled = false"), "{step:#}");

    // Only the listed file, in a config file the pipeline names; a bad key
    // names the file and line.
    p.write("supabase/config.toml", "[db.seed]\nsql_paths = ['./seeds/*.sql', './none/*.sql']\n");
    run(&p, &pg).assert_code(0);
    let step = p.step("seed");
    assert_eq!(step["outputs"]["seeded"], "supabase/seeds/01_notes.sql", "{step:#}");
    assert_eq!(step["outputs"]["warnings"], "no files matched pattern: supabase/none/*.sql", "{step:#}");
    assert_eq!(users(&pg), "0");

    p.write("supabase/config.toml", "[db.seed]\nsql_paths = './seed.sql'\n");
    run(&p, &pg).assert_code(1);
    let step = p.step("seed");
    let summary = step["summary"].as_str().unwrap();
    assert!(summary.contains("supabase/config.toml") && summary.contains("line 2"), "{summary}");
}

#[test]
fn a_rollback_takes_back_what_the_seeds_wrote_and_their_records() {
    let pg = Postgres::start();
    let p = project();
    let failing_check = "      - name: rls\n        uses: rls-test\n        with: { database: app, matrix: [{ as: visitor, role: anon, checks: [{ sql: select 1, rows: 2 }] }] }\n        grants: { databases: [{ name: app, roles: [anon] }] }\nrollback:\n  on: [health_check_failure]\n";
    p.pipeline(&format!("{}{failing_check}", pipeline("dev", "{ database: app }")));
    run(&p, &pg).assert_code(1);
    assert_eq!(p.step("seed")["status"], "passed", "{}", p.step("seed"));
    assert_eq!(p.step("rls")["status"], "failed");
    let results = p.results();
    assert_eq!(results["rollback"]["ok"], true, "{results:#}");
    assert_eq!(users(&pg), "0", "the seeded user is gone");
    assert_eq!(pg.admin("select count(*) from pg_tables where tablename = 'notes'"), "0", "the seed's table is gone");
    // The seed table this run created is in the change ledger, as the
    // migration history is: the rollback removes it too.
    assert_eq!(pg.admin("select to_regclass('supabase_migrations.seed_files') is null"), "t", "{results:#}");

    // The next deploy seeds again, as nothing is recorded.
    p.pipeline(&pipeline("dev", "{ database: app }"));
    run(&p, &pg).assert_code(0);
    assert_eq!(p.step("seed")["outputs"]["seeded"], "supabase/seed.sql,supabase/seeds/01_notes.sql");
    assert_eq!(users(&pg), "1");
}

/// `supabase db push --include-seed` of the Supabase CLI (npm
/// `supabase@2.117.0`, installed in tests/tools by scripts/test.sh) on the
/// project's folder, against the same database.
fn cli_push(p: &Project, pg: &Postgres) -> String {
    let bin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/tools/node_modules/.bin/supabase");
    assert!(bin.exists(), "the Supabase CLI is not installed: run scripts/test.sh (it runs `npm ci` in tests/tools)");
    let out = std::process::Command::new(bin)
        .args(["db", "push", "--include-seed", "--yes", "--db-url"])
        .arg(format!("{}?sslmode=disable", pg.url("postgres")))
        .current_dir(p.path())
        .output()
        .expect("supabase db push");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "supabase db push failed:\n{text}");
    text
}

/// The CLI ran no seed: "Remote database is up to date." (nothing at all
/// to push) or "Seed files are up to date.".
fn assert_up_to_date(cli: &str) {
    assert!(!cli.contains("Seeding data from") && !cli.contains("Updating seed hash"), "{cli}");
    assert!(cli.contains("Remote database is up to date.") || cli.contains("Seed files are up to date."), "{cli}");
}

#[test]
fn the_supabase_cli_and_deployhost_see_each_others_seeds_as_applied() {
    let pg = Postgres::start();
    let p = project();

    // deployhost seeds; the CLI finds nothing to do (its user would clash).
    run(&p, &pg).assert_code(0);
    let cli = cli_push(&p, &pg);
    assert_up_to_date(&cli);
    assert_eq!(users(&pg), "1");

    // The CLI seeds a new file; deployhost finds it applied.
    p.write("supabase/seeds/02_more.sql", "insert into public.notes values (2, 'from the cli');\n");
    let cli = cli_push(&p, &pg);
    assert!(cli.contains("Seeding data from supabase/seeds/02_more.sql..."), "{cli}");
    run(&p, &pg).assert_code(0);
    let step = p.step("seed");
    assert_eq!(step["outputs"]["seeded"], "", "{step:#}");
    assert_eq!(
        step["outputs"]["up_to_date"], "supabase/seed.sql,supabase/seeds/01_notes.sql,supabase/seeds/02_more.sql",
        "{step:#}"
    );

    // A changed seed: whichever tool sees it first updates the hash, and
    // the other then finds it up to date; neither runs it again.
    p.write("supabase/seed.sql", &format!("{SEED}-- edited by the CLI's user\n"));
    let cli = cli_push(&p, &pg);
    assert!(cli.contains("Updating seed hash to supabase/seed.sql..."), "{cli}");
    run(&p, &pg).assert_code(0);
    assert_eq!(p.step("seed")["outputs"]["rehashed"], "", "{}", p.step("seed"));
    p.write("supabase/seed.sql", &format!("{SEED}-- edited again\n"));
    run(&p, &pg).assert_code(0);
    assert_eq!(p.step("seed")["outputs"]["rehashed"], "supabase/seed.sql", "{}", p.step("seed"));
    let cli = cli_push(&p, &pg);
    assert_up_to_date(&cli);
    assert_eq!(users(&pg), "1");
    assert_eq!(pg.admin("select count(*) from public.notes"), "2");
}
