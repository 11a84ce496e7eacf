//! The state store: every run and step (who, what version, where, outcome),
//! and one lock per environment. The run folder keeps the details (logs,
//! audit); this keeps what decisions need: is an environment busy, did this
//! version pass in staging, what was deployed before. SQLite at
//! `<state-dir>/state.db` by default; PostgreSQL (`--state postgres://…`)
//! when CI runners on several machines must share it.

mod approval;
mod attest;
mod db;
mod postgres;
mod sqlite;

pub use approval::ApprovalRecord;
pub use attest::Attestation;

use crate::outcome::StepOutcome;
use crate::status::RunStatus;
use db::{Backend, Conn, Durability, End, Val};
use deployhost_pipeline::written::WrittenGrants;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;
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
    pid BIGINT NOT NULL,
    reason TEXT,
    grants TEXT NOT NULL DEFAULT '{}',
    grants_accepted_by TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_env ON runs (pipeline, environment, started);
CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT NOT NULL REFERENCES runs (id),
    seq BIGINT NOT NULL,
    stage TEXT NOT NULL,
    step TEXT NOT NULL,
    status TEXT NOT NULL,
    ms BIGINT NOT NULL,
    summary TEXT NOT NULL,
    outputs TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE IF NOT EXISTS locks (
    environment TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    pid BIGINT NOT NULL,
    since TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS approvals (
    run_id TEXT PRIMARY KEY REFERENCES runs (id),
    mode TEXT NOT NULL,
    approver TEXT NOT NULL,
    signature TEXT,
    detail TEXT,
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS attestations (
    run_id TEXT NOT NULL REFERENCES runs (id),
    item TEXT NOT NULL,
    who TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (run_id, item, who)
);
";

/// Columns added since the first schema: (table, column, definition), added
/// to stores that lack them.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[("runs", "host", "TEXT NOT NULL DEFAULT ''"), ("runs", "seal", "TEXT")];

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(
        "environment `{environment}` is locked by run {run_id} (pid {pid}, since {since}); \
         wait for it, or if that run is dead, break the lock with `deployhost unlock --env {environment}`"
    )]
    Locked { environment: String, run_id: String, pid: i64, since: String },
    #[error("state store {location}: {message}")]
    Db { location: String, message: String },
}

/// A run as the state store knows it.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    pub id: String,
    pub pipeline: String,
    pub environment: String,
    pub version: String,
    pub status: RunStatus,
    pub started: String,
    pub finished: Option<String>,
    pub who: String,
    pub approved_by: Option<String>,
    pub file: String,
    pub pid: i64,
    pub reason: Option<String>,
    /// Each step's grants as recorded (JSON, see [`RunRow::written_grants`]).
    #[serde(skip)]
    pub grants: String,
    pub grants_accepted_by: Option<String>,
    /// The machine whose process `pid` is; empty in stores from before it was kept.
    pub host: String,
    /// The run's seal when it ended (JSON of [`crate::chain::Seal`]), for `verify`.
    #[serde(skip)]
    pub seal: Option<String>,
}

impl RunRow {
    /// Each step's grants as the run recorded them. Evidence a promotion or
    /// an approval rests on: a record that cannot be read is an error, never
    /// "no grants".
    pub fn written_grants(&self) -> anyhow::Result<BTreeMap<String, WrittenGrants>> {
        RecordedGrants::read(&self.grants).map_err(|e| anyhow::anyhow!("run {}: its recorded grants {e}", self.id))
    }
}

/// Each step's grants, plugin digest and step digest as a run recorded them
/// when it began (`runs.grants`), versioned: `{"version": 1, "steps": {…}}`.
/// The unversioned map of stores from before is read as it was; a version
/// newer than this deployhost knows is refused, not guessed at.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum RecordedGrants {
    Versioned { version: u32, steps: BTreeMap<String, WrittenGrants> },
    Unversioned(BTreeMap<String, WrittenGrants>),
}

impl RecordedGrants {
    const VERSION: u32 = 1;

    fn write(steps: &BTreeMap<String, WrittenGrants>) -> Result<String, String> {
        let recorded = RecordedGrants::Versioned { version: Self::VERSION, steps: steps.clone() };
        serde_json::to_string(&recorded).map_err(|e| format!("cannot record the run's grants: {e}"))
    }

