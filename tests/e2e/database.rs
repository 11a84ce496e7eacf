//! Supabase/PostgreSQL stages against a real PostgreSQL started per test.

use crate::support::http::{Response, Server};
use crate::support::pg::{PASSWORD, Postgres};
use crate::support::{Project, Run};
use std::time::Duration;

/// A Supabase-shaped server (deploys connect as `postgres`, not a
/// superuser), and the example pipelines copied into a project folder.
fn example() -> (Postgres, Project) {
    let pg = Postgres::start();
    let p = Project::new();
    p.with_example_pipelines();
    (pg, p)
}

/// The demo service the pipeline's health checks probe.
fn service() -> Server {
    Server::fixed(Response::ok("{\"status\":\"ok\"}"))
}

fn run(p: &Project, pg: &Postgres, app: &Server, file: &str) -> Run {
    let port = app.port.to_string();
    p.deployhost(&["run", file], &[("DATABASE_URL", &pg.url("postgres")), ("DEMO_PORT", &port)])
}

fn history(pg: &Postgres) -> Vec<String> {
    let out = pg.psql("postgres", "select version from supabase_migrations.schema_migrations order by version");
    out.lines().map(str::to_string).collect()
}

#[test]
fn demo_pipeline_deploys_the_example_project_then_restores_the_backup() {
    let (pg, p) = example();
    let app = service();
    let before = pg.dump("postgres");

    let deploy = run(&p, &pg, &app, "pipelines/demo.yaml");
    deploy.assert_code(0);
    for step in [
        "service-up",
        "migrations-apply",
        "backup",
        "migrate",
        "verify",
        "stored-procedures",
        "rls-matrix",
        "error-rate",
    ] {
        assert_eq!(p.step(step)["status"], "passed", "{step}: {}", p.step(step));
    }
    assert!(p.step("migrations-apply")["summary"].as_str().unwrap().contains("3 pending migration(s) apply cleanly"));
    assert_eq!(p.step("migrate")["outputs"]["applied"], "20240101000100,20240101000200,20240101000300");
    assert_eq!(history(&pg), ["20240101000100", "20240101000200", "20240101000300"]);
    let statements = pg.psql("postgres", "select array_length(statements, 1) from supabase_migrations.schema_migrations where version = '20240101000200'");
    assert_eq!(statements, "6", "the history keeps each file's statements, as the Supabase CLI does");
    assert!(
        p.step("rls-matrix")["summary"].as_str().unwrap().contains("13/13 RLS checks passed"),
        "{}",
        p.step("rls-matrix")
    );
    assert_eq!(
        pg.psql("postgres", "select count(*) from expenses where status = 'pending'"),
        "3",
        "RLS checks are rolled back"
    );

    let backup = p.step("backup");
    let path = p.path().join("pipelines").join(backup["outputs"]["path"].as_str().unwrap());
    assert!(path.exists(), "backup file {} exists", path.display());
    assert_eq!(backup["outputs"]["sha256"].as_str().unwrap(), crate::support::sha256(&std::fs::read(&path).unwrap()));

    // Every statement is audited, the connection URL and password never.
    let sql = p.audit_events("migrate", "sql");
    assert!(sql.iter().any(|e| { e["statement"].as_str().unwrap().contains("create table public.employees") }));
    assert!(sql.iter().all(|e| e["database"] == "app" && e["ms"].is_number()));
    let everything = format!("{}{}", deploy.all_output(), p.run_files_text());
    assert!(!everything.contains(PASSWORD), "the database password leaked");

    // The report ticks the checklists from what the run did.
    let run_id = p.results()["run_id"].as_str().unwrap().to_string();
    let report = p.deployhost(&["report", &run_id], &[]);
    report.assert_code(0);
    for line in [
        "- [x] Database backed up",
        "- [x] Migrations tested before applying (dry run)",
        "- [x] Migrations applied",
        "- [x] Schema verified",
        "- [x] RLS policies tested per role",
        "- [x] Health checks passing",
        "- [x] No rollback",
        "- [ ] Approval recorded",
        "- migration 20240101000200",
    ] {
        assert!(report.stdout.contains(line), "report lacks {line:?}:\n{}", report.stdout);
    }
    let json: serde_json::Value =
        serde_json::from_str(&p.deployhost(&["report", &run_id, "--format", "json"], &[]).stdout).unwrap();
    assert_eq!(json["migrations_applied"].as_array().unwrap().len(), 3);
    assert_eq!(json["post_deployment"][0]["done"], true);

    // Restore: the database equals what it was before the deploy.
    run(&p, &pg, &app, "pipelines/supabase-restore.yaml").assert_code(0);
    assert_eq!(pg.dump("postgres"), before, "the restored database equals the original");

    // A backup that changed since it was taken is never restored.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.push(b'x');
    std::fs::write(&path, bytes).unwrap();
    let tampered = run(&p, &pg, &app, "pipelines/supabase-restore.yaml");
    tampered.assert_code(1);
    assert!(
        p.step("restore")["summary"].as_str().unwrap().contains("changed since it was taken"),
        "{}",
        p.step("restore")
    );
    assert_eq!(pg.dump("postgres"), before, "a refused restore changes nothing");

    // Deploying again applies everything again; then there is nothing to do.
    run(&p, &pg, &app, "pipelines/demo.yaml").assert_code(0);
    assert_eq!(p.step("migrate")["outputs"]["applied"], "20240101000100,20240101000200,20240101000300");
    run(&p, &pg, &app, "pipelines/demo.yaml").assert_code(0);
    assert!(p.step("migrate")["summary"].as_str().unwrap().starts_with("up to date"));
}

