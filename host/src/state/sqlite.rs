//! The default state backend: SQLite at `<state-dir>/state.db`, in WAL mode
//! with full fsync, so a crash never loses a recorded step.

use super::db::{Backend, Conn, Durability, End, Val, schema_fingerprint};
use rusqlite::Connection;
use rusqlite::types::{Value, ValueRef};
use std::path::Path;
use std::sync::Mutex;

pub struct Sqlite {
    conn: Mutex<Open>,
    path: String,
}

/// The connection and its `synchronous` level, changed only when a
/// transaction asks for another durability than the last one.
struct Open {
    conn: Connection,
    durability: Durability,
}

/// Statements run inside [`Backend::transaction`]: all from the
/// connection's statement cache, parsed once per process.
struct Tx<'a>(&'a Connection);

impl Sqlite {
    pub fn open(state_dir: &Path, schema: &str, added: &[(&str, &str, &str)]) -> Result<Sqlite, String> {
        let path = state_dir.join("state.db");
        std::fs::create_dir_all(state_dir).map_err(|e| format!("cannot create {}: {e}", state_dir.display()))?;
        let conn = Connection::open(&path).map_err(|e| e.to_string())?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(|e| e.to_string())?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;").map_err(|e| e.to_string())?;
        // The schema is applied when it changed since the database last
        // saw it (its fingerprint is kept in `user_version`), not parsed
        // again by every command.
        let fingerprint = schema_fingerprint(schema, added);
        let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| e.to_string())?;
        if current != fingerprint {
            apply_schema(&conn, schema, added)?;
            conn.pragma_update(None, "user_version", fingerprint).map_err(|e| e.to_string())?;
        }
        let open = Open { conn, durability: Durability::Full };
        Ok(Sqlite { conn: Mutex::new(open), path: path.display().to_string() })
    }
}