    fn read(text: &str) -> Result<BTreeMap<String, WrittenGrants>, String> {
        if text.trim().is_empty() {
            return Ok(BTreeMap::new());
        }
        match serde_json::from_str(text).map_err(|e| format!("cannot be read: {e}"))? {
            RecordedGrants::Versioned { version, .. } if version > Self::VERSION => Err(format!(
                "are in version {version}, written by a newer deployhost (this one reads up to {})",
                Self::VERSION
            )),
            RecordedGrants::Versioned { steps, .. } | RecordedGrants::Unversioned(steps) => Ok(steps),
        }
    }
}

impl RunRow {
    /// Recorded as running, but its process is gone. Only a process on this
    /// machine can be checked; one elsewhere (a CI runner sharing the
    /// store) is taken at its word.
    pub fn process_gone(&self) -> bool {
        self.status == RunStatus::Running
            && (self.host.is_empty() || self.host == this_host())
            && (!process_alive(self.pid) || self.pid_reused())
    }

    /// The pid is alive but its process started after this run did: the
    /// run's own process died and the pid went to another.
    fn pid_reused(&self) -> bool {
        let Ok(started) = humantime::parse_rfc3339_weak(&self.started) else { return false };
        process_started(self.pid).is_some_and(|p| p > started + std::time::Duration::from_secs(2))
    }
}

/// This machine's name, recorded with each run's pid.
pub fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
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
    /// Each step's grants as written, with its plugin's and its own digest.
    pub grants: &'a BTreeMap<String, WrittenGrants>,
    pub grants_accepted_by: Option<&'a str>,
}

pub struct StateStore {
    backend: Box<dyn Backend>,
}

fn now() -> String {
    crate::audit::timestamp(SystemTime::now())
}

/// The shared database, when `--state` names one; set once per process.
static DATABASE_URL: OnceLock<String> = OnceLock::new();

/// Keep state in this PostgreSQL database instead of `<state-dir>/state.db`.
pub fn use_database(url: String) {
    let _ = DATABASE_URL.set(url);
}

const RUN_COLUMNS: &str = "id, pipeline, environment, version, status, started, finished, who, approved_by, file, pid, reason, grants, grants_accepted_by, host, seal";

/// A stored status this deployhost does not know (a store written by a
/// newer one) reads as failed: never as passed, never as running.
fn stored_status(name: &str) -> RunStatus {
    RunStatus::parse(name).unwrap_or_else(|| {
        tracing::warn!(status = name, "unknown run status in the state store; read as failed");
        RunStatus::Failed
    })
}

fn run_from(r: &[Val]) -> RunRow {
    RunRow {
        id: r[0].text(),
        pipeline: r[1].text(),
        environment: r[2].text(),
        version: r[3].text(),
        status: stored_status(&r[4].text()),
        started: r[5].text(),
        finished: r[6].opt_text(),
        who: r[7].text(),
        approved_by: r[8].opt_text(),
        file: r[9].text(),
        pid: r[10].int(),
        reason: r[11].opt_text(),
        grants: r[12].text(),
        grants_accepted_by: r[13].opt_text(),
        host: r[14].text(),
        seal: r[15].opt_text(),
    }
}

impl StateStore {
    pub fn open(state_dir: &Path) -> Result<StateStore, StateError> {
        let backend: Box<dyn Backend> = match DATABASE_URL.get() {
            Some(url) => Box::new(
                postgres::Postgres::open(url, SCHEMA, ADDED_COLUMNS)
                    .map_err(|message| StateError::Db { location: "the --state database".into(), message })?,
            ),
            None => Box::new(sqlite::Sqlite::open(state_dir, SCHEMA, ADDED_COLUMNS).map_err(|message| {
                StateError::Db { location: state_dir.join("state.db").display().to_string(), message }
            })?),
        };
        Ok(StateStore { backend })
    }

    /// Where the state is kept, for messages.
    pub fn location(&self) -> String {
        self.backend.location()
    }

    /// Runs `work` in one transaction and commits it, durably.
    fn with<T>(&self, work: impl FnMut(&mut dyn Conn) -> Result<T, String>) -> Result<T, StateError> {
        self.with_durability(Durability::Full, work)
    }

    fn with_durability<T>(
        &self,
        durability: Durability,
        mut work: impl FnMut(&mut dyn Conn) -> Result<T, String>,
    ) -> Result<T, StateError> {
        let mut out = None;
        self.backend
            .transaction(durability, &mut |conn| {
                out = Some(work(conn)?);
                Ok(End::Commit)
            })
            .map_err(|message| StateError::Db { location: self.backend.location(), message })?;
        Ok(out.expect("a committed transaction ran its work"))
    }

