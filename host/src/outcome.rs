//! What a step ended as, in the shape written to `results.json`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Passed,
    Warning,
    Failed,
    Skipped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Warning => "warning",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
        }
    }
}

/// Why a failed step failed, for callers that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Failure {
    /// The plugin reported failure.
    Reported,
    /// The plugin returned an error (bad parameters, could not work).
    Error,
    Timeout,
    Memory,
    /// The plugin trapped or panicked.
    Crash,
    /// The host could not start the step.
    Setup,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Metric {
    pub name: String,
    pub value: f64,
    pub unit: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepOutcome {
    pub stage: String,
    pub step: String,
    pub plugin: String,
    pub sha256: String,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    pub summary: String,
    #[serde(default)]
    pub outputs: BTreeMap<String, String>,
    #[serde(default)]
    pub metrics: Vec<Metric>,
    pub blocking: bool,
    pub started: String,
    pub ms: u64,
    /// Relative to the run folder.
    pub log: String,
    #[serde(skip)]
    pub log_tail: Vec<String>,
}

impl StepOutcome {
    /// The outcome of a step that never ran to a report: skipped, lost to a
    /// crash, or a compensation that could not start.
    pub fn not_run(step: &crate::pipeline::PlannedStep, status: Status, summary: String) -> StepOutcome {
        StepOutcome {
            stage: step.stage.clone(),
            step: step.name.clone(),
            plugin: step.plugin.label(),
            sha256: step.plugin.digest.clone(),
            status,
            failure: None,
            summary,
            outputs: Default::default(),
            metrics: Vec::new(),
            blocking: step.blocking,
            started: String::new(),
            ms: 0,
            log: String::new(),
            log_tail: Vec::new(),
        }
    }

    pub fn ok(&self) -> bool {
        matches!(self.status, Status::Passed | Status::Warning | Status::Skipped)
    }
}
