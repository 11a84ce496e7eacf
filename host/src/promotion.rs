//! Promotion rules, checked against the state store before a run starts:
//! `requires` (the same version passed in the environment before this one)
//! and approvals (a listed approver said go).

use crate::pipeline::Plan;
use crate::state::{StateError, StateStore};

/// Why a run may not start.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    Promotion(String),
    #[error("{0}")]
    AwaitingApproval(String),
    #[error(transparent)]
    State(#[from] StateError),
}

fn normalize(name: &str) -> &str {
    name.trim().trim_start_matches('@')
}

/// Checks the target environment's rules; returns the recorded approver.
pub fn check(plan: &Plan, store: &StateStore, approved_by: Option<&str>) -> Result<Option<String>, Refusal> {
    let Some(rules) = &plan.environment_rules else { return Ok(None) };
    if let Some(required) = &rules.requires
        && store.last_passed(&plan.pipeline, required, Some(&plan.version))?.is_none()
    {
        let last = store.last_passed(&plan.pipeline, required, None)?;
        let what = match last {
            Some(r) => format!("the last version that passed there is {} (run {})", r.version, r.id),
            None => "nothing has passed there yet".to_string(),
        };
        return Err(Refusal::Promotion(format!(
            "`{}` requires version {} to have passed in `{required}` first; {what}",
            plan.environment, plan.version
        )));
    }
    if !rules.require_approval {
        return Ok(approved_by.map(str::to_string));
    }
    let approvers: Vec<&str> = rules.approvers.iter().map(|a| normalize(a)).collect();
    match approved_by {
        Some(who) if approvers.contains(&normalize(who)) => Ok(Some(normalize(who).to_string())),
        Some(who) => Err(Refusal::Promotion(format!(
            "`{who}` may not approve deploys to `{}` (approvers: {})",
            plan.environment,
            rules.approvers.join(", ")
        ))),
        None => Err(Refusal::AwaitingApproval(format!(
            "`{}` requires approval by one of {}: run with --approved-by NAME (in CI, wire it to the environment's required reviewers)",
            plan.environment,
            rules.approvers.join(", ")
        ))),
    }
}