fn apply_schema(conn: &Connection, schema: &str, added: &[(&str, &str, &str)]) -> Result<(), String> {
    conn.execute_batch(schema).map_err(|e| e.to_string())?;
    for (table, column, definition) in added {
        let has: bool = conn
            .query_row(&format!("SELECT count(*) FROM pragma_table_info('{table}') WHERE name = ?1"), [column], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n > 0)
            .map_err(|e| e.to_string())?;
        if !has {
            conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {definition}"))
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
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

impl Conn for Tx<'_> {
    fn exec(&mut self, sql: &str, params: &[Val]) -> Result<u64, String> {
        // Cached: a run records the same few statements for every step.
        let mut stmt = self.0.prepare_cached(sql).map_err(|e| e.to_string())?;
        stmt.execute(rusqlite::params_from_iter(to_sql(params))).map(|n| n as u64).map_err(|e| e.to_string())
    }

    fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Vec<Val>>, String> {
        let mut stmt = self.0.prepare_cached(sql).map_err(|e| e.to_string())?;
        let columns = stmt.column_count();
        let rows = stmt
            .query_map(rusqlite::params_from_iter(to_sql(params)), |row| {
                (0..columns).map(|i| row.get_ref(i).map(from_sql)).collect::<rusqlite::Result<Vec<Val>>>()
            })
            .map_err(|e| e.to_string())?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|e| e.to_string())
    }
}

/// Runs one cached statement that returns no rows.
fn run(conn: &Connection, sql: &str) -> Result<(), String> {
    conn.prepare_cached(sql).and_then(|mut s| s.execute([])).map(drop).map_err(|e| e.to_string())
}

impl Backend for Sqlite {
    fn transaction(
        &self,
        durability: Durability,
        work: &mut dyn FnMut(&mut dyn Conn) -> Result<End, String>,
    ) -> Result<(), String> {
        let mut open = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        if open.durability != durability {
            // NORMAL: this commit is not fsynced; the next FULL one makes
            // it durable with itself.
            let level = if durability == Durability::Relaxed { "NORMAL" } else { "FULL" };
            run(&open.conn, &format!("PRAGMA synchronous = {level}"))?;
            open.durability = durability;
        }
        let conn = &open.conn;
        run(conn, "BEGIN IMMEDIATE")?;
        let end = work(&mut Tx(conn));
        let ended = match end {
            Ok(End::Commit) => run(conn, "COMMIT"),
            Ok(End::Rollback) => run(conn, "ROLLBACK"),
            Err(e) => Err(e),
        };
        if ended.is_err() && !conn.is_autocommit() {
            let _ = run(conn, "ROLLBACK");
        }
        ended
    }

    fn location(&self) -> String {
        self.path.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY);";
    const ADDED: &[(&str, &str, &str)] = &[("t", "v", "TEXT NOT NULL DEFAULT ''")];

    fn columns(path: &Path) -> Vec<String> {
        let conn = Connection::open(path.join("state.db")).unwrap();
        let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('t') ORDER BY cid").unwrap();
        stmt.query_map([], |r| r.get(0)).unwrap().collect::<rusqlite::Result<_>>().unwrap()
    }

    fn insert(db: &Sqlite, durability: Durability, key: &str, commit: bool) -> Result<(), String> {
        db.transaction(durability, &mut |conn| {
            conn.exec("INSERT INTO t (k) VALUES (?1)", &[key.into()])?;
            Ok(if commit { End::Commit } else { End::Rollback })
        })
    }

    fn keys(db: &Sqlite) -> Vec<String> {
        let mut found = Vec::new();
        db.transaction(Durability::Full, &mut |conn| {
            found = conn
                .query("SELECT k FROM t ORDER BY k", &[])?
                .into_iter()
                .map(|row| match &row[0] {
                    Val::Text(t) => t.clone(),
                    other => panic!("{other:?}"),
                })
                .collect();
            Ok(End::Rollback)
        })
        .unwrap();
        found
    }

    #[test]
    fn the_schema_is_applied_when_the_database_has_not_seen_it() {
        let dir = tempfile::tempdir().unwrap();
        drop(Sqlite::open(dir.path(), SCHEMA, ADDED).unwrap());
        assert_eq!(columns(dir.path()), ["k", "v"]);
        // A database changed behind the fingerprint's back is left alone
        // (the schema is not parsed again) …
        let conn = Connection::open(dir.path().join("state.db")).unwrap();
        conn.execute_batch("ALTER TABLE t DROP COLUMN v").unwrap();
        drop(conn);
        drop(Sqlite::open(dir.path(), SCHEMA, ADDED).unwrap());
        assert_eq!(columns(dir.path()), ["k"]);
        // … and one marked by another schema (an older deployhost) is brought up to date.
        let conn = Connection::open(dir.path().join("state.db")).unwrap();
        conn.pragma_update(None, "user_version", 7).unwrap();
        drop(conn);
        drop(Sqlite::open(dir.path(), SCHEMA, ADDED).unwrap());
        assert_eq!(columns(dir.path()), ["k", "v"]);
    }

    #[test]
    fn commits_survive_the_connection_and_failed_work_is_rolled_back() {
        let dir = tempfile::tempdir().unwrap();
        let db = Sqlite::open(dir.path(), SCHEMA, ADDED).unwrap();
        insert(&db, Durability::Full, "a", true).unwrap();
        insert(&db, Durability::Relaxed, "b", true).unwrap();
        insert(&db, Durability::Relaxed, "c", false).unwrap();
        // A statement that fails (a duplicate key) leaves no transaction open.
        assert!(insert(&db, Durability::Relaxed, "a", true).is_err());
        insert(&db, Durability::Full, "d", true).unwrap();
        assert_eq!(keys(&db), ["a", "b", "d"]);
        drop(db);
        let again = Sqlite::open(dir.path(), SCHEMA, ADDED).unwrap();
        assert_eq!(keys(&again), ["a", "b", "d"]);
    }
}