    /// Runs `change` in one transaction if `environment`'s lock is free (or
    /// held by `holder`, a run being taken over); otherwise the lock's
    /// holder is the error. Locks are never taken over silently.
    fn with_free_lock(
        &self,
        environment: &str,
        holder: Option<&str>,
        mut change: impl FnMut(&mut dyn Conn) -> Result<(), String>,
    ) -> Result<(), StateError> {
        let mut held: Option<Vec<Val>> = None;
        self.backend
            .transaction(Durability::Full, &mut |conn| {
                let current =
                    conn.query("SELECT run_id, pid, since FROM locks WHERE environment = ?1", &[environment.into()])?;
                if let Some(h) = current.into_iter().next().filter(|h| Some(h[0].text().as_str()) != holder) {
                    held = Some(h);
                    return Ok(End::Rollback);
                }
                change(conn)?;
                Ok(End::Commit)
            })
            .map_err(|message| StateError::Db { location: self.backend.location(), message })?;
        match held {
            Some(h) => Err(StateError::Locked {
                environment: environment.to_string(),
                run_id: h[0].text(),
                pid: h[1].int(),
                since: h[2].text(),
            }),
            None => Ok(()),
        }
    }

    /// Takes the environment's lock and records the run, atomically.
    pub fn begin(&self, run: &NewRun) -> Result<(), StateError> {
        let pid = i64::from(std::process::id());
        let started = now();
        self.with_free_lock(run.environment, None, |conn| {
            conn.exec(
                "INSERT INTO locks (environment, run_id, pid, since) VALUES (?1, ?2, ?3, ?4)",
                &[run.environment.into(), run.id.into(), pid.into(), (&started).into()],
            )?;
            insert_run(conn, run, RunStatus::Running, pid, &started)
        })
    }

    /// Records a run that stops at the approval gate; it holds no lock
    /// while it waits.
    pub fn wait_for_approval(&self, run: &NewRun) -> Result<(), StateError> {
        let pid = i64::from(std::process::id());
        self.with(|conn| insert_run(conn, run, RunStatus::AwaitingApproval, pid, &now()))
    }

    pub fn approve(&self, run_id: &str, approver: &str) -> Result<(), StateError> {
        self.with(|conn| conn.exec("UPDATE runs SET approved_by = ?2 WHERE id = ?1", &[run_id.into(), approver.into()]))
            .map(|_| ())
    }

