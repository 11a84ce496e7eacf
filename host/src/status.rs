//! A run's status: the one definition of the names `results.json`, the
//! state store, the JSON events and the reports use.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    Running,
    Passed,
    Failed,
    /// Stopped from outside (a signal, a lost process, `unlock`).
    Interrupted,
    /// Undone by hand, completely.
    RolledBack,
    /// Waiting at an approval gate.
    AwaitingApproval,
    /// Refused at its approval gate.
    Rejected,
    /// Its approval never came in time.
    Expired,
}

impl RunStatus {
    pub const ALL: [RunStatus; 8] = [
        RunStatus::Running,
        RunStatus::Passed,
        RunStatus::Failed,
        RunStatus::Interrupted,
        RunStatus::RolledBack,
        RunStatus::AwaitingApproval,
        RunStatus::Rejected,
        RunStatus::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Passed => "passed",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::RolledBack => "rolled-back",
            RunStatus::AwaitingApproval => "awaiting-approval",
            RunStatus::Rejected => "rejected",
            RunStatus::Expired => "expired",
        }
    }

    /// The status stored as `name`, if it is one.
    pub fn parse(name: &str) -> Option<RunStatus> {
        RunStatus::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_names_are_the_stored_names() {
        for status in RunStatus::ALL {
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
            assert_eq!(serde_json::from_str::<RunStatus>(&json).unwrap(), status);
            assert_eq!(RunStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(RunStatus::RolledBack.as_str(), "rolled-back");
        assert_eq!(RunStatus::AwaitingApproval.as_str(), "awaiting-approval");
        assert_eq!(RunStatus::parse("refused"), None);
    }
}
