//! The shared state backend: PostgreSQL (`--state postgres://…`), so CI
//! runners on several machines see one history, one set of environment
//! locks and the same promotion evidence. Calls block the calling thread
//! (the state store's API is synchronous); every transaction takes one
//! advisory lock, the counterpart of SQLite's IMMEDIATE transactions.

use super::db::{Backend, Conn, Durability, End, Val, schema_fingerprint};
use crate::pgconn::{DbTarget, connect};
use std::future::Future;
use std::sync::Mutex;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, SimpleQueryMessage};

/// Any constant works; it only has to be the same in every deployhost.
const STATE_LOCK: i64 = 0x6465_706c_6f79;
/// New sessions tried after the server ended the one in use.
const RECONNECTS: u64 = 3;
/// How [`error_text`] ends for a session the server was told to end
/// (`pg_terminate_backend`), before the client sees it closed.
const ADMIN_SHUTDOWN: &str = "(57P01)";

pub struct Postgres {
    client: Mutex<Client>,
    /// To connect again when the server ends the session (a step's
    /// `pg_terminate_backend`, a failover, an idle timeout).
    target: DbTarget,
    display: String,
}

/// Runs async database work from the synchronous state API, inside the
/// command's multi-threaded tokio runtime.
fn block<F: Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

impl Postgres {
    pub fn open(url: &str, schema: &str, added: &[(&str, &str, &str)]) -> Result<Postgres, String> {
        let target = DbTarget::parse(url)?;
        let display = format!("postgres://{}", target.display);
        let client = block(connect(&target)).map_err(|e| e.to_string())?;
        // The schema is applied when it changed since the database last saw
        // it (its fingerprint is kept in `deployhost_schema`): one round trip
        // per command instead of two per statement, which a hosted database
        // far from the CI runner makes slow.
        let fingerprint = schema_fingerprint(schema, added);
        let seen = match block(client.simple_query("SELECT max(fingerprint) FROM deployhost_schema")) {
            Ok(messages) => messages.iter().find_map(|m| match m {
                SimpleQueryMessage::Row(row) => row.get(0).and_then(|v| v.parse::<i64>().ok()),
                _ => None,
            }),
            Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => None,
            Err(e) => return Err(error_text(e)),
        };
        let pg = Postgres { client: Mutex::new(client), target, display };
        if seen != Some(fingerprint) {
            pg.transaction(Durability::Full, &mut |conn| {
                for statement in schema.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                    conn.exec(statement, &[])?;
                }
                for (table, column, definition) in added {
                    conn.exec(&format!("ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {definition}"), &[])?;
                }
                conn.exec("CREATE TABLE IF NOT EXISTS deployhost_schema (fingerprint BIGINT NOT NULL)", &[])?;
                conn.exec("DELETE FROM deployhost_schema", &[])?;
                conn.exec("INSERT INTO deployhost_schema (fingerprint) VALUES (?1)", &[fingerprint.into()])?;
                Ok(End::Commit)
            })?;
        }
        Ok(pg)
    }
}

/// `?1` → `$1`: the queries are written once, in SQLite's spelling.
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

fn params(values: &[Val]) -> Vec<Box<dyn ToSql + Sync + Send>> {
    values
        .iter()
        .map(|v| -> Box<dyn ToSql + Sync + Send> {
            match v {
                Val::Null => Box::new(None::<String>),
                Val::Int(i) => Box::new(*i),
                Val::Text(s) => Box::new(s.clone()),
            }
        })
        .collect()
}

fn value(row: &tokio_postgres::Row, i: usize) -> Result<Val, tokio_postgres::Error> {
    let ty = row.columns()[i].type_();
    Ok(if *ty == Type::INT8 {
        row.try_get::<_, Option<i64>>(i)?.map_or(Val::Null, Val::Int)
    } else if *ty == Type::INT4 {
        row.try_get::<_, Option<i32>>(i)?.map_or(Val::Null, |v| Val::Int(v.into()))
    } else {
        row.try_get::<_, Option<String>>(i)?.map_or(Val::Null, Val::Text)
    })
}

struct Tx<'a, 'b>(&'a tokio_postgres::Transaction<'b>);

