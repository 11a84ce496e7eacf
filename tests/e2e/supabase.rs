//! A Supabase project as a Supabase team deploys it: a database shaped like
//! a hosted project (support/pg.rs: `postgres` is not a superuser; auth,
//! storage and extensions belong to `supabase_admin`), migrations written
//! the way real projects write them, TLS with a throwaway CA like
//! Supabase's own root, and rollbacks that touch only the app.

use crate::support::http::{Response, Server};
use crate::support::pg::{PASSWORD, Postgres};
use crate::support::{Project, Run};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Migrations in the patterns real Supabase projects use.
const PROFILES: &str = "\
create extension if not exists pg_trgm with schema extensions;

create type public.plan as enum ('free', 'pro');

create table public.profiles (
  id uuid not null references auth.users on delete cascade,
  username text unique,
  plan public.plan not null default 'free',
  updated_at timestamptz default now(),
  primary key (id)
);

alter table public.profiles enable row level security;

create policy \"Public profiles are viewable by everyone.\" on public.profiles
  for select using (true);

create policy \"Users can insert their own profile.\" on public.profiles
  for insert with check ((select auth.uid()) = id);

create policy \"Users can update own profile.\" on public.profiles
  for update using ((select auth.uid()) = id);

grant select on public.profiles to anon;
grant select, insert, update on public.profiles to authenticated;
";

const NEW_USER_TRIGGER: &str = "\
-- inserts a row into public.profiles
create function public.handle_new_user()
returns trigger
language plpgsql
security definer set search_path = ''
as $$
begin
  insert into public.profiles (id, username)
  values (new.id, new.raw_user_meta_data ->> 'full_name');
  return new;
end;
$$;

-- trigger the function every time a user is created
create trigger on_auth_user_created
  after insert on auth.users
  for each row execute procedure public.handle_new_user();

create policy \"Avatar images are publicly accessible.\" on storage.objects
  for select using (bucket_id = 'avatars');
";

const SEED: &str = "\
insert into public.profiles (id, username)
select id, raw_user_meta_data ->> 'full_name' from auth.users
on conflict (id) do nothing;
";

const ADA: &str = "11111111-1111-4111-8111-000000000001";
const GRACE: &str = "11111111-1111-4111-8111-000000000002";

fn pipeline(health: &Server, database_env: &str) -> String {
    r#"pipeline: supa
environment: prod
version: "${DEPLOY_VERSION:-1}"
databases:
  app: { url_env: DATABASE_ENV }
stages:
  - name: database
    steps:
      - name: backup
        uses: pg-backup
        with: { database: app }
        grants: { databases: [app], fs: { write: [backups] } }
      - name: migrate
        uses: supabase-migrate
        with: { database: app, dir: supabase/migrations }
        grants: { databases: [app], fs: { read: [supabase] } }
      - name: seed
        uses: sql-apply
        with: { database: app, files: [supabase/seed.sql] }
        grants: { databases: [app], fs: { read: [supabase] } }
      - name: rls
        uses: rls-test
        grants: { databases: [{ name: app, roles: [authenticated, anon] }] }
        with:
          database: app
          matrix:
            - as: ada
              role: authenticated
              claims: { sub: ADA }
              checks:
                - { name: sees other profiles, sql: "select * from profiles where id = 'GRACE'", rows: 1 }
                - { name: updates only her own, sql: "update profiles set username = 'ada'", rows: 1 }
            - as: visitor
              role: anon
              checks:
                - { name: reads profiles, sql: "select * from profiles", allowed: true }
                - { name: cannot update, sql: "update profiles set username = 'x'", denied: true }
  - name: health
    steps:
      - name: api
        uses: health-probe
        with: { url: "HEALTH_URL" }
        grants: { net: ["HEALTH_GRANT"] }
rollback:
  on: [health_check_failure]
"#
    .replace("DATABASE_ENV", database_env)
    .replace("ADA", ADA)
    .replace("GRACE", GRACE)
    .replace("HEALTH_URL", &health.url("/health"))
    .replace("HEALTH_GRANT", &health.grant())
}

