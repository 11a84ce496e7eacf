//! Databases: pipelines declare them once (`databases:`), steps are granted
//! them by name, and the host opens the connections, so a plugin never sees
//! a URL or a password. Every statement is audited: database, the start of
//! the text, rows, milliseconds, and the SQLSTATE when it fails.

mod backup;
mod bound;
pub mod ledger;
mod replay;
pub mod scope;
mod shadow;
mod values;

use crate::audit::{ConnectionOpened, Denial, Ledgered, LimitHit, LimitKind, Record, Reverted, StatementRan};
use crate::bindings::deployhost::plugin::sql::{
    DbError, DumpInfo, Host, HostConnection, LintClass, LintFinding, LintSeverity, NamedObject, ObjectKind,
    QueryResult, RehearsalFile, RehearsedFile, SqlError, Value,
};
use crate::bindings::deployhost::plugin::types::Capability as Need;
use crate::capabilities::CapsView;
use crate::capabilities::fs::Mount;
use crate::pipeline::StepGrants;
use futures_util::TryStreamExt;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio_postgres::Client;
use values::{Param, row_values, value_bytes};
use wasmtime::component::Resource;

pub use backup::{BackupData, ToolSet};
pub use bound::{Made as BoundLogins, drop_all as drop_bound_logins, maker as bound_login_maker};

const AUDIT_STATEMENT_CHARS: usize = 200;

use crate::bindings::ConnectionSlot;
/// Connection settings live in [`crate::pgconn`]; re-exported for the runner.
pub use crate::pgconn::DbTarget;
use crate::pgconn::error_text;
pub(crate) use crate::sqlparse::quote_ident;

/// Opens a connection for a step; the error names the server, `sslmode` and
/// certificate, never the password. A URL that logs in as a superuser is
/// refused unless the pipeline says `superuser: true` for the database
/// (`NotGranted`): a superuser bypasses every grant, role and row policy.
async fn connect(target: &DbTarget) -> Result<Client, SqlError> {
    let client = crate::pgconn::connect(target).await.map_err(|e| SqlError::Connection(e.to_string()))?;
    if target.superuser_allowed {
        return Ok(client);
    }
    let row = client
        .query_one("SELECT current_setting('is_superuser') = 'on', session_user::text", &[])
        .await
        .map_err(|e| SqlError::Connection(error_text(&e)))?;
    if row.get::<_, bool>(0) {
        let user: String = row.get(1);
        return Err(SqlError::NotGranted(format!(
            "{} logs in as `{user}`, a superuser, which no grant, role or row policy binds: use a role without \
             SUPERUSER, or say `superuser: true` for this database in the pipeline's `databases:` (refused under \
             `run --sandbox-only` whatever it says)",
            target.display
        )));
    }
    Ok(client)
}

/// A step's connection: as the pipeline's login, or, when its grant lists
/// roles, as a login bound to them (see `bound.rs`).
async fn connect_step(
    target: &DbTarget,
    roles: &[String],
    made: &BoundLogins,
) -> Result<(Client, Option<String>), SqlError> {
    let client = connect(target).await?;
    if roles.is_empty() {
        return Ok((client, None));
    }
    let (bound, name) = bound::connect(client, target, roles, made).await?;
    Ok((bound, Some(name)))
}

/// A database grant as shown to people: `app`, or `app (roles: anon)`.
pub fn grant_label(database: &str, roles: &[String]) -> String {
    if roles.is_empty() { database.to_string() } else { format!("{database} (roles: {})", roles.join(", ")) }
}

/// The databases of `grants.databases`, through connections the host holds.
pub struct Databases;

impl super::Capability for Databases {
    fn about(&self) -> super::About {
        super::About { name: "databases", grant_key: "databases", used_key: "databases", no_use: "database use" }
    }
    fn granted(&self, grants: &StepGrants) -> Vec<String> {
        grants.databases.iter().map(|(db, roles)| grant_label(db, roles)).collect()
    }
    fn covers(&self, need: Need) -> bool {
        need == Need::Database
    }
    /// A statement counts; a dump or a restore uses the database too.
    fn used(&self, record: &Record) -> Option<(String, u64)> {
        match record {
            Record::Sql(s) => Some((s.database.clone(), 1)),
            Record::SqlDump(d) => Some((d.database.clone(), 0)),
            Record::SqlRestore(r) => Some((r.database.clone(), 0)),
            _ => None,
        }
    }
    fn show_used(&self, uses: BTreeMap<String, u64>) -> Vec<String> {
        uses.iter().map(|(db, n)| format!("{db} ({n} statements)")).collect()
    }
}

