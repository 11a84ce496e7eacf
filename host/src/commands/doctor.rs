//! `deployhost doctor [--env E] [FILE]`: before the first deploy, what the
//! pipeline will need from each database of the environment and from the
//! process environment, checked without changing anything (read-only
//! queries only): the URL (no transaction pooler), the connection with the
//! URL's TLS settings, the role's privileges, pgtap where a step runs
//! pgTAP, the migration history against the files (as `supabase migration
//! list`), and every granted secret. One line per check; exit 0 only when
//! every check passes.

use super::{ExitStatus, inputs, load_plan};
use crate::capabilities::sql::scope::Scope;
use crate::pgconn::{self, DbTarget};
use crate::pipeline::{Plan, PlannedStep};
use anyhow::Result;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use tokio_postgres::Client;

/// `deployhost doctor`'s arguments.
#[derive(clap::Args)]
pub struct DoctorArgs {
    /// The pipeline file.
    #[arg(default_value = "deployhost.yaml")]
    file: std::path::PathBuf,
    #[arg(long = "env")]
    environment: Option<String>,
    #[arg(long)]
    version: Option<String>,
}

impl DoctorArgs {
    pub async fn run(self, _: &super::Context) -> Result<ExitStatus> {
        doctor(&self.file, self.environment, self.version).await
    }
}

/// One check's outcome; `info` is said, never failed.
struct Check {
    ok: bool,
    info: bool,
    what: String,
    why: String,
}

#[derive(Default)]
struct Checks(Vec<Check>);

impl Checks {
    fn pass(&mut self, what: impl Into<String>, why: impl Into<String>) {
        self.add(true, what, why);
    }
    fn fail(&mut self, what: impl Into<String>, why: impl Into<String>) {
        self.add(false, what, why);
    }
    fn add(&mut self, ok: bool, what: impl Into<String>, why: impl Into<String>) {
        self.0.push(Check { ok, info: false, what: what.into(), why: why.into() });
    }
    fn info(&mut self, what: impl Into<String>, why: impl Into<String>) {
        self.0.push(Check { ok: true, info: true, what: what.into(), why: why.into() });
    }
}

/// Steps of the plan granted database `db`, using `plugin`.
fn steps_on<'a>(plan: &'a Plan, db: &'a str, plugin: &'a str) -> impl Iterator<Item = &'a PlannedStep> + 'a {
    plan.steps().filter(move |s| s.uses == plugin && s.grants.databases.contains_key(db))
}

fn param<'a>(step: &'a PlannedStep, key: &str) -> Option<&'a str> {
    step.params.get(key).and_then(|v| v.as_str())
}

pub async fn doctor(file: &Path, environment: Option<String>, version: Option<String>) -> Result<ExitStatus> {
    let (_, plan) = load_plan(file, environment, version)?;
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let mut checks = Checks::default();
    println!("{} · environment {}", file.display(), plan.environment);

    // Secrets: each one a step is granted.
    let granted: BTreeSet<String> = plan.steps().flat_map(|s| s.grants.secrets.iter().cloned()).collect();
    for name in &granted {
        let source = plan.secrets.get(name);
        let from =
            source.and_then(|s| s.env.clone().or_else(|| s.file.clone())).unwrap_or_else(|| "its source".to_string());
        match inputs::secrets(&plan.secrets, &BTreeSet::from([name.clone()]), &plan.dir, &env) {
            Ok(_) => checks.pass(format!("secret {name}"), format!("{from} is set")),
            Err(errors) => {
                let why: Vec<String> = errors.iter().map(|e| e.error.to_string()).collect();
                checks.fail(format!("secret {name}"), format!("{from}: {}", why.join("; ")));
            }
        }
    }

    // Databases: each one a step is granted.
    let databases: BTreeSet<String> = plan.steps().flat_map(|s| s.grants.databases.keys().cloned()).collect();
    for db in &databases {
        let source = plan.databases.get(db);
        let var = source.and_then(|s| s.url_env.clone().or_else(|| s.url_file.clone())).unwrap_or_default();
        let raw = source.and_then(|s| s.url_env.as_deref()).and_then(env);
        if raw.as_deref().is_some_and(|u| u.contains("pgbouncer=true")) {
            checks.fail(
                format!("database {db}: URL"),
                format!("{var} asks for PgBouncer in transaction mode (pgbouncer=true): deploys need a session; use the session pooler (port 5432) or the direct connection"),
            );
            continue;
        }
        let target = match inputs::databases(&plan.databases, &BTreeSet::from([db.clone()]), &plan.dir, &env) {
            Ok(mut targets) => match targets.remove(db) {
                Some(t) => t,
                None => continue,
            },
            Err(errors) => {
                let why: Vec<String> = errors.iter().map(|e| e.error.to_string()).collect();
                checks.fail(format!("database {db}: URL"), format!("{var}: {}", why.join("; ")));
                continue;
            }
        };
        checks.pass(
            format!("database {db}: URL"),
            format!("{var}: {} ({}), not a transaction pooler", target.display, target.tls.describe()),
        );
        check_database(&plan, db, &target, &mut checks).await;
    }

    for c in &checks.0 {
        let mark = match (c.info, c.ok) {
            (true, _) => "i",
            (false, true) => "✓",
            (false, false) => "✗",
        };
        println!("{mark} {}: {}", c.what, crate::output::markup::plain(&c.why));
    }
    let failed = checks.0.iter().filter(|c| !c.ok).count();
    let counted = checks.0.iter().filter(|c| !c.info).count();
    if failed == 0 {
        println!("all {counted} checks passed");
        Ok(ExitStatus::Success)
    } else {
        println!("{failed} of {counted} checks failed");
        Ok(ExitStatus::Failed)
    }
}

