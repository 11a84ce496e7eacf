//! The `pgtap` step on a Supabase-shaped database: a project's own pgTAP
//! files (RLS per role, as Supabase projects write them) run the way
//! `supabase test db` runs them, and give the same counts as `pg_prove`
//! (Debian's libtap-parser-sourcehandler-pgtap-perl) on the same files.

use crate::support::pg::Postgres;
use crate::support::{Project, Run};
use std::process::Command;

const ADA: &str = "11111111-1111-4111-8111-000000000001";
const GRACE: &str = "11111111-1111-4111-8111-000000000002";

/// The app: notes readable and writable by their owner only.
const SCHEMA: &str = "\
create table public.notes (
  id bigint generated always as identity primary key,
  owner uuid not null default auth.uid() references auth.users,
  body text not null
);
alter table public.notes enable row level security;
create policy \"owners read their notes\" on public.notes for select to authenticated using ((select auth.uid()) = owner);
create policy \"owners write their notes\" on public.notes for insert to authenticated with check ((select auth.uid()) = owner);
grant select, insert on public.notes to authenticated;
grant select on public.notes to anon;
insert into public.notes (owner, body) values ('ADA', 'ada 1'), ('ADA', 'ada 2'), ('GRACE', 'grace 1');
";

const SCHEMA_TEST: &str = "\
begin;
select plan(4);

select has_table('public', 'notes', 'notes exists');
select policies_are('public', 'notes', array['owners read their notes', 'owners write their notes']);
select col_not_null('public', 'notes', 'owner', 'every note has an owner');
-- A helper returning void, as test helpers often do: not TAP, not an error.
select pg_sleep(0);
select todo('admins are not modelled yet', 1);
select ok(false, 'admins see every note');

select * from finish();
rollback;
";

/// One failing assertion: number 4, with a have/want diagnostic.
const AUTHENTICATED_TEST: &str = "\
begin;
select plan(4);

-- Ada, signed in
set local role authenticated;
set local request.jwt.claims to '{\"sub\": \"ADA\", \"role\": \"authenticated\"}';
select auth.uid();

select results_eq(
  'select body from public.notes order by body',
  array['ada 1', 'ada 2'],
  'ada sees only her own notes'
);
select lives_ok(
  $$insert into public.notes (body) values ('ada 3')$$,
  'ada can write a note of her own'
);
select throws_ok(
  $$insert into public.notes (owner, body) values ('GRACE', 'forged')$$,
  '42501',
  null,
  'ada cannot write a note for grace'
);
-- Deliberately wrong: grace has one note, not two.
set local request.jwt.claims to '{\"sub\": \"GRACE\", \"role\": \"authenticated\"}';
select is(
  (select count(*)::int from public.notes),
  2,
  'grace sees two notes'
);

select * from finish();
rollback;
";

const ANON_TEST: &str = "\
begin;
select plan(3);

set local role anon;
select is_empty('select * from public.notes', 'anon sees no notes');
select throws_ok(
  $$insert into public.notes (body) values ('spam')$$,
  '42501',
  'permission denied for table notes',
  'anon cannot write'
);
select skip('no storage policies yet', 1);

select * from finish();
rollback;
";

fn ids(text: &str) -> String {
    text.replace("ADA", ADA).replace("GRACE", GRACE)
}

fn pipeline(with: &str, grants: &str) -> String {
    format!(
        "pipeline: tap\ndatabases:\n  app: {{ url_env: DATABASE_URL }}\nstages:\n  - name: test\n    steps:\n      - name: pgtap\n        uses: pgtap\n        with: {with}\n        grants: {grants}\n"
    )
}

/// A database with the app and pgTAP (installed by the superuser, as the
/// dashboard does), and a project with its test files.
fn setup(files: &[(&str, &str)]) -> (Postgres, Project) {
    let pg = Postgres::start();
    pg.admin("create extension if not exists pgtap with schema extensions");
    pg.psql("postgres", &ids(SCHEMA));
    let p = Project::new();
    for (name, text) in files {
        p.write(&format!("supabase/tests/database/{name}"), &ids(text));
    }
    (pg, p)
}

fn run(p: &Project, pg: &Postgres) -> Run {
    p.deployhost(&["run", "pipeline.yaml", "--version", "1"], &[("DATABASE_URL", &pg.url("postgres"))])
}

