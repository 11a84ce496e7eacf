//! The rollback undoes the deploy's change ledger, and nothing else: on a
//! Supabase-shaped database, as the non-superuser deploy role `postgres`,
//! with a live writer inserting rows the whole time and the platform's own
//! roles changing their schemas while the deploy runs.

use crate::support::Project;
use crate::support::http::{Response, Server};
use crate::support::pg::{LiveWriter, Postgres, Psql};

/// Backup, migrations, then a health check that fails (unless `healthy`):
/// the rollback runs.
fn pipeline(app: &Server) -> String {
    pipeline_checked_by(&format!(
        "      - name: probe\n        uses: health-probe\n        with: {{ url: \"{}\", timeout: 20s }}\n        \
         grants: {{ net: [\"{}\"] }}\n",
        app.url("/health"),
        app.grant()
    ))
}

/// Backup, migrate, then `check` (a step) in stage `health`; a failed
/// check rolls the deploy back.
fn pipeline_checked_by(check: &str) -> String {
    format!(
        "pipeline: notes\nenvironment: staging\nversion: \"2\"\ndatabases:\n  app: {{ url_env: DATABASE_URL }}\n\
         stages:\n  - name: schema\n    steps:\n      - name: backup\n        uses: pg-backup\n        \
         with: {{ database: app }}\n        grants: {{ databases: [app], fs: {{ write: [backups] }} }}\n      \
         - name: migrate\n        uses: supabase-migrate\n        with: {{ database: app, dir: migrations }}\n        \
         grants: {{ databases: [app], fs: {{ read: [migrations] }} }}\n  - name: health\n    steps:\n{check}\
         rollback:\n  on: [health_check_failure]\n"
    )
}

fn run(p: &Project, pg: &Postgres) -> crate::support::Run {
    p.deployhost(&["run", "pipeline.yaml"], &[("DATABASE_URL", &pg.url("postgres"))])
}

/// The lines of the app's schema that differ, for a readable failure.
fn assert_same_schema(now: &str, before: &str) {
    let (n, b): (Vec<&str>, Vec<&str>) = (now.lines().collect(), before.lines().collect());
    let gone: Vec<&&str> = b.iter().filter(|l| !n.contains(l)).collect();
    let new: Vec<&&str> = n.iter().filter(|l| !b.contains(l)).collect();
    assert!(now == before, "the schema differs from before the deploy\nmissing: {gone:#?}\nextra: {new:#?}");
}

fn q(pg: &Postgres, sql: &str) -> String {
    pg.admin_in("postgres", sql)
}

const V1: &str = "create table notes (id bigserial primary key, title text not null, body text);
create table orders (id bigserial primary key, item text not null, status text not null default 'new');
create table audit_log (id bigserial primary key, what text);
insert into notes (title, body) values ('a', 'alpha'), ('b', 'beta'), ('c', 'gamma');
insert into orders (item) values ('one'), ('two'), ('three'), ('four');
insert into audit_log (what) values ('created');";

/// What the platform's Storage service does to itself while the deploy
/// runs: its own migration adding guards against direct deletes.
const STORAGE_UPGRADE: &str = "set role supabase_storage_admin;
create function storage.protect_delete() returns trigger language plpgsql as $$
begin
  if current_setting('storage.allow_delete_query', true) is distinct from 'true' then
    raise exception 'Direct deletion from storage tables is not allowed. Use the Storage API instead.'
      using hint = 'This prevents accidental data loss from orphaned objects.', errcode = '42501';
  end if;
  return null;
end $$;
create trigger protect_buckets_delete before delete on storage.buckets
  for each statement execute function storage.protect_delete();
create trigger protect_objects_delete before delete on storage.objects
  for each statement execute function storage.protect_delete();";