    /// This process continues `run_id`: takes its environment's lock (free,
    /// or still held by this same run from a dead process) and marks the
    /// run running again.
    pub fn take_over(&self, run_id: &str, environment: &str) -> Result<(), StateError> {
        let pid = i64::from(std::process::id());
        self.with_free_lock(environment, Some(run_id), |conn| {
            conn.exec(
                "INSERT INTO locks (environment, run_id, pid, since) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (environment) DO UPDATE SET run_id = excluded.run_id, pid = excluded.pid, since = excluded.since",
                &[environment.into(), run_id.into(), pid.into(), now().as_str().into()],
            )?;
            conn.exec(
                "UPDATE runs SET status = 'running', pid = ?2, host = ?3, finished = NULL, seal = NULL WHERE id = ?1",
                &[run_id.into(), pid.into(), this_host().as_str().into()],
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
        let values: [Val; 8] = [
            run_id.into(),
            (seq as i64).into(),
            (&o.stage).into(),
            (&o.step).into(),
            o.status.as_str().into(),
            (o.ms as i64).into(),
            (&o.summary).into(),
            (&outputs).into(),
        ];
        self.with_durability(Durability::Relaxed, |conn| {
            conn.exec(
                "INSERT INTO steps (run_id, seq, stage, step, status, ms, summary, outputs)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (run_id, seq) DO UPDATE SET stage = excluded.stage, step = excluded.step,
                   status = excluded.status, ms = excluded.ms, summary = excluded.summary, outputs = excluded.outputs",
                &values,
            )
        })
        .map(|_| ())
    }

    /// Records how the run ended and releases its environment's lock.
    pub fn finish(&self, run_id: &str, status: RunStatus, reason: Option<&str>) -> Result<(), StateError> {
        self.finish_sealed(run_id, status, reason, None)
    }

    /// Ends the run and, in the same transaction, keeps its seal
    /// ([`crate::chain::Seal`]) apart from its folder: `deployhost verify`
    /// compares the two.
    pub fn finish_sealed(
        &self,
        run_id: &str,
        status: RunStatus,
        reason: Option<&str>,
        seal: Option<&crate::chain::Seal>,
    ) -> Result<(), StateError> {
        let finished = now();
        let seal = seal.map(serde_json::to_string).transpose().map_err(|e| StateError::Db {
            location: self.backend.location(),
            message: format!("cannot write the run's seal: {e}"),
        })?;
        self.with(|conn| {
            conn.exec(
                "UPDATE runs SET status = ?2, finished = ?3, reason = ?4, seal = COALESCE(?5, seal) WHERE id = ?1",
                &[run_id.into(), status.as_str().into(), (&finished).into(), reason.into(), seal.as_deref().into()],
            )?;
            conn.exec("DELETE FROM locks WHERE run_id = ?1", &[run_id.into()])
        })
        .map(|_| ())
    }

    /// The run holding an environment's lock, if any.
    pub fn lock_holder(&self, environment: &str) -> Result<Option<String>, StateError> {
        self.with(|conn| {
            Ok(conn
                .query("SELECT run_id FROM locks WHERE environment = ?1", &[environment.into()])?
                .into_iter()
                .next()
                .map(|r| r[0].text()))
        })
    }

    /// Breaks an environment's lock; returns the run that held it. `forced`:
    /// the reason given with `--force`, recorded with the run.
    pub fn unlock(&self, environment: &str, forced: Option<&str>) -> Result<Option<String>, StateError> {
        let reason = match forced {
            Some(why) => format!("lock broken by deployhost unlock --force: {why}"),
            None => "lock broken by deployhost unlock".to_string(),
        };
        self.with(|conn| {
            let holder = conn
                .query("SELECT run_id FROM locks WHERE environment = ?1", &[environment.into()])?
                .into_iter()
                .next()
                .map(|r| r[0].text());
            conn.exec("DELETE FROM locks WHERE environment = ?1", &[environment.into()])?;
            if let Some(run) = &holder {
                conn.exec(
                    "UPDATE runs SET status = 'interrupted', reason = ?2 WHERE id = ?1 AND status = 'running'",
                    &[run.into(), reason.as_str().into()],
                )?;
            }
            Ok(holder)
        })
    }

    /// Runs, newest first, optionally of one environment.
    pub fn history(&self, environment: Option<&str>, limit: usize) -> Result<Vec<RunRow>, StateError> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE (CAST(?1 AS TEXT) IS NULL OR environment = ?1) ORDER BY started DESC, id DESC LIMIT ?2"
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.with(|conn| conn.query(&sql, &[environment.into(), limit.into()]))?;
        Ok(rows.iter().map(|r| run_from(r)).collect())
    }

    pub fn run(&self, id: &str) -> Result<Option<(RunRow, Vec<StepRow>)>, StateError> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1");
        self.with(|conn| {
            let Some(run) = conn.query(&sql, &[id.into()])?.first().map(|r| run_from(r)) else { return Ok(None) };
            let steps = conn
                .query(
                    "SELECT stage, step, status, ms, summary FROM steps WHERE run_id = ?1 ORDER BY seq",
                    &[id.into()],
                )?
                .iter()
                .map(|r| StepRow {
                    stage: r[0].text(),
                    step: r[1].text(),
                    status: r[2].text(),
                    ms: r[3].int(),
                    summary: r[4].text(),
                })
                .collect();
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
            "SELECT {RUN_COLUMNS} FROM runs WHERE pipeline = ?1 AND environment = ?2 AND status = 'passed'
             AND (CAST(?3 AS TEXT) IS NULL OR version = ?3) ORDER BY started DESC, id DESC LIMIT 1"
        );
        let rows = self.with(|conn| conn.query(&sql, &[pipeline.into(), environment.into(), version.into()]))?;
        Ok(rows.first().map(|r| run_from(r)))
    }
}

fn insert_run(conn: &mut dyn Conn, run: &NewRun, status: RunStatus, pid: i64, started: &str) -> Result<(), String> {
    let grants = RecordedGrants::write(run.grants)?;
    conn.exec(
        "INSERT INTO runs (id, pipeline, environment, version, status, started, who, approved_by, file, pid, grants, grants_accepted_by, host)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        &[
            run.id.into(),
            run.pipeline.into(),
            run.environment.into(),
            run.version.into(),
            status.as_str().into(),
            started.into(),
            run.who.into(),
            run.approved_by.into(),
            run.file.into(),
            pid.into(),
            (&grants).into(),
            run.grants_accepted_by.into(),
            this_host().as_str().into(),
        ],
    )
    .map(|_| ())
}

/// Is a process with this pid alive on this machine?
fn process_alive(pid: i64) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// When process `pid` started (from `/proc/<pid>/stat` and the boot time).
fn process_started(pid: i64) -> Option<std::time::SystemTime> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 22, counted after the command name's closing parenthesis.
    let ticks: u64 = stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()?;
    let boot: u64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    // `/proc` counts in USER_HZ, 100 a second in Linux's ABI whatever the
    // kernel's own tick.
    const USER_HZ: u64 = 100;
    Some(std::time::UNIX_EPOCH + std::time::Duration::from_millis(boot * 1000 + ticks * 1000 / USER_HZ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_from_before_the_host_column_is_upgraded_and_keeps_its_runs() {
        let dir = tempfile::tempdir().unwrap();
        let old = rusqlite::Connection::open(dir.path().join("state.db")).unwrap();
        old.execute_batch(SCHEMA).unwrap();
        old.execute(
            "INSERT INTO runs (id, pipeline, environment, version, status, started, who, file, pid) \
             VALUES ('r1', 'shop', 'prod', '1.0', 'passed', '2026-01-01T00:00:00.000Z', 'ci', 'p.yaml', 1)",
            [],
        )
        .unwrap();
        drop(old);
        let store = StateStore::open(dir.path()).unwrap();
        let runs = store.history(None, 10).unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].host, "");
        assert_eq!(store.last_passed("shop", "prod", Some("1.0")).unwrap().unwrap().id, "r1");
    }

