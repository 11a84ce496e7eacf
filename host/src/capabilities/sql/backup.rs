//! Backup and restore with PostgreSQL's own tools, run by the host on the
//! step's behalf with the connection settings it holds: `pg_dump -Fc` of the
//! app's schemas into a write-granted folder, and a restore that drops what
//! is there and replays the dump in one transaction, so the database ends
//! fully restored or untouched (what is in scope: `scope.rs`). The password
//! and TLS settings go to the tools in their environment, never on a
//! command line.

use super::connect;
use super::scope::{self, Recorded};
use crate::audit::{Denial, Dumped, Record, Restored};
use crate::bindings::deployhost::plugin::sql::{DumpInfo, SqlError};
use crate::capabilities::CapsView;
use crate::capabilities::fs;
use crate::capabilities::hostfs::GrantFile;
use crate::pgconn::{DbTarget, error_text};
use serde::{Deserialize, Serialize};
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

/// What data a backup holds (`pg-backup`'s `data:`, read by the host).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum BackupData {
    /// Every table's rows: what a restore (`ledger: false`, disaster
    /// recovery) replays.
    #[default]
    All,
    /// The schema only.
    Schema,
    /// The schema, and the rows of the tables the pending migrations in
    /// this folder can drop or rewrite: what the change ledger's rollback
    /// could ever need beyond its own copies.
    Changes { migrations: String },
}

impl BackupData {
    pub fn from_params(params: &serde_json::Map<String, serde_json::Value>) -> Result<BackupData, String> {
        let migrations = params.get("migrations").and_then(|v| v.as_str()).unwrap_or("supabase/migrations").to_string();
        match params.get("data").and_then(|v| v.as_str()) {
            None | Some("all") => Ok(BackupData::All),
            Some("schema") => Ok(BackupData::Schema),
            Some("changes") => Ok(BackupData::Changes { migrations }),
            Some(other) => Err(format!("`data: {other}`: say all, schema or changes")),
        }
    }
}

/// The tables whose rows the pending migrations in `dir` (a folder of
/// `<version>_<name>.sql` under the step's grants) can drop or rewrite,
/// as PostgreSQL's parser reads them; `None` when a file cannot be read
/// or parsed (then every table's rows are kept).
async fn tables_changed(
    mounts: &[fs::Mount],
    client: &tokio_postgres::Client,
    dir: &str,
) -> Result<Option<Vec<String>>, SqlError> {
    let guest = format!("/{}", dir.trim_matches('/'));
    let host = match mounts.iter().find(|m| m.guest == guest) {
        Some(m) => m.host.clone(),
        None => fs::host_path(mounts, dir, false)
            .map_err(|m| SqlError::Tool(format!("`data: changes` reads the migrations in {dir}: {m}")))?,
    };
    let applied: Vec<String> = match client
        .query(
            "SELECT version FROM supabase_migrations.schema_migrations \
             WHERE to_regclass('supabase_migrations.schema_migrations') IS NOT NULL",
            &[],
        )
        .await
    {
        Ok(rows) => rows.iter().map(|r| r.get(0)).collect(),
        Err(_) => Vec::new(),
    };
    let mut files: Vec<(String, PathBuf)> = std::fs::read_dir(&host)
        .map_err(|e| SqlError::Tool(format!("cannot read {dir}: {e}")))?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let version = name.strip_suffix(".sql")?.split('_').next()?.to_string();
            (version.bytes().all(|b| b.is_ascii_digit()) && !version.is_empty()).then(|| (version, e.path()))
        })
        .filter(|(v, _)| !applied.contains(v))
        .collect();
    files.sort();
    let mut tables = Vec::new();
    for (_, path) in files {
        let Ok(sql) = crate::pipeline::files::read_regular_string(&path, 64 << 20) else { return Ok(None) };
        let Ok(analyses) = crate::sqlparse::analyze(&sql) else { return Ok(None) };
        for save in analyses.iter().flat_map(|a| &a.saves) {
            let rows = match save {
                crate::sqlparse::Save::Table { table } | crate::sqlparse::Save::Columns { table, .. } => client
                    .query(
                        "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c \
                         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1)",
                        &[&table.sql()],
                    )
                    .await,
                crate::sqlparse::Save::Schema { schema } => client
                    .query(
                        "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c \
                         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')",
                        &[schema],
                    )
                    .await,
            };
            let rows = rows.map_err(|e| SqlError::Connection(error_text(&e)))?;
            tables.extend(rows.iter().map(|r| r.get::<_, String>(0)));
        }
    }
    tables.sort();
    tables.dedup();
    Ok(Some(tables))
}