/// A per-role check fails after the migration (V2 grants `anon` the notes
/// it must not read): the rls-test step runs as a login bound to `anon`,
/// the deploy is rolled back while a live writer inserts orders, and every
/// row it wrote is kept, the schema and grants are as before, and the
/// step's login is gone.
#[test]
fn a_failed_per_role_check_rolls_back_the_deploy_and_keeps_every_row_written_meanwhile() {
    let pg = Postgres::start();
    pg.psql("postgres", V1);
    let schema_before = pg.app_schema("postgres");
    let p = Project::new();
    p.write("migrations/20240102000000_v2.sql", V2);
    p.pipeline(&pipeline_checked_by(
        "      - name: rls\n        uses: rls-test\n        with: { database: app, matrix: [{ as: visitor, role: anon, \
         checks: [{ name: notes are private, sql: select * from notes, denied: true }] }] }\n        \
         grants: { databases: [{ name: app, roles: [anon] }] }\n",
    ));
    let writer = LiveWriter::start(pg.client("postgres"), "insert into orders (item) values ('live') returning id");
    let out = run(&p, &pg);
    let written = writer.stop();
    out.assert_code(1);
    let rls = p.step("rls");
    assert_eq!(rls["status"], "failed", "{rls:#}");
    let summary = rls["summary"].as_str().unwrap();
    assert!(summary.contains("`notes are private` expected denied, got 3 row(s)"), "{summary}");
    let opened = p.audit_events("rls", "sql.open");
    assert!(opened[0]["bound_login"].as_str().is_some_and(|l| l.starts_with("deployhost_step_")), "{opened:?}");
    assert_eq!(p.results()["rollback"]["ok"], true, "{}", out.stdout);

    assert!(!written.is_empty(), "the live writer wrote nothing");
    let ids = q(&pg, "select string_agg(id::text, ',') from orders where item = 'live'");
    let ids: Vec<&str> = ids.split(',').collect();
    for id in &written {
        assert!(ids.contains(&id.as_str()), "row {id} the live writer committed is gone");
    }
    assert_same_schema(&pg.app_schema("postgres"), &schema_before);
    assert_eq!(q(&pg, "select has_table_privilege('anon', 'notes', 'select')"), "f");
    assert_eq!(q(&pg, "select count(*) from pg_roles where rolname like 'deployhost_step_%'"), "0");
}

const V2: &str = "alter default privileges revoke execute on functions from public;
alter table notes add column color text;
create index notes_color on notes (color);
create table tags (id bigint primary key, name text not null);
grant select on notes to anon;
create table profiles (id uuid primary key, email text);
create function public.handle_new_user() returns trigger language plpgsql security definer set search_path = public as $$
begin
  insert into public.profiles (id, email) values (new.id, new.email);
  return new;
end $$;
create trigger on_auth_user_created after insert on auth.users for each row execute function public.handle_new_user();
insert into storage.buckets (id, name) values ('docs', 'docs');
create policy \"docs read\" on storage.objects for select using (bucket_id = 'docs');
create policy \"docs insert\" on storage.objects for insert with check (bucket_id = 'docs');
create policy \"docs update\" on storage.objects for update using (bucket_id = 'docs');
create policy \"docs delete\" on storage.objects for delete using (bucket_id = 'docs');";

fn default_privileges(pg: &Postgres) -> String {
    q(
        pg,
        "select coalesce(string_agg(defaclrole::regrole || ':' || defaclnamespace || ':' || defaclobjtype::text || ':' || defaclacl::text, ' ' order by 1), '') from pg_default_acl",
    )
}

fn storage_policies(pg: &Postgres) -> String {
    q(
        pg,
        "select coalesce(string_agg(polname, ',' order by polname), '') from pg_policy where polrelid = 'storage.objects'::regclass",
    )
}