fn project(health: &Server, database_env: &str) -> Project {
    let p = Project::new();
    p.write("supabase/migrations/20240301000100_profiles.sql", PROFILES);
    p.write("supabase/migrations/20240301000200_new_user_trigger.sql", NEW_USER_TRIGGER);
    p.write("supabase/seed.sql", SEED);
    p.pipeline(&pipeline(health, database_env));
    p
}

/// A user signs up while the deploy runs, as GoTrue would: the health
/// endpoint the deploy probes inserts user `n` as `supabase_auth_admin`.
fn signup(db: &crate::support::pg::Psql, n: u32) {
    db.platform(&format!(
        "set role supabase_auth_admin; insert into auth.users (instance_id, id, aud, role, email, raw_user_meta_data) values \
         ('00000000-0000-0000-0000-000000000000', '22222222-2222-4222-8222-00000000000{n}', 'authenticated', \
         'authenticated', 'new{n}@example.com', '{{\"full_name\":\"New {n}\"}}')"
    ))
    .expect("the sign-up");
}

/// What the platform holds: users, objects, extensions, app hooks on it.
fn platform(pg: &Postgres) -> (String, String, String, String) {
    (
        pg.admin("select string_agg(email, ',' order by email) from auth.users"),
        pg.admin("select string_agg(bucket_id || '/' || name, ',' order by name) from storage.objects"),
        pg.admin("select string_agg(extname, ',' order by extname collate \"C\") from pg_extension"),
        pg.admin(
            "select (select count(*) from pg_trigger where tgrelid = 'auth.users'::regclass and not tgisinternal) \
             || '/' || (select count(*) from pg_policy where polrelid = 'storage.objects'::regclass)",
        ),
    )
}

fn deploy(p: &Project, pg: &Postgres, version: &str) -> Run {
    p.deployhost(&["run", "pipeline.yaml"], &[("DATABASE_URL", &pg.url("postgres")), ("DEPLOY_VERSION", version)])
}

