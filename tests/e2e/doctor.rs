//! `deployhost doctor`: on the pipeline `init` writes for the sample
//! Supabase repository, each thing the first deploy would trip over is
//! named before it runs (a missing secret, pgtap not installed, a history
//! that differs from the files, a transaction pooler, a role that may not
//! create schemas), and nothing in the database changes.

use crate::init::repository;
use crate::support::Project;
use crate::support::pg::Postgres;

fn doctor(p: &Project, url: &str, token: Option<&str>) -> crate::support::Run {
    let mut envs = vec![("DATABASE_URL", url)];
    if let Some(t) = token {
        envs.push(("SUPABASE_ACCESS_TOKEN", t));
    }
    p.deployhost(&["doctor", "--env", "dev"], &envs)
}

fn line<'a>(out: &'a str, starts: &str) -> &'a str {
    out.lines().find(|l| l.starts_with(starts)).unwrap_or_else(|| panic!("no line `{starts}…` in:\n{out}"))
}

#[test]
fn doctor_names_a_missing_secret_missing_pgtap_and_a_history_that_differs() {
    let p = repository();
    p.deployhost(&["init"], &[]).assert_code(0);
    let pg = Postgres::start();
    let url = pg.url("postgres");
    let schemas = "select string_agg(nspname, ',' order by nspname) from pg_namespace";
    let before = pg.admin(schemas);

    // No token, no pgtap: both named, exit 1.
    let run = doctor(&p, &url, None);
    run.assert_code(1);
    let out = &run.stdout;
    assert!(
        line(out, "✗ secret supabase_token:")
            .contains("SUPABASE_ACCESS_TOKEN: environment variable SUPABASE_ACCESS_TOKEN is not set"),
        "{out}"
    );
    assert!(line(out, "✗ database app: pgtap:").contains("the pgtap extension is not installed"), "{out}");
    assert!(line(out, "✓ database app: connect:").contains("postgres on PostgreSQL"), "{out}");
    assert!(line(out, "✓ database app: privileges:").contains("may create schemas"), "{out}");
    assert!(line(out, "✓ database app: backup scope (step backup):").contains("all readable"), "{out}");
    assert!(line(out, "✓ database app: history vs supabase/migrations:").contains("0 applied, 1 pending"), "{out}");
    assert!(out.contains("2 of ") && out.contains(" checks failed"), "{out}");
    assert_eq!(pg.admin(schemas), before, "doctor changed the database");

    // Both fixed: every check passes.
    pg.admin("create extension if not exists pgtap with schema extensions");
    let run = doctor(&p, &url, Some("sbp_token"));
    run.assert_code(0);
    assert!(line(&run.stdout, "✓ secret supabase_token:").contains("SUPABASE_ACCESS_TOKEN is set"), "{}", run.stdout);
    assert!(line(&run.stdout, "✓ database app: pgtap:").contains("installed"), "{}", run.stdout);
    assert!(run.stdout.contains("checks passed"), "{}", run.stdout);
    // plpgsql_check is said, never required (this server does not have it).
    let info = line(&run.stdout, "i database app: plpgsql_check:");
    assert!(info.contains("not available on this server") || info.contains("not installed"), "{}", run.stdout);

    // A history with a version no file has, and a file older than the last
    // applied one that was never applied.
    pg.psql(
        "postgres",
        "create schema supabase_migrations;\n\
         create table supabase_migrations.schema_migrations (version text primary key, statements text[], name text);\n\
         insert into supabase_migrations.schema_migrations (version, name) values ('20240101000000', 'notes'), ('20240301000000', 'gone');",
    );
    p.write("supabase/migrations/20240201000000_late.sql", "select 1;\n");
    let run = doctor(&p, &url, Some("sbp_token"));
    run.assert_code(1);
    let history = line(&run.stdout, "✗ database app: history vs supabase/migrations:");
    assert!(history.contains("remote only (in the history, no file): 20240301000000"), "{history}");
    assert!(
        history.contains("local only, older than the last applied (20240301000000): 20240201000000_late.sql"),
        "{history}"
    );

    // Files and history agree again: passes.
    pg.psql("postgres", "delete from supabase_migrations.schema_migrations where version = '20240301000000';");
    std::fs::remove_file(p.path().join("supabase/migrations/20240201000000_late.sql")).unwrap();
    let run = doctor(&p, &url, Some("sbp_token"));
    run.assert_code(0);
    assert!(line(&run.stdout, "✓ database app: history").contains("1 applied, 0 pending"), "{}", run.stdout);
}

