//! The Supabase CLI's migration conventions, shared by `supabase-migrate`
//! and `schema-verify`: files named `<version>_<name>.sql`, and the history
//! table `supabase_migrations.schema_migrations (version, statements, name)`.

use crate::StepError;
use crate::db::{Connection, Value, fail};
use crate::sqltext::{fingerprint, split_statements};

pub const HISTORY: &str = "supabase_migrations.schema_migrations";

/// Creates the history table as the CLI does (`CreateMigrationTable`): a
/// table made by an older CLI, with only `version`, gets `statements` and
/// `name`; extra columns a newer CLI added are left alone. The CLI sets a
/// 4 s lock timeout for this; `RESET ALL` before each file clears it.
pub const CREATE_HISTORY: &str = "SET lock_timeout = '4s';
CREATE SCHEMA IF NOT EXISTS supabase_migrations;
CREATE TABLE IF NOT EXISTS supabase_migrations.schema_migrations (version text NOT NULL PRIMARY KEY);
ALTER TABLE supabase_migrations.schema_migrations ADD COLUMN IF NOT EXISTS statements text[];
ALTER TABLE supabase_migrations.schema_migrations ADD COLUMN IF NOT EXISTS name text";

#[derive(Debug, Clone)]
pub struct Migration {
    pub version: String,
    pub name: String,
    pub file: String,
    pub sql: String,
}

impl Migration {
    pub fn statements(&self) -> Vec<String> {
        split_statements(&self.sql)
    }
}

/// A row of the history table.
#[derive(Debug, Clone)]
pub struct Applied {
    pub version: String,
    pub name: String,
    pub statements: Vec<String>,
}

/// Versions compare as numbers: by length, then digit by digit.
pub fn version_key(v: &str) -> (usize, &str) {
    let v = v.trim_start_matches('0');
    (v.len(), v)
}

/// The migration files in `dir` (a guest path), oldest first. Files that do
/// not match `<digits>_<name>.sql` are skipped, as the CLI skips them.
pub fn read_migrations(dir: &str) -> Result<Vec<Migration>, StepError> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        StepError::Failed(format!("cannot read migrations folder {dir}: {e} (is it in grants.fs.read?)"))
    })?;
    let mut out: Vec<Migration> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StepError::Failed(format!("{dir}: {e}")))?;
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(stem) = file.strip_suffix(".sql") else {
            continue;
        };
        let Some((version, name)) = stem.split_once('_') else {
            continue;
        };
        if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let path = format!("{}/{file}", dir.trim_end_matches('/'));
        let sql = std::fs::read_to_string(&path).map_err(|e| StepError::Failed(format!("cannot read {path}: {e}")))?;
        if let Some(other) = out.iter().find(|m| m.version == version) {
            return Err(StepError::Failed(format!("{file} and {} have the same version {version}", other.file)));
        }
        out.push(Migration { version: version.to_string(), name: name.to_string(), file, sql });
    }
    out.sort_by(|a, b| version_key(&a.version).cmp(&version_key(&b.version)));
    Ok(out)
}

/// The history table's rows, oldest first (empty when it does not exist).
pub fn read_history(db: &Connection) -> Result<Vec<Applied>, StepError> {
    let exists = db
        .query("SELECT to_regclass($1) IS NOT NULL", &[Value::Text(HISTORY.into())])
        .map_err(fail("checking the migration history"))?;
    if exists.rows.first().and_then(|r| r[0].as_bool()) != Some(true) {
        return Ok(Vec::new());
    }
    // A table made by an older CLI may lack `statements` and `name`; it is
    // read as it is (the migrator adds them, a verifier must not).
    let columns = db
        .query(
            "SELECT attname::text FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped",
            &[Value::Text(HISTORY.into())],
        )
        .map_err(fail("reading the migration history"))?;
    let has = |c: &str| columns.rows.iter().any(|r| r[0].as_text() == Some(c));
    let name = if has("name") { "coalesce(name, '')" } else { "''" };
    let statements = if has("statements") { "coalesce(statements, '{}')" } else { "'{}'::text[]" };
    let rows = db
        .query(&format!("SELECT version, {name}, {statements} FROM {HISTORY}"), &[])
        .map_err(fail("reading the migration history"))?;
    let mut applied: Vec<Applied> = rows
        .rows
        .into_iter()
        .map(|r| {
            let text = |v: &Value| v.as_text().unwrap_or_default().to_string();
            let statements = match &r[2] {
                Value::TextArray(items) => items.clone(),
                _ => Vec::new(),
            };
            Applied { version: text(&r[0]), name: text(&r[1]), statements }
        })
        .collect();
    applied.sort_by(|a, b| version_key(&a.version).cmp(&version_key(&b.version)));
    Ok(applied)
}

/// Does the recorded history match the file? Yes when it holds exactly the
/// statements the Supabase CLI would store for it; also when only the
/// layout differs (comments, white space, where `;` split), as in
/// histories written by older CLIs or older deployhost versions, whose
/// splitters cut `BEGIN ATOMIC` bodies or dropped trailing comments.
pub fn same_statements(recorded: &[String], file: &Migration) -> bool {
    let ours = file.statements();
    recorded == ours.as_slice() || fingerprint(recorded) == fingerprint(&ours)
}