/// The run's side of the database capability, shared by its steps: where
/// each database is, the host's tools, the ledgers, the environment's rule.
#[derive(Default)]
pub struct SqlRun {
    pub targets: Arc<BTreeMap<String, DbTarget>>,
    pub tools: Arc<ToolSet>,
    /// The host's backup ledger in its state folder (see `backup.rs`).
    pub ledger: Option<PathBuf>,
    /// The run's change ledger folder (`<run>/changes`, see `ledger/`).
    pub changes: Option<PathBuf>,
    /// The environment's `rollback: lossless`, with what it accepts anyway.
    pub lossless: Option<Arc<Lossless>>,
}

impl SqlGrant {
    /// What `step` may do with databases in `run`.
    pub fn for_step(step: &crate::pipeline::PlannedStep, run: &SqlRun) -> SqlGrant {
        SqlGrant {
            granted: step.grants.databases.clone(),
            targets: run.targets.clone(),
            mounts: step.grants.mounts.clone(),
            tools: run.tools.clone(),
            params: Arc::new(step.params.clone()),
            recorded: step.grants.recorded_backups.clone(),
            ledger: run.ledger.clone(),
            changes: run.changes.clone(),
            lossless: run.lossless.clone(),
            opened: Default::default(),
            bound: Default::default(),
            open: Default::default(),
            max_connections: step.limits.db_connections,
            max_result: step.limits.query_result,
        }
    }

    /// `schemas:`/`exclude_schemas:` of a pg-backup or pg-restore step.
    pub fn scope(&self) -> Result<scope::Scope, SqlError> {
        scope::Scope::from_params(&self.params).map_err(|e| SqlError::Tool(format!("with: {e}")))
    }

    /// `data:` of a pg-backup step: what rows its dump holds.
    pub fn backup_data(&self) -> Result<BackupData, SqlError> {
        BackupData::from_params(&self.params).map_err(|e| SqlError::Tool(format!("with: {e}")))
    }
}

/// What one step may do with databases.
pub struct SqlGrant {
    /// Granted database → roles it may `set-role` to.
    pub granted: BTreeMap<String, Vec<String>>,
    pub targets: Arc<BTreeMap<String, DbTarget>>,
    /// The step's folders, for backup and restore paths.
    pub mounts: Vec<Mount>,
    pub tools: Arc<ToolSet>,
    /// Backup digests the run itself recorded, by path as the step writes it
    /// (a rollback's restore trusts only these).
    pub recorded: BTreeMap<String, String>,
    /// The host's backup ledger in its state folder (see `backup.rs`).
    pub ledger: Option<PathBuf>,
    /// The run's change ledger folder (`<run>/changes`, see `ledger/`).
    pub changes: Option<PathBuf>,
    /// The environment's `rollback: lossless`, with what it accepts anyway.
    pub lossless: Option<Arc<Lossless>>,
    /// The step's parameters: a pg-backup's `data:`, a backup or restore's
    /// `schemas:`/`exclude_schemas:` are read from them when it dumps.
    pub params: Arc<serde_json::Map<String, serde_json::Value>>,
    /// Every connection the step opened, to cancel what still runs on the
    /// server when the step is stopped ([`cancel_opened`]).
    pub opened: Opened,
    /// The login roles made for its connections, bound to the granted
    /// roles; dropped when the step ends ([`drop_bound_logins`]).
    pub bound: BoundLogins,
    /// Connections the step holds open now.
    pub open: Arc<AtomicUsize>,
    /// Connections the step may hold open at once (`limits.db_connections`);
    /// past it `open` fails (and is audited), so a plugin cannot exhaust the
    /// server's connection slots.
    pub max_connections: usize,
    /// Bytes of one query's rows the host reads (`limits.query_result`);
    /// past it the query is cancelled and refused, so a plugin cannot make
    /// the host buffer a table of gigabytes.
    pub max_result: u64,
}

impl Default for SqlGrant {
    fn default() -> SqlGrant {
        SqlGrant {
            granted: BTreeMap::new(),
            targets: Arc::default(),
            mounts: Vec::new(),
            tools: Arc::default(),
            recorded: BTreeMap::new(),
            ledger: None,
            changes: None,
            lossless: None,
            params: Arc::default(),
            opened: Opened::default(),
            bound: BoundLogins::default(),
            open: Arc::default(),
            max_connections: deployhost_pipeline::grants::DEFAULT_DB_CONNECTIONS,
            max_result: deployhost_pipeline::grants::DEFAULT_QUERY_RESULT,
        }
    }
}