async fn check_database(plan: &Plan, db: &str, target: &DbTarget, checks: &mut Checks) {
    let client = match pgconn::connect(target).await {
        Ok(client) => client,
        Err(e) => {
            checks.fail(format!("database {db}: connect"), e.to_string());
            return;
        }
    };
    // Nothing this command does may change the database.
    if let Err(e) = client.batch_execute("SET default_transaction_read_only = on").await {
        checks.fail(format!("database {db}: connect"), pgconn::error_text(&e));
        return;
    }
    let who = one(&client, "select current_user::text || ' on ' || version()").await;
    checks.add(who.is_ok(), format!("database {db}: connect"), who.unwrap_or_else(|e| e));

    let migrates: Vec<&PlannedStep> = steps_on(plan, db, "supabase-migrate").collect();
    let seeds = steps_on(plan, db, "supabase-seed").next().is_some();
    if !migrates.is_empty() || seeds {
        history_privileges(&client, db, checks).await;
    }
    for step in steps_on(plan, db, "pg-backup") {
        backup_scope(&client, db, step, checks).await;
    }
    if let Some(step) = steps_on(plan, db, "pgtap").next() {
        let installed =
            one(&client, "select coalesce((select extversion from pg_extension where extname = 'pgtap'), '')").await;
        match installed {
            Ok(v) if !v.is_empty() => {
                checks.pass(format!("database {db}: pgtap"), format!("pgtap {v} installed (step {})", step.name))
            }
            Ok(_) => checks.fail(
                format!("database {db}: pgtap"),
                format!(
                    "the pgtap extension is not installed, and step `{}` runs pgTAP tests: enable it \
                     (Dashboard → Database → Extensions, or `create extension pgtap with schema extensions`)",
                    step.name
                ),
            ),
            Err(e) => checks.fail(format!("database {db}: pgtap"), e),
        }
    }
    role_bound_steps(plan, db, &client, checks).await;
    plpgsql_check(&client, db, checks).await;
    let dirs: BTreeSet<&str> = migrates
        .iter()
        .filter(|s| !s.params.get("dry_run").and_then(|v| v.as_bool()).unwrap_or(false))
        .map(|s| param(s, "dir").unwrap_or("supabase/migrations"))
        .collect();
    for dir in dirs {
        history(&client, db, &plan.dir, dir, checks).await;
    }
}

/// Steps granted `db` with roles run as a login the host makes for them
/// (bound to those roles): the login must be able to make it.
async fn role_bound_steps(plan: &Plan, db: &str, client: &Client, checks: &mut Checks) {
    for step in plan.steps() {
        let Some(roles) = step.grants.databases.get(db).filter(|r| !r.is_empty()) else { continue };
        let what = format!("database {db}: roles of step {}", step.name);
        match crate::capabilities::sql::bound_login_maker(client, db, roles).await {
            Ok(maker) => checks.pass(
                what,
                format!(
                    "`{}` may make the step's login, bound to {} (CREATEROLE, a member of each)",
                    maker.login,
                    roles.join(", ")
                ),
            ),
            Err(e) => checks.fail(what, crate::capabilities::sql::describe_error(&e)),
        }
    }
}

/// plpgsql_check lets `supabase db lint` check functions' bodies: said,
/// never required.
async fn plpgsql_check(client: &Client, db: &str, checks: &mut Checks) {
    let what = format!("database {db}: plpgsql_check");
    let sql = "select coalesce((select coalesce(installed_version, '') || '/' || default_version from pg_available_extensions \
               where name = 'plpgsql_check'), '')";
    match one(client, sql).await.as_deref() {
        Ok("") => checks.info(what, "not available on this server (optional: function bodies go unchecked)"),
        Ok(v) if v.starts_with('/') => checks.info(
            what,
            "available, not installed (optional: `create extension plpgsql_check` lets `supabase db lint` \
             check function bodies)",
        ),
        Ok(v) => checks.info(what, format!("{} installed", v.split('/').next().unwrap_or(v))),
        Err(e) => checks.info(what, format!("cannot tell: {e}")),
    }
}

async fn one(client: &Client, sql: &str) -> Result<String, String> {
    let row = client.query_one(sql, &[]).await.map_err(|e| pgconn::error_text(&e))?;
    row.try_get::<_, String>(0).map_err(|e| e.to_string())
}

async fn flag(client: &Client, sql: &str) -> Result<bool, String> {
    let row = client.query_one(sql, &[]).await.map_err(|e| pgconn::error_text(&e))?;
    row.try_get::<_, bool>(0).map_err(|e| e.to_string())
}

