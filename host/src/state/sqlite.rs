//! The default state backend: SQLite at `<state-dir>/state.db`, in WAL mode
//! with full fsync, so a crash never loses a recorded step.

use super::db::{Backend, Conn, Durability, End, Val};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, TransactionBehavior};
use std::path::Path;
use std::sync::Mutex;

pub struct Sqlite {
    conn: Mutex<Connection>,
    path: String,
}

impl Sqlite {
    pub fn open(state_dir: &Path, schema: &str, added: &[(&str, &str, &str)]) -> Result<Sqlite, String> {
        let path = state_dir.join("state.db");
        std::fs::create_dir_all(state_dir).map_err(|e| format!("cannot create {}: {e}", state_dir.display()))?;
        let conn = Connection::open(&path).map_err(|e| e.to_string())?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(|e| e.to_string())?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;").map_err(|e| e.to_string())?;
        conn.execute_batch(schema).map_err(|e| e.to_string())?;
        for (table, column, definition) in added {
            let has: bool = conn
                .query_row(
                    &format!("SELECT count(*) FROM pragma_table_info('{table}') WHERE name = ?1"),
                    [column],
                    |r| r.get::<_, i64>(0),
                )
                .map(|n| n > 0)
                .map_err(|e| e.to_string())?;
            if !has {
                conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {definition}"))
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(Sqlite { conn: Mutex::new(conn), path: path.display().to_string() })
    }
}

fn to_sql(params: &[Val]) -> Vec<Value> {
    params
        .iter()
        .map(|v| match v {
            Val::Null => Value::Null,
            Val::Int(i) => Value::Integer(*i),
            Val::Text(s) => Value::Text(s.clone()),
        })
        .collect()
}

fn from_sql(v: ValueRef) -> Val {
    match v {
        ValueRef::Null => Val::Null,
        ValueRef::Integer(i) => Val::Int(i),
        ValueRef::Real(f) => Val::Text(f.to_string()),
        ValueRef::Text(t) | ValueRef::Blob(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
    }
}

impl Conn for rusqlite::Transaction<'_> {
    fn exec(&mut self, sql: &str, params: &[Val]) -> Result<u64, String> {
        self.execute(sql, rusqlite::params_from_iter(to_sql(params))).map(|n| n as u64).map_err(|e| e.to_string())
    }

    fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Vec<Val>>, String> {
        let mut stmt = self.prepare(sql).map_err(|e| e.to_string())?;
        let columns = stmt.column_count();
        let rows = stmt
            .query_map(rusqlite::params_from_iter(to_sql(params)), |row| {
                (0..columns).map(|i| row.get_ref(i).map(from_sql)).collect::<rusqlite::Result<Vec<Val>>>()
            })
            .map_err(|e| e.to_string())?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|e| e.to_string())
    }
}

impl Backend for Sqlite {
    fn transaction(
        &self,
        durability: Durability,
        work: &mut dyn FnMut(&mut dyn Conn) -> Result<End, String>,
    ) -> Result<(), String> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let relaxed = durability == Durability::Relaxed;
        if relaxed {
            conn.execute_batch("PRAGMA synchronous = NORMAL").map_err(|e| e.to_string())?;
        }
        let done = (|| {
            let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| e.to_string())?;
            match work(&mut tx)? {
                End::Commit => tx.commit().map_err(|e| e.to_string()),
                End::Rollback => tx.rollback().map_err(|e| e.to_string()),
            }
        })();
        if relaxed {
            conn.execute_batch("PRAGMA synchronous = FULL").map_err(|e| e.to_string())?;
        }
        done
    }

    fn location(&self) -> String {
        self.path.clone()
    }
}