    #[test]
    fn only_a_process_on_this_machine_is_judged_gone() {
        let mut row = RunRow {
            id: "r".into(),
            pipeline: "p".into(),
            environment: "e".into(),
            version: "1".into(),
            status: RunStatus::Running,
            started: String::new(),
            finished: None,
            who: "ci".into(),
            approved_by: None,
            file: String::new(),
            pid: i64::from(u32::MAX),
            reason: None,
            grants: String::new(),
            grants_accepted_by: None,
            seal: None,
            host: this_host(),
        };
        assert!(row.process_gone());
        row.host = "another-runner".into();
        assert!(!row.process_gone(), "a process elsewhere cannot be checked from here");
        row.pid = i64::from(std::process::id());
        row.host = this_host();
        assert!(!row.process_gone());
        // A live pid whose process started after the run: the pid was
        // reused, the run's own process is gone.
        row.started = "2000-01-01T00:00:00Z".into();
        assert!(row.process_gone(), "this process started long after the run, so it is not the run's");
    }

    #[test]
    fn recorded_grants_are_versioned_and_the_old_shape_still_reads() {
        let mut steps = BTreeMap::new();
        steps.insert("probe".to_string(), WrittenGrants { net: ["127.0.0.1:80".into()].into(), ..Default::default() });
        let written = RecordedGrants::write(&steps).unwrap();
        assert!(written.starts_with(r#"{"version":1,"steps":{"probe":"#), "{written}");
        assert_eq!(RecordedGrants::read(&written).unwrap(), steps);
        // Stores from before the version: the map of steps itself.
        let old = serde_json::to_string(&steps).unwrap();
        assert_eq!(RecordedGrants::read(&old).unwrap(), steps);
        // A step named `version` in the old shape is still a step.
        let named = r#"{"version":{"net":[],"fs_read":[],"fs_write":[],"secrets":[],"databases":[],"exec":[]}}"#;
        assert_eq!(RecordedGrants::read(named).unwrap().keys().collect::<Vec<_>>(), ["version"]);
        let newer = written.replace(r#""version":1"#, r#""version":2"#);
        assert!(RecordedGrants::read(&newer).unwrap_err().contains("newer deployhost"));
        assert!(RecordedGrants::read("{not json").unwrap_err().starts_with("cannot be read"));
        assert!(RecordedGrants::read("").unwrap().is_empty());
    }
}