#[test]
fn a_supabase_project_deploys_as_postgres_and_a_rollback_touches_only_the_app() {
    let pg = Postgres::start();
    assert_eq!(pg.psql("postgres", "select rolsuper from pg_roles where rolname = current_user"), "f");
    let healthy = Arc::new(AtomicBool::new(false));
    let flag = healthy.clone();
    // The user who signs up during the next deploy's health check.
    let next_signup = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let (pending, db) = (next_signup.clone(), pg.client("postgres"));
    let app = Server::start(move |_, _| {
        let n = pending.swap(0, Ordering::SeqCst);
        if n > 0 {
            signup(&db, n);
        }
        if flag.load(Ordering::SeqCst) { Response::ok("ok") } else { Response::status(503) }
    });
    let p = project(&app, "DATABASE_URL");
    let before = pg.app_schema("postgres");
    let (users, objects, extensions, hooks) = platform(&pg);
    assert_eq!(users, "ada@example.com,grace@example.com,linus@example.com");
    assert_eq!(hooks, "0/0");

    // 1: migrate, seed, the RLS matrix, a sign-up mid-deploy (while the
    // health check runs; the deploy's trigger makes its profile); then the
    // health check fails and the run rolls back.
    next_signup.store(1, Ordering::SeqCst);
    let failed = deploy(&p, &pg, "1");
    failed.assert_code(1);
    for step in ["backup", "migrate", "seed", "rls"] {
        assert_eq!(p.step(step)["status"], "passed", "{step}: {}", p.step(step));
    }
    assert!(p.step("rls")["summary"].as_str().unwrap().contains("4/4 RLS checks passed"), "{}", p.step("rls"));
    let results = p.results();
    assert_eq!(results["rollback"]["ok"], true, "{results:#}");
    let restore = &results["rollback"]["steps"][0];
    assert_eq!(restore["status"], "passed", "{restore}");
    assert_eq!(restore["step"], "revert-app", "{restore}");

    assert_eq!(pg.app_schema("postgres"), before, "the app's schemas are back to the pre-deploy schema");
    let (users_after, objects_after, extensions_after, hooks_after) = platform(&pg);
    assert_eq!(users_after, format!("{users},new1@example.com"), "the user who signed up during the deploy stays");
    assert_eq!(objects_after, objects, "storage objects untouched");
    assert_eq!(extensions_after, extensions, "the extension the deploy created is dropped, the platform's stay");
    assert_eq!(hooks_after, "0/0", "the app's trigger on auth.users and policy on storage.objects went with it");
    let reverted = p.audit_events("revert-app", "sql.revert");
    let done = reverted[0]["done"].to_string();
    assert!(
        done.contains("dropped extension pg_trgm") && done.contains("dropped schema supabase_migrations"),
        "{done}"
    );
    assert!(done.contains("user new1@example.com signed up during the deploy"), "{done}");
    let everything = format!("{}{}", failed.all_output(), p.run_files_text());
    assert!(!everything.contains(PASSWORD), "the database password leaked");

    // 2: healthy. History rows with version, name and statements, as the
    // Supabase CLI writes them; the trigger works.
    healthy.store(true, Ordering::SeqCst);
    next_signup.store(2, Ordering::SeqCst);
    deploy(&p, &pg, "2").assert_code(0);
    assert_eq!(
        pg.psql(
            "postgres",
            "select string_agg(version || ':' || name || ':' || array_length(statements, 1), ',' order by version) \
             from supabase_migrations.schema_migrations"
        ),
        "20240301000100:profiles:9,20240301000200:new_user_trigger:3"
    );
    pg.admin(
        "insert into auth.users (id, aud, role, email, raw_user_meta_data) values \
         ('33333333-3333-4333-8333-000000000003', 'authenticated', 'authenticated', 'late@example.com', '{\"full_name\":\"Late\"}')",
    );
    assert_eq!(
        pg.psql("postgres", "select count(*) from public.profiles"),
        "6",
        "5 seeded or signed up, 1 by the trigger"
    );
    assert_eq!(platform(&pg).3, "1/1");

    // 3: nothing left to do.
    next_signup.store(3, Ordering::SeqCst);
    deploy(&p, &pg, "3").assert_code(0);
    assert!(p.step("migrate")["summary"].as_str().unwrap().starts_with("up to date"), "{}", p.step("migrate"));
}

#[test]
fn a_restore_that_cannot_run_as_the_deploy_role_says_why_and_changes_nothing() {
    let pg = Postgres::start();
    // An app table owned by a role `postgres` cannot act for.
    pg.admin(
        "create schema billing; create table billing.invoices (id int); insert into billing.invoices values (1); \
         grant usage on schema billing to postgres; grant select on billing.invoices to postgres",
    );
    let app = Server::fixed(Response::status(503));
    let p = Project::new();
    p.write("supabase/migrations/1_a.sql", "create table public.a (id int);");
    p.pipeline(
        &r#"pipeline: s
databases:
  app: { url_env: DATABASE_URL }
stages:
  - name: db
    steps:
      - name: backup
        uses: pg-backup
        with: { database: app, exclude_schemas: [billing] }
        grants: { databases: [app], fs: { write: [backups] } }
      - name: migrate
        uses: supabase-migrate
        # The backup's restore is what this test is about.
        with: { database: app, dir: supabase/migrations, ledger: false }
        grants: { databases: [app], fs: { read: [supabase] } }
  - name: health
    steps:
      - name: api
        uses: health-probe
        with: { url: "HEALTH_URL" }
        grants: { net: ["HEALTH_GRANT"] }
rollback:
  on: [health_check_failure]
"#
        .replace("HEALTH_URL", &app.url("/"))
        .replace("HEALTH_GRANT", &app.grant()),
    );
    // Excluded, it is neither dumped nor touched: the rollback works.
    p.deployhost(&["run", "pipeline.yaml"], &[("DATABASE_URL", &pg.url("postgres"))]).assert_code(1);
    assert_eq!(p.results()["rollback"]["ok"], true, "{:#}", p.results());
    assert_eq!(pg.psql("postgres", "select to_regclass('public.a') is null"), "t");

    // In scope, it cannot be dropped and recreated by `postgres`: refused
    // before anything changes, naming the table and its owner.
    p.pipeline(
        &std::fs::read_to_string(p.path().join("pipeline.yaml")).unwrap().replace(", exclude_schemas: [billing]", ""),
    );
    let before = pg.dump("postgres");
    let run = p.deployhost(&["run", "pipeline.yaml"], &[("DATABASE_URL", &pg.url("postgres"))]);
    run.assert_code(1);
    let restore = &p.results()["rollback"]["steps"][0];
    let summary = restore["summary"].as_str().unwrap();
    assert!(
        summary.contains("cannot run as `postgres`")
            && summary.contains("billing.invoices")
            && summary.contains("supabase_admin")
            && summary.contains("nothing was changed"),
        "{summary}"
    );
    let after = pg.dump("postgres");
    assert!(after.contains("CREATE TABLE public.a"), "the refused restore left the migrated state as it was");
    assert_ne!(after, before);
}