/// The step's connections: how to cancel each one's statement.
pub type Opened = Arc<std::sync::Mutex<Vec<(tokio_postgres::CancelToken, DbTarget)>>>;

/// A stopped step's statements keep running on the server otherwise (a
/// `LOCK TABLE … ; SELECT pg_sleep(120)` would hold its lock for two
/// minutes past a 2 s timeout): each open connection's statement is
/// cancelled, and the connection closes with the step's store, which ends
/// its transaction and frees its locks. Returns how many were cancelled.
pub async fn cancel_opened(opened: &Opened) -> usize {
    let tokens: Vec<(tokio_postgres::CancelToken, DbTarget)> =
        opened.lock().map(|mut o| std::mem::take(&mut *o)).unwrap_or_default();
    let mut cancelled = 0;
    for (token, target) in tokens {
        let Ok(tls) = crate::pgconn::client_config(&target.tls) else { continue };
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls);
        let request = token.cancel_query(tls);
        if let Ok(Ok(())) = tokio::time::timeout(std::time::Duration::from_secs(3), request).await {
            cancelled += 1;
        }
    }
    cancelled
}

/// An environment's `rollback: lossless` rule.
pub struct Lossless {
    pub environment: String,
    pub accepted: Vec<deployhost_pipeline::model::AcceptedMigration>,
}

/// An open connection handed to a step (defined beside the bindings,
/// which name it as the WIT resource).
pub use crate::bindings::SqlConnection as Connection;

/// A statement's audit record as far as its result goes: rows, or the
/// SQLSTATE (or `connection`) it failed with.
pub(crate) fn statement_result<T>(result: &Result<T, SqlError>, rows: impl Fn(&T) -> Option<u64>) -> StatementRan {
    let (rows, error) = match result {
        Ok(v) => (rows(v), None),
        Err(SqlError::Database(db)) => (None, Some(db.code.clone())),
        Err(_) => (None, Some("connection".to_string())),
    };
    StatementRan { rows, error, ..StatementRan::default() }
}

fn sql_error(e: tokio_postgres::Error) -> SqlError {
    match e.as_db_error() {
        Some(db) => SqlError::Database(DbError {
            code: db.code().code().to_string(),
            message: db.message().to_string(),
            detail: db.detail().map(str::to_string),
        }),
        None => SqlError::Connection(error_text(&e)),
    }
}

/// A database error on one line: the message, with its SQLSTATE.
pub fn describe_error(e: &SqlError) -> String {
    match e {
        SqlError::Database(db) => format!("{} (SQLSTATE {})", db.message, db.code),
        SqlError::Connection(m) | SqlError::Tool(m) | SqlError::NotGranted(m) | SqlError::RoleNotGranted(m) => {
            m.clone()
        }
    }
}

/// SQLSTATE `lock_not_available`: a `lock_timeout` ran out.
const LOCK_NOT_AVAILABLE: &str = "55P03";
/// A statement still running after this is watched: whom it waits for.
const WATCH_AFTER: Duration = Duration::from_millis(100);
const WATCH_EVERY: Duration = Duration::from_millis(100);

/// A session holding a lock a step's statement waits for, as
/// `pg_stat_activity` shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
struct Blocker {
    pid: i32,
    user: String,
    application: String,
    state: String,
    /// Seconds since its transaction (or query) started.
    seconds: f64,
    /// The first line of its current (or last) query.
    query: String,
}

impl Blocker {
    fn describe(&self, query: &str) -> String {
        format!(
            "pid {} (user {}, application {}, {} for {:.0} s): {query}",
            self.pid,
            if self.user.is_empty() { "?" } else { &self.user },
            if self.application.is_empty() { "?" } else { &self.application },
            if self.state.is_empty() { "?" } else { &self.state },
            self.seconds
        )
    }
}

const BLOCKERS: &str = "SELECT b.pid, coalesce(b.usename::text, ''), coalesce(b.application_name, ''), \
     coalesce(b.state, ''), coalesce(extract(epoch FROM now() - coalesce(b.xact_start, b.query_start))::float8, 0), \
     coalesce(b.query, '') FROM pg_stat_activity b WHERE b.pid = ANY (pg_blocking_pids($1)) ORDER BY b.pid";

