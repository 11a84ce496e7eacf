//! Promotion rules, checked against the state store before a run starts:
//! `requires` (the same version passed in the environment before this one)
//! and approvals (a listed approver said go).

use crate::approval::same_person;
use crate::exit::Refusal;
use crate::pipeline::Plan;
use crate::pipeline::model::ApprovalMode;
use crate::pipeline::written::{WrittenGrants, widening};
use crate::state::{StateError, StateStore};
use std::collections::BTreeMap;

/// Why a run may not start: the rules refused it (or it waits at the
/// gate), or the state store could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    State(#[from] StateError),
}

fn refused(message: String) -> CheckError {
    CheckError::Refused(Refusal::Refused(message))
}

fn waiting(message: String) -> CheckError {
    CheckError::Refused(Refusal::Waiting(message))
}

/// A name as recorded: `@alice` is written `alice`.
fn normalize(name: &str) -> &str {
    name.trim().trim_start_matches('@')
}

/// Is `who` one of `approvers`? One rule everywhere: [`same_person`].
fn listed(approvers: &[String], who: &str) -> bool {
    approvers.iter().any(|a| same_person(a, who))
}

/// Who said go, as recorded with the run.
#[derive(Debug, Default)]
pub struct Approvals {
    pub approved_by: Option<String>,
    /// Accepted grants wider than where this version passed before.
    pub grants_accepted_by: Option<String>,
}

/// What the operator said on the command line.
#[derive(Debug, Default, Clone, Copy)]
pub struct Consent<'a> {
    pub approved_by: Option<&'a str>,
    pub accept_grants: Option<&'a str>,
    /// An approver already identified by the environment's `approval:`
    /// mode (a verified signature's principal, GitHub's reviewer).
    pub verified: Option<&'a str>,
}

/// Checks the target environment's rules against the state store.
pub fn check(
    plan: &Plan,
    grants: &BTreeMap<String, WrittenGrants>,
    store: &StateStore,
    consent: Consent,
) -> Result<Approvals, CheckError> {
    let mut approvals =
        Approvals { approved_by: consent.approved_by.map(|a| normalize(a).to_string()), ..Default::default() };
    let Some(rules) = &plan.environment_rules else { return Ok(approvals) };
    if let Some(required) = &rules.requires {
        let Some(passed) = store.last_passed(&plan.pipeline, required, Some(&plan.version))? else {
            let what = match store.last_passed(&plan.pipeline, required, None)? {
                Some(r) => format!("the last version that passed there is {} (run {})", r.version, r.id),
                None => "nothing has passed there yet".to_string(),
            };
            return Err(refused(format!(
                "`{}` requires version {} to have passed in `{required}` first; {what}",
                plan.environment, plan.version
            )));
        };
        let before = passed.written_grants().map_err(|e| refused(format!("{e:#}")))?;
        let wider = widening(&before, grants);
        if !wider.is_empty() {
            match consent.accept_grants {
                Some(who) if rules.approvers.is_empty() || listed(&rules.approvers, who) => {
                    approvals.grants_accepted_by = Some(normalize(who).to_string());
                }
                _ => {
                    return Err(refused(format!(
                        "the pipeline grants more than when version {} passed in `{required}` (run {}):\n  {}\n\
                         a listed approver of `{}` can accept this with --accept-grants NAME",
                        plan.version,
                        passed.id,
                        wider.join("\n  "),
                        plan.environment
                    )));
                }
            }
        }
    }
    if !rules.require_approval {
        return Ok(approvals);
    }
    let mode = crate::approval::mode(rules);
    if mode != ApprovalMode::Name {
        return match (consent.approved_by, consent.verified) {
            (Some(typed), _) => Err(refused(format!(
                "`{}` takes {} approvals, not a typed name (--approved-by / DEPLOYHOST_APPROVED_BY `{typed}`)",
                plan.environment,
                mode.as_str()
            ))),
            (None, Some(who)) => {
                approvals.approved_by = Some(normalize(who).to_string());
                Ok(approvals)
            }
            (None, None) if mode == ApprovalMode::Signed => Err(waiting(format!(
                "`{}` requires an approval signed by one of {} (`deployhost approve RUN_ID --key ~/.ssh/id_ed25519`)",
                plan.environment,
                rules.approvers.join(", ")
            ))),
            (None, None) => Err(refused(format!(
                "`{}` takes the approval GitHub recorded for this workflow run, and there is none",
                plan.environment
            ))),
        };
    }
    match consent.approved_by {
        Some(who) if listed(&rules.approvers, who) => Ok(approvals),
        Some(who) => Err(refused(format!(
            "`{who}` may not approve deploys to `{}` (approvers: {})",
            plan.environment,
            rules.approvers.join(", ")
        ))),
        None => Err(waiting(format!(
            "`{}` requires approval by one of {}: run with --approved-by NAME (in CI, wire it to the environment's required reviewers)",
            plan.environment,
            rules.approvers.join(", ")
        ))),
    }
}

