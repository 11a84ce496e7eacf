//! The run's audit log: one JSON object per line in `audit.jsonl`, written as
//! it happens (a crash loses at most the line being written). Every grant,
//! every use and every denial passes through [`AuditLog::record`], which
//! redacts secret values before anything reaches the disk, and chains each
//! line to the one before it ([`crate::chain`]), so an edit shows. What a
//! record says is typed ([`Record`]); this module writes and reads the lines.

mod record;

pub use record::*;

use crate::chain::Head;
use crate::redact::Redactor;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::fs::File;
use std::io::{LineWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Every kind of audit record, by the `event` name written in `audit.jsonl`
/// ([`AuditEvent::as_str`]; [`Record`]'s variants are written under the
/// same names, which a test checks). A denial's name is `<capability>.denied`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditEvent {
    /// A run began.
    RunStart,
    /// A run continued (`resume`, or a rollback by hand).
    RunResume,
    /// A run ended: its status.
    RunEnd,
    /// A plugin's code was made ready (cache hit or compiled).
    PluginLoad,
    /// What a step may touch, written before it starts.
    Grant,
    StepStart,
    /// A step ended: status, failure, time, summary.
    StepEnd,
    /// A step was stopped by a limit, or its report cut.
    Limit,
    /// A step's events past its budget were counted, not written.
    AuditCapped,
    RollbackStart,
    /// A compensation that could not even start.
    RollbackInvalid,
    RollbackEnd,
    /// A host program ran.
    Exec,
    ExecDenied,
    /// One statement ran.
    Sql,
    /// A connection was opened.
    SqlOpen,
    SqlDump,
    SqlRestore,
    /// A migration's changes were written to the change ledger, before its commit.
    SqlLedger,
    /// The change ledger was undone (the rollback).
    SqlRevert,
    /// A shadow database made for a rehearsal, or dropped after it.
    SqlShadow,
    SqlDenied,
    /// A path operation, allowed (or failed for another reason than a denial).
    Fs,
    FsDenied,
    /// An HTTP request was sent.
    NetRequest,
    NetDenied,
    /// A granted secret was read.
    SecretRead,
    SecretDenied,
    /// The step asked for environment variables.
    EnvDenied,
    /// A plugin's warning or error.
    Log,
    /// A name this deployhost does not know (a log written by a newer one).
    Unknown,
}

impl AuditEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditEvent::RunStart => "run.start",
            AuditEvent::RunResume => "run.resume",
            AuditEvent::RunEnd => "run.end",
            AuditEvent::PluginLoad => "plugin.load",
            AuditEvent::Grant => "grant",
            AuditEvent::StepStart => "step.start",
            AuditEvent::StepEnd => "step.end",
            AuditEvent::Limit => "limit",
            AuditEvent::AuditCapped => "audit.capped",
            AuditEvent::RollbackStart => "rollback.start",
            AuditEvent::RollbackInvalid => "rollback.invalid",
            AuditEvent::RollbackEnd => "rollback.end",
            AuditEvent::Exec => "exec",
            AuditEvent::ExecDenied => "exec.denied",
            AuditEvent::Sql => "sql",
            AuditEvent::SqlOpen => "sql.open",
            AuditEvent::SqlDump => "sql.dump",
            AuditEvent::SqlRestore => "sql.restore",
            AuditEvent::SqlLedger => "sql.ledger",
            AuditEvent::SqlRevert => "sql.revert",
            AuditEvent::SqlShadow => "sql.shadow",
            AuditEvent::SqlDenied => "sql.denied",
            AuditEvent::Fs => "fs",
            AuditEvent::FsDenied => "fs.denied",
            AuditEvent::NetRequest => "net.request",
            AuditEvent::NetDenied => "net.denied",
            AuditEvent::SecretRead => "secret.read",
            AuditEvent::SecretDenied => "secret.denied",
            AuditEvent::EnvDenied => "env.denied",
            AuditEvent::Log => "log",
            AuditEvent::Unknown => "unknown",
        }
    }

    /// For a denial, the capability denied (`net`, `fs`, `sql`, …).
    pub fn denied_capability(self) -> Option<&'static str> {
        self.as_str().strip_suffix(".denied")
    }
}

