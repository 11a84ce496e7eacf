//! Granted versus used, per step, from a run's audit log: what
//! `deployhost audit --run` prints, its `--json` gives, and the HTML
//! report's capability table shows. One typed row per step; field names
//! are the JSON keys.

use crate::audit::{Event, Record};
use crate::capabilities;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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

/// What the step's audit records show it used, per capability (its
/// `used_key`: `files_read`, `hosts`, `databases` as `name (N statements)`, …).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Used(pub BTreeMap<String, Vec<String>>);

/// One capability of a row: its name, what was granted and what was used.
pub struct CapabilityUsage<'a> {
    pub name: &'static str,
    pub granted: &'a [String],
    pub used: &'a [String],
}

impl StepUsage {
    /// Per capability, in the order they are shown.
    pub fn capabilities(&self) -> Vec<CapabilityUsage<'_>> {
        capabilities::ALL
            .iter()
            .map(|c| CapabilityUsage {
                name: c.about().name,
                granted: self.granted.grants.get(c.about().grant_key).map_or(&[], Vec::as_slice),
                used: self.used.0.get(c.about().used_key).map_or(&[], Vec::as_slice),
            })
            .collect()
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
    let mut used = Used::default();
    let mut unused = Vec::new();
    for c in capabilities::ALL {
        let mut uses: BTreeMap<String, u64> = BTreeMap::new();
        for (what, n) in mine().filter_map(|r| c.used(r)) {
            *uses.entry(what).or_default() += n;
        }
        let shown = c.show_used(uses);
        let given = granted.grants.get(c.about().grant_key).map_or(&[][..], Vec::as_slice);
        unused.extend(c.unused(given, &shown));
        used.0.insert(c.about().used_key.to_string(), shown);
    }
    let mut status = crate::status::RunStatus::Interrupted.as_str().to_string();
    let mut denials = Vec::new();
    for record in mine() {
        if let Record::StepEnd(end) = record {
            status = end.status.as_str().to_string();
        } else if let Some(denial) = record.denial() {
            let detail = serde_json::to_string(denial).unwrap_or_default();
            denials.push(format!("{} {detail}", record.kind()));
        }
    }
    StepUsage { step: step.to_string(), plugin, status, granted, used, unused_grants: unused, denials }
}