#[test]
fn a_rolled_back_deploy_keeps_every_row_users_wrote_and_what_the_platform_did() {
    let pg = Postgres::start();
    pg.psql("postgres", V1);
    let schema_before = pg.app_schema("postgres");
    let privileges_before = default_privileges(&pg);
    let policies_before = storage_policies(&pg);
    let p = Project::new();
    p.write("migrations/20240102000000_v2.sql", V2);

    // While the health check runs: the app writes to every table, a user
    // signs up, and Storage upgrades itself. Then the check fails.
    let db: Psql = pg.client("postgres");
    let app = Server::start(move |_, n| {
        if n == 0 {
            for sql in [
                "insert into orders (item) values ('during') returning id",
                "insert into audit_log (what) values ('during') returning id",
                "insert into notes (title, body, color) values ('during', 'written mid-deploy', 'red') returning id",
                "insert into tags (id, name) values (1, 'urgent') returning id",
            ] {
                db.app(sql).expect("the app's write");
            }
            db.platform("set role supabase_auth_admin; insert into auth.users (id, email) values ('22222222-2222-4222-8222-000000000009', 'eve@example.com')")
                .expect("a sign-up");
            db.platform(STORAGE_UPGRADE).expect("the platform's own migration");
        }
        Response::status(503)
    });
    p.pipeline(&pipeline(&app));
    let writer = LiveWriter::start(pg.client("postgres"), "insert into orders (item) values ('live') returning id");
    let out = run(&p, &pg);
    let written = writer.stop();
    out.assert_code(1);

    let results = p.results();
    let rollback = &results["rollback"];
    assert_eq!(rollback["ok"], true, "{}", out.stdout);
    let revert = &rollback["steps"][0];
    assert_eq!(revert["step"], "revert-app");
    assert_eq!(revert["status"], "passed", "{}", revert["summary"]);

    // Every row written during the deploy is there.
    assert!(!written.is_empty(), "the live writer wrote nothing");
    let ids = q(&pg, "select string_agg(id::text, ',') from orders where item = 'live'");
    let ids: Vec<&str> = ids.split(',').collect();
    for id in &written {
        assert!(ids.contains(&id.as_str()), "row {id} the live writer committed is gone");
    }
    assert_eq!(q(&pg, "select count(*) from orders where item in ('one', 'two', 'three', 'four', 'during')"), "5");
    assert_eq!(q(&pg, "select count(*) from audit_log"), "2");
    assert_eq!(
        q(&pg, "select string_agg(title || ':' || body, ',' order by id) from notes"),
        "a:alpha,b:beta,c:gamma,during:written mid-deploy"
    );

    // The schema is what it was; database-wide default privileges too.
    assert_same_schema(&pg.app_schema("postgres"), &schema_before);
    assert_eq!(default_privileges(&pg), privileges_before);
    assert_eq!(q(&pg, "select to_regclass('public.tags') is null and to_regclass('public.profiles') is null"), "t");
    assert_eq!(
        q(&pg, "select count(*) from pg_trigger where tgrelid = 'auth.users'::regclass and not tgisinternal"),
        "0"
    );
    assert_eq!(storage_policies(&pg), policies_before);

    // What the platform did meanwhile is untouched.
    assert_eq!(
        q(&pg, "select string_agg(tgname, ',' order by tgname) from pg_trigger where tgname like 'protect_%'"),
        "protect_buckets_delete,protect_objects_delete"
    );
    assert_eq!(q(&pg, "select count(*) from auth.users where email = 'eve@example.com'"), "1");

    // The platform refuses the bucket row's removal: named, with the SQL.
    let summary = revert["summary"].as_str().unwrap();
    assert!(
        summary.contains("storage.buckets") && summary.contains("run it by hand: DELETE FROM storage.buckets"),
        "{summary}"
    );
    assert_eq!(q(&pg, "select count(*) from storage.buckets where id = 'docs'"), "1");
    let log = std::fs::read_to_string(p.last_run_dir().join("logs/revert-app.log")).unwrap();
    assert!(log.contains("user eve@example.com signed up during the deploy"), "{log}");
    assert!(log.contains("1 row(s) written since into table public.tags"), "{log}");
    assert!(log.contains("1 value(s) written since into column public.notes.color are dropped with it"), "{log}");
    assert!(log.contains("default privileges put back"), "{log}");
    let events: Vec<String> = p.audit().iter().map(|e| e["event"].as_str().unwrap().to_string()).collect();
    assert!(events.contains(&"sql.ledger".into()) && events.contains(&"sql.revert".into()), "{events:?}");
    // The report names what the rollback did, line by line.
    let id = p.last_run_dir().file_name().unwrap().to_string_lossy().into_owned();
    let report = p.deployhost(&["report", &id, "--format", "markdown"], &[]);
    assert!(report.stdout.contains("user eve@example.com signed up during the deploy"), "{}", report.stdout);
    assert!(report.stdout.contains("dropped table(s) public.profiles, public.tags"), "{}", report.stdout);
    assert!(!events.contains(&"sql.restore".into()));
}

