//! The run's audit log: one JSON object per line in `audit.jsonl`, written as
//! it happens (a crash loses at most the line being written). Every grant,
//! every use and every denial passes through [`AuditLog::record`], which
//! redacts secret values before anything reaches the disk.

use crate::redact::Redactor;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fs::File;
use std::io::{LineWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// One audit record. `step` is absent for run-level events.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    pub ts: String,
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

pub struct AuditLog {
    out: Mutex<Option<LineWriter<File>>>,
    redactor: Arc<Redactor>,
    run_id: String,
    tap: Option<crate::runner::AuditTap>,
}

impl AuditLog {
    pub fn create(path: &Path, run_id: &str, redactor: Arc<Redactor>) -> std::io::Result<AuditLog> {
        let file = File::options().create(true).append(true).open(path)?;
        Ok(AuditLog { out: Mutex::new(Some(LineWriter::new(file))), redactor, run_id: run_id.to_string(), tap: None })
    }

    /// Also hands every event, once redacted, to `tap` (the CLI streams denials).
    pub fn with_tap(mut self, tap: Option<crate::runner::AuditTap>) -> AuditLog {
        self.tap = tap;
        self
    }

    /// A log that keeps nothing: for commands that inspect without running.
    pub fn discard() -> AuditLog {
        AuditLog { out: Mutex::new(None), redactor: Arc::new(Redactor::default()), run_id: String::new(), tap: None }
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Writes one event. `fields` must be a JSON object.
    pub fn record(&self, step: Option<&str>, event: &str, fields: Value) {
        let fields = match fields {
            Value::Object(map) => map,
            other => Map::from_iter([("value".to_string(), other)]),
        };
        let event = Event {
            ts: timestamp(SystemTime::now()),
            event: event.to_string(),
            step: step.map(str::to_string),
            fields,
        };
        let Ok(json) = serde_json::to_string(&event) else {
            return;
        };
        let line = self.redactor.redact_json(&json);
        if let Some(tap) = &self.tap {
            tap(&event.event, &line);
        }
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = out.as_mut() {
            // An audit write failure (disk full) must not take the run down
            // silently: it is reported once on stderr and the log closed.
            if let Err(e) = writeln!(w, "{line}") {
                tracing::error!("cannot write the audit log: {e}");
                *out = None;
            }
        }
    }
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
