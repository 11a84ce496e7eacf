//! Backup and restore with PostgreSQL's own tools, run by the host on the
//! step's behalf with the connection settings it holds: `pg_dump -Fc` of the
//! app's schemas into a write-granted folder, and a restore that drops what
//! is there and replays the dump in one transaction, so the database ends
//! fully restored or untouched (what is in scope: `scope.rs`). The password
//! and TLS settings go to the tools in their environment, never on a
//! command line.

use super::connect;
use super::scope::{self, Recorded};
use crate::audit::AuditEvent;
use crate::bindings::deployhost::plugin::sql::{DumpInfo, SqlError};
use crate::capabilities::CapsView;
use crate::capabilities::fs;
use crate::pgconn::{DbTarget, error_text};
use crate::registry::sha256_hex;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Instant;
use tokio::process::Command;

/// The PostgreSQL client tools on this machine, by major version.
#[derive(Default)]
pub struct ToolSet {
    found: OnceLock<Vec<(u32, PathBuf)>>,
}

impl ToolSet {
    /// Folders holding `pg_dump`, newest first: Debian's
    /// `/usr/lib/postgresql/<major>/bin`, then whatever `PATH` has.
    fn dirs(&self) -> &[(u32, PathBuf)] {
        self.found.get_or_init(|| {
            let mut dirs = Vec::new();
            if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
                for e in entries.flatten() {
                    if let Ok(major) = e.file_name().to_string_lossy().parse::<u32>() {
                        let bin = e.path().join("bin");
                        if bin.join("pg_dump").exists() {
                            dirs.push((major, bin));
                        }
                    }
                }
            }
            if let Some(path) = std::env::var_os("PATH") {
                for dir in std::env::split_paths(&path) {
                    let tool = dir.join("pg_dump");
                    if let Some(major) = tool_major(&tool)
                        && !dirs.iter().any(|(m, _)| *m == major)
                    {
                        dirs.push((major, dir));
                    }
                }
            }
            dirs.sort_by_key(|d| std::cmp::Reverse(d.0));
            dirs
        })
    }

    /// The newest `tool`, which must be at least the server's major version
    /// (older ones refuse newer servers).
    pub fn pick(&self, tool: &str, server_major: u32) -> Result<PathBuf, SqlError> {
        match self.dirs().first() {
            Some((major, dir)) if *major >= server_major => Ok(dir.join(tool)),
            Some((major, _)) => Err(SqlError::Tool(format!(
                "the server runs PostgreSQL {server_major} but the newest {tool} here is {major}; \
                 install PostgreSQL {server_major}'s client tools (Debian: postgresql-client-{server_major})"
            ))),
            None => Err(SqlError::Tool(format!(
                "{tool} is not installed; install PostgreSQL {server_major}'s client tools (Debian: postgresql-client-{server_major})"
            ))),
        }
    }
}

fn tool_major(tool: &Path) -> Option<u32> {
    let out = std::process::Command::new(tool).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "pg_dump (PostgreSQL) 15.18 (Debian …)"
    text.split_whitespace().nth(2)?.split('.').next()?.parse().ok()
}

/// Written next to each backup: what it is and its digest, checked before
/// it is ever restored.
#[derive(Serialize, Deserialize)]
struct Manifest {
    database: String,
    server_version: String,
    sha256: String,
    bytes: u64,
    created: String,
    /// The schemas dumped, the extensions and the app's triggers and
    /// policies on platform tables at the time (absent in older backups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<Recorded>,
}

fn manifest_path(dump: &Path) -> PathBuf {
    let mut name = dump.as_os_str().to_owned();
    name.push(".json");
    PathBuf::from(name)
}

/// Environment for the tools: the connection without a command line.
fn pg_env(cmd: &mut Command, target: &DbTarget) {
    let c = &target.config;
    cmd.env_clear().env("LC_ALL", "C").env("PGCONNECT_TIMEOUT", "10");
    if let Some(tokio_postgres::config::Host::Tcp(h)) = c.get_hosts().first() {
        cmd.env("PGHOST", h);
    }
    if let Some(tokio_postgres::config::Host::Unix(p)) = c.get_hosts().first() {
        cmd.env("PGHOST", p);
    }
    cmd.env("PGPORT", c.get_ports().first().copied().unwrap_or(5432).to_string());
    if let Some(u) = c.get_user() {
        cmd.env("PGUSER", u);
    }
    if let Some(d) = c.get_dbname() {
        cmd.env("PGDATABASE", d);
    }
    if let Some(pw) = c.get_password() {
        cmd.env("PGPASSWORD", String::from_utf8_lossy(pw).into_owned());
    }
    for (key, value) in target.tls.libpq_env() {
        cmd.env(key, value);
    }
}

