//! `schema-verify` beyond the history: `plpgsql_check:` checks plpgsql
//! functions as `supabase db lint` does (compared with the real CLI, npm
//! `supabase@2.117.0` in tests/tools, on the same database), and
//! `advisors:` runs the security checks of Supabase's database advisor,
//! each firing on a bad example and quiet once it is fixed.

use crate::support::pg::Postgres;
use crate::support::{Project, Run};

fn project(with: &str) -> Project {
    let p = Project::new();
    p.pipeline(&format!(
        "pipeline: v\ndatabases:\n  app: {{ url_env: DATABASE_URL }}\nstages:\n  - name: s\n    steps:\n      \
         - name: verify\n        uses: schema-verify\n        with: {{ database: app{with} }}\n        \
         grants: {{ databases: [app] }}\n"
    ));
    p
}

fn verify(p: &Project, pg: &Postgres) -> Run {
    p.deployhost(&["run", "pipeline.yaml"], &[("DATABASE_URL", &pg.url("postgres"))])
}

fn text(v: &serde_json::Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

const FUNCTIONS: &str = "create table people (id int primary key, name text);
create function public.broken() returns text language plpgsql as $$
declare r text;
begin
  select nme into r from people limit 1;
  return r;
end $$;
create function public.good() returns text language plpgsql as $$
declare r text;
begin
  select name into r from people limit 1;
  return r;
end $$;";

/// `supabase db lint --level warning -s public` on the same database: the
/// functions it reports at `level`, as `schema.name`.
fn cli_lint(pg: &Postgres, level: &str) -> Vec<String> {
    let bin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/tools/node_modules/.bin/supabase");
    assert!(bin.exists(), "the Supabase CLI is not installed: run scripts/test.sh (it runs `npm ci` in tests/tools)");
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(bin)
        .args(["db", "lint", "--level", "warning", "-s", "public", "--output-format", "json", "--db-url"])
        .arg(format!("{}?sslmode=disable", pg.url("postgres")))
        .current_dir(dir.path())
        .output()
        .expect("supabase db lint");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "supabase db lint failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    json["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results: {stdout}"))
        .iter()
        .filter(|r| r["issues"].as_array().is_some_and(|i| i.iter().any(|i| i["level"] == level)))
        .map(|r| text(&r["function"]))
        .collect()
}

#[test]
fn plpgsql_functions_are_checked_as_supabase_db_lint_checks_them() {
    let pg = Postgres::start();
    // On Supabase the dashboard enables it (as the platform), in `extensions`.
    pg.admin("create extension if not exists plpgsql_check with schema extensions");
    pg.psql("postgres", FUNCTIONS);
    let cli = cli_lint(&pg, "error");
    assert_eq!(cli, ["public.broken"], "the CLI's errors");

    let p = project(", plpgsql_check: { level: warning, fail_on: error }");
    verify(&p, &pg).assert_code(1);
    let step = p.step("verify");
    let problems = text(&step["outputs"]["problems"]);
    for function in &cli {
        assert!(
            problems.contains(&format!(
                "plpgsql_check: {function}: line 4: error: column \"nme\" does not exist (SQLSTATE 42703)"
            )),
            "{problems}"
        );
    }
    assert!(problems.contains("hint: Perhaps you meant to reference the column \"people.name\""), "{problems}");
    assert!(!problems.contains("public.good") && !text(&step["outputs"]["notes"]).contains("public.good"), "{step:#}");

    // Fixed: nothing to report, and the function is left as it was.
    pg.psql(
        "postgres",
        "create or replace function public.broken() returns text language plpgsql as $$ begin return 'x'; end $$;",
    );
    assert!(cli_lint(&pg, "error").is_empty());
    verify(&p, &pg).assert_code(0);
    assert_eq!(text(&p.step("verify")["outputs"]["problems"]), "");
}

#[test]
fn without_the_extension_the_check_is_skipped_and_says_so() {
    let pg = Postgres::start();
    pg.psql("postgres", FUNCTIONS);
    let p = project(", plpgsql_check: {}");
    verify(&p, &pg).assert_code(0);
    let notes = text(&p.step("verify")["outputs"]["notes"]);
    assert!(notes.contains("plpgsql_check: skipped, the extension is not available"), "{notes}");
}

/// Each advisor rule: the bad example, the finding it must give, the fix.
const ADVISORS: &[(&str, &str, &str)] = &[
    (
        "create table open_notes (id int);",
        "rls_disabled_in_public (ERROR): public.open_notes; fix: ALTER TABLE … ENABLE ROW LEVEL SECURITY",
        "alter table open_notes enable row level security; create policy read on open_notes for select using (true);",
    ),
    (
        "create schema app; create table app.orders (id int); create policy mine on app.orders using (true);",
        "policy_exists_rls_disabled (ERROR): app.orders",
        "alter table app.orders enable row level security;",
    ),
    (
        "create table locked (id int); alter table locked enable row level security;",
        "rls_enabled_no_policy (INFO): public.locked",
        "create policy read on locked for select using (true);",
    ),
    (
        "create table items (id int); alter table items enable row level security; \
         create policy read on items for select using (true); create view item_ids as select id from items;",
        "security_definer_view (ERROR): public.item_ids; fix: ALTER VIEW … SET (security_invoker = true)",
        "alter view item_ids set (security_invoker = true);",
    ),
    (
        "create function app.total() returns int language sql as 'select 1';",
        "function_search_path_mutable (WARN): app.total()",
        "alter function app.total() set search_path = '';",
    ),
    (
        "create view emails with (security_invoker = true) as select id, email from auth.users; \
         grant select on emails to authenticated;",
        "auth_users_exposed (ERROR): public.emails",
        "revoke select on emails from anon, authenticated;",
    ),
];

#[test]
fn each_security_advisor_fires_on_its_bad_example_and_is_quiet_once_fixed() {
    let pg = Postgres::start();
    let p = project(", schemas: [public, app], advisors: { exposed_schemas: [public], fail_on: info }");
    verify(&p, &pg).assert_code(0);
    for (bad, finding, fix) in ADVISORS {
        pg.psql("postgres", bad);
        verify(&p, &pg).assert_code(1);
        let problems = text(&p.step("verify")["outputs"]["problems"]);
        assert_eq!(problems.lines().count(), 1, "only {finding}: {problems}");
        assert!(problems.starts_with(finding), "{problems}");
        pg.psql("postgres", fix);
        verify(&p, &pg).assert_code(0);
        assert_eq!(text(&p.step("verify")["outputs"]["problems"]), "", "after: {fix}");
    }
    // Below fail_on, a finding is reported without failing the step.
    let p = project(", advisors: { fail_on: error }");
    pg.psql("postgres", "create table quiet (id int); alter table quiet enable row level security;");
    verify(&p, &pg).assert_code(0);
    let notes = text(&p.step("verify")["outputs"]["notes"]);
    assert!(notes.contains("rls_enabled_no_policy (INFO): public.quiet"), "{notes}");
}
