//! Granted versus used, per step, from a run's audit log: what
//! `deployhost audit --run` prints, its `--json` gives, and the HTML
//! report's capability table shows. One typed row per step; field names
//! are the JSON keys.

use crate::audit::{AuditEvent, Event};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// One step of a run: its grant, what it used, grants it left unused, and
/// what it was denied. Fields are in JSON key order.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StepUsage {
    pub denials: Vec<String>,
    pub granted: Granted,
    pub plugin: Option<String>,
    /// The step's status from `step.end`; `interrupted` when it never ended.
    pub status: String,
    pub step: String,
    pub unused_grants: Vec<String>,
    pub used: Used,
}

/// The step's `grant` audit record.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Granted {
    pub databases: Vec<String>,
    pub exec: Vec<String>,
    pub fs_read: Vec<String>,
    pub fs_write: Vec<String>,
    pub memory: u64,
    pub net: Vec<String>,
    pub plugin: String,
    pub secrets: Vec<String>,
    pub sha256: String,
    pub stage: String,
    pub timeout_ms: u64,
}

/// What the step's audit records show it used.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Used {
    /// `name (N statements)`.
    pub databases: Vec<String>,
    pub files_read: Vec<String>,
    pub files_written: Vec<String>,
    /// `host:port`.
    pub hosts: Vec<String>,
    /// `program (exit N)`.
    pub programs: Vec<String>,
    pub secrets_read: Vec<String>,
}

/// One capability of a row: its name, what was granted and what was used.
pub struct CapabilityUsage<'a> {
    pub name: &'static str,
    pub granted: &'a [String],
    pub used: &'a [String],
}

impl StepUsage {
    /// Per capability, in the order they are shown.
    pub fn capabilities(&self) -> [CapabilityUsage<'_>; 6] {
        let (g, u) = (&self.granted, &self.used);
        [
            CapabilityUsage { name: "fs.read", granted: &g.fs_read, used: &u.files_read },
            CapabilityUsage { name: "fs.write", granted: &g.fs_write, used: &u.files_written },
            CapabilityUsage { name: "net", granted: &g.net, used: &u.hosts },
            CapabilityUsage { name: "secrets", granted: &g.secrets, used: &u.secrets_read },
            CapabilityUsage { name: "databases", granted: &g.databases, used: &u.databases },
            CapabilityUsage { name: "exec", granted: &g.exec, used: &u.programs },
        ]
    }
}

/// Per step of a run, in the order steps first appear in `events`.
pub fn from_events(events: &[Event]) -> Vec<StepUsage> {
    let mut steps: Vec<&str> = Vec::new();
    for e in events {
        if let Some(step) = &e.step
            && !steps.contains(&step.as_str())
        {
            steps.push(step);
        }
    }
    steps.iter().map(|step| step_usage(step, events)).collect()
}

fn step_usage(step: &str, events: &[Event]) -> StepUsage {
    let mine = || events.iter().filter(move |e| e.step.as_deref() == Some(step));
    let grant = mine().find(|e| e.event == AuditEvent::Grant);
    let granted: Granted =
        grant.and_then(|e| serde_json::from_value(Value::Object(e.fields.clone())).ok()).unwrap_or_default();
    let plugin = grant.and_then(|e| e.fields.get("plugin")).and_then(Value::as_str).map(str::to_string);
    let field = |e: &Event, k: &str| e.fields.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    let mut read = BTreeSet::new();
    let mut written = BTreeSet::new();
    let mut hosts = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    let mut databases: BTreeMap<String, u64> = Default::default();
    let mut programs = BTreeSet::new();
    let mut denials = Vec::new();
    for e in mine() {
        match e.event {
            AuditEvent::Fs if !e.fields.contains_key("error") => {
                let op = field(e, "op");
                if op.ends_with("-write") { &mut written } else { &mut read }.insert(field(e, "path"));
            }
            AuditEvent::NetRequest => {
                hosts.insert(format!("{}:{}", field(e, "host"), e.fields.get("port").cloned().unwrap_or_default()));
            }
            AuditEvent::SecretRead => {
                secrets.insert(field(e, "name"));
            }
            AuditEvent::Sql => *databases.entry(field(e, "database")).or_default() += 1,
            AuditEvent::Exec => {
                programs.insert(format!(
                    "{} (exit {})",
                    field(e, "program"),
                    e.fields.get("exit").cloned().unwrap_or_default()
                ));
            }
            AuditEvent::SqlDump => {
                written.insert(field(e, "path"));
                databases.entry(field(e, "database")).or_default();
            }
            AuditEvent::SqlRestore => {
                read.insert(field(e, "path"));
                databases.entry(field(e, "database")).or_default();
            }
            ev if ev.denied_capability().is_some() => {
                let mut detail = e.fields.clone();
                detail.remove("ts");
                denials.push(format!("{ev} {}", Value::Object(detail)));
            }
            _ => {}
        }
    }
    let status = mine()
        .find(|e| e.event == AuditEvent::StepEnd)
        .map(|e| field(e, "status"))
        .unwrap_or_else(|| crate::status::RunStatus::Interrupted.as_str().into());
    let mut unused = Vec::new();
    if !granted.net.is_empty() && hosts.is_empty() {
        unused.push("net: granted but no request was made".to_string());
    }
    if !granted.fs_write.is_empty() && written.is_empty() {
        unused.push("fs.write: granted but nothing was written".to_string());
    }
    if !granted.databases.is_empty() && databases.is_empty() {
        unused.push("databases: granted but not used".to_string());
    }
    if granted.secrets.len() > secrets.len() {
        unused.push(format!("secrets: {} granted, {} read", granted.secrets.len(), secrets.len()));
    }
    StepUsage {
        step: step.to_string(),
        plugin,
        status,
        granted,
        used: Used {
            files_read: read.into_iter().collect(),
            files_written: written.into_iter().collect(),
            hosts: hosts.into_iter().collect(),
            secrets_read: secrets.into_iter().collect(),
            programs: programs.into_iter().collect(),
            databases: databases.iter().map(|(db, n)| format!("{db} ({n} statements)")).collect(),
        },
        unused_grants: unused,
        denials,
    }
}
