//! One module per capability. Each owns its grant check, its audit records
//! and its part of the linker; the runner only assembles them per step.

pub mod env;
pub mod fs;
pub mod limits;
pub mod log;
pub mod net;
pub mod secrets;
pub mod sql;

use crate::audit::AuditLog;
use std::sync::Arc;

/// What the host functions of one step consult.
pub struct StepCaps {
    pub step: Arc<str>,
    pub audit: Arc<AuditLog>,
    pub log: Arc<log::StepLog>,
    pub secrets: secrets::SecretGrant,
    pub sql: sql::SqlGrant,
    pub fs: fs::FsTracker,
    pub audited_logs: u32,
}
