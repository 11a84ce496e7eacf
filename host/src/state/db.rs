//! The little the state store asks of a SQL database, so the same queries
//! run on SQLite (one machine) and PostgreSQL (CI runners sharing state).
//! Queries are written once, with `?1`-style parameters and SQL both accept.

/// A parameter or a column value.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Null,
    Int(i64),
    Text(String),
}

impl Val {
    pub fn text(&self) -> String {
        match self {
            Val::Text(s) => s.clone(),
            Val::Int(i) => i.to_string(),
            Val::Null => String::new(),
        }
    }
    pub fn opt_text(&self) -> Option<String> {
        match self {
            Val::Null => None,
            other => Some(other.text()),
        }
    }
    pub fn int(&self) -> i64 {
        match self {
            Val::Int(i) => *i,
            Val::Text(s) => s.parse().unwrap_or_default(),
            Val::Null => 0,
        }
    }
}

impl From<&str> for Val {
    fn from(s: &str) -> Val {
        Val::Text(s.to_string())
    }
}
impl From<&String> for Val {
    fn from(s: &String) -> Val {
        Val::Text(s.clone())
    }
}
impl From<i64> for Val {
    fn from(i: i64) -> Val {
        Val::Int(i)
    }
}
impl<T: Into<Val>> From<Option<T>> for Val {
    fn from(v: Option<T>) -> Val {
        v.map_or(Val::Null, Into::into)
    }
}

/// The schema's and added columns' sha256, folded into the positive range
/// of SQLite's `user_version` (a signed 32-bit integer; 0 is a new
/// database). Each backend keeps the one its database last saw and applies
/// the schema only when it differs, not on every command.
pub fn schema_fingerprint(schema: &str, added: &[(&str, &str, &str)]) -> i64 {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(format!("{schema}\0{added:?}").as_bytes());
    i64::from(u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) >> 1).max(1)
}

/// Statements inside one transaction.
pub trait Conn {
    fn exec(&mut self, sql: &str, params: &[Val]) -> Result<u64, String>;
    fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Vec<Val>>, String>;
}

/// How hard a commit must be on the disk before it returns.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// On the disk (fsync): locks, a run's start and end.
    Full,
    /// Safe if the process dies, made durable by the next full commit: a
    /// step row, where an fsync per step would cost more than the step.
    Relaxed,
}

/// What to do with the transaction when the work is done.
pub enum End {
    Commit,
    Rollback,
}

pub trait Backend: Send + Sync {
    /// Runs `work` in one transaction that holds the store's write lock, so
    /// two deployhost processes never interleave their checks and changes.
    fn transaction(
        &self,
        durability: Durability,
        work: &mut dyn FnMut(&mut dyn Conn) -> Result<End, String>,
    ) -> Result<(), String>;
    /// Where the state is, for messages (never with a password).
    fn location(&self) -> String;
}