/// While a statement runs past [`WATCH_AFTER`], looks from a second
/// connection at whom its session waits for (`pg_blocking_pids`), and keeps
/// the last sessions seen in `seen`. Never returns: dropped when the
/// statement ends.
async fn watch_blockers(
    target: Option<DbTarget>,
    pid: Option<i32>,
    seen: &std::sync::Mutex<Vec<Blocker>>,
) -> Infallible {
    if let (Some(target), Some(pid)) = (target, pid) {
        tokio::time::sleep(WATCH_AFTER).await;
        if let Ok(observer) = connect(&target).await {
            loop {
                if let Ok(rows) = observer.query(BLOCKERS, &[&pid]).await {
                    let now: Vec<Blocker> = rows
                        .iter()
                        .filter_map(|r| {
                            let query: String = r.try_get(5).ok()?;
                            Some(Blocker {
                                pid: r.try_get(0).ok()?,
                                user: r.try_get(1).ok()?,
                                application: r.try_get(2).ok()?,
                                state: r.try_get(3).ok()?,
                                seconds: r.try_get(4).ok()?,
                                query: query.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("").to_string(),
                            })
                        })
                        .collect();
                    if !now.is_empty()
                        && let Ok(mut s) = seen.lock()
                    {
                        *s = now;
                    }
                }
                tokio::time::sleep(WATCH_EVERY).await;
            }
        }
    }
    std::future::pending().await
}

impl CapsView<'_> {
    /// Runs one statement against a connection and audits it. A statement
    /// that waits for a lock is audited with the sessions that held it
    /// (`blocked_by`), and a lock timeout's error names them.
    async fn audited<T>(
        &mut self,
        conn: &Resource<Connection>,
        statement: &str,
        run: impl AsyncFnOnce(&Client) -> Result<(T, u64), SqlError>,
    ) -> Result<T, SqlError> {
        let conn = self.table.get(conn).map_err(|e| SqlError::Connection(e.to_string()))?;
        let target = self.caps.sql.targets.get(&conn.database).cloned();
        let started = Instant::now();
        let seen = std::sync::Mutex::new(Vec::new());
        let mut result = tokio::select! {
            biased;
            r = run(&conn.client) => r,
            never = watch_blockers(target, conn.pid, &seen) => match never {},
        };
        let blockers = seen.into_inner().unwrap_or_default();
        let redactor = self.caps.audit.redactor();
        let described: Vec<String> =
            blockers.iter().map(|b| b.describe(&redactor.cut(&b.query, AUDIT_STATEMENT_CHARS).0)).collect();
        if let Err(SqlError::Database(db)) = &mut result
            && db.code == LOCK_NOT_AVAILABLE
            && !described.is_empty()
        {
            let held = format!("the lock was held by {}", described.join("; "));
            db.detail = Some(match db.detail.take() {
                Some(d) => format!("{d}; {held}"),
                None => held,
            });
        }
        // Redacted whole before the cut: a cut through a secret would leave its start.
        let (text, _) = redactor.cut(statement, AUDIT_STATEMENT_CHARS);
        let ran = StatementRan {
            database: conn.database.clone(),
            statement: text,
            ms: (started.elapsed().as_secs_f64() * 10_000.0).round() / 10.0,
            blocked_by: (!described.is_empty()).then_some(described),
            ..statement_result(&result, |(_, rows)| Some(*rows))
        };
        let caps = &self.caps;
        caps.audit.record(Some(&caps.step), Record::Sql(ran));
        result.map(|(v, _)| v)
    }

    /// A query went over `limits.query_result`: the server is told to stop
    /// sending (its rows would otherwise still cross the wire), the
    /// connection's transaction is rolled back as on any error, and the cap
    /// is audited.
    async fn stop_query(&mut self, conn: &Resource<Connection>, statement: &str, max: u64, rows_read: u64) {
        let Ok(c) = self.table.get(conn) else { return };
        let database = c.database.clone();
        let mut cancelled = false;
        if let Some(target) = self.caps.sql.targets.get(&database)
            && let Ok(tls) = crate::pgconn::client_config(&target.tls)
        {
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls);
            cancelled = c.client.cancel_token().cancel_query(tls).await.is_ok();
        }
        let rolled_back = c.client.batch_execute("ROLLBACK").await.is_ok();
        let caps = &self.caps;
        let (text, _) = caps.audit.redactor().cut(statement, AUDIT_STATEMENT_CHARS);
        let message =
            format!("a query's result went over {} (limits.query_result)", crate::pipeline::units::ByteSize(max));
        let hit = LimitHit {
            database: Some(database.to_string()),
            statement: Some(text),
            limit: Some(max),
            rows_read: Some(rows_read),
            cancelled: Some(cancelled),
            rolled_back: Some(rolled_back),
            ..LimitHit::new(LimitKind::QueryResult, message)
        };
        caps.audit.record(Some(&caps.step), Record::Limit(hit));
    }

    fn deny_database(&self, database: &str, what: &str) -> SqlError {
        let caps = &self.caps;
        let denial = Denial { database: Some(database.to_string()), op: Some(what.to_string()), ..Denial::default() };
        caps.audit.record(Some(&caps.step), Record::SqlDenied(denial));
        SqlError::NotGranted(format!(
            "step `{}` may not use database `{database}`: add it to the step's grants.databases",
            caps.step
        ))
    }

    /// The host's tools (dumps, restores, the ledger's revert, a shadow
    /// rehearsal) run as the pipeline's login: a step may call them on a
    /// database granted without roles only.
    fn host_tools(&self, database: &str, what: &str) -> Result<(), SqlError> {
        let roles = match self.caps.sql.granted.get(database) {
            None => return Err(self.deny_database(database, what)),
            Some(roles) if roles.is_empty() => return Ok(()),
            Some(roles) => roles,
        };
        let caps = &self.caps;
        let denial = Denial {
            database: Some(database.to_string()),
            op: Some(what.to_string()),
            reason: Some("the grant lists roles".into()),
            ..Denial::default()
        };
        caps.audit.record(Some(&caps.step), Record::SqlDenied(denial));
        Err(SqlError::NotGranted(format!(
            "step `{}` is granted `{database}` as {} only, and `{what}` runs as the pipeline's login: grant the \
             database without `roles:` to a step that dumps, restores or reverts it",
            caps.step,
            roles.join(", ")
        )))
    }
}