/// A project with its own migrations folder and a backup-then-migrate pipeline.
fn migrations_project(pg: &Postgres, files: &[(&str, &str)], with: &str) -> Project {
    let p = Project::new();
    for (name, sql) in files {
        p.write(&format!("migrations/{name}"), sql);
    }
    p.pipeline(&format!(
        "pipeline: m\ndatabases:\n  app: {{ url_env: DATABASE_URL }}\nstages:\n  - name: schema\n    steps:\n      - name: backup\n        uses: pg-backup\n        with: {{ database: app }}\n        grants: {{ databases: [app], fs: {{ write: [backups] }} }}\n      - name: migrate\n        uses: supabase-migrate\n        with: {{ database: app, dir: migrations{with} }}\n        grants: {{ databases: [app], fs: {{ read: [migrations] }} }}\n"
    ));
    let _ = pg;
    p
}

fn migrate(p: &Project, pg: &Postgres) -> Run {
    p.deployhost(&["run", "pipeline.yaml"], &[("DATABASE_URL", &pg.url("postgres"))])
}

#[test]
fn failing_migration_leaves_database_and_history_as_before() {
    let pg = Postgres::start();
    let p = migrations_project(&pg, &[("1_a.sql", "create table a (id int);")], "");
    migrate(&p, &pg).assert_code(0);
    let before = pg.dump("postgres");
    p.write("migrations/2_b.sql", "create table b (id int);\ninsert into a values (1);\ncreate tabel c (id int);\n");
    let failed = migrate(&p, &pg);
    failed.assert_code(1);
    let summary = p.step("migrate")["summary"].as_str().unwrap().to_string();
    assert!(
        summary.contains("2_b.sql failed") && summary.contains("42601") && summary.contains("nothing was applied"),
        "{summary}"
    );
    assert_eq!(pg.dump("postgres"), before, "the failed migration changed nothing");
    assert_eq!(history(&pg), ["1"]);
}

#[test]
fn history_guards_refuse_unsafe_migrations() {
    let pg = Postgres::start();
    let p = migrations_project(
        &pg,
        &[("10_a.sql", "create table a (id int);"), ("20_b.sql", "create table b (id int);")],
        "",
    );
    migrate(&p, &pg).assert_code(0);

    // An applied file was edited.
    p.write("migrations/10_a.sql", "create table a (id bigint);");
    migrate(&p, &pg).assert_code(1);
    assert!(p.step("migrate")["summary"].as_str().unwrap().contains("10_a.sql changed after they were applied"));
    p.write("migrations/10_a.sql", "create table a (id int);");

    // A new file older than the last applied one.
    p.write("migrations/15_late.sql", "create table late (id int);");
    migrate(&p, &pg).assert_code(1);
    let summary = p.step("migrate")["summary"].as_str().unwrap().to_string();
    assert!(
        summary.contains("15_late.sql are older than the last applied version 20") && summary.contains("include_all"),
        "{summary}"
    );
    std::fs::remove_file(p.path().join("migrations/15_late.sql")).unwrap();

    // An applied version whose file is gone.
    std::fs::remove_file(p.path().join("migrations/20_b.sql")).unwrap();
    migrate(&p, &pg).assert_code(1);
    assert!(p.step("migrate")["summary"].as_str().unwrap().contains("20 have no local file"));
    assert_eq!(history(&pg), ["10", "20"], "refusals change no history");
}