#[test]
fn a_bucket_the_migration_inserted_is_removed_and_the_same_migration_deploys_again() {
    let pg = Postgres::start();
    let p = Project::new();
    p.write(
        "migrations/20240102000000_buckets.sql",
        "insert into storage.buckets (id, name, public) values ('reports', 'reports', false);
create policy \"reports read\" on storage.objects for select to authenticated using (bucket_id = 'reports');
create policy \"reports write\" on storage.objects for insert to authenticated with check (bucket_id = 'reports');",
    );
    let before = pg.dump("postgres");
    let app = Server::start(|_, n| if n == 0 { Response::status(503) } else { Response::ok("ok") });
    p.pipeline(&pipeline(&app));
    run(&p, &pg).assert_code(1);
    let revert = &p.results()["rollback"]["steps"][0];
    assert_eq!(revert["status"], "passed", "{}", revert["summary"]);
    assert_eq!(pg.dump("postgres"), before, "bucket, policies and history gone: the database is as before");

    let again = run(&p, &pg);
    again.assert_code(0);
    assert_eq!(q(&pg, "select count(*) from storage.buckets where id = 'reports'"), "1");
}

#[test]
fn dropped_columns_and_tables_come_back_with_their_data_and_the_rows_written_since() {
    let pg = Postgres::start();
    pg.psql(
        "postgres",
        &format!(
            "{V1}\ncreate table archive (id int primary key, payload jsonb not null);
             insert into archive values (1, '{{\"a\": 1}}'), (2, '{{\"b\": [2]}}');
             update orders set status = 'pending' where item = 'one';"
        ),
    );
    let schema_before = pg.app_schema("postgres");
    let p = Project::new();
    p.write(
        "migrations/20240102000000_drop.sql",
        "alter table notes drop column body;\nalter table orders alter column status type varchar(3) using left(status, 3);\ndrop table archive;",
    );
    let app = Server::fixed(Response::status(503));
    p.pipeline(&pipeline(&app));
    let writer = LiveWriter::start(pg.client("postgres"), "insert into notes (title) values ('live') returning id");
    let out = run(&p, &pg);
    let written = writer.stop();
    out.assert_code(1);
    assert_eq!(p.step("migrate")["status"], "passed", "{}", out.stdout);
    let revert = &p.results()["rollback"]["steps"][0];
    assert_eq!(revert["status"], "passed", "{}", revert["summary"]);

    assert_same_schema(&pg.app_schema("postgres"), &schema_before);
    assert_eq!(
        q(&pg, "select string_agg(title || ':' || body, ',' order by id) from notes where title <> 'live'"),
        "a:alpha,b:beta,c:gamma"
    );
    let live = q(&pg, "select count(*) from notes where title = 'live' and body is null");
    assert_eq!(live, written.len().to_string(), "every row written meanwhile is there");
    assert_eq!(
        q(&pg, "select string_agg(status, ',' order by id) from orders"),
        "pending,new,new,new",
        "the value the narrowing cast cut short comes back from the copy"
    );
    assert_eq!(
        q(&pg, "select string_agg(id || '=' || payload::text, ' ' order by id) from archive"),
        "1={\"a\": 1} 2={\"b\": [2]}"
    );
    let log = std::fs::read_to_string(p.last_run_dir().join("logs/revert-app.log")).unwrap();
    assert!(log.contains("brought back 2 row(s) of public.archive from the ledger's copy"), "{log}");
    assert!(log.contains("brought back 3 value(s) of public.notes.body"), "{log}");
}

