//! The state store: every run and step (who, what version, where, outcome),
//! and one lock per environment, in SQLite at `<state-dir>/state.db`. The
//! run folder keeps the details (logs, audit); this keeps what decisions
//! need: is an environment busy, did this version pass in staging, what was
//! deployed before.

use crate::runner::StepOutcome;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use std::path::Path;
use std::sync::Mutex;
use std::time::SystemTime;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    pipeline TEXT NOT NULL,
    environment TEXT NOT NULL,
    version TEXT NOT NULL,
    status TEXT NOT NULL,
    started TEXT NOT NULL,
    finished TEXT,
    who TEXT NOT NULL,
    approved_by TEXT,
    file TEXT NOT NULL,
    pid INTEGER NOT NULL,
    reason TEXT,
    grants TEXT NOT NULL DEFAULT '{}',
    grants_accepted_by TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_env ON runs (pipeline, environment, started);
CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT NOT NULL REFERENCES runs (id),
    seq INTEGER NOT NULL,
    stage TEXT NOT NULL,
    step TEXT NOT NULL,
    status TEXT NOT NULL,
    ms INTEGER NOT NULL,
    summary TEXT NOT NULL,
    outputs TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE IF NOT EXISTS locks (
    environment TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    pid INTEGER NOT NULL,
    since TEXT NOT NULL
);
";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(
        "environment `{environment}` is locked by run {run_id} (pid {pid}, since {since}); \
         wait for it, or if that run is dead, break the lock with `deployhost unlock --env {environment}`"
    )]
    Locked { environment: String, run_id: String, pid: i64, since: String },
    #[error("state store {path}: {source}")]
    Db {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
}

/// A run as the state store knows it.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    pub id: String,
    pub pipeline: String,
    pub environment: String,
    pub version: String,
    pub status: String,
    pub started: String,
    pub finished: Option<String>,
    pub who: String,
    pub approved_by: Option<String>,
    pub file: String,
    pub pid: i64,
    pub reason: Option<String>,
    /// Each step's grants as written (JSON), for promotion checks.
    #[serde(skip)]
    pub grants: String,
    pub grants_accepted_by: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepRow {
    pub stage: String,
    pub step: String,
    pub status: String,
    pub ms: i64,
    pub summary: String,
}

/// What a run is about to be, for [`StateStore::begin`].
pub struct NewRun<'a> {
    pub id: &'a str,
    pub pipeline: &'a str,
    pub environment: &'a str,
    pub version: &'a str,
    pub who: &'a str,
    pub approved_by: Option<&'a str>,
    pub file: &'a str,
    /// Each step's grants as written, JSON.
    pub grants: &'a str,
    pub grants_accepted_by: Option<&'a str>,
}

pub struct StateStore {
    conn: Mutex<Connection>,
    path: String,
}

fn now() -> String {
    crate::audit::timestamp(SystemTime::now())
}

impl StateStore {
    pub fn open(state_dir: &Path) -> Result<StateStore, StateError> {
        let path = state_dir.join("state.db");
        let display = path.display().to_string();
        let db = |source| StateError::Db { path: display.clone(), source };
        std::fs::create_dir_all(state_dir).map_err(|e| db(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))?;
        let conn = Connection::open(&path).map_err(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(db)?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;").map_err(db)?;
        conn.execute_batch(SCHEMA).map_err(db)?;
        Ok(StateStore { conn: Mutex::new(conn), path: display })
    }

    fn err(&self, source: rusqlite::Error) -> StateError {
        StateError::Db { path: self.path.clone(), source }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T, StateError> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut conn).map_err(|e| self.err(e))
    }