/// A pipeline that backs up, migrates, then restores its backup.
fn tls_project() -> Project {
    let p = Project::new();
    p.write("migrations/1_a.sql", "create table public.tls_check (id int);");
    p.pipeline(
        r#"pipeline: t
databases:
  app: { url_env: DATABASE_URL }
stages:
  - name: db
    steps:
      - name: backup
        uses: pg-backup
        with: { database: app }
        grants: { databases: [app], fs: { write: [backups] } }
      - name: migrate
        uses: supabase-migrate
        with: { database: app, dir: migrations }
        grants: { databases: [app], fs: { read: [migrations] } }
      - name: rls
        uses: rls-test
        with: { database: app, matrix: [{ as: visitor, role: anon, checks: [{ sql: "select current_user", rows: 1 }] }] }
        grants: { databases: [{ name: app, roles: [anon] }] }
      - name: restore
        uses: pg-restore
        with: { database: app, latest_in: backups }
        grants: { databases: [app], fs: { read: [backups] } }
"#,
    );
    p.mkdir("backups");
    p
}

fn tls_url(pg: &Postgres, query: &str) -> String {
    format!("postgres://postgres:{PASSWORD}@127.0.0.1:{}/postgres?{query}", pg.port)
}

#[test]
fn tls_require_encrypts_without_verifying_like_libpq() {
    let pg = Postgres::start_tls();
    let p = tls_project();
    // The server refuses plain connections...
    let plain = p.deployhost(&["run", "pipeline.yaml"], &[("DATABASE_URL", &tls_url(&pg, "sslmode=disable"))]);
    plain.assert_code(1);
    let summary = p.step("backup")["summary"].as_str().unwrap().to_string();
    assert!(summary.contains("sslmode=disable") && summary.contains("no encryption"), "{summary}");
    // ...and `require` connects to a certificate nobody here trusts.
    let run = p.deployhost(&["run", "pipeline.yaml"], &[("DATABASE_URL", &tls_url(&pg, "sslmode=require"))]);
    run.assert_code(0);
    assert_eq!(p.step("migrate")["outputs"]["applied"], "1");
}

#[test]
fn tls_verify_full_deploys_and_backs_up_with_the_projects_ca() {
    let pg = Postgres::start_tls();
    let ca = pg.tls.as_ref().unwrap().ca.display().to_string();
    let p = tls_project();
    let url = tls_url(&pg, &format!("sslmode=verify-full&sslrootcert={ca}"));
    p.deployhost(&["run", "pipeline.yaml"], &[("DATABASE_URL", &url)]).assert_code(0);
    for step in ["backup", "migrate", "rls", "restore"] {
        assert_eq!(p.step(step)["status"], "passed", "{step}: {}", p.step(step));
    }
    // The role-bound step's own login connects with the same TLS settings.
    let opened = p.audit_events("rls", "sql.open");
    assert!(opened[0]["bound_login"].as_str().is_some_and(|l| l.starts_with("deployhost_step_")), "{opened:?}");
    assert_eq!(pg.psql("postgres", "select count(*) from pg_roles where rolname like 'deployhost_step_%'"), "0");
    assert_eq!(pg.psql("postgres", "select to_regclass('public.tls_check') is null"), "t", "restored over TLS");
    // The same from the environment, as libpq reads it.
    let plain = tls_url(&pg, "");
    let run = p.deployhost(
        &["run", "pipeline.yaml"],
        &[("DATABASE_URL", plain.trim_end_matches('?')), ("PGSSLMODE", "verify-ca"), ("PGSSLROOTCERT", &ca)],
    );
    run.assert_code(0);
}