/// [`tables_changed`] with the names in the migrations resolved as the
/// migrations will: the role's own `search_path` (`scope::record` set
/// the session's to `pg_catalog`).
async fn tables_changed_in_session(
    mounts: &[fs::Mount],
    client: &tokio_postgres::Client,
    dir: &str,
) -> Result<Option<Vec<String>>, SqlError> {
    client.batch_execute("RESET search_path").await.map_err(|e| SqlError::Connection(error_text(&e)))?;
    tables_changed(mounts, client, dir).await
}

/// `pg_dump` arguments leaving out the rows of every table of `schemas`
/// but `keep` (qualified as `format('%I.%I')` writes them).
async fn data_args(
    client: &tokio_postgres::Client,
    schemas: &[String],
    keep: &[String],
) -> Result<Vec<String>, SqlError> {
    let rows = client
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname), format('\"%s\".\"%s\"', replace(n.nspname, '\"', '\"\"'), \
             replace(c.relname, '\"', '\"\"')) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'p', 'm')",
            &[&schemas],
        )
        .await
        .map_err(|e| SqlError::Connection(error_text(&e)))?;
    Ok(rows
        .iter()
        .filter(|r| !keep.contains(&r.get::<_, String>(0)))
        .map(|r| format!("--exclude-table-data={}", r.get::<_, String>(1)))
        .collect())
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

/// Largest backup the host reads back (for its digest, or to restore).
const MAX_BACKUP: u64 = 64 << 30;

/// One line of the host's backup ledger (`<state-dir>/backups.jsonl`).
#[derive(Serialize, Deserialize)]
struct LedgerEntry {
    /// The backup's path on the host, canonical.
    path: String,
    sha256: String,
    database: String,
    created: String,
    /// What the backup held (schemas, extensions, the app's objects on
    /// platform tables), for the restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<Recorded>,
}

/// Appends the digest of a backup the host just took to its ledger, kept in
/// the state folder, which no grant may cover.
fn record_backup(ledger: &Path, host: &Path, database: &str, manifest: &Manifest) -> std::io::Result<()> {
    use std::io::Write;
    let entry = LedgerEntry {
        path: host.display().to_string(),
        sha256: manifest.sha256.clone(),
        database: database.to_string(),
        created: manifest.created.clone(),
        scope: manifest.scope.clone(),
    };
    let line = serde_json::to_string(&entry).map_err(std::io::Error::other)? + "\n";
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(ledger)?;
    file.write_all(line.as_bytes())
}

/// The digest the host recorded for the backup at `path`: the run's own
/// record (a rollback restores what its `pg-backup` step reported), else the
/// newest ledger entry for that file. Never a file beside the backup.
fn recorded_digest(state: &CapsView<'_>, path: &str, host: &Path) -> Result<String, SqlError> {
    let sql = &state.caps.sql;
    if let Some(digest) = sql.recorded.get(path.trim_start_matches('/')) {
        return Ok(digest.clone());
    }
    let key = host.display().to_string();
    let newest =
        sql.ledger.as_deref().and_then(|l| crate::pipeline::files::read_regular_string(l, 64 << 20).ok()).and_then(
            |text| {
                text.lines()
                    .rev()
                    .filter_map(|l| serde_json::from_str::<LedgerEntry>(l).ok())
                    .find(|e| e.path == key)
                    .map(|e| e.sha256)
            },
        );
    newest.ok_or_else(|| {
        SqlError::Tool(format!(
            "backup `{path}` was not taken by deployhost on this machine (no digest recorded for it); \
             refusing to restore it"
        ))
    })
}

/// What the backup at `host` (whose digest the host trusts) held: its ledger
/// entry, else its manifest when that names the same digest, else nothing
/// (the restore then works it out from the dump's own listing).
fn recorded_scope(state: &CapsView<'_>, host: &Path, file: &GrantFile, trusted: &str) -> Option<Recorded> {
    let key = host.display().to_string();
    let from_ledger = state
        .caps
        .sql
        .ledger
        .as_deref()
        .and_then(|l| crate::pipeline::files::read_regular_string(l, 64 << 20).ok())
        .and_then(|text| {
            text.lines()
                .rev()
                .filter_map(|l| serde_json::from_str::<LedgerEntry>(l).ok())
                .find(|e| e.path == key && e.sha256 == trusted)
                .and_then(|e| e.scope)
        });
    from_ledger.or_else(|| {
        let bytes = file.sibling(".json").ok()?.read(1 << 20).ok()?;
        let manifest: Manifest = serde_json::from_slice(&bytes).ok()?;
        (manifest.sha256 == trusted).then_some(manifest.scope).flatten()
    })
}