fn params(values: Vec<Value>) -> Vec<Param> {
    values.into_iter().map(Param).collect()
}

fn refs(params: &[Param]) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync)).collect()
}

impl Host for CapsView<'_> {
    async fn open(&mut self, database: String) -> Result<Resource<Connection>, SqlError> {
        let Some(roles) = self.caps.sql.granted.get(&database).cloned() else {
            return Err(self.deny_database(&database, "open"));
        };
        let target = self.caps.sql.targets.get(&database).cloned().ok_or_else(|| {
            SqlError::Connection(format!("database `{database}` has no connection settings in this run"))
        })?;
        let open = self.caps.sql.open.clone();
        let slot = ConnectionSlot::new(open.clone());
        let max = self.caps.sql.max_connections;
        if open.fetch_add(1, Ordering::SeqCst) >= max {
            let caps = &self.caps;
            let message =
                format!("step `{}` already holds {max} open connections (raise limits.db_connections)", caps.step);
            let hit = LimitHit {
                database: Some(database.clone()),
                limit: Some(max as u64),
                ..LimitHit::new(LimitKind::DbConnections, message.clone())
            };
            caps.audit.record(Some(&caps.step), Record::Limit(hit));
            return Err(SqlError::Connection(message));
        }
        let bound = self.caps.sql.bound.clone();
        let (client, bound_login) = match connect_step(&target, &roles, &bound).await {
            Ok(opened) => opened,
            Err(e) => {
                if let SqlError::NotGranted(reason) | SqlError::RoleNotGranted(reason) = &e {
                    let caps = &self.caps;
                    let denial = Denial {
                        database: Some(database.clone()),
                        op: Some("open".into()),
                        reason: Some(reason.clone()),
                        ..Denial::default()
                    };
                    caps.audit.record(Some(&caps.step), Record::SqlDenied(denial));
                }
                return Err(e);
            }
        };
        let pid = client.query_one("SELECT pg_backend_pid()", &[]).await.ok().and_then(|r| r.try_get(0).ok());
        if let Ok(mut opened) = self.caps.sql.opened.lock() {
            opened.push((client.cancel_token(), target.clone()));
        }
        let caps = &self.caps;
        let opened = ConnectionOpened { database: database.clone(), server: target.display.to_string(), bound_login };
        caps.audit.record(Some(&caps.step), Record::SqlOpen(opened));
        self.table
            .push(Connection { database, roles, client, pid, slot })
            .map_err(|e| SqlError::Connection(e.to_string()))
    }

    async fn dump(&mut self, database: String, path: String) -> Result<DumpInfo, SqlError> {
        self.host_tools(&database, "dump")?;
        backup::dump(self, &database, &path).await
    }

    async fn restore(&mut self, database: String, path: String) -> Result<(), SqlError> {
        self.host_tools(&database, "restore")?;
        backup::restore(self, &database, &path).await
    }

    async fn check_reversible(&mut self, label: String, sql: String) -> Result<Vec<String>, SqlError> {
        self.reversibility(&label, &sql)
    }

    async fn lint(&mut self, label: String, sql: String) -> Result<Vec<LintFinding>, SqlError> {
        lint(&label, &sql)
    }

    async fn names(&mut self, sql: String) -> Result<Vec<NamedObject>, SqlError> {
        use crate::sqlparse::NameKind;
        let named = crate::sqlparse::names(&sql)
            .map_err(|message| SqlError::Database(DbError { code: "42601".into(), message, detail: None }))?;
        Ok(named
            .into_iter()
            .map(|n| NamedObject {
                kind: match n.kind {
                    NameKind::Relation => ObjectKind::Relation,
                    NameKind::Function => ObjectKind::Function,
                },
                schema: n.schema,
                name: n.name,
            })
            .collect())
    }

    async fn rehearse(&mut self, database: String, files: Vec<RehearsalFile>) -> Result<Vec<RehearsedFile>, SqlError> {
        self.host_tools(&database, "rehearse")?;
        shadow::rehearse(self, &database, files).await
    }

    async fn revert(&mut self, database: String) -> Result<Vec<String>, SqlError> {
        self.host_tools(&database, "revert")?;
        let dir = self.changes_dir()?;
        let target = self.caps.sql.targets.get(&database).cloned().ok_or_else(|| {
            SqlError::Connection(format!("database `{database}` has no connection settings in this run"))
        })?;
        let client = connect(&target).await?;
        let started = Instant::now();
        let result = ledger::revert(&client, &dir, &database).await;
        let caps = &self.caps;
        let ms = started.elapsed().as_millis() as u64;
        let reverted =
            Reverted { database, ms, done: result.as_ref().ok().cloned(), error: result.as_ref().err().cloned() };
        caps.audit.record(Some(&caps.step), Record::SqlRevert(reverted));
        result.map_err(SqlError::Tool)
    }
}

