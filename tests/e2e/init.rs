//! `deployhost init`: a pipeline written from an existing Supabase
//! repository (migrations with RLS, config.toml with two functions and
//! `[db.seed]`, a seed, pgTAP tests, package.json scripts) that validates,
//! audits without over-grants and deploys to a Supabase-shaped database
//! with nothing but environment variables; never overwriting a file.

use crate::support::http::{Response, Server};
use crate::support::management_api::ManagementApi;
use crate::support::pg::Postgres;
use crate::support::{Project, Run, files_under};
use std::collections::BTreeMap;

const TOKEN: &str = "sbp_init_test_token";
const USER: &str = "44444444-4444-4444-8444-000000000001";

const CONFIG: &str = "\
project_id = \"Notes App\"

[db]
port = 54322

[db.seed]
enabled = true
sql_paths = ['./seed.sql']

[functions.hello]
verify_jwt = false

[functions.send-email]
enabled = true
";

const MIGRATION: &str = "\
create table public.notes (
  id bigint generated always as identity primary key,
  owner uuid not null default auth.uid() references auth.users,
  body text not null
);
alter table public.notes enable row level security;
create policy \"owners read their notes\" on public.notes for select to authenticated
  using ((select auth.uid()) = owner);
grant select, insert on public.notes to authenticated;
";

const SEED: &str = "\
insert into auth.users (instance_id, id, aud, role, email)
values ('00000000-0000-0000-0000-000000000000', 'USER', 'authenticated', 'authenticated', 'notes-seed-ada@example.com');
insert into public.notes (owner, body) values ('USER', 'first note');
";

const RLS_TEST: &str = "\
begin;
select plan(3);
select has_table('public', 'notes', 'notes exists');
set local role authenticated;
set local request.jwt.claims to '{\"sub\": \"USER\", \"role\": \"authenticated\"}';
select results_eq('select body from public.notes', array['first note'], 'ada sees her note');
set local request.jwt.claims to '{\"sub\": \"44444444-4444-4444-8444-000000000009\", \"role\": \"authenticated\"}';
select is_empty('select * from public.notes', 'someone else sees none');
select * from finish();
rollback;
";

const PACKAGE_JSON: &str = r#"{
  "name": "notes-app",
  "private": true,
  "scripts": {
    "test": "node -e \"console.log('unit tests ok')\"",
    "lint": "node -e \"console.log('lint ok')\"",
    "dev": "next dev"
  }
}
"#;

/// The sample Supabase repository.
pub(crate) fn repository() -> Project {
    let p = Project::new();
    p.write("supabase/config.toml", CONFIG);
    p.write("supabase/migrations/20240101000000_notes.sql", MIGRATION);
    p.write("supabase/seed.sql", &SEED.replace("USER", USER));
    p.write("supabase/functions/hello/index.ts", "Deno.serve(() => new Response('hello'));\n");
    p.write(
        "supabase/functions/send-email/index.ts",
        "import { cors } from '../_shared/cors.ts';\nDeno.serve(() => new Response('sent', { headers: cors }));\n",
    );
    p.write("supabase/functions/_shared/cors.ts", "export const cors = { 'Access-Control-Allow-Origin': '*' };\n");
    p.write("supabase/tests/database/rls.test.sql", &RLS_TEST.replace("USER", USER));
    p.write("package.json", PACKAGE_JSON);
    p
}

fn pipeline_text(p: &Project) -> String {
    std::fs::read_to_string(p.path().join("deployhost.yaml")).expect("deployhost.yaml written")
}

/// `audit --json`, checked: no step over-granted, and the folders each step reads.
fn audit_reads(p: &Project) -> BTreeMap<String, Vec<String>> {
    let audit = p.deployhost(&["audit", "deployhost.yaml", "--json"], &[]);
    audit.assert_code(0);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&audit.stdout).expect("audit --json");
    assert!(!rows.is_empty());
    let mut reads = BTreeMap::new();
    for row in &rows {
        assert_eq!(row["over_grants"], serde_json::json!([]), "over-grant in {row:#}");
        let read: Vec<String> =
            row["fs_read"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
        reads.insert(row["step"].as_str().unwrap().to_string(), read);
    }
    // The text view says the same.
    let text = p.deployhost(&["audit", "deployhost.yaml"], &[]);
    text.assert_code(0);
    assert!(!text.stdout.contains("OVER-GRANT"), "{}", text.stdout);
    reads
}

