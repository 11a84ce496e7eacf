//! How a command ended, and the process's exit code for it: a leaf that
//! commands and outputs share.

pub enum ExitStatus {
    Success,
    /// A blocking step failed.
    Failed,
    InvalidInput,
    AwaitingApproval,
    /// A promotion rule or another run's lock stood in the way.
    Refused,
    /// Stopped by SIGINT or SIGTERM.
    Interrupted,
}

impl ExitStatus {
    /// The process's exit code (README, *Exit codes*).
    pub fn code(&self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Failed => 1,
            ExitStatus::InvalidInput => 2,
            ExitStatus::AwaitingApproval => 3,
            ExitStatus::Refused => 4,
            ExitStatus::Interrupted => 130,
        }
    }
}
