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

/// Why a command stops before doing its work: the message people read and
/// the exit status it ends with. Every refusal of every command is one.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// Rules, a lock, a signature or a changed plan stood in the way (exit 4).
    #[error("{0}")]
    Refused(String),
    /// The run waits at the gate, for an approval or a wait timer (exit 3).
    #[error("{0}")]
    Waiting(String),
    /// Input that cannot be used: a key, a token, an allowed-signers file (exit 2).
    #[error("{0}")]
    Invalid(String),
}

impl Refusal {
    pub fn exit(&self) -> ExitStatus {
        match self {
            Refusal::Refused(_) => ExitStatus::Refused,
            Refusal::Waiting(_) => ExitStatus::AwaitingApproval,
            Refusal::Invalid(_) => ExitStatus::InvalidInput,
        }
    }

    /// How stderr says it: `refused: …`, `waiting: …`.
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::Waiting(_) => "waiting",
            Refusal::Refused(_) | Refusal::Invalid(_) => "refused",
        }
    }
}