#[test]
fn rows_a_migration_updated_or_deleted_come_back_unless_a_user_changed_them_since() {
    let pg = Postgres::start();
    pg.psql("postgres", V1);
    let p = Project::new();
    p.write(
        "migrations/20240102000000_data.sql",
        "update orders set status = 'legacy';\ndelete from orders where item = 'four';\ninsert into orders (item, status) values ('seeded', 'new');",
    );
    let db = pg.client("postgres");
    let app = Server::start(move |_, n| {
        if n == 0 {
            db.app("update orders set status = 'paid' where item = 'two'").expect("the user's update");
        }
        Response::status(503)
    });
    p.pipeline(&pipeline(&app));
    let out = run(&p, &pg);
    out.assert_code(1);
    assert_eq!(p.step("migrate")["status"], "passed", "{}", out.stdout);
    let revert = &p.results()["rollback"]["steps"][0];
    assert_eq!(revert["status"], "passed", "{}", revert["summary"]);
    assert_eq!(
        q(&pg, "select string_agg(item || '=' || status, ',' order by id) from orders"),
        "one=new,two=paid,three=new,four=new",
        "the migration's update and delete undone, the user's update kept, its insert removed"
    );
}

fn preflight_pipeline(environments: &str) -> String {
    format!(
        "pipeline: notes\nenvironment: staging\nversion: \"2\"\ndatabases:\n  app: {{ url_env: DATABASE_URL }}\n\
         environments:\n{environments}stages:\n  - name: pre-flight\n    steps:\n      - name: migrations-apply\n        \
         uses: supabase-migrate\n        with: {{ database: app, dir: migrations, dry_run: true }}\n        \
         grants: {{ databases: [app], fs: {{ read: [migrations] }} }}\n"
    )
}

#[test]
fn what_the_rollback_cannot_undo_is_named_before_it_runs_and_a_lossless_environment_refuses_it() {
    let pg = Postgres::start();
    pg.psql("postgres", &format!("{V1}\ncreate type mood as enum ('ok');"));
    let p = Project::new();
    p.write("migrations/20240102000000_enum.sql", "-- a new mood\nalter type mood add value 'meh';");
    p.write("migrations/20240103000000_drop.sql", "create table t (id int);\n\nalter table notes drop column body;");
    let schema = pg.app_schema("postgres");
    let env = [("DATABASE_URL", pg.url("postgres"))];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();

    // Known before the deploy: the pre-flight names each statement, its
    // class and its line.
    p.pipeline(&preflight_pipeline("  staging: {}\n"));
    p.deployhost(&["run", "pipeline.yaml"], &env).assert_code(0);
    let summary = p.step("migrations-apply")["summary"].as_str().unwrap().to_string();
    assert!(summary.contains("2 statement(s) the rollback cannot undo with nothing lost"), "{summary}");
    assert!(summary.contains("20240102000000_enum.sql:2: not reversible: ALTER TYPE … ADD VALUE"), "{summary}");
    assert!(summary.contains("20240103000000_drop.sql:3: reversible with data the ledger copies"), "{summary}");

    // `rollback: lossless` refuses them before anything runs.
    p.pipeline(&preflight_pipeline("  staging:\n    rollback: lossless\n"));
    let refused = p.deployhost(&["run", "pipeline.yaml"], &env);
    refused.assert_code(1);
    let summary = p.step("migrations-apply")["summary"].as_str().unwrap().to_string();
    assert!(
        summary.contains("environment `staging` requires `rollback: lossless`, and 20240102000000_enum.sql is not"),
        "{summary}"
    );
    assert!(summary.contains("accept_lossy") && summary.contains("nothing was applied"), "{summary}");
    assert_same_schema(&pg.app_schema("postgres"), &schema);
    assert_eq!(p.audit_events("migrations-apply", "sql.denied")[0]["op"], "rollback: lossless");

    // Accepting one needs a reason and an approval.
    p.pipeline(&preflight_pipeline(
        "  staging:\n    rollback: lossless\n    accept_lossy: [{ migration: 20240102000000_enum.sql, reason: \"\" }]\n",
    ));
    let invalid = p.deployhost(&["validate", "pipeline.yaml"], &env);
    invalid.assert_code(2);
    let text = invalid.all_output();
    assert!(text.contains("environments.staging.accept_lossy") && text.contains("require_approval: true"), "{text}");
    assert!(text.contains("say why 20240102000000_enum.sql may lose data on rollback"), "{text}");
}

