//! The rehearsal on a shadow copy (`rehearse`): pending migrations are
//! applied to a throwaway database first, so a file that fails on the
//! schema (a column that is not there, a type that changed, a name already
//! taken) fails there, with its file:line, before the target is touched,
//! and the locks each statement takes are read from the shadow's
//! `pg_locks` instead of being learnt on production.
//!
//! The shadow is made on the granted database's own server (`CREATE
//! DATABASE`, which the Supabase `postgres` role may do) from the server's
//! `template1`, and filled with a schema-only `pg_dump` of the database's
//! non-platform schemas (the Supabase CLI's `db dump` exclusion list; the
//! migration history's table comes with `supabase_migrations`, without
//! rows). The target is only read, by `pg_dump` (ACCESS SHARE, which waits
//! for nobody but an ACCESS EXCLUSIVE holder). No rows are copied: a file
//! that fails only on the data there (a unique index over duplicates) is
//! the lint's data-dependent check's to find, which counts those rows on
//! the target read-only. The shadow is dropped afterwards, whatever
//! happened; making and dropping it are audited (`sql.shadow`).

use super::backup::{pg_env, run_tool, server_version, target};
use super::{Opened, connect, quote_ident, scope, sql_error};
use crate::audit::{Record, ShadowOp, Shadowed};
use crate::bindings::deployhost::plugin::sql::{RehearsalFile, RehearsedFile, RehearsedStatement, SqlError};
use crate::capabilities::CapsView;
use crate::pgconn::{DbTarget, error_text};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::process::Command;
use tokio_postgres::Client;
use tokio_postgres::error::ErrorPosition;

/// Every shadow's name starts so (a left-over one is recognisable).
pub const SHADOW_PREFIX: &str = "deployhost_shadow_";

/// SQLSTATE of "cannot run inside a transaction block".
const ACTIVE_SQL_TRANSACTION: &str = "25001";

/// The relation locks this session holds on tables of the database, not
/// the catalog's: `ACCESS EXCLUSIVE on public.notes`.
const HELD_LOCKS: &str = "SELECT l.mode, format('%I.%I', n.nspname, c.relname) FROM pg_locks l \
     JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.granted \
     AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'";

pub async fn rehearse(
    state: &mut CapsView<'_>,
    database: &str,
    files: Vec<RehearsalFile>,
) -> Result<Vec<RehearsedFile>, SqlError> {
    let target = target(state, database)?;
    let (major, _) = server_version(&target).await?;
    let tools = Tools {
        pg_dump: state.caps.sql.tools.pick("pg_dump", major)?,
        psql: state.caps.sql.tools.pick("psql", major)?,
    };
    let admin = connect(&target).await?;
    may_create_databases(&admin, database).await?;
    let recorded = scope::record(&admin, &scope::Scope::default()).await.map_err(SqlError::Connection)?;
    let name = shadow_name();
    admin.batch_execute(&format!("CREATE DATABASE {}", quote_ident(&name))).await.map_err(sql_error)?;
    let mut leftover = Leftover(Some((target.clone(), name.clone())));
    let made = Shadowed { schemas: Some(recorded.schemas.clone()), ..shadowed(database, &name, ShadowOp::Create) };
    audit(state, made);
    let started = Instant::now();
    let mut shadow = target.clone();
    shadow.config.dbname(&name);
    shadow.display = format!("{} (shadow {name})", target.display);
    let result = match fill(&target, &shadow, &recorded.schemas, &tools).await {
        Ok(()) => apply_all(&state.caps.sql.opened.clone(), &shadow, &files).await,
        Err(e) => Err(e),
    };
    // Dropped whatever happened; FORCE ends a session still open on it.
    let dropped = admin.batch_execute(&drop_statement(&name)).await;
    leftover.0 = None;
    let ms = started.elapsed().as_millis() as u64;
    let failed = result.as_ref().ok().and_then(|f| f.iter().find_map(|f| f.error.clone()));
    let gone = Shadowed {
        ms: Some(ms),
        dropped: Some(dropped.is_ok()),
        files: Some(files.len() as u64),
        failed,
        error: result.as_ref().err().map(super::describe_error),
        ..shadowed(database, &name, ShadowOp::Drop)
    };
    audit(state, gone);
    if let Err(e) = dropped {
        return Err(SqlError::Tool(format!(
            "the rehearsal's shadow database {name} could not be dropped: {}; drop it by hand",
            error_text(&e)
        )));
    }
    result
}

fn drop_statement(name: &str) -> String {
    format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name))
}