/// sha256 and length of everything `from` holds; with `copy_to`, also
/// copied there (a new file the host owns).
fn digest(mut from: std::fs::File, copy_to: Option<&Path>) -> std::io::Result<(String, u64)> {
    use sha2::Digest;
    use std::io::{Read, Write};
    let mut out = match copy_to {
        Some(p) => Some(std::fs::OpenOptions::new().write(true).create_new(true).open(p)?),
        None => None,
    };
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > MAX_BACKUP {
            return Err(std::io::Error::other(format!("larger than {MAX_BACKUP} bytes")));
        }
        hasher.update(&buf[..n]);
        if let Some(o) = out.as_mut() {
            o.write_all(&buf[..n])?;
        }
    }
    Ok((hex::encode(hasher.finalize()), total))
}

/// Environment for the tools: the connection without a command line, and
/// without the password, which any process of the same user could read in
/// `/proc/<pid>/environ` (a parallel step's host program): it goes through
/// [`PassFile`]. Keep the returned file until the tool has ended.
pub(super) fn pg_env(cmd: &mut Command, target: &DbTarget) -> Result<Option<PassFile>, SqlError> {
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
    for (key, value) in target.tls.libpq_env() {
        cmd.env(key, value);
    }
    let Some(pw) = c.get_password() else { return Ok(None) };
    let file = PassFile::new(pw).map_err(|e| SqlError::Tool(format!("cannot hand the password to the tool: {e}")))?;
    file.give_to(cmd);
    Ok(Some(file))
}

/// A libpq password file (`*:*:*:*:password`) that no path names: a
/// memfd, mode 0600, close-on-exec except in the one tool it is given to,
/// which reads it as `PGPASSFILE=/dev/fd/N`. It is gone with its last
/// descriptor: nothing to remove after, nothing left by a crash.
pub(super) struct PassFile(std::os::fd::OwnedFd);

impl PassFile {
    #[allow(unsafe_code, reason = "memfd_create(2) has no safe wrapper in the dependencies")]
    fn new(password: &[u8]) -> std::io::Result<PassFile> {
        use std::io::Write;
        use std::os::fd::FromRawFd;
        use std::os::unix::fs::PermissionsExt;
        // SAFETY: the name is a NUL-terminated literal; the flags are plain integers.
        let fd = unsafe { libc::memfd_create(c"deployhost-pgpass".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nothing else.
        let mut file = std::fs::File::from(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) });
        // libpq ignores a password file that its group or others may read.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        let mut line = b"*:*:*:*:".to_vec();
        for &b in password {
            if b == b'\\' || b == b':' {
                line.push(b'\\');
            }
            line.push(b);
        }
        line.push(b'\n');
        file.write_all(&line)?;
        Ok(PassFile(file.into()))
    }