/// `pg_prove`'s totals on the project's tests, run as `supabase test db`
/// runs it (recursively, `.sql` files) and as the same deploy role:
/// (tests run, tests failed), read from its summary (`Files=3, Tests=11`
/// and each file's `(Wstat: 0 Tests: 4 Failed: 1)`).
fn pg_prove(p: &Project, pg: &Postgres) -> (u64, u64, String) {
    let out = Command::new("pg_prove")
        .args(["--ext", ".sql", "-r", "-d"])
        .arg(pg.url("postgres"))
        .arg("supabase/tests")
        .current_dir(p.path())
        .output()
        .expect("pg_prove (Debian's libtap-parser-sourcehandler-pgtap-perl; see scripts/prerequisites.sh)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let number_after = |s: &str, key: &str| -> Option<u64> {
        let rest = &s[s.find(key)? + key.len()..];
        rest.chars().take_while(char::is_ascii_digit).collect::<String>().parse().ok()
    };
    let tests = number_after(&text, "Files=").and_then(|_| number_after(&text, ", Tests=")).expect(&text);
    let failed = text.lines().filter(|l| l.contains("(Wstat:")).filter_map(|l| number_after(l, " Failed: ")).sum();
    (tests, failed, text)
}

fn output(step: &serde_json::Value, key: &str) -> String {
    step["outputs"][key].as_str().map(str::to_string).unwrap_or_else(|| panic!("no output {key} in {step:#}"))
}

#[test]
fn pgtap_counts_what_pg_prove_counts_and_names_the_failing_assertion() {
    let (pg, p) = setup(&[
        ("00_schema.test.sql", SCHEMA_TEST),
        ("10_rls_authenticated.test.sql", AUTHENTICATED_TEST),
        ("20_rls_anon.test.sql", ANON_TEST),
    ]);
    p.pipeline(&pipeline("{ database: app }", "{ databases: [app], fs: { read: [supabase] } }"));
    let (tests, failed, prove) = pg_prove(&p, &pg);
    assert_eq!((tests, failed), (11, 1), "the fixture's own counts under pg_prove:\n{prove}");

    run(&p, &pg).assert_code(1);
    let step = p.step("pgtap");
    assert_eq!(step["status"], "failed", "{step:#}");
    assert_eq!(output(&step, "tests"), tests.to_string(), "{step:#}\n{prove}");
    assert_eq!(output(&step, "failed"), failed.to_string(), "{step:#}\n{prove}");
    assert_eq!(output(&step, "passed"), (tests - failed).to_string(), "{step:#}");
    assert_eq!((output(&step, "skipped"), output(&step, "todo")), ("1".into(), "1".into()), "{step:#}");
    assert_eq!(output(&step, "files"), "3");
    assert_eq!(output(&step, "files_failed"), "1");
    assert_eq!(output(&step, "failed_tests"), "supabase/tests/database/10_rls_authenticated.test.sql#4");
    assert_eq!(
        output(&step, "file.supabase/tests/database/10_rls_authenticated.test.sql"),
        "failed: 3/4 assertion(s) passed"
    );
    assert_eq!(output(&step, "file.supabase/tests/database/20_rls_anon.test.sql"), "passed: 3/3 assertion(s) passed");

    // The failing assertion: its file, number, description and diagnostic.
    let summary = step["summary"].as_str().unwrap();
    assert!(summary.starts_with("1 of 3 pgTAP file(s) failed, 1 of 11 assertion(s) failed"), "{summary}");
    assert!(
        summary.contains(
            "supabase/tests/database/10_rls_authenticated.test.sql #4 - grace sees two notes: \
             Failed test 4: \"grace sees two notes\" | have: 1 | want: 2"
        ),
        "{summary}"
    );
    // The TAP stream is in the step log, as pg_prove -v shows it.
    let log = p.run_files_text();
    assert!(log.contains("not ok 4 - grace sees two notes"), "{log}");
    assert!(log.contains("ok 3 # SKIP no storage policies yet"), "{log}");

    // Each file was rolled back: ada's note from the test is not there.
    assert_eq!(pg.admin("select string_agg(body, ',' order by body) from public.notes"), "ada 1,ada 2,grace 1");
}