#[test]
fn init_writes_a_pipeline_that_validates_audits_clean_and_deploys_dev_from_variables() {
    let p = repository();
    p.write(".gitignore", "node_modules/\n/.deployhost");
    let init = p.deployhost(&["init", "--ci", "github"], &[]);
    init.assert_code(0);
    // What it found, assumed, and what to set.
    for said in [
        "supabase/migrations: 1 migration (1 enabling row level security)",
        "[db.seed] enabled, sql_paths ./seed.sql",
        "Edge Functions: hello, send-email",
        "supabase/tests: 1 pgTAP file",
        "package.json scripts.test: `npm run test`",
        "package.json scripts.lint: `npm run lint`",
        "PLACEHOLDER",
        "staging  STAGING_DATABASE_URL  STAGING_SUPABASE_PROJECT_REF  SUPABASE_ACCESS_TOKEN",
        "prod     PROD_DATABASE_URL",
        "the pre-flight steps run npm on the runner: add the project's install step",
    ] {
        assert!(init.stdout.contains(said), "`{said}` not in:\n{}", init.stdout);
    }
    let yaml = pipeline_text(&p);
    assert!(yaml.starts_with("# Written by `deployhost init`"), "{yaml}");
    assert!(yaml.contains("pipeline: notes-app\n"), "{yaml}");
    for stage in ["pre-flight", "backup", "migrations", "seeds", "functions", "tests", "health"] {
        assert!(yaml.contains(&format!("  - name: {stage}\n")), "no stage {stage}:\n{yaml}");
    }
    assert!(yaml.contains("  # - name: notify\n"), "notifications are left commented out:\n{yaml}");
    assert!(yaml.contains("\nrollback:\n"), "{yaml}");
    // .gitignore: the missing entry added, the present one not repeated.
    let ignore = std::fs::read_to_string(p.path().join(".gitignore")).unwrap();
    assert!(ignore.starts_with("node_modules/\n/.deployhost\n"), "{ignore}");
    assert_eq!(ignore.matches("deployhost/").count(), 0, "{ignore}");
    assert_eq!(ignore.lines().filter(|l| *l == "backups/").count(), 1, "{ignore}");
    // The workflow `deployhost ci github` writes, each job with its environment's URL.
    let workflow = std::fs::read_to_string(p.path().join(".github/workflows/deploy.yml")).unwrap();
    assert!(workflow.contains("run: deployhost validate deployhost.yaml"), "{workflow}");
    assert!(workflow.contains("run: deployhost run deployhost.yaml --env staging"), "{workflow}");
    let staging_job = &workflow[workflow.find("  deploy-staging:").unwrap()..];
    let staging_job = &staging_job[..staging_job.find("  deploy-uat:").unwrap_or(staging_job.len())];
    assert!(staging_job.contains("STAGING_DATABASE_URL: ${{ secrets.STAGING_DATABASE_URL }}"), "{staging_job}");
    assert!(!staging_job.contains(" DATABASE_URL: "), "{staging_job}");
    // The environment's own values, as the file's defaults.
    assert!(staging_job.contains("STAGING_SUPABASE_PROJECT_REF: 'set-STAGING_SUPABASE_PROJECT_REF'"), "{staging_job}");
    // And the workflow is one GitHub accepts.
    crate::ci::actionlint(&p.path().join(".github/workflows/deploy.yml"));
    assert!(workflow.contains("SUPABASE_ACCESS_TOKEN: ${{ secrets.SUPABASE_ACCESS_TOKEN }}"), "{workflow}");

    // Validates with no variable set, for every environment.
    let validate = p.deployhost(&["validate", "deployhost.yaml"], &[]);
    validate.assert_code(0);
    assert!(validate.stdout.contains("deployhost.yaml: ok (7 stages, 9 steps)"), "{}", validate.stdout);
    for env in ["staging", "uat", "prod"] {
        p.deployhost(&["validate", "deployhost.yaml", "--env", env], &[]).assert_code(0);
    }
    // The least grants: single folders and files under supabase/, never the repository.
    let reads = audit_reads(&p);
    assert_eq!(reads["migrations-rehearsal"], ["/supabase/migrations"]);
    assert_eq!(reads["backup"], ["/supabase/migrations"]);
    assert_eq!(reads["migrate"], ["/supabase/migrations"]);
    assert_eq!(reads["seed"], ["/supabase/config.toml", "/supabase/seed.sql"], "the seed files alone");
    assert_eq!(reads["functions-deploy"], ["/supabase"]);
    assert_eq!(reads["pgtap"], ["/supabase/tests"]);
    assert!(reads["test"].is_empty() && reads["lint"].is_empty() && reads["health-check"].is_empty());

    // `run --env dev` with only environment variables set.
    let pg = Postgres::start();
    pg.admin("create extension if not exists pgtap with schema extensions");
    let api = ManagementApi::start(TOKEN, &[]);
    let health = Server::fixed(Response::ok("ok"));
    let home = p.mkdir(".home");
    let run = |p: &Project| -> Run {
        p.deployhost(
            &["run", "deployhost.yaml", "--env", "dev"],
            &[
                ("HOME", home.to_str().unwrap()),
                ("DATABASE_URL", &pg.url("postgres")),
                ("SUPABASE_ACCESS_TOKEN", TOKEN),
                ("SUPABASE_PROJECT_REF", "notesdevref"),
                ("SUPABASE_API_URL", &api.server.url("")),
                ("SUPABASE_API_HOST", &api.server.grant()),
                ("HEALTH_URL", &health.url("/health")),
                ("HEALTH_HOST", &health.grant()),
            ],
        )
    };
    run(&p).assert_code(0);
    for step in [
        "test",
        "lint",
        "migrations-rehearsal",
        "backup",
        "migrate",
        "seed",
        "functions-deploy",
        "pgtap",
        "health-check",
    ] {
        assert_eq!(p.step(step)["status"], "passed", "{step}: {:#}", p.step(step));
    }
    assert_eq!(p.results()["environment"], "dev");
    assert!(p.run_files_text().contains("unit tests ok"), "npm's test script ran");
    assert_eq!(p.step("seed")["outputs"]["seeded"], "supabase/seed.sql");
    assert_eq!(p.step("pgtap")["outputs"]["passed"], "3");
    assert_eq!(
        pg.admin("select relrowsecurity from pg_class where oid = 'public.notes'::regclass"),
        "t",
        "the migration with RLS is applied"
    );
    assert_eq!(pg.admin("select version from supabase_migrations.schema_migrations"), "20240101000000");
    assert_eq!(pg.admin("select string_agg(body, ',') from public.notes"), "first note");
    let live: Vec<(String, String)> = api.state.lock().unwrap().functions.keys().cloned().collect();
    assert_eq!(
        live,
        [("notesdevref".to_string(), "hello".to_string()), ("notesdevref".to_string(), "send-email".to_string())]
    );
    assert!(health.requests().iter().any(|r| r.path == "/health"), "the health check probed HEALTH_URL");

    // A second deploy of the same repository: the seed is not run again.
    run(&p).assert_code(0);
    assert_eq!(p.step("seed")["outputs"]["seeded"], "");
    assert_eq!(pg.admin("select count(*) from public.notes"), "1");
}