/// The shadow while the rehearsal runs: when the step is stopped (its
/// timeout) the rehearsal's future is dropped half-way, and this drops the
/// shadow from a task of its own (FORCE ends the rehearsal's session).
struct Leftover(Option<(DbTarget, String)>);

impl Drop for Leftover {
    fn drop(&mut self) {
        let Some((target, name)) = self.0.take() else { return };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Ok(client) = connect(&target).await {
                    let _ = client.batch_execute(&drop_statement(&name)).await;
                }
            });
        }
    }
}

fn audit(state: &CapsView<'_>, shadowed: Shadowed) {
    let caps = &state.caps;
    caps.audit.record(Some(&caps.step), Record::SqlShadow(shadowed));
}

fn shadowed(database: &str, shadow: &str, op: ShadowOp) -> Shadowed {
    Shadowed {
        database: database.to_string(),
        shadow: shadow.to_string(),
        op,
        schemas: None,
        ms: None,
        dropped: None,
        files: None,
        failed: None,
        error: None,
    }
}

/// A name no other rehearsal uses at the same time: this process, a
/// count within it, and the clock (for other hosts on the same server).
fn shadow_name() -> String {
    static COUNT: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    let n = COUNT.fetch_add(1, Ordering::Relaxed);
    format!("{SHADOW_PREFIX}{}_{n}_{}", std::process::id(), nanos % 1_000_000_000_000)
}

/// The rehearsal needs `CREATE DATABASE`: refused up front, with the fix.
async fn may_create_databases(client: &Client, database: &str) -> Result<(), SqlError> {
    let row = client
        .query_one("SELECT rolcreatedb OR rolsuper, current_user::text FROM pg_roles WHERE rolname = current_user", &[])
        .await
        .map_err(sql_error)?;
    if row.get::<_, bool>(0) {
        return Ok(());
    }
    Err(SqlError::NotGranted(format!(
        "a rehearsal makes a shadow database on `{database}`'s server, and role `{}` may not create databases \
         (ALTER ROLE … CREATEDB); or rehearse in a rolled-back transaction on the target instead (`dry_run: true`)",
        row.get::<_, String>(1)
    )))
}

/// A schema-only `pg_dump` of `schemas` of the target, replayed into the
/// shadow by `psql` (stopping at the first error), after dropping the
/// schemas of the same names that `template1` gave it (`public`). Owners
/// and privileges are left out: the deploy role owns the shadow's objects,
/// as it must to alter them, and may not replay another role's grants.
async fn fill(target: &DbTarget, shadow: &DbTarget, schemas: &[String], tools: &Tools) -> Result<(), SqlError> {
    if schemas.is_empty() {
        return Ok(());
    }
    let work = tempfile::tempdir().map_err(|e| SqlError::Tool(format!("cannot make a work folder: {e}")))?;
    let script = work.path().join("schema.sql");
    let drops: String =
        schemas.iter().map(|s| format!("DROP SCHEMA IF EXISTS {} CASCADE;\n", quote_ident(s))).collect();
    std::fs::write(&script, drops).map_err(|e| SqlError::Tool(format!("cannot write the schema dump: {e}")))?;
    let out = std::fs::OpenOptions::new()
        .append(true)
        .open(&script)
        .map_err(|e| SqlError::Tool(format!("cannot write the schema dump: {e}")))?;
    let mut dump = Command::new(&tools.pg_dump);
    // Kept until the tool has ended: the password reaches it through this file.
    let _password = pg_env(&mut dump, target)?;
    dump.args(["--schema-only", "--no-owner", "--no-privileges", "--no-security-labels", "--no-password"])
        .args(["--no-subscriptions", "--no-publications"])
        .args(scope::dump_args(schemas))
        .stdout(Stdio::from(out));
    run_tool(dump, "pg_dump (the shadow's schema)").await?;
    let mut replay = Command::new(&tools.psql);
    let _password = pg_env(&mut replay, shadow)?;
    replay.args(["-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=1", "-f"]).arg(&script).stdout(Stdio::null());
    run_tool(replay, "psql (filling the shadow)").await
}

/// The client tools of the server's version.
struct Tools {
    pg_dump: PathBuf,
    psql: PathBuf,
}

