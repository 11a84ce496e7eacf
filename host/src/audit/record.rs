//! What each audit record says: one variant per event, with a typed
//! payload. Writers build a [`Record`]; every reader (usage, the report,
//! the rollback, the JSON events) matches on it. The event names and the
//! field names are the keys written to `audit.jsonl` (docs/events.md);
//! a name this deployhost does not know reads as [`Record::Unknown`].

use crate::outcome::{Failure, Status};
use crate::status::RunStatus;
use serde::{Deserialize, Serialize};

/// One audit record's event and payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event")]
pub enum Record {
    /// A run began.
    #[serde(rename = "run.start")]
    RunStart(RunBegun),
    /// A run continued (`resume`, or a rollback by hand).
    #[serde(rename = "run.resume")]
    RunResume(RunBegun),
    #[serde(rename = "run.end")]
    RunEnd(RunEnded),
    /// A plugin's code was made ready (cache hit or compiled).
    #[serde(rename = "plugin.load")]
    PluginLoad(PluginLoaded),
    /// What a step may touch, written before it starts.
    #[serde(rename = "grant")]
    Grant(Granted),
    #[serde(rename = "step.start")]
    StepStart(StepBegun),
    #[serde(rename = "step.end")]
    StepEnd(StepEnded),
    /// A step was stopped by a limit, or its report cut.
    #[serde(rename = "limit")]
    Limit(LimitHit),
    /// A step's events past its budget were counted, not written.
    #[serde(rename = "audit.capped")]
    AuditCapped(Capped),
    #[serde(rename = "rollback.start")]
    RollbackStart(RollbackBegun),
    /// A compensation that could not even start.
    #[serde(rename = "rollback.invalid")]
    RollbackInvalid(RollbackInvalid),
    #[serde(rename = "rollback.end")]
    RollbackEnd(RollbackEnded),
    /// A host program ran.
    #[serde(rename = "exec")]
    Exec(ProgramRan),
    #[serde(rename = "exec.denied")]
    ExecDenied(Denial),
    /// One statement ran.
    #[serde(rename = "sql")]
    Sql(StatementRan),
    /// A connection was opened.
    #[serde(rename = "sql.open")]
    SqlOpen(ConnectionOpened),
    #[serde(rename = "sql.dump")]
    SqlDump(Dumped),
    #[serde(rename = "sql.restore")]
    SqlRestore(Restored),
    /// A migration's changes were written to the change ledger, before its
    /// commit (or a lossy migration was let through by `accept_lossy`).
    #[serde(rename = "sql.ledger")]
    SqlLedger(Ledgered),
    /// The change ledger was undone (the rollback).
    #[serde(rename = "sql.revert")]
    SqlRevert(Reverted),
    /// A rehearsal's shadow database was made, or dropped.
    #[serde(rename = "sql.shadow")]
    SqlShadow(Shadowed),
    #[serde(rename = "sql.denied")]
    SqlDenied(Denial),
    /// A path operation, allowed (or failed for another reason than a denial).
    #[serde(rename = "fs")]
    Fs(PathUsed),
    #[serde(rename = "fs.denied")]
    FsDenied(Denial),
    /// An HTTP request was sent.
    #[serde(rename = "net.request")]
    NetRequest(RequestSent),
    #[serde(rename = "net.denied")]
    NetDenied(Denial),
    /// A granted secret was read.
    #[serde(rename = "secret.read")]
    SecretRead(SecretRead),
    #[serde(rename = "secret.denied")]
    SecretDenied(Denial),
    /// The step asked for environment variables.
    #[serde(rename = "env.denied")]
    EnvDenied(Denial),
    /// A plugin's warning or error.
    #[serde(rename = "log")]
    Log(PluginLogged),
    /// An event this deployhost does not know (a log written by a newer one).
    #[serde(other)]
    Unknown,
}

