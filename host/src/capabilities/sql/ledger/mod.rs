//! The change ledger: what each migration changed, recorded by the host in
//! the migration's own transaction and written to the run's folder before
//! the commit, so the rollback can undo exactly the deploy and nothing
//! else (see docs/rollback.md).
//!
//! For each recorded transaction (`recorded-transaction`):
//! 1. the catalog is read ([`catalog::Snapshot`]) and the statements are
//!    read by PostgreSQL's parser ([`crate::sqlparse`]); the data they will
//!    drop or rewrite is copied to files beside the ledger (`COPY … TO
//!    STDOUT`, in the same transaction, so nothing written before it is
//!    missed), and the keys of tables they will update or delete from;
//! 2. the statements run;
//! 3. the catalog is read again; the difference, limited to catalog rows
//!    this transaction wrote (`xmin`), is what the migration did; rows it
//!    wrote into tables that existed before are found through
//!    `pg_stat_xact_user_tables` and their `xmin`;
//! 4. the entry (with the transaction's id) is appended to
//!    `<run>/changes/<database>.jsonl` and synced, then the transaction
//!    commits. An entry whose transaction did not commit (the host died
//!    before `COMMIT`) is known by `pg_xact_status` and skipped by the
//!    rollback.

pub mod catalog;
mod reverse;

use super::quote_ident;
use crate::sqlparse::{self, Analysis, Reversibility, Save};
use catalog::{Change, Kind, Snapshot};
use futures_util::{SinkExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use tokio_postgres::Client;

pub use reverse::revert;

/// A table as SQL names it (quoted) with the columns the ledger copied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedData {
    pub table: String,
    /// The columns in the file, in order; the key columns come first.
    pub columns: Vec<String>,
    /// The primary key's columns, to join the copy back to the table.
    pub key: Vec<String>,
    /// True when every column of the table is in the copy.
    pub whole: bool,
    /// File name beside the ledger; `COPY` text format.
    pub file: String,
    pub sha256: String,
    pub rows: u64,
}

/// Rows the transaction wrote into a table that existed before it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowsWritten {
    pub table: String,
    /// A platform table (`auth.users`, `storage.buckets`, …).
    pub platform: bool,
    /// Rows it inserted, by `ctid`; the rollback deletes each one still
    /// carrying the migration's transaction id (nobody changed it since).
    pub inserted: Vec<String>,
    /// The same rows' primary keys (`{column: value}`), to name them to
    /// people (a platform that refuses their removal).
    #[serde(default)]
    pub inserted_keys: Vec<serde_json::Value>,
    /// Rows it updated, by primary key (as JSON), when the table was copied first.
    pub updated: Vec<serde_json::Value>,
    /// Rows it deleted, by primary key, when the table was copied first.
    pub deleted: Vec<serde_json::Value>,
    /// Rows updated or deleted in a table that was not copied first (a
    /// trigger's side effect): named, not put back.
    pub not_saved: u64,
}

/// One recorded transaction: one line of `<database>.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub label: String,
    pub database: String,
    /// The transaction's full id (`xid8`), for `pg_xact_status`.
    pub xid: String,
    /// The server's time when the transaction began.
    pub at: String,
    pub changes: Vec<Change>,
    pub rows: Vec<RowsWritten>,
    pub saved: Vec<SavedData>,
    /// Statements the rollback cannot undo, with why.
    pub irreversible: Vec<String>,
}

/// A line of the ledger file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Line {
    Entry(Box<Entry>),
    /// The transaction `xid` undid the entries of these transactions.
    Reverted {
        xid: String,
        entries: Vec<String>,
    },
}

/// Where a database's ledger lives in a run's folder.
pub fn file(dir: &Path, database: &str) -> PathBuf {
    dir.join(format!("{database}.jsonl"))
}

fn append(path: &Path, line: &Line) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut text = serde_json::to_string(line).map_err(std::io::Error::other)?;
    text.push('\n');
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

/// A ledger file as written.
#[derive(Default)]
struct Written {
    entries: Vec<Entry>,
    /// Reverts: the reverting transaction, the entries' transactions.
    reverts: Vec<(String, Vec<String>)>,
}

/// The ledger's entries and what was reverted, as written (a line cut short
/// by a crash is the last one, and its transaction never committed).
fn read(path: &Path) -> std::io::Result<Written> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let mut written = Written::default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<Line>(line) {
            Ok(Line::Entry(e)) => written.entries.push(*e),
            Ok(Line::Reverted { xid, entries }) => written.reverts.push((xid, entries)),
            Err(_) => {}
        }
    }
    Ok(written)
}

fn db_text(e: tokio_postgres::Error) -> String {
    crate::pgconn::error_text(&e)
}