#[test]
fn doctor_refuses_a_transaction_pooler_and_a_role_that_may_not_create_schemas() {
    let p = repository();
    p.deployhost(&["init"], &[]).assert_code(0);
    let pg = Postgres::start();
    pg.admin("create extension if not exists pgtap with schema extensions");

    let pooler = pg.url("postgres").replace(&format!(":{}/", pg.port), ":6543/");
    let run = doctor(&p, &pooler, Some("sbp_token"));
    run.assert_code(1);
    assert!(line(&run.stdout, "✗ database app: URL:").contains("transaction-mode pooler (port 6543"), "{}", run.stdout);
    let run = doctor(&p, &format!("{}?pgbouncer=true", pg.url("postgres")), Some("sbp_token"));
    run.assert_code(1);
    assert!(line(&run.stdout, "✗ database app: URL:").contains("pgbouncer=true"), "{}", run.stdout);

    // A login role without CREATE on the database.
    pg.admin("create role deployer login password 'pw-deployer-1'");
    let deployer = format!("postgres://deployer:pw-deployer-1@127.0.0.1:{}/postgres", pg.port);
    pg.admin("create table public.payroll (id int)");
    let run = doctor(&p, &deployer, Some("sbp_token"));
    run.assert_code(1);
    assert!(
        line(&run.stdout, "✗ database app: backup scope (step backup):").contains("cannot read public.payroll"),
        "{}",
        run.stdout
    );
    assert!(
        line(&run.stdout, "✗ database app: privileges:").contains("may not create schemas on the database"),
        "{}",
        run.stdout
    );
}

#[test]
fn doctor_connects_with_the_urls_tls_settings_and_names_a_wrong_ca() {
    let p = repository();
    p.deployhost(&["init"], &[]).assert_code(0);
    let pg = Postgres::start_tls();
    let tls = pg.tls.as_ref().unwrap();
    pg.admin("create extension if not exists pgtap with schema extensions");
    let with_ca = |ca: &std::path::Path| {
        format!("{}&sslrootcert={}", pg.url("postgres").replace("sslmode=require", "sslmode=verify-full"), ca.display())
    };

    let run = doctor(&p, &with_ca(&tls.ca), Some("sbp_token"));
    run.assert_code(0);
    assert!(line(&run.stdout, "✓ database app: URL:").contains("verify-full"), "{}", run.stdout);

    let run = doctor(&p, &with_ca(&tls.wrong_ca), Some("sbp_token"));
    run.assert_code(1);
    assert!(line(&run.stdout, "✗ database app: connect:").contains("cannot connect"), "{}", run.stdout);
}

/// A step granted a database with roles runs as a login the host makes
/// for it, bound to those roles (issue 25, #6): doctor says beforehand
/// whether the pipeline's login may make it (a member of each role, with
/// CREATEROLE), and makes nothing.
#[test]
fn doctor_says_whether_the_login_can_bind_a_step_to_its_roles() {
    let pg = Postgres::start();
    let p = Project::new();
    p.pipeline(
        "pipeline: r\ndatabases:\n  app: { url_env: DATABASE_URL }\nstages:\n  - name: s\n    steps:\n      - name: rls\n        \
         uses: rls-test\n        with: { database: app, matrix: [{ as: visitor, role: anon, checks: [{ sql: select 1, rows: 1 }] }] }\n        \
         grants: { databases: [{ name: app, roles: [anon] }] }\n",
    );
    let roles = "select count(*) from pg_roles";
    let before = pg.admin(roles);
    let run = p.deployhost(&["doctor", "pipeline.yaml"], &[("DATABASE_URL", &pg.url("postgres"))]);
    assert!(
        line(&run.stdout, "✓ database app: roles of step rls:").contains("`postgres` may make the step's login"),
        "{}",
        run.stdout
    );
    pg.admin("create role deployer login password 'pw-deployer-1'");
    let deployer = format!("postgres://deployer:pw-deployer-1@127.0.0.1:{}/postgres", pg.port);
    let run = p.deployhost(&["doctor", "pipeline.yaml"], &[("DATABASE_URL", &deployer)]);
    run.assert_code(1);
    assert!(
        line(&run.stdout, "✗ database app: roles of step rls:").contains("not a member of `anon`"),
        "{}",
        run.stdout
    );
    pg.admin("grant anon to deployer");
    let run = p.deployhost(&["doctor", "pipeline.yaml"], &[("DATABASE_URL", &deployer)]);
    run.assert_code(1);
    assert!(line(&run.stdout, "✗ database app: roles of step rls:").contains("lacks CREATEROLE"), "{}", run.stdout);
    // The step itself fails the same way, before it runs anything.
    let deploy = p.deployhost(&["run", "pipeline.yaml"], &[("DATABASE_URL", &deployer)]);
    deploy.assert_code(1);
    assert!(deploy.all_output().contains("lacks CREATEROLE"), "{}", deploy.all_output());
    assert_eq!(pg.admin(roles), format!("{}", before.parse::<i64>().unwrap() + 1), "only `deployer` was made");
}