/// `run.start` and `run.resume`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunBegun {
    pub run: String,
    pub pipeline: String,
    pub environment: String,
    pub version: String,
    pub file: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunEnded {
    pub status: RunStatus,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PluginLoaded {
    pub plugin: String,
    pub sha256: String,
    /// Precompiled, cache hit, or compiled.
    pub how: String,
    pub ms: u64,
}

/// A step's `grant` record: its plugin and limits, and what it may touch,
/// per capability (its `grant_key`: `fs_read`, `net`, `databases`, …)
/// labelled as `deployhost audit` shows them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Granted {
    pub stage: String,
    pub plugin: String,
    pub sha256: String,
    pub memory: u64,
    pub timeout_ms: u64,
    #[serde(flatten)]
    pub grants: std::collections::BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StepBegun {
    pub stage: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepEnded {
    pub status: Status,
    #[serde(default)]
    pub failure: Option<Failure>,
    #[serde(default)]
    pub ms: u64,
    #[serde(default)]
    pub summary: String,
}

/// Which limit a step ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    Timeout,
    Memory,
    Crash,
    /// Stopped, and what it left running on a server was ended.
    Stopped,
    /// Its report was cut to size.
    Report,
    QueryResult,
    DbConnections,
    HttpInFlight,
    #[serde(other)]
    Other,
}

/// A `limit` record; the fields past `message` say where, when it applies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LimitHit {
    pub kind: LimitKind,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_read: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

impl LimitHit {
    pub fn new(kind: LimitKind, message: impl Into<String>) -> LimitHit {
        LimitHit {
            kind,
            message: message.into(),
            limit: None,
            database: None,
            statement: None,
            rows_read: None,
            cancelled: None,
            rolled_back: None,
            method: None,
            host: None,
            port: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Capped {
    pub dropped: u64,
    pub limit: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RollbackBegun {
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RollbackInvalid {
    pub error: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RollbackEnded {
    pub ok: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProgramRan {
    pub program: String,
    pub path: String,
    pub args: Vec<String>,
    pub exit: i32,
    pub ms: u64,
    /// Processes it left running outside its group, killed when it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orphans_killed: Option<u64>,
}

/// Every denial, whatever the capability: what was asked for and why it
/// was refused. Only the fields that apply are written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Denial {
    /// The operation (`open-write`, `set-role`, `revert`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub op: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// A migration's label (`rollback: lossless`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub findings: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub program: Option<String>,
    /// An environment variable asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// A secret's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_header: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket: Option<String>,
    #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
    pub socket_use: Option<String>,
    /// What the step was granted, when that explains the denial.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub granted: Option<Vec<String>>,
    /// The grant that would allow it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_with: Option<String>,
    /// The error code the call returned (`access`, `not-permitted`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StatementRan {
    pub database: String,
    /// Redacted, then cut.
    pub statement: String,
    /// Milliseconds, to a tenth.
    pub ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// SQLSTATE, or `connection`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Who held the lock it waited for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked_by: Option<Vec<String>>,
    /// Run by a restore (a replayed dump).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectionOpened {
    pub database: String,
    pub server: String,
    /// The login role the host made for the connection, bound to the
    /// grant's roles (when it lists some).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bound_login: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Dumped {
    pub database: String,
    /// As the step wrote it.
    pub path: String,
    /// On the host, for `deployhost verify`.
    pub file: String,
    pub sha256: String,
    pub bytes: u64,
    pub tool: String,
    pub schemas: Vec<String>,
    /// The tables whose rows were dumped, when not all were.
    pub data_tables: Option<Vec<String>>,
    pub ms: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Restored {
    pub database: String,
    pub path: String,
    pub sha256: String,
    pub ok: bool,
    /// The digest the backup ledger recorded, when it differs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub schemas_dropped: Vec<String>,
    pub extensions_kept: Vec<String>,
    pub default_privileges_left: Vec<String>,
    pub statements: Option<u64>,
    pub ms: u64,
}

/// A `sql.ledger` record: an entry written before its migration's commit,
/// or a lossy migration let through by `accept_lossy`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Ledgered {
    pub label: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// The migration's transaction id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copies: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub irreversible: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted_lossy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub findings: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Reverted {
    pub database: String,
    pub ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub done: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What happened to a rehearsal's shadow database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShadowOp {
    Create,
    Drop,
}

/// A `sql.shadow` record: the shadow made from `database`, or dropped
/// after the rehearsal (with how it went).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shadowed {
    pub database: String,
    pub shadow: String,
    pub op: ShadowOp,
    /// `create`: the schemas copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schemas: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped: Option<bool>,
    /// `drop`: the files rehearsed, and the first failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PathUsed {
    /// `open-read`, `open-write`, `create-directory-write`, ….
    pub op: String,
    pub path: String,
    /// The call failed with this error code (not a denial).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl PathUsed {
    pub fn wrote(&self) -> bool {
        self.op.ends_with("-write")
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RequestSent {
    pub method: String,
    pub host: String,
    pub port: u16,
    pub path: String,
    pub address: String,
    pub ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SecretRead {
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PluginLogged {
    pub level: String,
    pub message: String,
}

impl Record {
    /// The record's event name.
    pub fn kind(&self) -> super::AuditEvent {
        use super::AuditEvent as E;
        match self {
            Record::RunStart(_) => E::RunStart,
            Record::RunResume(_) => E::RunResume,
            Record::RunEnd(_) => E::RunEnd,
            Record::PluginLoad(_) => E::PluginLoad,
            Record::Grant(_) => E::Grant,
            Record::StepStart(_) => E::StepStart,
            Record::StepEnd(_) => E::StepEnd,
            Record::Limit(_) => E::Limit,
            Record::AuditCapped(_) => E::AuditCapped,
            Record::RollbackStart(_) => E::RollbackStart,
            Record::RollbackInvalid(_) => E::RollbackInvalid,
            Record::RollbackEnd(_) => E::RollbackEnd,
            Record::Exec(_) => E::Exec,
            Record::ExecDenied(_) => E::ExecDenied,
            Record::Sql(_) => E::Sql,
            Record::SqlOpen(_) => E::SqlOpen,
            Record::SqlDump(_) => E::SqlDump,
            Record::SqlRestore(_) => E::SqlRestore,
            Record::SqlLedger(_) => E::SqlLedger,
            Record::SqlRevert(_) => E::SqlRevert,
            Record::SqlShadow(_) => E::SqlShadow,
            Record::SqlDenied(_) => E::SqlDenied,
            Record::Fs(_) => E::Fs,
            Record::FsDenied(_) => E::FsDenied,
            Record::NetRequest(_) => E::NetRequest,
            Record::NetDenied(_) => E::NetDenied,
            Record::SecretRead(_) => E::SecretRead,
            Record::SecretDenied(_) => E::SecretDenied,
            Record::EnvDenied(_) => E::EnvDenied,
            Record::Log(_) => E::Log,
            Record::Unknown => E::Unknown,
        }
    }

    /// A denial's details, whatever the capability.
    pub fn denial(&self) -> Option<&Denial> {
        match self {
            Record::ExecDenied(d)
            | Record::SqlDenied(d)
            | Record::FsDenied(d)
            | Record::NetDenied(d)
            | Record::SecretDenied(d)
            | Record::EnvDenied(d) => Some(d),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Event;

    /// The written event name and the name readers match on are one.
    #[test]
    fn each_record_is_written_under_its_event_name_and_reads_back_the_same() {
        let denial = Denial { op: Some("open-write".into()), path: Some("/x".into()), ..Denial::default() };
        let records = [
            Record::RunStart(RunBegun::default()),
            Record::RunResume(RunBegun::default()),
            Record::RunEnd(RunEnded { status: RunStatus::RolledBack, reason: Some("r".into()) }),
            Record::PluginLoad(PluginLoaded::default()),
            Record::Grant(Granted {
                grants: [("fs_read".to_string(), vec!["/src".into()])].into(),
                ..Granted::default()
            }),
            Record::StepStart(StepBegun::default()),
            Record::StepEnd(StepEnded {
                status: Status::Failed,
                failure: Some(Failure::Timeout),
                ms: 3,
                summary: "x".into(),
            }),
            Record::Limit(LimitHit { limit: Some(5), ..LimitHit::new(LimitKind::DbConnections, "m") }),
            Record::AuditCapped(Capped::default()),
            Record::RollbackStart(RollbackBegun::default()),
            Record::RollbackInvalid(RollbackInvalid::default()),
            Record::RollbackEnd(RollbackEnded::default()),
            Record::Exec(ProgramRan { exit: 2, ..ProgramRan::default() }),
            Record::ExecDenied(denial.clone()),
            Record::Sql(StatementRan { rows: Some(1), ..StatementRan::default() }),
            Record::SqlOpen(ConnectionOpened::default()),
            Record::SqlDump(Dumped::default()),
            Record::SqlRestore(Restored::default()),
            Record::SqlLedger(Ledgered::default()),
            Record::SqlRevert(Reverted::default()),
            Record::SqlShadow(Shadowed {
                database: "app".into(),
                shadow: "s".into(),
                op: ShadowOp::Drop,
                schemas: None,
                ms: Some(3),
                dropped: Some(true),
                files: Some(2),
                failed: None,
                error: None,
            }),
            Record::SqlDenied(denial.clone()),
            Record::Fs(PathUsed::default()),
            Record::FsDenied(denial.clone()),
            Record::NetRequest(RequestSent { status: Some(200), ..RequestSent::default() }),
            Record::NetDenied(denial.clone()),
            Record::SecretRead(SecretRead::default()),
            Record::SecretDenied(denial.clone()),
            Record::EnvDenied(denial),
            Record::Log(PluginLogged::default()),
        ];
        for record in records {
            let event = Event { prev: None, ts: "t".into(), step: Some("s".into()), record };
            let line = serde_json::to_string(&event).unwrap();
            let value: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert_eq!(value["event"], event.kind().as_str(), "{line}");
            let back: Event = serde_json::from_str(&line).unwrap();
            assert_eq!(back.record, event.record, "{line}");
            assert_eq!(back.kind().denied_capability().is_some(), event.record.denial().is_some(), "{line}");
        }
    }

    #[test]
    fn an_event_a_newer_deployhost_wrote_reads_as_unknown() {
        let back: Event = serde_json::from_str(r#"{"ts":"t","event":"net.tunnel","step":"s","x":1}"#).unwrap();
        assert_eq!(back.record, Record::Unknown);
        assert_eq!(back.step.as_deref(), Some("s"));
    }
}