impl Serialize for AuditEvent {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl std::fmt::Display for AuditEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of `audit.jsonl`. `step` is absent for run-level events.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    /// The sha256 of the line before (see [`crate::chain`]); the writer
    /// adds it to the line as written.
    #[serde(default, skip_serializing)]
    pub prev: Option<String>,
    pub ts: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(flatten)]
    pub record: Record,
}

impl Event {
    pub fn kind(&self) -> AuditEvent {
        self.record.kind()
    }
}

/// Sees every audit event as written (string fields cut to size; each
/// reader redacts what it prints, as the log's own line is redacted).
pub type AuditTap = Arc<dyn Fn(&Event) + Send + Sync>;

/// Events one step may add; past it they are counted, not written, so a
/// plugin looping on denied calls cannot fill the disk through the audit.
pub const MAX_STEP_EVENTS: u64 = 10_000;
/// Longest string field written; a 64 KiB path is cut to this.
const MAX_FIELD: usize = 2048;
/// Events that frame a step; they are written whatever its budget.
const FRAMING: &[AuditEvent] =
    &[AuditEvent::Grant, AuditEvent::StepStart, AuditEvent::StepEnd, AuditEvent::Limit, AuditEvent::AuditCapped];

pub struct AuditLog {
    out: Mutex<Writer>,
    redactor: Arc<Redactor>,
    run_id: String,
    tap: Option<AuditTap>,
}

#[derive(Default)]
struct Writer {
    file: Option<LineWriter<File>>,
    /// The first failure to write the run folder (this log or a step log).
    write_error: Option<String>,
    /// Per step: events written and events dropped past the budget.
    per_step: HashMap<String, (u64, u64)>,
    /// The chain of the lines written so far (none for a discarding log).
    head: Option<Head>,
}

impl AuditLog {
    pub fn create(path: &Path, run_id: &str, redactor: Arc<Redactor>) -> std::io::Result<AuditLog> {
        let file = File::options().create(true).append(true).read(true).open(path)?;
        // A resumed run appends: its chain goes on from the last line.
        let written = std::io::read_to_string(&file)?;
        let head = Some(Head::after(run_id, &written));
        let out = Writer { file: Some(LineWriter::new(file)), head, ..Writer::default() };
        Ok(AuditLog { out: Mutex::new(out), redactor, run_id: run_id.to_string(), tap: None })
    }

    /// Also hands every event, once redacted, to `tap` (the CLI streams denials).
    pub fn with_tap(mut self, tap: Option<AuditTap>) -> AuditLog {
        self.tap = tap;
        self
    }

    /// A log that keeps nothing: for commands that inspect without running.
    pub fn discard() -> AuditLog {
        AuditLog {
            out: Mutex::new(Writer::default()),
            redactor: Arc::new(Redactor::default()),
            run_id: String::new(),
            tap: None,
        }
    }

    /// The run's redactor, for text a capability cuts before recording it.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Writes one record.
    pub fn record(&self, step: Option<&str>, record: Record) {
        let kind = record.kind();
        let mut event = Event { prev: None, ts: timestamp(SystemTime::now()), step: step.map(str::to_string), record };
        let Ok(mut json) = serde_json::to_string(&event) else {
            return;
        };
        // A field over MAX_FIELD makes the line longer still: only such a
        // line is taken apart to cut it. What was written is what the tap
        // sees: the record as cut.
        if json.len() > MAX_FIELD
            && let Some((cut, text)) = self.cut_fields(&event)
        {
            event = cut.unwrap_or(event);
            json = text;
        }
        let line = self.redactor.redact_json(&json);
        if let Some(tap) = &self.tap {
            tap(&event);
        }
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(step) = step {
            let (written, dropped) = out.per_step.entry(step.to_string()).or_default();
            if *written >= MAX_STEP_EVENTS && !FRAMING.contains(&kind) {
                *dropped += 1;
                return;
            }
            *written += 1;
        }
        let line = match out.head.as_mut() {
            Some(head) => head.link(&line),
            None => line.into_owned(),
        };
        if let Some(w) = out.file.as_mut() {
            // An audit write failure (disk full) must not go unnoticed: it
            // is reported once on stderr, the log closed, and the runner
            // stops the run (see `write_error`).
            if let Err(e) = writeln!(w, "{line}") {
                tracing::error!("cannot write the audit log: {e}");
                out.file = None;
                out.write_error.get_or_insert(format!("audit log: {e}"));
            }
        }
    }