fn error_text(e: tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

impl Conn for Tx<'_, '_> {
    fn exec(&mut self, sql: &str, values: &[Val]) -> Result<u64, String> {
        let owned = params(values);
        let refs: Vec<&(dyn ToSql + Sync)> = owned.iter().map(|b| b.as_ref() as &(dyn ToSql + Sync)).collect();
        block(self.0.execute(&numbered(sql), &refs)).map_err(error_text)
    }

    fn query(&mut self, sql: &str, values: &[Val]) -> Result<Vec<Vec<Val>>, String> {
        let owned = params(values);
        let refs: Vec<&(dyn ToSql + Sync)> = owned.iter().map(|b| b.as_ref() as &(dyn ToSql + Sync)).collect();
        let rows = block(self.0.query(&numbered(sql), &refs)).map_err(error_text)?;
        rows.iter()
            .map(|row| (0..row.len()).map(|i| value(row, i)).collect())
            .collect::<Result<_, _>>()
            .map_err(error_text)
    }
}

impl Postgres {
    /// A new session in place of one the server ended; said on stderr, so
    /// the run's log shows that the state store's session was cut.
    fn reconnect(&self, why: &str) -> Result<Client, String> {
        tracing::warn!(store = %self.display, "the state store's session ended ({why}); connecting again");
        block(connect(&self.target)).map_err(|e| format!("the session ended ({why}) and connecting again failed: {e}"))
    }
}

/// A transaction that did not end as asked. `at_commit` is its id when the
/// failure came with its COMMIT: the server may have committed it and the
/// answer been lost with the session, so whether it did is asked again.
struct Failed {
    error: String,
    at_commit: Option<i64>,
}

impl From<tokio_postgres::Error> for Failed {
    fn from(e: tokio_postgres::Error) -> Failed {
        Failed { error: error_text(e), at_commit: None }
    }
}

fn run_transaction(
    client: &mut Client,
    durability: Durability,
    work: &mut dyn FnMut(&mut dyn Conn) -> Result<End, String>,
) -> Result<(), Failed> {
    let tx = block(client.transaction())?;
    let locked =
        block(tx.query_one("SELECT txid_current() FROM (SELECT pg_advisory_xact_lock($1)) l", &[&STATE_LOCK]))?;
    let xid: i64 = locked.get(0);
    if durability == Durability::Relaxed {
        block(tx.batch_execute("SET LOCAL synchronous_commit = off"))?;
    }
    let end = work(&mut Tx(&tx)).map_err(|error| Failed { error, at_commit: None })?;
    match end {
        End::Commit => {
            let committed = block(tx.commit());
            if committed.is_ok() && crate::failpoint::fires("state-commit-answer-lost") {
                // As when the session ends between the server's commit and its answer.
                return Err(Failed {
                    error: format!("the commit's answer was lost {ADMIN_SHUTDOWN}"),
                    at_commit: Some(xid),
                });
            }
            committed.map_err(|e| Failed { error: error_text(e), at_commit: Some(xid) })
        }
        End::Rollback => block(tx.rollback()).map_err(Failed::from),
    }
}

/// Whether transaction `xid`, whose COMMIT's answer was lost, committed
/// (PostgreSQL's `txid_status`, made for this); asked on a new session.
fn committed(client: &Client, xid: i64) -> Result<bool, String> {
    for _ in 0..50 {
        let row = block(client.query_one("SELECT txid_status($1)", &[&xid])).map_err(error_text)?;
        match row.get::<_, Option<String>>(0).as_deref() {
            Some("committed") => return Ok(true),
            Some("aborted") => return Ok(false),
            // Its server process is still ending.
            Some("in progress") => std::thread::sleep(std::time::Duration::from_millis(100)),
            _ => break,
        }
    }
    Err(format!("the session ended at the commit of transaction {xid}, and whether it committed cannot be told"))
}

impl Backend for Postgres {
    fn transaction(
        &self,
        durability: Durability,
        work: &mut dyn FnMut(&mut dyn Conn) -> Result<End, String>,
    ) -> Result<(), String> {
        let mut client = self.client.lock().unwrap_or_else(|e| e.into_inner());
        if client.is_closed() {
            *client = self.reconnect("it was closed")?;
        }
        // The session may end under the work: what did not commit runs
        // again on a new session, a few times (a backend told to end can
        // take a moment to go, under load). One that ends at the commit
        // may have committed: the server is asked before anything runs
        // again.
        let mut attempts = 0;
        loop {
            match run_transaction(&mut client, durability, work) {
                Err(f) if (client.is_closed() || f.error.ends_with(ADMIN_SHUTDOWN)) && attempts < RECONNECTS => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(100 * attempts));
                    *client = self.reconnect(&f.error)?;
                    // Run again only what did not commit: never twice.
                    if let Some(xid) = f.at_commit
                        && committed(&client, xid)?
                    {
                        return Ok(());
                    }
                }
                other => return other.map_err(|f| f.error),
            }
        }
    }

    fn location(&self) -> String {
        self.display.clone()
    }
}