#[test]
fn include_all_and_repair() {
    let pg = Postgres::start();
    let p = migrations_project(
        &pg,
        &[("10_a.sql", "create table a (id int);"), ("20_b.sql", "create table b (id int);")],
        "",
    );
    migrate(&p, &pg).assert_code(0);
    p.write("migrations/15_late.sql", "create table late (id int);");
    let p2 = migrations_project(&pg, &[], ", include_all: true");
    std::fs::remove_dir_all(p2.path().join("migrations")).ok();
    let _ = Command::new("cp").arg("-r").arg(p.path().join("migrations")).arg(p2.path()).status();
    migrate(&p2, &pg).assert_code(0);
    assert_eq!(history(&pg), ["10", "15", "20"]);

    // Repair edits history only.
    let p3 = migrations_project(&pg, &[], ", repair: { status: reverted, versions: [\"15\"] }");
    let _ = Command::new("cp").arg("-r").arg(p.path().join("migrations")).arg(p3.path()).status();
    migrate(&p3, &pg).assert_code(0);
    assert_eq!(history(&pg), ["10", "20"]);
    assert_eq!(pg.psql("postgres", "select to_regclass('public.late') is not null"), "t", "repair runs no SQL");
}

use std::process::Command;

#[test]
fn dry_run_changes_nothing() {
    let pg = Postgres::start();
    let p = migrations_project(&pg, &[("1_a.sql", "create table a (id int);")], ", dry_run: true");
    let before = pg.dump("postgres");
    migrate(&p, &pg).assert_code(0);
    assert!(p.step("migrate")["summary"].as_str().unwrap().contains("1 pending migration(s) apply cleanly"));
    assert_eq!(pg.dump("postgres"), before);
}

#[test]
fn concurrent_migrations_never_both_apply() {
    let pg = Postgres::start();
    pg.psql("postgres", "create table counter (n int)");
    let files = [("1_slow.sql", "select pg_sleep(1.5);\ninsert into counter values (1);")];
    let a = migrations_project(&pg, &files, "");
    let b = migrations_project(&pg, &files, "");
    let url = pg.url("postgres");
    let spawn = |p: &Project| {
        Command::new(crate::support::BIN)
            .args(["run", "pipeline.yaml"])
            .current_dir(p.path())
            .env("DATABASE_URL", &url)
            .output()
            .unwrap()
    };
    let (ra, rb) = std::thread::scope(|s| {
        let ha = s.spawn(|| spawn(&a));
        std::thread::sleep(Duration::from_millis(200));
        let hb = s.spawn(|| spawn(&b));
        (ha.join().unwrap(), hb.join().unwrap())
    });
    assert!(ra.status.success() && rb.status.success(), "one waits for the other; neither fails");
    assert_eq!(pg.psql("postgres", "select count(*) from counter"), "1", "the migration ran exactly once");
    assert_eq!(history(&pg), ["1"]);
    let summaries = [a.step("migrate"), b.step("migrate")].map(|s| s["summary"].as_str().unwrap().to_string());
    assert!(summaries.iter().any(|s| s.starts_with("up to date")), "{summaries:?}");
}

