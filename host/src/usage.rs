//! Granted versus used, per step, from a run's audit log: what
//! `deployhost audit --run` prints, its `--json` gives, and the HTML
//! report's capability table shows. One typed row per step; field names
//! are the JSON keys.

use crate::audit::{Event, Record};
use serde::{Deserialize, Serialize};
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

pub use crate::audit::Granted;

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
    let mine = || events.iter().filter(move |e| e.step.as_deref() == Some(step)).map(|e| &e.record);
    let granted = mine().find_map(|r| if let Record::Grant(g) = r { Some(g.clone()) } else { None });
    let plugin = granted.as_ref().map(|g| g.plugin.clone());
    let granted = granted.unwrap_or_default();
    let mut read = BTreeSet::new();
    let mut written = BTreeSet::new();
    let mut hosts = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    let mut databases: BTreeMap<String, u64> = Default::default();
    let mut programs = BTreeSet::new();
    let mut denials = Vec::new();
    let mut status = crate::status::RunStatus::Interrupted.as_str().to_string();
    for record in mine() {
        match record {
            Record::Fs(used) if used.error.is_none() => {
                if used.wrote() { &mut written } else { &mut read }.insert(used.path.clone());
            }
            Record::NetRequest(r) => {
                hosts.insert(format!("{}:{}", r.host, r.port));
            }
            Record::SecretRead(s) => {
                secrets.insert(s.name.clone());
            }
            Record::Sql(s) => *databases.entry(s.database.clone()).or_default() += 1,
            Record::Exec(p) => {
                programs.insert(format!("{} (exit {})", p.program, p.exit));
            }
            Record::SqlDump(d) => {
                written.insert(d.path.clone());
                databases.entry(d.database.clone()).or_default();
            }
            Record::SqlRestore(r) => {
                read.insert(r.path.clone());
                databases.entry(r.database.clone()).or_default();
            }
            Record::StepEnd(end) => status = end.status.as_str().to_string(),
            other => {
                if let Some(denial) = other.denial() {
                    let detail = serde_json::to_string(denial).unwrap_or_default();
                    denials.push(format!("{} {detail}", other.kind()));
                }
            }
        }
    }
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