#[test]
fn a_passing_suite_runs_as_the_granted_role_and_leaves_nothing_behind() {
    // The file commits, as a careless test might: the step leaves its
    // `commit` out and rolls the whole file back.
    let as_role = "\
begin;
select plan(3);
select is(current_user::text, 'authenticated', 'runs as the granted role');
set local request.jwt.claims to '{\"sub\": \"ADA\", \"role\": \"authenticated\"}';
insert into public.notes (body) values ('from a test');
select is((select count(*)::int from public.notes), 3, 'ada sees her two notes and the new one');
commit;
select ok(true, 'still in the step''s transaction after the file''s commit');
select * from finish();
";
    let (pg, p) = setup(&[("rls.test.sql", as_role), ("20_rls_anon.test.sql", ANON_TEST)]);
    p.pipeline(&pipeline(
        "{ database: app, files: [supabase/tests/database/rls.test.sql], role: authenticated }",
        "{ databases: [{ name: app, roles: [authenticated] }], fs: { read: [supabase] } }",
    ));
    run(&p, &pg).assert_code(0);
    let step = p.step("pgtap");
    assert_eq!(step["status"], "passed", "{step:#}");
    assert_eq!(step["summary"], "3/3 pgTAP assertion(s) passed in 1 file(s)", "{step:#}");
    assert_eq!(output(&step, "failed"), "0");
    assert_eq!(pg.admin("select count(*) from public.notes where body = 'from a test'"), "0");
    // The report's checklist counts the project's pgTAP tests as RLS tests.
    let run_id = p.results()["run_id"].as_str().unwrap().to_string();
    let report = p.deployhost(&["report", &run_id], &[]);
    report.assert_code(0);
    assert!(report.stdout.contains("- [x] RLS policies tested per role"), "{}", report.stdout);

    // A role the step was not granted is refused by the host.
    p.pipeline(&pipeline(
        "{ database: app, role: service_role }",
        "{ databases: [{ name: app, roles: [authenticated] }], fs: { read: [supabase] } }",
    ));
    run(&p, &pg).assert_code(1);
    let step = p.step("pgtap");
    assert!(step["summary"].as_str().unwrap().contains("may not switch to role `service_role`"), "{step:#}");
}

#[test]
fn a_plan_not_met_or_a_failing_statement_fails_the_file() {
    let short = "select plan(3);\nselect ok(true, 'one');\nselect ok(true, 'two');\nselect * from finish();\n";
    let broken = "begin;\nselect plan(2);\nselect ok(true, 'one');\n\nselect * from no_such_table;\nselect ok(true, 'two');\nselect * from finish();\nrollback;\n";
    let long = "select plan(1);\nselect is(repeat('x', 2000), 'y', 'a long value');\nselect * from finish();\n";
    let (pg, p) = setup(&[("a_short.test.sql", short), ("b_broken.test.sql", broken), ("c_long.test.sql", long)]);
    p.pipeline(&pipeline("{ database: app }", "{ databases: [app], fs: { read: [supabase] } }"));
    run(&p, &pg).assert_code(1);
    let step = p.step("pgtap");
    let summary = step["summary"].as_str().unwrap();
    assert!(summary.starts_with("3 of 3 pgTAP file(s) failed, 1 of 4 assertion(s) failed"), "{summary}");
    // A long diagnostic is cut in the summary, whole in the step log.
    assert!(
        summary.contains("c_long.test.sql #1 - a long value: Failed test 1: \"a long value\" | have: xxxx"),
        "{summary}"
    );
    assert!(summary.len() < 1200 && summary.contains("xxx…"), "{summary}");
    assert!(p.run_files_text().contains(&format!("#         have: {}", "x".repeat(2000))));
    assert!(summary.contains("supabase/tests/database/a_short.test.sql: planned 3 test(s) but ran 2"), "{summary}");
    assert!(
        summary.contains("supabase/tests/database/b_broken.test.sql:5: relation \"no_such_table\" does not exist"),
        "{summary}"
    );
}

#[test]
fn without_the_extension_the_step_says_how_to_enable_it_and_installs_nothing() {
    let pg = Postgres::start();
    let p = Project::new();
    p.write("supabase/tests/database/a.test.sql", "select plan(1);\nselect ok(true);\nselect * from finish();\n");
    p.pipeline(&pipeline("{ database: app }", "{ databases: [app], fs: { read: [supabase] } }"));
    run(&p, &pg).assert_code(1);
    let step = p.step("pgtap");
    assert_eq!(step["status"], "failed", "{step:#}");
    let summary = step["summary"].as_str().unwrap();
    assert!(summary.contains("the pgtap extension is not installed in database `app`"), "{summary}");
    assert!(summary.contains("create extension pgtap with schema extensions;"), "{summary}");
    assert_eq!(pg.admin("select count(*) from pg_extension where extname = 'pgtap'"), "0");
}