#[test]
fn postgres_stopping_mid_run_is_a_clear_failure() {
    let pg = Postgres::start();
    let p = migrations_project(&pg, &[("1_slow.sql", "select pg_sleep(5);\ncreate table a (id int);")], "");
    let child = Command::new(crate::support::BIN)
        .args(["run", "pipeline.yaml"])
        .current_dir(p.path())
        .env("DATABASE_URL", pg.url("postgres"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the migration is running, then take the server away.
    for _ in 0..100 {
        // The history table is there (it is made once the pending files
        // passed the lint): the next statement is the migration.
        if p.path().join(".deployhost/runs").exists()
            && p.run_files_text().contains("CREATE SCHEMA IF NOT EXISTS supabase_migrations")
        {
            std::thread::sleep(Duration::from_millis(700));
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    pg.stop();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let migrate = p.step("migrate");
    assert_eq!(migrate["status"], "failed");
    let summary = migrate["summary"].as_str().unwrap();
    assert!(summary.contains("1_slow.sql failed"), "{summary}");
}

#[test]
fn migration_without_backup_is_rejected() {
    let p = Project::new();
    p.mkdir("migrations");
    p.pipeline("pipeline: m\ndatabases:\n  app: { url_env: DATABASE_URL }\nstages:\n  - name: s\n    steps:\n      - name: migrate\n        uses: supabase-migrate\n        with: { database: app, dir: migrations }\n        grants: { databases: [app], fs: { read: [migrations] } }\n");
    let run = p.deployhost(&["validate", "pipeline.yaml"], &[]);
    run.assert_code(2);
    assert!(
        run.stderr.contains("pipeline.yaml:8:15:") && run.stderr.contains("no blocking `pg-backup` step of `app`"),
        "{}",
        run.stderr
    );
}

#[test]
fn databases_and_roles_need_grants() {
    let pg = Postgres::start();
    let p = Project::new();
    p.pipeline("pipeline: g\ndatabases:\n  app: { url_env: DATABASE_URL }\n  other: { url_env: DATABASE_URL }\nstages:\n  - name: s\n    steps:\n      - name: backup\n        uses: pg-backup\n        with: { database: app }\n        grants: { databases: [app], fs: { write: [backups] } }\n      - name: wrong-db\n        uses: schema-verify\n        blocking: false\n        with: { database: other }\n        grants: { databases: [app] }\n      - name: wrong-role\n        uses: rls-test\n        blocking: false\n        with: { database: app, matrix: [{ as: boss, role: postgres, checks: [{ sql: select 1, rows: 1 }] }] }\n        grants: { databases: [{ name: app, roles: [authenticated] }] }\n");
    p.deployhost(&["run", "pipeline.yaml"], &[("DATABASE_URL", &pg.url("postgres"))]).assert_code(0);
    let wrong_db = p.step("wrong-db");
    assert_eq!(wrong_db["status"], "failed");
    assert!(wrong_db["summary"].as_str().unwrap().contains("may not use database `other`"), "{wrong_db}");
    assert_eq!(p.audit_events("wrong-db", "sql.denied")[0]["database"], "other");
    let wrong_role = p.step("wrong-role");
    assert!(wrong_role["summary"].as_str().unwrap().contains("may not switch to role `postgres`"), "{wrong_role}");
    assert!(!p.audit_events("wrong-role", "sql.denied").is_empty());
}

#[test]
fn schema_verify_reports_what_is_wrong() {
    let pg = Postgres::start();
    let p = migrations_project(
        &pg,
        &[("1_a.sql", "create table a (id int);\nalter table a enable row level security;")],
        "",
    );
    migrate(&p, &pg).assert_code(0);
    // Drift after the deploy: a table without RLS, a function whose table is
    // gone, a migration file nobody applied.
    pg.psql("postgres", "create table b (id int); create table doomed (id int);");
    pg.psql("postgres", "create function count_doomed() returns bigint language sql as 'select count(*) from doomed';");
    pg.psql("postgres", "drop table doomed;");
    p.write("migrations/2_new.sql", "create table c (id int);");
    p.pipeline("pipeline: v\ndatabases:\n  app: { url_env: DATABASE_URL }\nstages:\n  - name: s\n    steps:\n      - name: verify\n        uses: schema-verify\n        with: { database: app, dir: migrations, require_rls: [public.a, public.b] }\n        grants: { databases: [app], fs: { read: [migrations] } }\n");
    migrate(&p, &pg).assert_code(1);
    let summary = p.step("verify")["summary"].as_str().unwrap().to_string();
    assert!(summary.starts_with("3 problem(s)"), "{summary}");
    assert!(summary.contains("migration 2_new.sql is not applied"), "{summary}");
    assert!(summary.contains("table public.b has no row-level security"), "{summary}");
    assert!(summary.contains("function count_doomed() does not compile") && summary.contains("doomed"), "{summary}");
    assert!(!summary.contains("public.a "), "{summary}");
}

#[test]
fn a_denied_rls_check_counts_only_a_permission_error_on_objects_that_exist() {
    let pg = Postgres::start();
    // Owned by the deploy role; `anon` may not use the schema, so PostgreSQL
    // refuses it before it looks any table up.
    pg.psql("postgres", "create schema private; create table private.secrets (id int);");
    let p = Project::new();
    let check = |name: &str, sql: &str| format!("{{ name: {name}, sql: \"{sql}\", denied: true }}");
    p.pipeline(&format!(
        "pipeline: rls\ndatabases:\n  app: {{ url_env: DATABASE_URL }}\nstages:\n  - name: s\n    steps:\n      - name: rls\n        \
         uses: rls-test\n        with: {{ database: app, matrix: [{{ as: visitor, role: anon, checks: [{}, {}] }}] }}\n        \
         grants: {{ databases: [{{ name: app, roles: [anon] }}] }}\n",
        check("real", "select * from private.secrets"),
        check("misspelled", "select * from private.secretz"),
    ));
    p.run(&[("DATABASE_URL", &pg.url("postgres"))]).assert_code(1);
    let step = p.step("rls");
    let summary = step["summary"].as_str().unwrap();
    assert!(summary.starts_with("1 of 2 RLS checks failed"), "{step}");
    assert!(
        summary.contains(
            "`misspelled` expected denied, got error: relation \"private.secretz\" does not exist (SQLSTATE 42P01)"
        ),
        "{summary}"
    );
    assert!(!summary.contains("`real`"), "the real denial passes: {summary}");
    let log = p.run_files_text();
    assert!(log.contains("denied: permission denied for schema private"), "the denial names its object");
}

/// Issue 25, #7: a database URL that logs in as a superuser bypasses every
/// grant, role and row policy. A step may use one only where the pipeline
/// says `superuser: true` for that database, and `run --sandbox-only`
/// refuses such a pipeline outright.
#[test]
fn a_superuser_url_is_refused_unless_the_pipeline_says_so_and_never_sandbox_only() {
    use crate::support::hostile_step;
    let pg = Postgres::start();
    let p = Project::new();
    let digest = p.plugin("hostile");
    let step = hostile_step(
        "create",
        &digest,
        "{ attack: sql-switch, name: app, path: \"CREATE TABLE su_probe (id int)\" }",
        "{ databases: [app] }",
    );
    let yaml = |superuser: &str| {
        format!(
            "pipeline: m\ndatabases:\n  app: {{ url_env: DATABASE_URL{superuser} }}\nstages:\n  - name: s\n    steps:\n{step}"
        )
    };
    let admin_url = pg.admin_url("postgres");
    let admin = [("DATABASE_URL", admin_url.as_str())];
    let probe = "select count(*) from pg_tables where tablename = 'su_probe'";
    p.pipeline(&yaml(""));
    let refused = p.deployhost(&["run", "pipeline.yaml"], &admin);
    refused.assert_code(0);
    let create = p.step("create");
    let summary = create["summary"].as_str().unwrap().to_string();
    assert_eq!(create["status"], "failed");
    assert!(summary.contains("a superuser") && summary.contains("superuser: true"), "{summary}");
    assert!(!refused.all_output().contains(PASSWORD) && !p.run_files_text().contains(PASSWORD));
    let denied = p.audit_events("create", "sql.denied");
    assert!(denied.iter().any(|e| e["op"] == "open"), "{denied:?}");
    assert_eq!(pg.admin(probe), "0");

    p.pipeline(&yaml(", superuser: true"));
    let sandboxed = p.deployhost(&["run", "pipeline.yaml", "--sandbox-only"], &admin);
    sandboxed.assert_code(2);
    assert!(
        sandboxed.stderr.contains("pipeline.yaml:3:") && sandboxed.stderr.contains("databases.app.superuser"),
        "{}",
        sandboxed.stderr
    );
    assert_eq!(pg.admin(probe), "0");
    p.deployhost(&["run", "pipeline.yaml"], &admin).assert_code(0);
    assert_eq!(p.step("create")["outputs"]["result"], format!("escaped: session now `{}`", crate::support::pg::ADMIN));
    assert_eq!(pg.admin(probe), "1");
}

/// Issue 25, #6: `databases: [{ name: app, roles: [anon] }]` binds the
/// session on the server: the step logs in as a login role the host made,
/// a member of `anon` only, so every spelling of a switch to another role
/// (`SET ROLE`, `set_config('role', …)`, `SET SESSION AUTHORIZATION`, a `DO`
/// block, `SET LOCAL ROLE`, and a switch undone within the same call, which
/// a check after each call could not see) is refused by PostgreSQL, and the
/// step has no power of the pipeline's login either (reading as it, or
/// dumping through the host's tools). `set-role` to a granted role still
/// works, and the login roles are gone after the run.
#[test]
fn a_database_grant_binds_the_session_to_its_roles_whatever_the_spelling() {
    use crate::support::hostile_step;
    let pg = Postgres::start();
    pg.admin(
        "CREATE ROLE payroll_admin NOLOGIN; GRANT payroll_admin TO postgres; CREATE SCHEMA payroll; \
         CREATE TABLE payroll.salaries (who text, amount int); INSERT INTO payroll.salaries VALUES ('ada', 9000); \
         GRANT USAGE ON SCHEMA payroll TO payroll_admin; GRANT SELECT ON payroll.salaries TO payroll_admin; \
         CREATE TABLE public.leak (line text); GRANT INSERT, SELECT ON public.leak TO anon, payroll_admin",
    );
    let p = Project::new();
    let digest = p.plugin("hostile");
    let leak = "INSERT INTO public.leak SELECT who || ' ' || amount FROM payroll.salaries";
    let switch_and_back = format!("SET ROLE payroll_admin; {leak}; RESET ROLE");
    let do_and_back = format!(
        "DO $$ BEGIN EXECUTE 'SET ROLE payroll_admin'; EXECUTE '{}'; EXECUTE 'RESET ROLE'; END $$",
        leak.replace('\'', "''")
    );
    let attacks = [
        ("set-role", "SET ROLE payroll_admin".to_string(), "permission denied to set role \"payroll_admin\""),
        (
            "set-config",
            "SELECT set_config('role', 'payroll_admin', false)".to_string(),
            "permission denied to set role \"payroll_admin\"",
        ),
        (
            "session-authorization",
            "SET SESSION AUTHORIZATION payroll_admin".to_string(),
            "permission denied to set session authorization",
        ),
        (
            "do-block",
            "DO $$ BEGIN EXECUTE 'SET ROLE payroll_admin'; END $$".to_string(),
            "permission denied to set role \"payroll_admin\"",
        ),
        ("set-local", "BEGIN; SET LOCAL ROLE payroll_admin".to_string(), "permission denied to set role"),
        ("switch-and-back", switch_and_back, "permission denied to set role \"payroll_admin\""),
        ("do-and-back", do_and_back, "permission denied to set role \"payroll_admin\""),
        ("as-the-login", leak.to_string(), "permission denied for schema payroll"),
    ];
    let grants = "{ databases: [{ name: app, roles: [anon] }] }";
    let mut yaml =
        String::from("pipeline: r\ndatabases:\n  app: { url_env: DATABASE_URL }\nstages:\n  - name: s\n    steps:\n");
    for (name, sql, _) in &attacks {
        let sql = sql.replace('"', "\\\"");
        yaml.push_str(&hostile_step(
            name,
            &digest,
            &format!("{{ attack: sql-switch, name: app, path: \"{sql}\" }}"),
            grants,
        ));
    }
    yaml.push_str(&hostile_step(
        "granted",
        &digest,
        "{ attack: sql-switch, name: app, path: \"SET ROLE anon\" }",
        grants,
    ));
    yaml.push_str(
        "      - name: dump-as-anon\n        uses: pg-backup\n        blocking: false\n        with: { database: app }\n        \
         grants: { databases: [{ name: app, roles: [anon] }], fs: { write: [backups] } }\n",
    );
    p.pipeline(&yaml);
    p.deployhost(&["run", "pipeline.yaml"], &[("DATABASE_URL", &pg.url("postgres"))]).assert_code(0);
    for (name, _, refused) in &attacks {
        let step = p.step(name);
        let result = step["outputs"]["result"].as_str().unwrap_or_default().to_string();
        assert!(result.starts_with("denied:") && result.contains(refused), "{name}: {step:#}");
        let statements = p.audit_events(name, "sql");
        assert!(statements.iter().any(|e| e["error"] == "42501"), "{name}: {statements:?}");
    }
    assert_eq!(pg.admin("SELECT count(*) FROM public.leak"), "0", "nothing left payroll");
    assert_eq!(p.step("granted")["outputs"]["result"], "escaped: session now `anon`");
    let opened = p.audit_events("granted", "sql.open");
    assert!(opened[0]["bound_login"].as_str().is_some_and(|l| l.starts_with("deployhost_step_")), "{opened:?}");
    let dump = p.step("dump-as-anon");
    assert_eq!(dump["status"], "failed", "{dump:#}");
    assert!(dump["summary"].as_str().unwrap().contains("runs as the pipeline's login"), "{dump:#}");
    assert!(p.audit_events("dump-as-anon", "sql.denied").iter().any(|e| e["op"] == "dump"));
    assert_eq!(pg.admin("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'deployhost_step_%'"), "0");
}