#[test]
fn tls_with_the_wrong_ca_is_refused_naming_mode_and_certificate_never_the_password() {
    let pg = Postgres::start_tls();
    let wrong = pg.tls.as_ref().unwrap().wrong_ca.display().to_string();
    let p = tls_project();
    let url = tls_url(&pg, &format!("sslmode=verify-full&sslrootcert={wrong}"));
    let run = p.deployhost(&["run", "pipeline.yaml"], &[("DATABASE_URL", &url)]);
    run.assert_code(1);
    let summary = p.step("backup")["summary"].as_str().unwrap().to_string();
    assert!(
        summary.contains("sslmode=verify-full") && summary.contains(&wrong) && summary.contains("not signed by"),
        "{summary}"
    );
    let everything = format!("{}{}", run.all_output(), p.run_files_text());
    assert!(!everything.contains(PASSWORD), "the password leaked:\n{everything}");
    assert_eq!(pg.psql("postgres", "select to_regclass('public.tls_check') is null"), "t", "nothing ran");
}

#[test]
fn the_state_store_speaks_tls_too() {
    let pg = Postgres::start_tls();
    let ca = pg.tls.as_ref().unwrap().ca.display().to_string();
    let wrong = pg.tls.as_ref().unwrap().wrong_ca.display().to_string();
    let server = Server::fixed(Response::ok("ok"));
    let p = Project::new();
    p.pipeline(&format!(
        "pipeline: s\nstages:\n  - name: h\n    steps:\n      - name: probe\n        uses: health-probe\n        with: {{ url: \"{}\" }}\n        grants: {{ net: [\"{}\"] }}\n",
        server.url("/"),
        server.grant()
    ));
    let state = tls_url(&pg, &format!("sslmode=verify-full&sslrootcert={ca}"));
    // A password on the command line is refused: every process could read it.
    let argv = p.deployhost(&["history", "--state", &state], &[]);
    argv.assert_code(2);
    assert!(argv.stderr.contains("DEPLOYHOST_STATE") && !argv.stderr.contains(PASSWORD), "{}", argv.stderr);
    p.deployhost(&["run", "pipeline.yaml"], &[("DEPLOYHOST_STATE", &state)]).assert_code(0);
    let history = p.deployhost(&["history", "--json"], &[("DEPLOYHOST_STATE", &state)]);
    history.assert_code(0);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&history.stdout).unwrap()[0]["status"], "passed");

    let wrong_url = tls_url(&pg, &format!("sslmode=verify-full&sslrootcert={wrong}"));
    let refused = p.deployhost(&["history"], &[("DEPLOYHOST_STATE", &wrong_url)]);
    assert_ne!(refused.code, 0);
    assert!(refused.stderr.contains("not signed by") && refused.stderr.contains(&wrong), "{}", refused.stderr);
    assert!(!refused.all_output().contains(PASSWORD));
}

#[test]
fn a_transaction_pooler_url_is_refused_with_the_way_out() {
    let p = tls_project();
    let url = format!("postgres://postgres.abcdefgh:{PASSWORD}@aws-0-eu-west-1.pooler.supabase.com:6543/postgres");
    let run = p.deployhost(&["run", "pipeline.yaml"], &[("DATABASE_URL", &url)]);
    run.assert_code(2);
    assert!(run.stderr.contains("transaction-mode pooler") && run.stderr.contains("session pooler"), "{}", run.stderr);
    assert!(!run.all_output().contains(PASSWORD));
}