/// The history schema (supabase_migrations) and the change ledger: the role
/// creates them (CREATE on the database), or they exist and it may write there.
async fn history_privileges(client: &Client, db: &str, checks: &mut Checks) {
    let what = format!("database {db}: privileges");
    let exists = flag(client, "select exists (select 1 from pg_namespace where nspname = 'supabase_migrations')").await;
    let create_db = flag(client, "select has_database_privilege(current_user, current_database(), 'CREATE')").await;
    match (exists, create_db) {
        (Err(e), _) | (_, Err(e)) => checks.fail(what, e),
        (Ok(_), Ok(true)) => checks.pass(what, "the role may create schemas (history, change ledger)"),
        (Ok(true), Ok(false)) => checks.fail(
            what,
            "supabase_migrations exists, but the role may not create schemas on the database (the change ledger needs one): `grant create on database … to …`",
        ),
        (Ok(false), Ok(false)) => checks.fail(
            what,
            "the role may not create schemas on the database: the migration history (supabase_migrations) and the change ledger cannot be created; `grant create on database … to …`",
        ),
    }
}

/// What `pg-backup` dumps: every table of its scope must be readable.
async fn backup_scope(client: &Client, db: &str, step: &PlannedStep, checks: &mut Checks) {
    let what = format!("database {db}: backup scope (step {})", step.name);
    let scope = match Scope::from_params(&step.params) {
        Ok(s) => s,
        Err(e) => return checks.fail(what, e),
    };
    let rows = match client
        .query(
            "select n.nspname::text, c.relname::text, has_schema_privilege(n.oid, 'USAGE') and has_table_privilege(c.oid, 'SELECT') \
             from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.relkind in ('r', 'p', 'S')",
            &[],
        )
        .await
    {
        Ok(rows) => rows,
        Err(e) => return checks.fail(what, pgconn::error_text(&e)),
    };
    let mut tables = 0;
    let mut unreadable: Vec<String> = Vec::new();
    for row in rows {
        let (schema, table, readable): (String, String, bool) = (row.get(0), row.get(1), row.get(2));
        if !scope.includes(&schema) {
            continue;
        }
        tables += 1;
        if !readable {
            unreadable.push(format!("{schema}.{table}"));
        }
    }
    if unreadable.is_empty() {
        checks.pass(what, format!("{tables} table(s) and sequence(s) in scope, all readable"));
    } else {
        checks.fail(what, format!("the role cannot read {}", unreadable.join(", ")));
    }
}

/// Like `supabase migration list`: versions in the files, in the history, or both.
async fn history(client: &Client, db: &str, base: &Path, dir: &str, checks: &mut Checks) {
    let what = format!("database {db}: history vs {dir}");
    let mut local: BTreeMap<String, String> = BTreeMap::new();
    match std::fs::read_dir(base.join(dir)) {
        Ok(entries) => {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Some(stem) = name.strip_suffix(".sql")
                    && let Some((version, _)) = stem.split_once('_')
                    && !version.is_empty()
                    && version.chars().all(|c| c.is_ascii_digit())
                {
                    local.insert(version.to_string(), name.clone());
                }
            }
        }
        Err(e) => return checks.fail(what, format!("cannot read {dir}: {e}")),
    }
    let table = flag(client, "select to_regclass('supabase_migrations.schema_migrations') is not null").await;
    let remote: BTreeSet<String> = match table {
        Err(e) => return checks.fail(what, e),
        Ok(false) => BTreeSet::new(),
        Ok(true) => match client.query("select version::text from supabase_migrations.schema_migrations", &[]).await {
            Ok(rows) => rows.iter().map(|r| r.get::<_, String>(0)).collect(),
            Err(e) => return checks.fail(what, pgconn::error_text(&e)),
        },
    };
    let remote_only: Vec<&String> = remote.iter().filter(|v| !local.contains_key(*v)).collect();
    let last_applied = remote.iter().max();
    let (older, pending): (Vec<&String>, Vec<&String>) =
        local.keys().filter(|v| !remote.contains(*v)).partition(|v| last_applied.is_some_and(|last| *v < last));
    let applied = remote.len() - remote_only.len();
    let mut problems = Vec::new();
    if !remote_only.is_empty() {
        let list: Vec<&str> = remote_only.iter().map(|s| s.as_str()).collect();
        problems.push(format!(
            "remote only (in the history, no file): {} — restore the files, or mark them reverted with the step's `repair:`",
            list.join(", ")
        ));
    }
    if !older.is_empty() {
        let list: Vec<&str> = older.iter().map(|v| local[*v].as_str()).collect();
        problems.push(format!(
            "local only, older than the last applied ({}): {} — would be skipped without `include_all: true`",
            last_applied.map_or("", |s| s.as_str()),
            list.join(", ")
        ));
    }
    if problems.is_empty() {
        checks.pass(what, format!("{applied} applied, {} pending, none only in the history", pending.len()));
    } else {
        checks.fail(what, problems.join("; "));
    }
}