/// Killed after the ledger entry is written, before the migration's
/// commit; then killed again in the middle of undoing it: `rollback RUN`
/// ends with the database as before, nothing undone twice.
#[test]
fn killed_mid_ledger_and_mid_revert_the_rollback_loses_nothing() {
    let pg = Postgres::start();
    pg.psql("postgres", V1);
    let schema = pg.app_schema("postgres");
    let p = Project::new();
    p.write("migrations/20240102000000_a.sql", "create table a (id int);");
    p.write("migrations/20240103000000_b.sql", "alter table notes add column color text;");
    let app = Server::fixed(Response::status(503));
    p.pipeline(&pipeline(&app));
    let url = pg.url("postgres");
    // The second recorded transaction: the first migration (the first is
    // the history table's creation).
    let killed = p.deployhost(
        &["run", "pipeline.yaml"],
        &[("DATABASE_URL", &url), ("DEPLOYHOST_FAILPOINT", "ledger-before-commit:2")],
    );
    assert_ne!(killed.code, 0);
    assert!(killed.stderr.contains("failpoint ledger-before-commit:2"), "{}", killed.stderr);
    // The history table's entry committed; the first migration's did not.
    assert_eq!(
        q(
            &pg,
            "select to_regclass('public.a') is null and to_regclass('supabase_migrations.schema_migrations') is not null"
        ),
        "t"
    );
    let id = p.last_run_dir().file_name().unwrap().to_string_lossy().into_owned();

    let rollback = p.deployhost(&["rollback", &id], &[("DATABASE_URL", &url)]);
    rollback.assert_code(0);
    let log = std::fs::read_to_string(p.last_run_dir().join("logs/revert-app.log")).unwrap();
    assert!(log.contains("20240102000000_a.sql never committed: nothing to undo"), "{log}");
    assert_same_schema(&pg.app_schema("postgres"), &schema);

    // A deploy that migrates, then dies while its rollback undoes it.
    let p = Project::new();
    p.write("migrations/20240102000000_a.sql", "create table a (id int);");
    p.write("migrations/20240103000000_b.sql", "alter table notes add column color text;");
    p.pipeline(&pipeline(&app));
    let killed = p.deployhost(
        &["run", "pipeline.yaml"],
        &[("DATABASE_URL", &url), ("DEPLOYHOST_FAILPOINT", "ledger-revert-before-commit")],
    );
    assert_ne!(killed.code, 0);
    assert!(killed.stderr.contains("failpoint ledger-revert-before-commit"), "{}", killed.stderr);
    assert_eq!(q(&pg, "select to_regclass('public.a') is not null"), "t", "the revert's transaction never committed");
    let id = p.last_run_dir().file_name().unwrap().to_string_lossy().into_owned();
    p.deployhost(&["rollback", &id], &[("DATABASE_URL", &url)]).assert_code(0);
    assert_same_schema(&pg.app_schema("postgres"), &schema);
    assert_eq!(q(&pg, "select count(*) from notes"), "3");
    // Rolled back once: never undone twice.
    let again = p.deployhost(&["rollback", &id], &[("DATABASE_URL", &url)]);
    assert_ne!(again.code, 0);
    assert!(again.all_output().contains("is rolled-back"), "{}", again.all_output());
    assert_same_schema(&pg.app_schema("postgres"), &schema);
}

