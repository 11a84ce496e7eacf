//! `plpgsql_check:`, the check `supabase db lint` runs (supabase/cli
//! `internal/db/lint`): every plpgsql function of the schemas, trigger
//! functions left out as the CLI leaves them out, through the
//! `plpgsql_check` extension's `plpgsql_check_function_tb` with its default
//! checks. Levels as the CLI reads them: a level starting with `warning`
//! is a warning, `error` an error, any other (`performance`) is not shown.
//!
//! The extension must be there or creatable: on Supabase it is enabled in
//! the dashboard (schema `extensions`); otherwise it is created inside a
//! transaction that is rolled back, as the CLI does, which needs a role
//! that may create it. Without it the check is skipped and said so.

use deployhost_plugin_sdk::db::{self, Connection, Value};
use deployhost_plugin_sdk::{self as sdk, StepError};
use serde::Deserialize;

/// The CLI's `--level` and `--fail-on` values, in order.
#[derive(Deserialize, Clone, Copy, PartialEq, PartialOrd, Debug)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Warning,
    Error,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum FailOn {
    None,
    Warning,
    Error,
}

/// `plpgsql_check:` in the step's `with:`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// The lowest level reported (the CLI's `--level`, default warning).
    #[serde(default = "warning")]
    pub level: Level,
    /// The lowest level that fails the step (the CLI's `--fail-on`; here
    /// default error, as a verify step exists to fail).
    #[serde(default = "error")]
    pub fail_on: FailOn,
}

fn warning() -> Level {
    Level::Warning
}
fn error() -> FailOn {
    FailOn::Error
}

/// One issue, with the fields of the CLI's JSON output.
pub struct Issue {
    /// `schema.name`, as the CLI names it.
    pub function: String,
    pub level: Level,
    pub line: Option<i64>,
    pub message: String,
    pub sqlstate: String,
    pub hint: Option<String>,
}

impl Issue {
    pub fn describe(&self) -> String {
        let level = if self.level == Level::Error { "error" } else { "warning" };
        let line = self.line.map(|l| format!(" line {l}:")).unwrap_or_default();
        let hint = self.hint.as_ref().map(|h| format!("; hint: {h}")).unwrap_or_default();
        format!("plpgsql_check: {}:{line} {level}: {} (SQLSTATE {}){hint}", self.function, self.message, self.sqlstate)
    }

    pub fn fails(&self, on: FailOn) -> bool {
        match on {
            FailOn::None => false,
            FailOn::Warning => true,
            FailOn::Error => self.level == Level::Error,
        }
    }
}

/// The CLI's reading of plpgsql_check's level.
fn level(text: &str) -> Option<Level> {
    if text.starts_with("warning") {
        Some(Level::Warning)
    } else if text.starts_with("error") {
        Some(Level::Error)
    } else {
        None
    }
}

/// Where the extension is, or `None` when it is neither installed nor
/// creatable (then a transaction is left open that the caller rolls back).
fn extension_schema(db: &Connection) -> Result<Option<String>, StepError> {
    let installed = "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'plpgsql_check'";
    let r = db.query(installed, &[]).map_err(db::fail("looking for plpgsql_check"))?;
    if let Some(row) = r.rows.first() {
        db.begin().map_err(db::fail("begin"))?;
        return Ok(row[0].as_text().map(str::to_string));
    }
    db.begin().map_err(db::fail("begin"))?;
    if let Err(e) = db.batch("CREATE EXTENSION IF NOT EXISTS plpgsql_check") {
        sdk::log::warn(&format!("plpgsql_check: not installed, and cannot be created here: {}", db::describe(&e)));
        let _ = db.rollback();
        return Ok(None);
    }
    let r = db.query(installed, &[]).map_err(db::fail("looking for plpgsql_check"))?;
    Ok(r.rows.first().and_then(|row| row[0].as_text().map(str::to_string)))
}

/// The issues at `options.level` or above, or `None` when the extension
/// is not available. Nothing is left changed (the check runs in a
/// transaction that is rolled back).
pub fn check(db: &Connection, schemas: &[String], options: &Options) -> Result<Option<Vec<Issue>>, StepError> {
    let Some(ext) = extension_schema(db)? else { return Ok(None) };
    let sql = format!(
        "SELECT n.nspname || '.' || p.proname, t.level, t.lineno, t.message, coalesce(t.sqlstate, ''), t.hint \
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang \
         CROSS JOIN LATERAL {}.plpgsql_check_function_tb(p.oid::regprocedure) t \
         WHERE l.lanname = 'plpgsql' AND p.prorettype <> 'trigger'::regtype AND n.nspname = ANY($1) \
         ORDER BY 1, 3",
        quote_ident(&ext)
    );
    let result = db.query(&sql, &[Value::TextArray(schemas.to_vec())]);
    let _ = db.rollback();
    let rows = result.map_err(db::fail("plpgsql_check"))?.rows;
    Ok(Some(
        rows.into_iter()
            .filter_map(|row| {
                let level = level(row[1].as_text().unwrap_or_default()).filter(|l| *l >= options.level)?;
                Some(Issue {
                    function: row[0].as_text().unwrap_or_default().to_string(),
                    level,
                    line: row[2].as_int(),
                    message: row[3].as_text().unwrap_or_default().to_string(),
                    sqlstate: row[4].as_text().unwrap_or_default().to_string(),
                    hint: row[5].as_text().filter(|h| !h.is_empty()).map(str::to_string),
                })
            })
            .collect(),
    ))
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_read_as_the_cli_reads_them() {
        assert_eq!(level("error"), Some(Level::Error));
        assert_eq!(level("warning extra"), Some(Level::Warning));
        assert_eq!(level("warning"), Some(Level::Warning));
        assert_eq!(level("performance"), None);
        assert!(Level::Error > Level::Warning);
    }
}