    /// Runs `change` in one immediate transaction if `environment`'s lock
    /// is free (or held by `holder`, a run being taken over); otherwise the
    /// lock's holder is the error. Locks are never taken over silently.
    fn with_free_lock(
        &self,
        environment: &str,
        holder: Option<&str>,
        change: impl FnOnce(&rusqlite::Transaction) -> rusqlite::Result<()>,
    ) -> Result<(), StateError> {
        let held = self.with(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let current = tx
                .query_row("SELECT run_id, pid, since FROM locks WHERE environment = ?1", [environment], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?))
                })
                .optional()?;
            if let Some(h) = current.filter(|h| Some(h.0.as_str()) != holder) {
                return Ok(Some(h));
            }
            change(&tx)?;
            tx.commit()?;
            Ok(None)
        })?;
        match held {
            Some((run_id, pid, since)) => {
                Err(StateError::Locked { environment: environment.to_string(), run_id, pid, since })
            }
            None => Ok(()),
        }
    }

    /// Takes the environment's lock and records the run, atomically.
    pub fn begin(&self, run: &NewRun) -> Result<(), StateError> {
        self.with_free_lock(run.environment, None, |tx| {
            let pid = i64::from(std::process::id());
            let started = now();
            tx.execute(
                "INSERT INTO locks (environment, run_id, pid, since) VALUES (?1, ?2, ?3, ?4)",
                params![run.environment, run.id, pid, started],
            )?;
            insert_run(tx, run, "running", pid, &started)
        })
    }

    /// Records a run that stops at the approval gate; it holds no lock
    /// while it waits.
    pub fn wait_for_approval(&self, run: &NewRun) -> Result<(), StateError> {
        self.with(|conn| insert_run(conn, run, "awaiting-approval", i64::from(std::process::id()), &now()))
    }

    pub fn approve(&self, run_id: &str, approver: &str) -> Result<(), StateError> {
        self.with(|conn| {
            conn.execute("UPDATE runs SET approved_by = ?2 WHERE id = ?1", params![run_id, approver]).map(|_| ())
        })
    }

    /// This process continues `run_id`: takes its environment's lock (free,
    /// or still held by this same run from a dead process) and marks the
    /// run running again.
    pub fn take_over(&self, run_id: &str, environment: &str) -> Result<(), StateError> {
        self.with_free_lock(environment, Some(run_id), |tx| {
            let pid = i64::from(std::process::id());
            tx.execute(
                "INSERT OR REPLACE INTO locks (environment, run_id, pid, since) VALUES (?1, ?2, ?3, ?4)",
                params![environment, run_id, pid, now()],
            )?;
            tx.execute(
                "UPDATE runs SET status = 'running', pid = ?2, finished = NULL WHERE id = ?1",
                params![run_id, pid],
            )
            .map(|_| ())
        })
    }

    /// Records one step without an fsync of its own (`synchronous = NORMAL`
    /// for this commit only): the row survives the process dying, which is
    /// what resume needs, and the run's next full commit (its end) makes it
    /// durable on disk; an fsync per step cost more than a no-op step itself.
    pub fn record_step(&self, run_id: &str, seq: usize, o: &StepOutcome) -> Result<(), StateError> {
        let outputs = serde_json::to_string(&o.outputs).unwrap_or_default();
        self.with(|conn| {
            conn.execute_batch("PRAGMA synchronous = NORMAL")?;
            let inserted = conn.execute(
                "INSERT OR REPLACE INTO steps (run_id, seq, stage, step, status, ms, summary, outputs)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![run_id, seq as i64, o.stage, o.step, o.status.as_str(), o.ms as i64, o.summary, outputs],
            );
            conn.execute_batch("PRAGMA synchronous = FULL")?;
            inserted.map(|_| ())
        })
    }

    /// Records how the run ended and releases its environment's lock.
    pub fn finish(&self, run_id: &str, status: &str, reason: Option<&str>) -> Result<(), StateError> {
        self.with(|conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "UPDATE runs SET status = ?2, finished = ?3, reason = ?4 WHERE id = ?1",
                params![run_id, status, now(), reason],
            )?;
            tx.execute("DELETE FROM locks WHERE run_id = ?1", [run_id])?;
            tx.commit()
        })
    }

    /// Breaks an environment's lock; returns the run that held it.
    pub fn unlock(&self, environment: &str) -> Result<Option<String>, StateError> {
        self.with(|conn| {
            let holder: Option<String> = conn
                .query_row("SELECT run_id FROM locks WHERE environment = ?1", [environment], |r| r.get(0))
                .optional()?;
            conn.execute("DELETE FROM locks WHERE environment = ?1", [environment])?;
            if let Some(run) = &holder {
                conn.execute(
                    "UPDATE runs SET status = 'interrupted', reason = 'lock broken by deployhost unlock' WHERE id = ?1 AND status = 'running'",
                    [run],
                )?;
            }
            Ok(holder)
        })
    }

    fn run_from(r: &rusqlite::Row) -> rusqlite::Result<RunRow> {
        Ok(RunRow {
            id: r.get(0)?,
            pipeline: r.get(1)?,
            environment: r.get(2)?,
            version: r.get(3)?,
            status: r.get(4)?,
            started: r.get(5)?,
            finished: r.get(6)?,
            who: r.get(7)?,
            approved_by: r.get(8)?,
            file: r.get(9)?,
            pid: r.get(10)?,
            reason: r.get(11)?,
            grants: r.get(12)?,
            grants_accepted_by: r.get(13)?,
        })
    }

    const RUN_COLUMNS: &'static str = "id, pipeline, environment, version, status, started, finished, who, approved_by, file, pid, reason, grants, \
         grants_accepted_by";

    /// Runs, newest first, optionally of one environment.
    pub fn history(&self, environment: Option<&str>, limit: usize) -> Result<Vec<RunRow>, StateError> {
        let sql = format!(
            "SELECT {} FROM runs WHERE (?1 IS NULL OR environment = ?1) ORDER BY started DESC, id DESC LIMIT ?2",
            Self::RUN_COLUMNS
        );
        self.with(|conn| {
            let mut stmt = conn.prepare(&sql)?;
            stmt.query_map(params![environment, limit as i64], Self::run_from)?.collect()
        })
    }

    pub fn run(&self, id: &str) -> Result<Option<(RunRow, Vec<StepRow>)>, StateError> {
        let sql = format!("SELECT {} FROM runs WHERE id = ?1", Self::RUN_COLUMNS);
        self.with(|conn| {
            let Some(run) = conn.query_row(&sql, [id], Self::run_from).optional()? else { return Ok(None) };
            let mut stmt =
                conn.prepare("SELECT stage, step, status, ms, summary FROM steps WHERE run_id = ?1 ORDER BY seq")?;
            let steps = stmt
                .query_map([id], |r| {
                    Ok(StepRow {
                        stage: r.get(0)?,
                        step: r.get(1)?,
                        status: r.get(2)?,
                        ms: r.get(3)?,
                        summary: r.get(4)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Some((run, steps)))
        })
    }

    /// The newest run of `pipeline` in `environment` that passed, if any;
    /// with `version`, only a run of that version.
    pub fn last_passed(
        &self,
        pipeline: &str,
        environment: &str,
        version: Option<&str>,
    ) -> Result<Option<RunRow>, StateError> {
        let sql = format!(
            "SELECT {} FROM runs WHERE pipeline = ?1 AND environment = ?2 AND status = 'passed'
             AND (?3 IS NULL OR version = ?3) ORDER BY started DESC, id DESC LIMIT 1",
            Self::RUN_COLUMNS
        );
        self.with(|conn| conn.query_row(&sql, params![pipeline, environment, version], Self::run_from).optional())
    }
}

fn insert_run(conn: &Connection, run: &NewRun, status: &str, pid: i64, started: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO runs (id, pipeline, environment, version, status, started, who, approved_by, file, pid, grants, grants_accepted_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            run.id,
            run.pipeline,
            run.environment,
            run.version,
            status,
            started,
            run.who,
            run.approved_by,
            run.file,
            pid,
            run.grants,
            run.grants_accepted_by
        ],
    )
    .map(|_| ())
}

/// Is a process with this pid alive on this machine?
pub fn process_alive(pid: i64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}