/// `data: changes`: the schema, and the rows of the tables the pending
/// migrations can drop or rewrite; such a backup is never restored over
/// the database (it would empty every other table).
#[test]
fn the_backup_holds_the_rows_only_of_what_the_pending_migrations_can_destroy() {
    let pg = Postgres::start();
    pg.psql("postgres", &format!("{V1}\ncreate table events (id bigint primary key, payload text);\ninsert into events select g, repeat('x', 200) from generate_series(1, 20000) g;"));
    let p = Project::new();
    p.write("migrations/20240101000000_old.sql", "delete from events;");
    p.mkdir("backups");
    p.write(
        "migrations/20240102000000_notes.sql",
        "alter table notes drop column body;\nupdate orders set status = 'x';",
    );
    pg.psql(
        "postgres",
        "create schema supabase_migrations; create table supabase_migrations.schema_migrations (version text primary key, statements text[], name text);
         insert into supabase_migrations.schema_migrations (version, name) values ('20240101000000', 'old');",
    );
    p.pipeline(
        "pipeline: notes\ndatabases:\n  app: { url_env: DATABASE_URL }\nstages:\n  - name: backup\n    steps:\n      \
         - name: backup\n        uses: pg-backup\n        with: { database: app, name: small.dump, data: changes, migrations: migrations }\n        \
         grants: { databases: [app], fs: { read: [migrations], write: [backups] } }\n      \
         - name: full\n        uses: pg-backup\n        with: { database: app, name: full.dump }\n        \
         grants: { databases: [app], fs: { write: [backups] } }\n      \
         - name: restore\n        uses: pg-restore\n        with: { database: app, from: backups/small.dump }\n        \
         grants: { databases: [app], fs: { read: [backups] } }\n        blocking: false\n",
    );
    p.deployhost(&["run", "pipeline.yaml"], &[("DATABASE_URL", &pg.url("postgres"))]).assert_code(0);
    let dump = &p.audit_events("backup", "sql.dump")[0];
    assert_eq!(dump["data_tables"], serde_json::json!(["public.notes", "public.orders"]), "{dump}");
    let size = |step: &str| p.audit_events(step, "sql.dump")[0]["bytes"].as_u64().unwrap();
    let (small, full) = (size("backup"), size("full"));
    assert!(
        small > 0 && small * 4 < full,
        "the changes backup ({small} bytes) is not well under the full one ({full} bytes)"
    );
    let restore = p.step("restore");
    assert_eq!(restore["status"], "failed");
    assert!(
        restore["summary"].as_str().unwrap().contains("holds the schema and the rows of 2 table(s) only"),
        "{restore}"
    );
    assert_eq!(q(&pg, "select count(*) from events"), "20000", "nothing was restored over the database");

    // A migration whose rollback would restore that backup is refused.
    p.pipeline(
        "pipeline: notes\ndatabases:\n  app: { url_env: DATABASE_URL }\nstages:\n  - name: db\n    steps:\n      \
         - name: backup\n        uses: pg-backup\n        with: { database: app, data: changes, migrations: migrations }\n        \
         grants: { databases: [app], fs: { read: [migrations], write: [backups] } }\n      \
         - name: migrate\n        uses: supabase-migrate\n        with: { database: app, dir: migrations, ledger: false }\n        \
         grants: { databases: [app], fs: { read: [migrations] } }\n",
    );
    let invalid = p.deployhost(&["validate", "pipeline.yaml"], &[("DATABASE_URL", &pg.url("postgres"))]);
    invalid.assert_code(2);
    assert!(
        invalid.all_output().contains("stages[0].steps[1].with.ledger") && invalid.all_output().contains("data: all"),
        "{}",
        invalid.all_output()
    );
}

/// The previous rollback, kept for `ledger: false`: it restores the full
/// backup, and says what that loses, table by table.
#[test]
fn restoring_a_backup_names_the_rows_written_since_that_it_loses() {
    let pg = Postgres::start();
    pg.psql("postgres", V1);
    let p = Project::new();
    p.write("migrations/20240102000000_v2.sql", "alter table notes add column color text;");
    let db = pg.client("postgres");
    let app = Server::start(move |_, n| {
        if n == 0 {
            db.app("insert into orders (item) values ('during'), ('during')").expect("the app's write");
            db.app("insert into audit_log (what) values ('during')").expect("the app's write");
        }
        Response::status(503)
    });
    p.pipeline(&pipeline(&app).replace("dir: migrations }", "dir: migrations, ledger: false }"));
    run(&p, &pg).assert_code(1);
    let restore = &p.results()["rollback"]["steps"][0];
    assert_eq!(restore["step"], "restore-app");
    let summary = restore["summary"].as_str().unwrap();
    assert!(
        summary.contains("3 row(s) written since the backup are lost: public.audit_log 1, public.orders 2"),
        "{summary}"
    );
    assert_eq!(q(&pg, "select count(*) from orders where item = 'during'"), "0", "as it says: lost");
}
