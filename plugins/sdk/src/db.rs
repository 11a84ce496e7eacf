//! Databases the step was granted, by name. The host holds the connection.

use crate::StepError;
pub use crate::bindings::deployhost::plugin::sql::{
    Connection, DbError, DumpInfo, LintClass, LintFinding, LintSeverity, NamedObject, ObjectKind, QueryResult,
    RehearsalFile, RehearsedFile, RehearsedStatement, SqlError, Value,
};

/// SQLSTATE for "insufficient privilege", also raised by row-level security.
pub const INSUFFICIENT_PRIVILEGE: &str = "42501";

pub fn open(database: &str) -> Result<Connection, StepError> {
    crate::bindings::deployhost::plugin::sql::open(database).map_err(|e| StepError::Failed(describe(&e)))
}

/// A one-line description of a database error.
pub fn describe(e: &SqlError) -> String {
    match e {
        SqlError::NotGranted(m) | SqlError::RoleNotGranted(m) | SqlError::Connection(m) | SqlError::Tool(m) => {
            m.clone()
        }
        SqlError::Database(db) => match &db.detail {
            Some(detail) => format!("{} (SQLSTATE {}; {detail})", db.message, db.code),
            None => format!("{} (SQLSTATE {})", db.message, db.code),
        },
    }
}

/// The SQLSTATE of a database error, if it is one.
pub fn code(e: &SqlError) -> Option<&str> {
    match e {
        SqlError::Database(db) => Some(&db.code),
        _ => None,
    }
}

pub fn dump(database: &str, path: &str) -> Result<DumpInfo, SqlError> {
    crate::bindings::deployhost::plugin::sql::dump(database, path)
}

pub fn restore(database: &str, path: &str) -> Result<(), SqlError> {
    crate::bindings::deployhost::plugin::sql::restore(database, path)
}

/// How far the rollback could undo `sql`; refused where the environment
/// requires `rollback: lossless` and does not accept `label`.
pub fn check_reversible(label: &str, sql: &str) -> Result<Vec<String>, SqlError> {
    crate::bindings::deployhost::plugin::sql::check_reversible(label, sql)
}

/// Lints a migration with PostgreSQL's own parser (nothing runs): what it
/// locks, destroys or depends on, each with its position and safe rewrite.
/// A file the parser refuses is a database error with SQLSTATE 42601.
pub fn lint(label: &str, sql: &str) -> Result<Vec<LintFinding>, SqlError> {
    crate::bindings::deployhost::plugin::sql::lint(label, sql)
}

/// The tables, views and functions a statement names, read with
/// PostgreSQL's own parser (nothing runs).
pub fn names(sql: &str) -> Result<Vec<NamedObject>, SqlError> {
    crate::bindings::deployhost::plugin::sql::names(sql)
}

/// Applies `files` to a shadow copy of `database` (its schema, no rows)
/// that the host makes on the same server and drops after: per file the
/// statements that ran, the locks each took, their time, and the error.
pub fn rehearse(database: &str, files: &[RehearsalFile]) -> Result<Vec<RehearsedFile>, SqlError> {
    crate::bindings::deployhost::plugin::sql::rehearse(database, files)
}

impl LintClass {
    /// The class as pipelines name it (`locking`, `data-dependent`, …).
    pub fn name(self) -> &'static str {
        match self {
            LintClass::Locking => "locking",
            LintClass::Destructive => "destructive",
            LintClass::DataDependent => "data-dependent",
            LintClass::Advice => "advice",
        }
    }
}

impl LintFinding {
    /// `file:line:column: rule (class, or `error`): why; lock …; fix: …`, on one line.
    pub fn describe(&self) -> String {
        let lock = match (&self.lock, &self.relation) {
            (Some(lock), Some(on)) => format!("; takes {lock} on {on}"),
            (Some(lock), None) => format!("; takes {lock}"),
            _ => String::new(),
        };
        let kind = match self.severity {
            LintSeverity::Error => "error",
            LintSeverity::Warning => self.class.name(),
        };
        format!(
            "{}:{}:{}: {} ({kind}): {}{lock}; fix: {}",
            self.file, self.line, self.column, self.rule, self.why, self.fix
        )
    }
}

/// Undoes what this run's change ledger recorded for `database`.
pub fn revert(database: &str) -> Result<Vec<String>, SqlError> {
    crate::bindings::deployhost::plugin::sql::revert(database)
}

impl Value {
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(s) | Value::Json(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Boolean(b) => Some(*b),
            _ => None,
        }
    }
}

/// Turns a database error into a step failure with context.
pub fn fail(context: &str) -> impl Fn(SqlError) -> StepError + '_ {
    move |e| StepError::Failed(format!("{context}: {}", describe(&e)))
}