#[test]
fn init_without_functions_or_tests_writes_a_shorter_pipeline_that_validates() {
    let full = repository();
    full.deployhost(&["init"], &[]).assert_code(0);
    let full_lines = pipeline_text(&full).lines().count();

    let p = Project::new();
    p.write("supabase/config.toml", "project_id = \"plain\"\n\n[db]\nport = 54322\n");
    p.write("supabase/migrations/20240101000000_init.sql", MIGRATION);
    p.write("supabase/seed.sql", "select 1;\n");
    p.write(
        "pyproject.toml",
        "[project]\nname = \"plain\"\n\n[tool.pytest.ini_options]\ntestpaths = [\"tests\"]\n\n[tool.ruff]\nline-length = 100\n",
    );
    let init = p.deployhost(&["init"], &[]);
    init.assert_code(0);
    assert!(init.stdout.contains("no Edge Functions: no functions stage"), "{}", init.stdout);
    assert!(init.stdout.contains("no pgTAP tests in supabase/tests: no tests stage"), "{}", init.stdout);
    assert!(init.stdout.contains("no [db.seed] in config.toml: no seeds stage"), "{}", init.stdout);
    assert!(!init.stdout.contains("SUPABASE_ACCESS_TOKEN"), "{}", init.stdout);
    let yaml = pipeline_text(&p);
    for absent in ["supabase-functions", "uses: pgtap", "supabase-seed", "SUPABASE_ACCESS_TOKEN", "supabase_token"] {
        assert!(!yaml.contains(absent), "`{absent}` in:\n{yaml}");
    }
    assert!(yaml.contains("run: pytest -p no:cacheprovider\n        grants: { exec: [pytest] }"), "{yaml}");
    assert!(yaml.contains("run: ruff check --no-cache .\n        grants: { exec: [ruff] }"), "{yaml}");
    let lines = yaml.lines().count();
    assert!(lines + 20 < full_lines, "{lines} lines, the full one {full_lines}");
    let validate = p.deployhost(&["validate", "deployhost.yaml"], &[]);
    validate.assert_code(0);
    assert!(validate.stdout.contains("ok (4 stages, 6 steps)"), "{}", validate.stdout);
    let reads = audit_reads(&p);
    assert_eq!(reads["migrate"], ["/supabase/migrations"]);
}