    /// `cmd` inherits the file, and only `cmd`: close-on-exec is cleared in
    /// its child, after the fork.
    #[allow(unsafe_code, reason = "the hook only calls fcntl(2), which is async-signal-safe")]
    fn give_to(&self, cmd: &mut Command) {
        use std::os::fd::AsRawFd;
        let fd = self.0.as_raw_fd();
        cmd.env("PGPASSFILE", format!("/dev/fd/{fd}"));
        // SAFETY: the hook allocates nothing and takes no locks.
        unsafe {
            cmd.pre_exec(move || {
                if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

/// Runs a PostgreSQL tool; its standard output is what the caller set
/// (the backup file for `pg_dump`), else discarded.
pub(super) async fn run_tool(mut cmd: Command, what: &str) -> Result<(), SqlError> {
    // Its own process group, killed with the step: a timed-out step's
    // pg_dump or psql does not run on. (`spawn`, not `output`: `output`
    // would replace the standard output the caller set with a pipe.)
    let child = cmd
        .process_group(0)
        .kill_on_drop(true)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| SqlError::Tool(format!("cannot run {what}: {e}")))?;
    let out = child.wait_with_output().await.map_err(|e| SqlError::Tool(format!("cannot run {what}: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(6).collect::<Vec<_>>().into_iter().rev().collect();
    Err(SqlError::Tool(format!("{what} failed: {}", tail.join(" | "))))
}

/// `SHOW server_version_num` → (major, full version text).
pub(super) async fn server_version(target: &DbTarget) -> Result<(u32, String), SqlError> {
    let client = connect(target).await?;
    let row = client
        .query_one("SELECT current_setting('server_version_num')::int, current_setting('server_version')", &[])
        .await
        .map_err(|e| SqlError::Connection(error_text(&e)))?;
    let num: i32 = row.get(0);
    Ok(((num / 10_000) as u32, row.get(1)))
}

fn path_error(state: &CapsView<'_>, database: &str, op: &str, path: &str, message: String) -> SqlError {
    let caps = &state.caps;
    let denial = Denial {
        op: Some(op.to_string()),
        path: Some(path.to_string()),
        database: Some(database.to_string()),
        reason: Some(message.clone()),
        ..Denial::default()
    };
    caps.audit.record(Some(&caps.step), Record::FsDenied(denial));
    SqlError::NotGranted(message)
}

pub(super) fn target(state: &CapsView<'_>, database: &str) -> Result<DbTarget, SqlError> {
    state
        .caps
        .sql
        .targets
        .get(database)
        .cloned()
        .ok_or_else(|| SqlError::Connection(format!("database `{database}` has no connection settings in this run")))
}

pub async fn dump(state: &mut CapsView<'_>, database: &str, path: &str) -> Result<DumpInfo, SqlError> {
    // The dump and its manifest are opened beneath the write grant: a
    // symlink the guest planted at either name is refused, never followed.
    let host = fs::host_path(&state.caps.sql.mounts, path, true)
        .map_err(|m| path_error(state, database, "dump-write", path, m))?;
    let file = GrantFile::open(&state.caps.sql.mounts, path, true)
        .map_err(|m| path_error(state, database, "dump-write", path, m))?;
    let manifest_file = file.sibling(".json").map_err(|m| path_error(state, database, "dump-write", path, m))?;
    let target = target(state, database)?;
    let started = Instant::now();
    let (major, version) = server_version(&target).await?;
    let tool = state.caps.sql.tools.pick("pg_dump", major)?;
    let client = connect(&target).await?;
    let mut recorded = scope::record(&client, &state.caps.sql.scope()?).await.map_err(SqlError::Connection)?;
    if recorded.schemas.is_empty() {
        return Err(SqlError::Tool(format!(
            "no schema of `{database}` is in the backup's scope ({})",
            recorded.scope.describe()
        )));
    }
    let data = match &state.caps.sql.backup_data()? {
        BackupData::All => Vec::new(),
        BackupData::Schema => {
            recorded.data_tables = Some(Vec::new());
            vec!["--schema-only".to_string()]
        }
        BackupData::Changes { migrations } => {
            match tables_changed_in_session(&state.caps.sql.mounts.clone(), &client, migrations).await? {
                Some(keep) => {
                    let args = data_args(&client, &recorded.schemas, &keep).await?;
                    recorded.data_tables = Some(keep);
                    args
                }
                None => Vec::new(),
            }
        }
    };
    // Taken before pg_dump's own snapshot: every row written after the dump
    // has an id at least this one (a restore can count what it would lose).
    recorded.xmax = client
        .query_one("SELECT pg_snapshot_xmax(pg_current_snapshot())::text", &[])
        .await
        .ok()
        .map(|r| r.get::<_, String>(0));
    drop(client);
    let out = file.create().map_err(|m| path_error(state, database, "dump-write", path, m))?;
    let mut cmd = Command::new(&tool);
    let _password = pg_env(&mut cmd, &target)?;
    cmd.args(["--format=custom", "--no-password"])
        .args(scope::dump_args(&recorded.schemas))
        .args(&data)
        .stdout(Stdio::from(out.into_std()));
    run_tool(cmd, "pg_dump").await?;

    let reader = file.open_read(MAX_BACKUP).map_err(|m| path_error(state, database, "dump-read", path, m))?;
    let (sha256, bytes) =
        digest(reader.into_std(), None).map_err(|e| SqlError::Tool(format!("cannot read the backup: {e}")))?;
    let info = DumpInfo { path: path.to_string(), sha256, bytes, server_version: version };
    let manifest = Manifest {
        database: database.to_string(),
        server_version: info.server_version.clone(),
        sha256: info.sha256.clone(),
        bytes: info.bytes,
        created: crate::audit::timestamp(std::time::SystemTime::now()),
        scope: Some(recorded.clone()),
    };
    let text = serde_json::to_string_pretty(&manifest).unwrap_or_default();
    manifest_file.write(text.as_bytes()).map_err(|m| path_error(state, database, "dump-write", path, m))?;
    // The digest a restore trusts is the one the host keeps (the ledger in
    // its state folder, and the run's own results), never this manifest,
    // which sits in a folder the steps can write.
    if let Some(ledger) = &state.caps.sql.ledger {
        record_backup(ledger, &host, database, &manifest)
            .map_err(|e| SqlError::Tool(format!("cannot record the backup's digest: {e}")))?;
    }
    let caps = &state.caps;
    let dumped = Dumped {
        database: database.to_string(),
        path: path.to_string(),
        file: host.display().to_string(),
        sha256: info.sha256.clone(),
        bytes: info.bytes,
        tool: tool.display().to_string(),
        schemas: recorded.schemas.clone(),
        data_tables: recorded.data_tables.clone(),
        ms: started.elapsed().as_millis() as u64,
    };
    caps.audit.record(Some(&caps.step), Record::SqlDump(dumped));
    Ok(info)
}

/// Copies the backup at `path` to `copy`, taking its digest on the way,
/// and refuses (audited) a digest other than the one the host recorded.
fn trusted_copy(
    state: &CapsView<'_>,
    database: &str,
    path: &str,
    host: &Path,
    file: &GrantFile,
    copy: &Path,
) -> Result<String, SqlError> {
    let trusted = recorded_digest(state, path, host)?;
    let reader = file.open_read(MAX_BACKUP).map_err(|m| path_error(state, database, "restore-read", path, m))?;
    let (digest, _) = digest(reader.into_std(), Some(copy))
        .map_err(|e| SqlError::Tool(format!("cannot read backup `{path}`: {e}")))?;
    if trusted != digest {
        let caps = &state.caps;
        let refused = Restored {
            database: database.to_string(),
            path: path.to_string(),
            sha256: digest.clone(),
            recorded: Some(trusted.clone()),
            reason: Some("digest mismatch".into()),
            ..Restored::default()
        };
        caps.audit.record(Some(&caps.step), Record::SqlRestore(refused));
        return Err(SqlError::Tool(format!(
            "backup `{path}` changed since it was taken (sha256 {digest}, recorded {trusted}); refusing to restore it"
        )));
    }
    Ok(digest)
}

/// What the backup holds, as far as the restore goes: from the host's own
/// ledger entry for `digest`, else from a manifest that names it (a manifest
/// the steps could have rewritten for another dump is ignored), with the
/// restore step's `schemas:`/`exclude_schemas:` over it. A backup of some
/// tables' rows only is refused: restoring it would empty the others.
fn restore_scope(
    state: &CapsView<'_>,
    path: &str,
    host: &Path,
    file: &GrantFile,
    digest: &str,
) -> Result<Option<Recorded>, SqlError> {
    let mut recorded: Option<Recorded> = recorded_scope(state, host, file, digest);
    let given = state.caps.sql.scope()?;
    if given != scope::Scope::default() {
        recorded.get_or_insert_with(Recorded::default).scope = given;
    }
    if let Some(tables) = recorded.as_ref().and_then(|r| r.data_tables.as_ref()) {
        return Err(SqlError::Tool(format!(
            "backup `{path}` holds the schema and the rows of {} table(s) only (`data: changes` or `schema`); \
             restoring it would empty every other table. The change ledger undoes a deploy; for disaster recovery \
             take a full backup (`data: all`)",
            tables.len()
        )));
    }
    Ok(recorded)
}

pub async fn restore(state: &mut CapsView<'_>, database: &str, path: &str) -> Result<(), SqlError> {
    let host = fs::host_path(&state.caps.sql.mounts, path, false)
        .map_err(|m| path_error(state, database, "restore-read", path, m))?;
    let file = GrantFile::open(&state.caps.sql.mounts, path, false)
        .map_err(|m| path_error(state, database, "restore-read", path, m))?;
    // The backup is copied into the host's own work folder while its digest
    // is taken, and the tools read that copy: a file swapped after the
    // check is never the one restored.
    let work = tempfile::tempdir().map_err(|e| SqlError::Tool(format!("cannot make a work folder: {e}")))?;
    let copy = work.path().join("backup.dump");
    let digest = trusted_copy(state, database, path, &host, &file, &copy)?;
    let recorded = restore_scope(state, path, &host, &file, &digest)?;
    let target = target(state, database)?;
    let started = Instant::now();
    let (major, _) = server_version(&target).await?;
    let pg_restore = state.caps.sql.tools.pick("pg_restore", major)?;

    let write = |name: &str, text: &str| -> Result<PathBuf, SqlError> {
        let file = work.path().join(name);
        std::fs::write(&file, text).map_err(|e| SqlError::Tool(format!("cannot write {name}: {e}")))?;
        Ok(file)
    };
    let mut cmd = Command::new(&pg_restore);
    cmd.env_clear().env("LC_ALL", "C").arg("--list").arg(&copy);
    let list = tool_output(cmd, "pg_restore --list").await?;

    // Everything is checked before anything changes.
    let plan = {
        let client = connect(&target).await?;
        scope::plan_restore(&client, &list, recorded.as_ref()).await.map_err(SqlError::Tool)?
    };
    let clear = write("clear.sql", &plan.clear)?;
    let after = write("after.sql", &plan.after)?;
    let use_list = write("restore.list", &plan.list)?;
    let script = work.path().join("restore.sql");
    let mut cmd = Command::new(&pg_restore);
    cmd.env_clear()
        .env("LC_ALL", "C")
        .stdout(Stdio::null())
        .arg("--use-list")
        .arg(&use_list)
        .arg("--file")
        .arg(&script)
        .arg(&copy);
    run_tool(cmd, "pg_restore").await?;

    // Replayed through the host's own connection in one transaction, each
    // statement audited (see `replay.rs`); a timed-out step drops the
    // connection, and the server rolls the transaction back.
    let result = match connect(&target).await {
        Ok(client) => super::replay::replay(state.caps, &client, database, &[&clear, &script, &after]).await,
        Err(e) => Err(e),
    };
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
    let restored = Restored {
        database: database.to_string(),
        path: path.to_string(),
        sha256: digest,
        ok: result.is_ok(),
        schemas_dropped: plan.dropped_schemas.clone(),
        extensions_kept: plan.new_extensions.clone(),
        default_privileges_left: plan.kept_default_acls.clone(),
        statements: result.as_ref().ok().copied(),
        ms: started.elapsed().as_millis() as u64,
        ..Restored::default()
    };
    caps.audit.record(Some(&caps.step), Record::SqlRestore(restored));
    result.map(drop)
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

    /// Issue 25, #14, in process: whatever the tool's environment holds, it
    /// is not the password (a same-user process could read it in
    /// `/proc/<pid>/environ`); the password file it names holds it, escaped
    /// as libpq reads it, readable by the owner only.
    #[test]
    fn the_password_reaches_the_tool_through_a_private_file_not_its_environment() {
        use std::os::unix::fs::PermissionsExt;
        let target = DbTarget::parse("postgres://deploy:pa:ss%5Cword@127.0.0.1:5432/app").unwrap();
        let mut cmd = Command::new("pg_dump");
        let file = pg_env(&mut cmd, &target).unwrap().expect("a password file");
        let envs: Vec<(String, String)> = cmd
            .as_std()
            .get_envs()
            .filter_map(|(k, v)| Some((k.to_str()?.to_string(), v?.to_str()?.to_string())))
            .collect();
        assert!(envs.iter().all(|(_, v)| !v.contains("pa:ss")), "{envs:?}");
        let passfile = envs.iter().find(|(k, _)| k == "PGPASSFILE").map(|(_, v)| v.clone()).expect("PGPASSFILE");
        use std::os::fd::AsRawFd;
        assert_eq!(passfile, format!("/dev/fd/{}", file.0.as_raw_fd()));
        let proc_path = format!("/proc/self/fd/{}", file.0.as_raw_fd());
        assert_eq!(std::fs::read_to_string(&proc_path).unwrap(), "*:*:*:*:pa\\:ss\\\\word\n");
        assert_eq!(std::fs::metadata(&proc_path).unwrap().permissions().mode() & 0o777, 0o600);
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