/// A failure of the change ledger's own statements (it copies the rows a
/// migration destroys before it runs, so it waits for the same locks). The
/// ledger reports PostgreSQL's message only; a lock timeout is told by it
/// (PostgreSQL's English messages, as Supabase runs them) and given back
/// as SQLSTATE 55P03, so that the migrator retries the file as it does for
/// its own statements.
fn ledger_error(e: &str) -> SqlError {
    let message = format!("the change ledger: {e}");
    if e.contains("canceling statement due to lock timeout") {
        SqlError::Database(DbError { code: LOCK_NOT_AVAILABLE.into(), message, detail: None })
    } else {
        SqlError::Tool(message)
    }
}

/// `lint`: the findings of [`crate::sqllint`] for one file, as the WIT
/// names them; a file PostgreSQL's parser refuses is SQLSTATE 42601.
fn lint(label: &str, sql: &str) -> Result<Vec<LintFinding>, SqlError> {
    use crate::sqllint::{Class, LintError, Severity};
    let findings = crate::sqllint::lint(sql).map_err(|e| match e {
        LintError::Syntax(message) => SqlError::Database(DbError {
            code: "42601".into(),
            message,
            detail: Some(format!("{label} is not valid SQL for PostgreSQL's parser")),
        }),
    })?;
    Ok(findings
        .into_iter()
        .map(|f| LintFinding {
            rule: f.rule.id().to_string(),
            class: match f.class {
                Class::Locking => LintClass::Locking,
                Class::Destructive => LintClass::Destructive,
                Class::DataDependent => LintClass::DataDependent,
                Class::Advice => LintClass::Advice,
            },
            severity: match f.severity {
                Severity::Error => LintSeverity::Error,
                Severity::Warning => LintSeverity::Warning,
            },
            file: label.to_string(),
            line: f.line,
            column: f.column,
            lock: f.lock.map(|l| l.sql().to_string()),
            relation: f.relation,
            why: f.why,
            fix: f.fix,
            check: f.check,
            tables: f.tables.iter().map(crate::sqlparse::TableName::sql).collect(),
        })
        .collect())
}