    /// `event` with every string field over [`MAX_FIELD`] cut, and its
    /// line; `None` when nothing was cut. (The event itself is `None` in the
    /// unlikely case that the cut record no longer reads as one.)
    fn cut_fields(&self, event: &Event) -> Option<(Option<Event>, String)> {
        let Ok(Value::Object(mut fields)) = serde_json::to_value(event) else { return None };
        let mut cut = false;
        for value in fields.values_mut() {
            cut |= cut_long_string(value, &self.redactor);
        }
        if !cut {
            return None;
        }
        match serde_json::from_value::<Event>(Value::Object(fields.clone())) {
            Ok(cut) => serde_json::to_string(&cut).ok().map(|text| (Some(cut), text)),
            Err(_) => serde_json::to_string(&fields).ok().map(|text| (None, text)),
        }
    }

    /// The chain's head: the sha256 of the last line written, and how many.
    pub fn head(&self) -> Option<Head> {
        self.out.lock().unwrap_or_else(|e| e.into_inner()).head.clone()
    }

    /// Notes that another file of the run folder could not be written.
    pub fn note_write_error(&self, what: String) {
        self.out.lock().unwrap_or_else(|e| e.into_inner()).write_error.get_or_insert(what);
    }

    /// The first failure to write the run folder, if any.
    pub fn write_error(&self) -> Option<String> {
        self.out.lock().unwrap_or_else(|e| e.into_inner()).write_error.clone()
    }

    /// Records how many of `step`'s events were over its budget, if any.
    pub fn close_step(&self, step: &str) {
        let dropped = self.out.lock().unwrap_or_else(|e| e.into_inner()).per_step.get(step).map_or(0, |c| c.1);
        if dropped > 0 {
            self.record(Some(step), Record::AuditCapped(Capped { dropped, limit: MAX_STEP_EVENTS }));
        }
    }
}

/// Cuts a string field to [`MAX_FIELD`] bytes, saying how much was cut.
/// Redacted first: a cut through a secret would leave its start unmasked.
/// True when it cut.
fn cut_long_string(value: &mut Value, redactor: &Redactor) -> bool {
    if let Value::String(s) = value
        && s.len() > MAX_FIELD
    {
        let (mut kept, _) = redactor.cut(s, MAX_FIELD);
        let cut = s.len() - kept.len();
        kept.push_str(&format!("… ({cut} more bytes)"));
        *s = kept;
        return true;
    }
    false
}

/// Reads an `audit.jsonl`; a torn last line (a crash mid-write) is skipped.
pub fn read(path: &Path) -> std::io::Result<Vec<Event>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
}

/// RFC 3339 with milliseconds, UTC.
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A field over MAX_FIELD is cut (redacted first), in the line and in
    /// what the tap sees; a short record is written whole; both lines keep
    /// the record's own order and are chained.
    #[test]
    fn a_long_field_is_cut_and_a_short_record_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let redactor = Arc::new(Redactor::new(["hunter2".to_string()]));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let tap_seen = seen.clone();
        let tap: AuditTap = Arc::new(move |e: &Event| tap_seen.lock().unwrap().push(e.clone()));
        let log = AuditLog::create(&path, "run-1", redactor).unwrap().with_tap(Some(tap));
        let long = format!("{}hunter2{}", "a".repeat(MAX_FIELD - 3), "b".repeat(5000));
        log.record(Some("s"), Record::Log(PluginLogged { level: "info".into(), message: long }));
        log.record(Some("s"), Record::Log(PluginLogged { level: "warn".into(), message: "short hunter2".into() }));
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        let message = first["message"].as_str().unwrap();
        assert!(message.len() < MAX_FIELD + 40 && message.ends_with("more bytes)"), "{message}");
        assert!(!lines[0].contains("hunter2") && !lines[0].contains("hunt"), "{}", lines[0]);
        assert!(lines[1].starts_with(r#"{"prev":""#) && lines[1].contains(r#""ts":"#), "{}", lines[1]);
        assert!(lines[1].contains(r#""step":"s","event":"log","level":"warn","message":"short ***""#), "{}", lines[1]);
        assert_eq!(crate::chain::check("run-1", &text).unwrap().lines, 2);
        let seen = seen.lock().unwrap();
        match &seen[0].record {
            Record::Log(l) => assert!(l.message.ends_with("more bytes)") && l.message.len() < MAX_FIELD + 40),
            other => panic!("{other:?}"),
        }
    }
}