/// A recording in progress: the catalog before, and what was copied.
pub struct Recording {
    dir: PathBuf,
    label: String,
    database: String,
    xid: String,
    at: String,
    before: Snapshot,
    saved: Vec<SavedData>,
    /// Tables whose keys were kept before the statements: (table, temp table of keys).
    keys: Vec<(String, String, Vec<String>)>,
    irreversible: Vec<String>,
}

/// The primary key's columns of `table` (a regclass text), quoted.
async fn primary_key(client: &Client, table: &str) -> Result<Vec<String>, String> {
    let rows = client
        .query(
            "SELECT quote_ident(a.attname) FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid \
             AND a.attnum = ANY(i.indkey) WHERE i.indrelid = $1::text::regclass AND i.indisprimary \
             ORDER BY array_position(i.indkey::int2[], a.attnum)",
            &[&table],
        )
        .await
        .map_err(db_text)?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The stored columns of `table` (not generated ones), quoted, in order.
async fn stored_columns(client: &Client, table: &str) -> Result<Vec<String>, String> {
    let rows = client
        .query(
            "SELECT quote_ident(attname) FROM pg_attribute WHERE attrelid = $1::text::regclass AND attnum > 0 \
             AND NOT attisdropped AND attgenerated = '' ORDER BY attnum",
            &[&table],
        )
        .await
        .map_err(db_text)?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// `COPY (query) TO STDOUT` into `path`; returns (sha256, rows).
async fn copy_out(client: &Client, query: &str, path: &Path) -> Result<(String, u64), String> {
    let stream = client.copy_out(&format!("COPY ({query}) TO STDOUT")).await.map_err(db_text)?;
    let mut stream = std::pin::pin!(stream);
    let mut file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut hash = Sha256::new();
    let mut rows = 0u64;
    while let Some(chunk) = stream.try_next().await.map_err(db_text)? {
        rows += chunk.iter().filter(|b| **b == b'\n').count() as u64;
        hash.update(&chunk);
        file.write_all(&chunk).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    file.sync_all().map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((hex::encode(hash.finalize()), rows))
}

/// Streams a copy back: `COPY target (columns) FROM STDIN`, after checking
/// the file is the one the ledger recorded.
async fn copy_in(
    client: &Client,
    target: &str,
    columns: &[String],
    dir: &Path,
    saved: &SavedData,
) -> Result<u64, String> {
    let path = dir.join(&saved.file);
    let data = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let digest = hex::encode(Sha256::digest(&data));
    if digest != saved.sha256 {
        return Err(format!(
            "the ledger's copy of {} ({}) changed since it was written (sha256 {digest}, recorded {}); not used",
            saved.table, saved.file, saved.sha256
        ));
    }
    let sink = client.copy_in(&format!("COPY {target} ({}) FROM STDIN", columns.join(", "))).await.map_err(db_text)?;
    let mut sink = std::pin::pin!(sink);
    for chunk in data.chunks(256 << 10) {
        sink.send(bytes::Bytes::copy_from_slice(chunk)).await.map_err(db_text)?;
    }
    sink.as_mut().finish().await.map_err(db_text)
}

/// The tables a `Save` names, resolved in this session (`search_path`).
async fn resolve(client: &Client, save: &Save) -> Result<Vec<String>, String> {
    let names: Vec<String> = match save {
        Save::Table { table } | Save::Columns { table, .. } => {
            // None when not there (yet): created earlier in the same migration.
            let row = client
                .query_opt(
                    "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c \
                     JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1)",
                    &[&table.sql()],
                )
                .await
                .map_err(db_text)?;
            row.map(|r| r.get::<_, String>(0)).into_iter().collect()
        }
        Save::Schema { schema } => client
            .query(
                "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')",
                &[schema],
            )
            .await
            .map_err(db_text)?
            .iter()
            .map(|r| r.get(0))
            .collect(),
    };
    Ok(names)
}

impl Recording {
    /// Step 1, right after `BEGIN`: the catalog before, and copies of what
    /// the statements will drop or rewrite.
    pub async fn start(
        client: &Client,
        dir: &Path,
        database: &str,
        label: &str,
        statements: &[String],
    ) -> Result<Recording, String> {
        let row = client.query_one("SELECT pg_current_xact_id()::text, now()::text", &[]).await.map_err(db_text)?;
        let (xid, at): (String, String) = (row.get(0), row.get(1));
        let before = Snapshot::read(client).await.map_err(db_text)?;
        let mut analyses: Vec<Analysis> = Vec::new();
        for s in statements {
            // A statement PostgreSQL's parser refuses fails when it runs.
            analyses.extend(sqlparse::analyze(s).unwrap_or_default());
        }
        let irreversible = analyses
            .iter()
            .filter(|a| a.class == Reversibility::Irreversible)
            .map(|a| format!("{}: {}", label, a.why))
            .collect();
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut recording = Recording {
            dir: dir.to_path_buf(),
            label: label.to_string(),
            database: database.to_string(),
            xid,
            at,
            before,
            saved: Vec::new(),
            keys: Vec::new(),
            irreversible,
        };
        let saves: Vec<&Save> = analyses.iter().flat_map(|a| &a.saves).collect();
        for save in saves {
            for table in resolve(client, save).await? {
                recording.save(client, &table, save).await?;
            }
        }
        Ok(recording)
    }

    async fn save(&mut self, client: &Client, table: &str, save: &Save) -> Result<(), String> {
        let key = primary_key(client, table).await?;
        let (columns, whole) = match save {
            Save::Columns { columns, .. } if !key.is_empty() => {
                let mut cols = key.clone();
                cols.extend(columns.iter().map(|c| quote_ident(c)).filter(|c| !key.contains(c)));
                (cols, false)
            }
            _ => (stored_columns(client, table).await?, true),
        };
        if self.saved.iter().any(|s| s.table == table && s.columns == columns) {
            return Ok(());
        }
        let n = self.saved.len() + 1;
        let file = format!("{}-{}-{n}.copy", self.database, self.xid);
        let query = format!("SELECT {} FROM {table}", columns.join(", "));
        let (sha256, rows) = copy_out(client, &query, &self.dir.join(&file)).await?;
        self.saved.push(SavedData { table: table.to_string(), columns, key: key.clone(), whole, file, sha256, rows });
        // The keys of a table whose rows will be updated or deleted, to
        // tell afterwards which rows the statements deleted.
        if matches!(save, Save::Table { .. } | Save::Schema { .. })
            && !key.is_empty()
            && !self.keys.iter().any(|(t, _, _)| t == table)
        {
            let temp = format!("deployhost_keys_{}", self.keys.len() + 1);
            client
                .batch_execute(&format!(
                    "CREATE TEMP TABLE {temp} ON COMMIT DROP AS SELECT {} FROM {table}",
                    key.join(", ")
                ))
                .await
                .map_err(db_text)?;
            self.keys.push((table.to_string(), temp, key));
        }
        Ok(())
    }

    /// Steps 3 and 4, after the statements and before `COMMIT`: the
    /// difference, the rows written, the entry written and synced.
    pub async fn finish(self, client: &Client) -> Result<Entry, String> {
        let after = Snapshot::read(client).await.map_err(db_text)?;
        let changes = catalog::diff(&self.before, &after);
        let rows = self.rows_written(client, &changes).await?;
        let entry = Entry {
            label: self.label,
            database: self.database.clone(),
            xid: self.xid,
            at: self.at,
            changes,
            rows,
            saved: self.saved,
            irreversible: self.irreversible,
        };
        append(&file(&self.dir, &self.database), &Line::Entry(Box::new(entry.clone())))
            .map_err(|e| format!("cannot write the change ledger in {}: {e}", self.dir.display()))?;
        Ok(entry)
    }

    async fn rows_written(&self, client: &Client, changes: &[Change]) -> Result<Vec<RowsWritten>, String> {
        let stats = client
            .query(
                "SELECT format('%I.%I', schemaname, relname), n_tup_ins, n_tup_upd + n_tup_del \
                 FROM pg_stat_xact_user_tables WHERE n_tup_ins + n_tup_upd + n_tup_del > 0 \
                 AND schemaname NOT LIKE 'pg\\_temp%'",
                &[],
            )
            .await
            .map_err(db_text)?;
        let mut out = Vec::new();
        for row in stats {
            let (table, inserted, changed): (String, i64, i64) = (row.get(0), row.get(1), row.get(2));
            // A table the transaction created is dropped whole by the rollback.
            let dropped = changes
                .iter()
                .any(|c| matches!(c, Change::Dropped { object } if object.kind == Kind::Table && object.key == table));
            if self.before.get(Kind::Table, &table).is_none() || dropped {
                continue;
            }
            out.extend(self.rows_of(client, table, inserted, changed).await?);
        }
        Ok(out)
    }

    /// The rows of one table that existed before that the transaction
    /// inserted, updated or deleted (`inserted` and `changed` as the
    /// transaction's statistics count them).
    async fn rows_of(
        &self,
        client: &Client,
        table: String,
        inserted: i64,
        changed: i64,
    ) -> Result<Option<RowsWritten>, String> {
        let schema = self.before.get(Kind::Table, &table).and_then(|o| o.text("schema")).unwrap_or_default();
        let mut written = RowsWritten {
            table: table.clone(),
            platform: super::scope::platform(schema),
            inserted: Vec::new(),
            inserted_keys: Vec::new(),
            updated: Vec::new(),
            deleted: Vec::new(),
            not_saved: 0,
        };
        let kept = self.keys.iter().find(|(t, _, _)| *t == table);
        if kept.is_none() && changed > 0 {
            // Updated or deleted rows of a table not copied first cannot
            // be told from inserted ones: none is removed, all are named.
            written.not_saved = (inserted + changed) as u64;
            return Ok(Some(written));
        }
        if inserted > 0 || changed > 0 {
            (written.inserted, written.inserted_keys) = inserted_rows(client, &table, kept).await?;
            if let Some((_, temp, key)) = kept {
                written.updated = json_keys(
                    client,
                    &format!(
                        "SELECT jsonb_build_array({}) FROM {table} t WHERE t.xmin = pg_current_xact_id()::xid \
                         AND EXISTS (SELECT 1 FROM {temp} k WHERE ({}) = ({}))",
                        prefixed("t", key),
                        prefixed("k", key),
                        prefixed("t", key)
                    ),
                )
                .await?;
            }
        }
        if let Some((_, temp, key)) = kept {
            written.deleted = json_keys(
                client,
                &format!(
                    "SELECT jsonb_build_array({}) FROM {temp} k WHERE NOT EXISTS \
                     (SELECT 1 FROM {table} t WHERE ({}) = ({}))",
                    prefixed("k", key),
                    prefixed("t", key),
                    prefixed("k", key)
                ),
            )
            .await?;
        }
        let any = !written.inserted.is_empty()
            || !written.updated.is_empty()
            || !written.deleted.is_empty()
            || written.not_saved > 0;
        Ok(any.then_some(written))
    }
}

/// `text` as an SQL string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn prefixed(alias: &str, columns: &[String]) -> String {
    columns.iter().map(|c| format!("{alias}.{c}")).collect::<Vec<_>>().join(", ")
}

async fn json_keys(client: &Client, query: &str) -> Result<Vec<serde_json::Value>, String> {
    let rows = client.query(query, &[]).await.map_err(db_text)?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// One line per change, for the step's report.
pub fn summary(entry: &Entry) -> Vec<String> {
    let mut lines: Vec<String> = entry.changes.iter().map(Change::describe).collect();
    for r in &entry.rows {
        if !r.inserted.is_empty() {
            lines.push(format!("inserted {} row(s) into {}", r.inserted.len(), r.table));
        }
        if !r.updated.is_empty() {
            lines.push(format!("updated {} row(s) of {}", r.updated.len(), r.table));
        }
        if !r.deleted.is_empty() {
            lines.push(format!("deleted {} row(s) of {}", r.deleted.len(), r.table));
        }
        if r.not_saved > 0 {
            lines.push(format!(
                "changed {} row(s) of {} that were not copied first: not reversible",
                r.not_saved, r.table
            ));
        }
    }
    for s in &entry.saved {
        lines.push(format!("copied {} row(s) of {} ({}) for the rollback", s.rows, s.table, s.columns.join(", ")));
    }
    lines.extend(entry.irreversible.iter().map(|i| format!("not reversible: {i}")));
    lines
}
/// The rows of `table` carrying this transaction's id that were not there
/// before (not among the keys copied into `kept`'s temporary table): their
/// `ctid`, and their primary key when the table has one.
async fn inserted_rows(
    client: &Client,
    table: &str,
    kept: Option<&(String, String, Vec<String>)>,
) -> Result<(Vec<String>, Vec<serde_json::Value>), String> {
    let filter = match kept {
        Some((_, temp, key)) => {
            format!("NOT EXISTS (SELECT 1 FROM {temp} k WHERE ({}) = ({}))", prefixed("k", key), prefixed("t", key))
        }
        None => "true".to_string(),
    };
    let pk = primary_key(client, table).await?;
    let named = if pk.is_empty() {
        "NULL::jsonb".to_string()
    } else {
        format!(
            "jsonb_build_object({})",
            pk.iter().map(|c| format!("{}, t.{c}", literal(c))).collect::<Vec<_>>().join(", ")
        )
    };
    let rows = client
        .query(
            &format!("SELECT t.ctid::text, {filter}, {named} FROM {table} t WHERE t.xmin = pg_current_xact_id()::xid"),
            &[],
        )
        .await
        .map_err(db_text)?;
    let (mut ctids, mut keys) = (Vec::new(), Vec::new());
    for r in rows.iter().filter(|r| r.get::<_, bool>(1)) {
        keys.extend(r.get::<_, Option<serde_json::Value>>(2));
        ctids.push(r.get(0));
    }
    Ok((ctids, keys))
}