async fn run_tool(mut cmd: Command, what: &str) -> Result<(), SqlError> {
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .await
        .map_err(|e| SqlError::Tool(format!("cannot run {what}: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(6).collect::<Vec<_>>().into_iter().rev().collect();
    Err(SqlError::Tool(format!("{what} failed: {}", tail.join(" | "))))
}

/// `SHOW server_version_num` → (major, full version text).
async fn server_version(target: &DbTarget) -> Result<(u32, String), SqlError> {
    let client = connect(target).await.map_err(SqlError::Connection)?;
    let row = client
        .query_one("SELECT current_setting('server_version_num')::int, current_setting('server_version')", &[])
        .await
        .map_err(|e| SqlError::Connection(error_text(&e)))?;
    let num: i32 = row.get(0);
    Ok(((num / 10_000) as u32, row.get(1)))
}

fn path_error(state: &CapsView<'_>, database: &str, op: &str, path: &str, message: String) -> SqlError {
    let caps = &state.caps;
    caps.audit.record(
        Some(&caps.step),
        AuditEvent::FsDenied,
        json!({ "op": op, "path": path, "database": database, "reason": message }),
    );
    SqlError::NotGranted(message)
}

fn target(state: &CapsView<'_>, database: &str) -> Result<DbTarget, SqlError> {
    state
        .caps
        .sql
        .targets
        .get(database)
        .cloned()
        .ok_or_else(|| SqlError::Connection(format!("database `{database}` has no connection settings in this run")))
}

pub async fn dump(state: &mut CapsView<'_>, database: &str, path: &str) -> Result<DumpInfo, SqlError> {
    let host = fs::host_path(&state.caps.sql.mounts, path, true)
        .map_err(|m| path_error(state, database, "dump-write", path, m))?;
    let target = target(state, database)?;
    let started = Instant::now();
    let (major, version) = server_version(&target).await?;
    let tool = state.caps.sql.tools.pick("pg_dump", major)?;
    let recorded = {
        let client = connect(&target).await.map_err(SqlError::Connection)?;
        scope::record(&client, &state.caps.sql.scope).await.map_err(SqlError::Connection)?
    };
    if recorded.schemas.is_empty() {
        return Err(SqlError::Tool(format!(
            "no schema of `{database}` is in the backup's scope ({})",
            recorded.scope.describe()
        )));
    }
    let mut cmd = Command::new(&tool);
    pg_env(&mut cmd, &target);
    cmd.args(["--format=custom", "--no-password"]).args(scope::dump_args(&recorded.schemas)).arg("--file").arg(&host);
    run_tool(cmd, "pg_dump").await?;

    let bytes = std::fs::read(&host).map_err(|e| SqlError::Tool(format!("cannot read the backup: {e}")))?;
    let info = DumpInfo {
        path: path.to_string(),
        sha256: sha256_hex(&bytes),
        bytes: bytes.len() as u64,
        server_version: version,
    };
    let manifest = Manifest {
        database: database.to_string(),
        server_version: info.server_version.clone(),
        sha256: info.sha256.clone(),
        bytes: info.bytes,
        created: crate::audit::timestamp(std::time::SystemTime::now()),
        scope: Some(recorded.clone()),
    };
    let text = serde_json::to_string_pretty(&manifest).unwrap_or_default();
    std::fs::write(manifest_path(&host), text)
        .map_err(|e| SqlError::Tool(format!("cannot write the backup manifest: {e}")))?;
    let caps = &state.caps;
    caps.audit.record(
        Some(&caps.step),
        AuditEvent::SqlDump,
        json!({ "database": database, "path": path, "sha256": info.sha256, "bytes": info.bytes, "tool": tool.display().to_string(), "schemas": recorded.schemas, "ms": started.elapsed().as_millis() as u64 }),
    );
    Ok(info)
}

pub async fn restore(state: &mut CapsView<'_>, database: &str, path: &str) -> Result<(), SqlError> {
    let host = fs::host_path(&state.caps.sql.mounts, path, false)
        .map_err(|m| path_error(state, database, "restore-read", path, m))?;
    let bytes = std::fs::read(&host).map_err(|e| SqlError::Tool(format!("cannot read backup `{path}`: {e}")))?;
    let digest = sha256_hex(&bytes);
    let mut recorded: Option<Recorded> = None;
    if let Ok(text) = std::fs::read_to_string(manifest_path(&host)) {
        let manifest: Manifest = serde_json::from_str(&text)
            .map_err(|e| SqlError::Tool(format!("backup manifest of `{path}` is damaged: {e}")))?;
        if manifest.sha256 != digest {
            return Err(SqlError::Tool(format!(
                "backup `{path}` changed since it was taken (sha256 {digest}, recorded {}); refusing to restore it",
                manifest.sha256
            )));
        }
        recorded = manifest.scope;
    }
    // `schemas:`/`exclude_schemas:` on the restore step override the backup's.
    let given = &state.caps.sql.scope;
    if *given != scope::Scope::default() {
        recorded.get_or_insert_with(Recorded::default).scope = given.clone();
    }
    let target = target(state, database)?;
    let started = Instant::now();
    let (major, _) = server_version(&target).await?;
    let pg_restore = state.caps.sql.tools.pick("pg_restore", major)?;
    let psql = state.caps.sql.tools.pick("psql", major)?;

    let work = tempfile::tempdir().map_err(|e| SqlError::Tool(format!("cannot make a work folder: {e}")))?;
    let write = |name: &str, text: &str| -> Result<PathBuf, SqlError> {
        let file = work.path().join(name);
        std::fs::write(&file, text).map_err(|e| SqlError::Tool(format!("cannot write {name}: {e}")))?;
        Ok(file)
    };
    let mut cmd = Command::new(&pg_restore);
    cmd.env_clear().env("LC_ALL", "C").arg("--list").arg(&host);
    let list = tool_output(cmd, "pg_restore --list").await?;

    // Everything is checked before anything changes.
    let plan = {
        let client = connect(&target).await.map_err(SqlError::Connection)?;
        scope::plan_restore(&client, &list, recorded.as_ref()).await.map_err(SqlError::Tool)?
    };
    let clear = write("clear.sql", &plan.clear)?;
    let after = write("after.sql", &plan.after)?;
    let use_list = write("restore.list", &plan.list)?;
    let script = work.path().join("restore.sql");
    let mut cmd = Command::new(&pg_restore);
    cmd.env_clear().env("LC_ALL", "C").arg("--use-list").arg(&use_list).arg("--file").arg(&script).arg(&host);
    run_tool(cmd, "pg_restore").await?;

    let mut cmd = Command::new(&psql);
    pg_env(&mut cmd, &target);
    cmd.args(["--no-psqlrc", "--quiet", "--no-password", "--single-transaction", "--set", "ON_ERROR_STOP=1"]);
    for file in [&clear, &script, &after] {
        cmd.arg("--file").arg(file);
    }
    let result = run_tool(cmd, "restore (psql)").await;
    let caps = &state.caps;
    if result.is_ok() && !plan.new_extensions.is_empty() {
        caps.log.line(
            "host",
            &format!(
                "warning: extension(s) installed since the backup are still installed (a restore never drops extensions): {}",
                plan.new_extensions.join(", ")
            ),
        );
    }
    caps.audit.record(
        Some(&caps.step),
        AuditEvent::SqlRestore,
        json!({
            "database": database, "path": path, "sha256": digest, "ok": result.is_ok(),
            "schemas_dropped": plan.dropped_schemas, "extensions_kept": plan.new_extensions,
            "default_privileges_left": plan.kept_default_acls,
            "ms": started.elapsed().as_millis() as u64
        }),
    );
    result
}

/// Runs a tool and returns its stdout.
async fn tool_output(mut cmd: Command, what: &str) -> Result<String, SqlError> {
    let out = cmd.stdin(Stdio::null()).output().await.map_err(|e| SqlError::Tool(format!("cannot run {what}: {e}")))?;
    if !out.status.success() {
        return Err(SqlError::Tool(format!("{what} failed: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tools(majors: &[u32]) -> ToolSet {
        let set = ToolSet::default();
        let _ = set.found.set(majors.iter().map(|m| (*m, PathBuf::from(format!("/pg/{m}/bin")))).collect());
        set
    }

    #[test]
    fn picks_the_newest_tool_that_can_talk_to_the_server() {
        assert_eq!(tools(&[17, 15]).pick("pg_dump", 15).ok(), Some(PathBuf::from("/pg/17/bin/pg_dump")));
        assert_eq!(tools(&[15]).pick("pg_dump", 15).ok(), Some(PathBuf::from("/pg/15/bin/pg_dump")));
    }

    #[test]
    fn names_the_client_needed_for_a_newer_server() {
        let Err(SqlError::Tool(message)) = tools(&[15]).pick("pg_dump", 17) else { panic!("must refuse") };
        assert!(message.contains("PostgreSQL 17") && message.contains("postgresql-client-17"), "{message}");
        let Err(SqlError::Tool(message)) = tools(&[]).pick("pg_dump", 16) else { panic!("must refuse") };
        assert!(message.contains("not installed"), "{message}");
    }
}
