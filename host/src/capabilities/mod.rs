//! One module per capability. Each owns its grant check, its audit records
//! and its part of the linker; the runner only assembles them per step.

pub mod env;
pub mod exec;
pub mod fs;
pub mod hostfs;
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
    pub exec: exec::ExecGrant,
    pub fs: fs::FsTracker,
    pub audited_logs: u32,
}

/// A value declared in the pipeline as coming from an environment variable
/// or a file (relative to the pipeline's folder); exactly one is set, which
/// validation has checked. The error names the source, never a value.
pub fn read_declared(
    from_env: Option<&str>,
    from_file: Option<&str>,
    base: &std::path::Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<Result<String, String>> {
    match (from_env, from_file) {
        (Some(var), None) => Some(env(var).ok_or_else(|| format!("environment variable {var} is not set"))),
        (None, Some(file)) => Some(
            crate::files::read_regular_string(&base.join(file), crate::files::MAX_SECRET)
                .map(|v| v.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| format!("cannot read {file}: {e}")),
        ),
        _ => None,
    }
}