/// Each file in its own transaction, in order, until one fails. The
/// session is among the step's connections, so a stopped step cancels
/// its statement.
async fn apply_all(
    opened: &Opened,
    shadow: &DbTarget,
    files: &[RehearsalFile],
) -> Result<Vec<RehearsedFile>, SqlError> {
    let client = connect(shadow).await?;
    if let Ok(mut opened) = opened.lock() {
        opened.push((client.cancel_token(), shadow.clone()));
    }
    let mut out = Vec::new();
    for file in files {
        let rehearsed = apply_file(&client, file).await?;
        let failed = rehearsed.error.is_some();
        out.push(rehearsed);
        if failed {
            break;
        }
    }
    Ok(out)
}

/// One file: each statement timed, with the locks it added to what the
/// file's transaction held. A statement that cannot run in a transaction
/// (`CREATE INDEX CONCURRENTLY`) runs on its own between two, as
/// `supabase db push` runs it; it holds no lock after it.
async fn apply_file(client: &Client, file: &RehearsalFile) -> Result<RehearsedFile, SqlError> {
    let started = Instant::now();
    let mut statements = Vec::new();
    let mut error = None;
    client.batch_execute("RESET ALL; BEGIN").await.map_err(sql_error)?;
    let mut held = BTreeSet::new();
    for (line, statement) in &file.statements {
        let at = Instant::now();
        client.batch_execute("SAVEPOINT deployhost_rehearsal").await.map_err(sql_error)?;
        let mut ran = client.batch_execute(statement).await;
        if let Err(e) = &ran
            && e.as_db_error().is_some_and(|d| d.code().code() == ACTIVE_SQL_TRANSACTION)
        {
            client.batch_execute("ROLLBACK TO SAVEPOINT deployhost_rehearsal; COMMIT").await.map_err(sql_error)?;
            ran = client.batch_execute(statement).await;
            client.batch_execute("BEGIN").await.map_err(sql_error)?;
            held.clear();
        }
        let ms = at.elapsed().as_millis() as u64;
        if let Err(e) = ran {
            statements.push(RehearsedStatement { line: *line, locks: Vec::new(), ms });
            error = Some(describe(&file.label, *line, statement, &e));
            break;
        }
        let now = held_locks(client).await?;
        let locks =
            now.difference(&held).map(|(mode, relation)| format!("{} on {relation}", lock_name(mode))).collect();
        held = now;
        statements.push(RehearsedStatement { line: *line, locks, ms });
    }
    let end = if error.is_some() { "ROLLBACK" } else { "COMMIT" };
    client.batch_execute(end).await.map_err(sql_error)?;
    Ok(RehearsedFile { label: file.label.clone(), statements, error, ms: started.elapsed().as_millis() as u64 })
}

async fn held_locks(client: &Client) -> Result<BTreeSet<(String, String)>, SqlError> {
    let rows = client.query(HELD_LOCKS, &[]).await.map_err(sql_error)?;
    Ok(rows.iter().map(|r| (r.get::<_, String>(0), r.get::<_, String>(1))).collect())
}

/// `AccessExclusiveLock` → `ACCESS EXCLUSIVE`, as the documentation and
/// the lint name locks.
fn lock_name(mode: &str) -> String {
    let mode = mode.strip_suffix("Lock").unwrap_or(mode);
    let mut out = String::new();
    for c in mode.chars() {
        if c.is_uppercase() && !out.is_empty() {
            out.push(' ');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// `label:line: message (SQLSTATE …)`, the line moved to where PostgreSQL's
/// error position points within the statement.
fn describe(label: &str, line: u32, statement: &str, e: &tokio_postgres::Error) -> String {
    let Some(db) = e.as_db_error() else { return format!("{label}:{line}: {}", error_text(e)) };
    let line = match db.position() {
        Some(ErrorPosition::Original(pos)) => {
            let before = statement.chars().take((*pos as usize).saturating_sub(1));
            line + before.filter(|c| *c == '\n').count() as u32
        }
        _ => line,
    };
    let mut text = format!("{label}:{line}: {} (SQLSTATE {})", db.message(), db.code().code());
    if let Some(hint) = db.hint() {
        text.push_str(&format!("; hint: {hint}"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_modes_read_as_the_documentation_names_them() {
        assert_eq!(lock_name("AccessExclusiveLock"), "ACCESS EXCLUSIVE");
        assert_eq!(lock_name("ShareRowExclusiveLock"), "SHARE ROW EXCLUSIVE");
        assert_eq!(lock_name("ShareLock"), "SHARE");
    }

    #[test]
    fn shadow_names_are_recognisable_and_differ() {
        let (a, b) = (shadow_name(), shadow_name());
        assert!(a.starts_with(SHADOW_PREFIX) && a.len() < 63, "{a}");
        assert_ne!(a, b);
    }
}