#[test]
fn init_twice_changes_nothing_and_a_repository_without_supabase_is_refused() {
    let p = repository();
    p.deployhost(&["init", ".", "--ci", "github"], &[]).assert_code(0);
    let before = files_under(p.path());
    assert!(before.contains_key("deployhost.yaml") && before.contains_key(".github/workflows/deploy.yml"));
    assert_eq!(
        before[".gitignore"],
        b"# deployhost: run folders and local state, and the backups runs take\n.deployhost/\nbackups/\n"
    );

    let again = p.deployhost(&["init", ".", "--ci", "github"], &[]);
    again.assert_code(4);
    assert!(
        again.stderr.contains("deployhost.yaml exists; `deployhost init` never overwrites a file"),
        "{}",
        again.stderr
    );
    assert_eq!(files_under(p.path()), before, "a second init changed a file");

    // A workflow already there is left alone when the pipeline is written.
    std::fs::remove_file(p.path().join("deployhost.yaml")).unwrap();
    p.write(".github/workflows/deploy.yml", "# ours\n");
    let third = p.deployhost(&["init", "--ci", "github"], &[]);
    third.assert_code(0);
    assert!(third.stdout.contains("deploy.yml exists; left as it is"), "{}", third.stdout);
    assert_eq!(std::fs::read_to_string(p.path().join(".github/workflows/deploy.yml")).unwrap(), "# ours\n");
    assert_eq!(std::fs::read(p.path().join(".gitignore")).unwrap(), before[".gitignore"]);

    // Not a Supabase project: nothing written, the reason given.
    let empty = Project::new();
    let refused = empty.deployhost(&["init"], &[]);
    refused.assert_code(2);
    assert!(refused.stderr.contains("has no supabase/ folder"), "{}", refused.stderr);
    assert!(files_under(empty.path()).is_empty());

    // A broken config.toml is named with its file.
    let broken = Project::new();
    broken.write("supabase/config.toml", "[db.seed\nenabled = true\n");
    let refused = broken.deployhost(&["init"], &[]);
    refused.assert_code(2);
    assert!(refused.stderr.contains("supabase/config.toml"), "{}", refused.stderr);
    assert!(!broken.path().join("deployhost.yaml").exists());
}

/// The project's pgTAP suite with one failing assertion, on the first
/// deploy to a fresh database: the step fails with the file, number and
/// diagnostic, and the rollback completes, seed table and history included
/// (the seed table is in the change ledger like the history).
#[test]
fn a_failing_pgtap_assertion_on_the_first_deploy_rolls_everything_back() {
    let p = repository();
    p.write(
        "supabase/tests/database/wrong.test.sql",
        &format!(
            "begin;\nselect plan(1);\nset local role authenticated;\n\
             set local request.jwt.claims to '{{\"sub\": \"{USER}\", \"role\": \"authenticated\"}}';\n\
             select is((select count(*)::int from public.notes), 2, 'ada sees two notes');\n\
             select * from finish();\nrollback;\n"
        ),
    );
    p.deployhost(&["init"], &[]).assert_code(0);
    let pg = Postgres::start();
    pg.admin("create extension if not exists pgtap with schema extensions");
    let api = ManagementApi::start(TOKEN, &[]);
    let home = p.mkdir(".home");
    let run = p.deployhost(
        &["run", "deployhost.yaml", "--env", "dev"],
        &[
            ("HOME", home.to_str().unwrap()),
            ("DATABASE_URL", &pg.url("postgres")),
            ("SUPABASE_ACCESS_TOKEN", TOKEN),
            ("SUPABASE_PROJECT_REF", "notesdevref"),
            ("SUPABASE_API_URL", &api.server.url("")),
            ("SUPABASE_API_HOST", &api.server.grant()),
        ],
    );
    run.assert_code(1);
    let step = p.step("pgtap");
    assert_eq!(step["status"], "failed", "{step:#}");
    assert_eq!(step["outputs"]["failed_tests"], "supabase/tests/database/wrong.test.sql#1", "{step:#}");
    assert!(
        step["summary"]
            .as_str()
            .unwrap()
            .contains("ada sees two notes: Failed test 1: \"ada sees two notes\" | have: 1 | want: 2"),
        "{step:#}"
    );
    assert_eq!(step["outputs"]["passed"], "3", "{step:#}");
    let rollback = &p.results()["rollback"];
    assert_eq!(rollback["ok"], true, "the rollback completed:\n{}", run.stdout);
    assert!(!run.stdout.contains("ROLLBACK DID NOT COMPLETE"), "{}", run.stdout);
    for (what, sql) in [
        ("the migration", "select count(*) from pg_class where oid = to_regclass('public.notes')"),
        ("the history and the seed table", "select count(*) from pg_namespace where nspname = 'supabase_migrations'"),
        ("the seeded user", "select count(*) from auth.users where email = 'notes-seed-ada@example.com'"),
    ] {
        assert_eq!(pg.admin(sql), "0", "{what} not undone:\n{}", run.stdout);
    }
    assert!(api.state.lock().unwrap().functions.is_empty(), "the new functions are deleted again");
}