/// Has a run waiting at the gate since `waiting_since` (RFC 3339) waited
/// longer than its environment allows? Returns why, when it has.
pub fn approval_expired(plan: &Plan, waiting_since: &str) -> Option<String> {
    let rules = plan.environment_rules.as_ref()?;
    let since = humantime::parse_rfc3339(waiting_since).ok()?;
    let waited = std::time::SystemTime::now().duration_since(since).unwrap_or_default();
    let limit = rules.approval_timeout();
    (waited > limit).then(|| {
        format!(
            "the approval window of `{}` ({}) ended: the run waited {} at the gate; start a new run",
            plan.environment,
            humantime::format_duration(limit),
            humantime::format_duration(std::time::Duration::from_secs(waited.as_secs()))
        )
    })
}

/// May `who` decide on deploys to the plan's environment?
pub fn is_approver(plan: &Plan, who: &str) -> bool {
    plan.environment_rules.as_ref().is_some_and(|r| listed(&r.approvers, who))
}

/// What the environment's rules say about a new run.
pub enum Gate {
    /// Go; with the approval to record with the run, when the rules need one.
    Proceed(Approvals, Option<Given>),
    /// Wait at the gate for `deployhost approve`, then `resume`.
    Await(String),
}

/// An approval given as the run starts, recorded with it.
pub struct Given {
    pub mode: ApprovalMode,
    pub approver: String,
    /// GitHub's review comment.
    pub detail: Option<String>,
}

/// The gate a new run passes: the environment's `branches:`, GitHub's
/// review (`approval: github`), then [`check`] with the names given on
/// the command line.
pub async fn gate(
    plan: &Plan,
    grants: &BTreeMap<String, WrittenGrants>,
    store: &StateStore,
    approved_by: Option<&str>,
    accept_grants: Option<&str>,
) -> Result<Gate, CheckError> {
    crate::approval::check_branch(plan)?;
    let rules = plan.environment_rules.as_ref().filter(|r| r.require_approval);
    let mode = rules.map(crate::approval::mode);
    let mut github = None;
    if let (Some(rules), Some(ApprovalMode::Github), None) = (rules, mode, approved_by) {
        use crate::approval::github_api;
        let api = github_api::Api::from_env()?;
        github =
            Some(github_api::approval(&api, &plan.environment, &rules.approvers, rules.allow_self_approval).await?);
    }
    let consent = Consent { approved_by, accept_grants, verified: github.as_ref().map(|g| g.login.as_str()) };
    match check(plan, grants, store, consent) {
        Ok(approvals) if rules.is_some() => {
            let (mode, detail) = match (github, mode) {
                (Some(g), _) => (ApprovalMode::Github, Some(g.comment)),
                (None, mode) => (mode.unwrap_or(ApprovalMode::Name), None),
            };
            let approver = approvals.approved_by.clone().unwrap_or_default();
            Ok(Gate::Proceed(approvals, Some(Given { mode, approver, detail })))
        }
        Ok(approvals) => Ok(Gate::Proceed(approvals, None)),
        Err(CheckError::Refused(Refusal::Waiting(message))) => Ok(Gate::Await(message)),
        Err(e) => Err(e),
    }
}