impl CapsView<'_> {
    /// `check-reversible`: the statements of `sql` that the ledger cannot
    /// undo with nothing lost; refused under `rollback: lossless` unless
    /// the environment accepts `label`.
    fn reversibility(&self, label: &str, sql: &str) -> Result<Vec<String>, SqlError> {
        // A file PostgreSQL's parser refuses fails when it runs, with the
        // server's own error; nothing to classify.
        let Ok(findings) = crate::sqlparse::analyze(sql) else { return Ok(Vec::new()) };
        let lines: Vec<String> = findings
            .iter()
            .filter(|a| a.class != crate::sqlparse::Reversibility::Lossless)
            .map(|a| format!("{label}:{}: {}: {}", a.line, a.class.describe(), a.why))
            .collect();
        let Some(rule) = &self.caps.sql.lossless else { return Ok(lines) };
        if lines.is_empty() {
            return Ok(lines);
        }
        if let Some(accepted) = rule.accepted.iter().find(|a| a.migration == label) {
            let caps = &self.caps;
            let let_through = Ledgered {
                label: label.to_string(),
                accepted_lossy: Some(accepted.reason.clone()),
                findings: Some(lines.clone()),
                ..Ledgered::default()
            };
            caps.audit.record(Some(&caps.step), Record::SqlLedger(let_through));
            return Ok(lines);
        }
        let caps = &self.caps;
        let denial = Denial {
            op: Some("rollback: lossless".into()),
            label: Some(label.to_string()),
            findings: Some(lines.clone()),
            ..Denial::default()
        };
        caps.audit.record(Some(&caps.step), Record::SqlDenied(denial));
        Err(SqlError::Tool(format!(
            "environment `{env}` requires `rollback: lossless`, and {label} is not: {}; to deploy it anyway, add              `accept_lossy: [{{ migration: {label}, reason: \"…\" }}]` to environments.{env} (its deploys need an approval)",
            lines.join("; "),
            env = rule.environment
        )))
    }

    fn changes_dir(&self) -> Result<PathBuf, SqlError> {
        self.caps
            .sql
            .changes
            .clone()
            .ok_or_else(|| SqlError::Tool("this step has no change ledger (it runs outside a run)".into()))
    }
}

impl HostConnection for CapsView<'_> {
    async fn query(
        &mut self,
        conn: Resource<Connection>,
        statement: String,
        values: Vec<Value>,
    ) -> Result<QueryResult, SqlError> {
        let p = params(values);
        let max = self.caps.sql.max_result;
        let mut over: Option<u64> = None;
        let result = self
            .audited(&conn, &statement, async |client| {
                let stream = client.query_raw(&statement, refs(&p)).await.map_err(sql_error)?;
                let mut stream = std::pin::pin!(stream);
                let (mut columns, mut out, mut bytes) = (None, Vec::new(), 0u64);
                // Row by row, counting the bytes handed to the plugin: the
                // host stops reading at the cap instead of buffering it all.
                while let Some(row) = stream.try_next().await.map_err(sql_error)? {
                    if columns.is_none() {
                        columns = Some(row.columns().iter().map(|c| c.name().to_string()).collect::<Vec<_>>());
                    }
                    let values = row_values(&row).map_err(SqlError::Connection)?;
                    bytes += values.iter().map(value_bytes).sum::<u64>();
                    if bytes > max {
                        over = Some(out.len() as u64 + 1);
                        return Err(SqlError::Connection(format!(
                            "the result is over limits.query_result ({}): the host stopped reading at row {}, \
                             cancelled the query and rolled back its transaction; select fewer rows or columns, \
                             or raise limits.query_result",
                            crate::pipeline::units::ByteSize(max),
                            out.len() + 1
                        )));
                    }
                    out.push(values);
                }
                let columns = match columns {
                    Some(c) => c,
                    None => client
                        .prepare(&statement)
                        .await
                        .map(|s| s.columns().iter().map(|c| c.name().to_string()).collect())
                        .unwrap_or_default(),
                };
                let n = out.len() as u64;
                Ok((QueryResult { columns, rows: out, rows_affected: n }, n))
            })
            .await;
        if let Some(rows_read) = over {
            self.stop_query(&conn, &statement, max, rows_read).await;
        }
        result
    }

    async fn execute(
        &mut self,
        conn: Resource<Connection>,
        statement: String,
        values: Vec<Value>,
    ) -> Result<u64, SqlError> {
        let p = params(values);
        self.audited(&conn, &statement, async |client| {
            let n = client.execute(&statement, &refs(&p)).await.map_err(sql_error)?;
            Ok((n, n))
        })
        .await
    }

    async fn batch(&mut self, conn: Resource<Connection>, script: String) -> Result<(), SqlError> {
        self.audited(&conn, &script, async |client| {
            client.batch_execute(&script).await.map_err(sql_error)?;
            Ok(((), 0))
        })
        .await
    }

    async fn transaction(&mut self, conn: Resource<Connection>, statements: Vec<String>) -> Result<(), SqlError> {
        let summary = statements.join(";\n");
        self.audited(&conn, &summary, async |client| {
            client.batch_execute("BEGIN").await.map_err(sql_error)?;
            for s in &statements {
                if let Err(e) = client.batch_execute(s).await {
                    let _ = client.batch_execute("ROLLBACK").await;
                    return Err(sql_error(e));
                }
            }
            client.batch_execute("COMMIT").await.map_err(sql_error)?;
            Ok(((), 0))
        })
        .await
    }

    async fn begin(&mut self, conn: Resource<Connection>) -> Result<(), SqlError> {
        self.batch(conn, "BEGIN".into()).await
    }

    async fn commit(&mut self, conn: Resource<Connection>) -> Result<(), SqlError> {
        self.batch(conn, "COMMIT".into()).await
    }

    async fn rollback(&mut self, conn: Resource<Connection>) -> Result<(), SqlError> {
        self.batch(conn, "ROLLBACK".into()).await
    }

    async fn set_role(&mut self, conn: Resource<Connection>, role: String) -> Result<(), SqlError> {
        let allowed = {
            let c = self.table.get(&conn).map_err(|e| SqlError::Connection(e.to_string()))?;
            c.roles.contains(&role).then(|| c.database.clone()).ok_or_else(|| (c.database.clone(), c.roles.clone()))
        };
        match allowed {
            Ok(_) => self.batch(conn, format!("SET ROLE {}", quote_ident(&role))).await,
            Err((database, roles)) => {
                let caps = &self.caps;
                let denial = Denial {
                    database: Some(database.clone()),
                    op: Some("set-role".into()),
                    role: Some(role.clone()),
                    ..Denial::default()
                };
                caps.audit.record(Some(&caps.step), Record::SqlDenied(denial));
                Err(SqlError::RoleNotGranted(format!(
                    "step `{}` may not switch to role `{role}` on `{database}` (granted roles: {roles:?}); \
                     write `databases: [{{ name: {database}, roles: [{role}] }}]` in its grants",
                    caps.step
                )))
            }
        }
    }

    async fn reset_role(&mut self, conn: Resource<Connection>) -> Result<(), SqlError> {
        self.batch(conn, "RESET ROLE".into()).await
    }

    async fn recorded_transaction(
        &mut self,
        conn: Resource<Connection>,
        label: String,
        statements: Vec<String>,
    ) -> Result<Vec<String>, SqlError> {
        let dir = self.changes_dir()?;
        let database = self.table.get(&conn).map_err(|e| SqlError::Connection(e.to_string()))?.database.clone();
        let summary = statements.join(";\n");
        let mut recorded: Option<ledger::Entry> = None;
        let result = self
            .audited(&conn, &summary, async |client| {
                client.batch_execute("BEGIN").await.map_err(sql_error)?;
                let fail = async |e: SqlError| {
                    let _ = client.batch_execute("ROLLBACK").await;
                    Err(e)
                };
                let recording = match ledger::Recording::start(client, &dir, &database, &label, &statements).await {
                    Ok(r) => r,
                    Err(e) => return fail(ledger_error(&e)).await,
                };
                for s in &statements {
                    if let Err(e) = client.batch_execute(s).await {
                        return fail(sql_error(e)).await;
                    }
                }
                let entry = match recording.finish(client).await {
                    Ok(entry) => entry,
                    Err(e) => return fail(ledger_error(&e)).await,
                };
                crate::failpoint::hit("ledger-before-commit");
                client.batch_execute("COMMIT").await.map_err(sql_error)?;
                let lines = ledger::summary(&entry);
                recorded = Some(entry);
                Ok((lines, 0))
            })
            .await;
        if let Some(entry) = recorded {
            let caps = &self.caps;
            let written = Ledgered {
                label: entry.label.clone(),
                database: Some(entry.database.clone()),
                xid: Some(entry.xid.clone()),
                changes: Some(entry.changes.len() as u64),
                rows: Some(entry.rows.len() as u64),
                copies: Some(entry.saved.len() as u64),
                irreversible: Some(entry.irreversible.clone()),
                ..Ledgered::default()
            };
            caps.audit.record(Some(&caps.step), Record::SqlLedger(written));
        }
        result
    }

    async fn drop(&mut self, conn: Resource<Connection>) -> wasmtime::Result<()> {
        // Dropping the client closes the connection; an open transaction is
        // rolled back by the server.
        self.table.delete(conn)?;
        Ok(())
    }
}
