use super::inputs;
use super::{ExitStatus, check_plugins, load_plan};
use crate::output::Output;
use crate::pipeline::written::{WrittenGrants, with_plugins, written_grants};
use crate::pipeline::{ConfigErrors, Plan};
use crate::promotion::{self, Approvals, Consent, Refusal};
use crate::runner::{self, Progress, RunInputs};
use crate::sandbox::Runtime;
use crate::state::{NewRun, StateError, StateStore};
use crate::status::RunStatus;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

pub struct RunFlags {
    pub dry_run: bool,
    pub sandbox_only: bool,
    pub approved_by: Option<String>,
    pub accept_grants: Option<String>,
}

/// Who starts a run: CI's actor, else the local user.
pub(super) fn who() -> String {
    ["GITHUB_ACTOR", "USER", "LOGNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "unknown".into())
}

/// A loaded, checked plan with everything needed to run it.
struct Prepared {
    plan: Plan,
    runtime: Arc<Runtime>,
    inputs: RunInputs,
    /// Each step's grants as written, for promotion checks and the record.
    grants: BTreeMap<String, WrittenGrants>,
}

/// Load, validate, compile and check every plugin, resolve secrets and
/// databases: everything that can fail before anything runs.
async fn prepare(
    file: &Path,
    environment: Option<String>,
    version: Option<String>,
    sandbox_only: bool,
    state_dir: &Path,
) -> Result<Prepared> {
    let (loaded, plan) = load_plan(file, environment, version)?;
    if sandbox_only {
        let host_steps: Vec<_> = plan
            .steps()
            .filter(|s| !s.grants.exec.is_empty())
            .map(|s| {
                loaded.error_at(
                    &format!("{}.grants.exec", s.key),
                    format!("--sandbox-only: step `{}` may run host programs {:?}", s.name, s.grants.exec),
                )
            })
            .collect();
        if !host_steps.is_empty() {
            return Err(ConfigErrors(host_steps).into());
        }
    }
    let runtime = Arc::new(super::runtime_for(state_dir, &plan)?);
    check_plugins(&runtime, &loaded, &plan).await?;
    let env = |name: &str| std::env::var(name).ok();
    let located = |errors: Vec<inputs::Unresolved>| {
        ConfigErrors(errors.into_iter().map(|u| loaded.value_error_at(&u.key, u.error.to_string())).collect())
    };
    let inputs = RunInputs {
        secrets: inputs::secrets(&plan.secrets, &plan.granted_secrets(), &plan.dir, &env).map_err(located)?,
        databases: inputs::databases(&plan.databases, &plan.granted_databases(), &plan.dir, &env).map_err(located)?,
        previous_version: String::new(),
        resume: None,
        rollback_only: None,
        audit_tap: None,
    };
    let grants = with_plugins(written_grants(&loaded.raw)?, &plan);
    Ok(Prepared { plan, runtime, inputs, grants })
}

/// What the state store records about a run as it starts.
struct Starting<'a> {
    id: &'a str,
    who: String,
    file: String,
    grants: String,
    approvals: &'a Approvals,
}

impl Starting<'_> {
    fn record<'b>(&'b self, plan: &'b Plan) -> NewRun<'b> {
        NewRun {
            id: self.id,
            pipeline: &plan.pipeline,
            environment: &plan.environment,
            version: &plan.version,
            who: &self.who,
            approved_by: self.approvals.approved_by.as_deref(),
            file: &self.file,
            grants: &self.grants,
            grants_accepted_by: self.approvals.grants_accepted_by.as_deref(),
        }
    }
}

pub async fn run(
    file: &Path,
    environment: Option<String>,
    version: Option<String>,
    flags: RunFlags,
    state_dir: &Path,
    out: &Output,
) -> Result<ExitStatus> {
    let Prepared { plan, runtime, inputs, grants } =
        prepare(file, environment, version, flags.sandbox_only, state_dir).await?;
    if flags.dry_run {
        out.plan(&plan);
        return Ok(ExitStatus::Success);
    }

    let store = StateStore::open(state_dir)?;
    let run_id = runner::new_run_id();
    let consent = Consent { approved_by: flags.approved_by.as_deref(), accept_grants: flags.accept_grants.as_deref() };
    let start = |approvals| Starting {
        id: &run_id,
        who: who(),
        file: plan.file.display().to_string(),
        grants: serde_json::to_string(&grants).unwrap_or_default(),
        approvals,
    };
    let approvals = match promotion::check(&plan, &grants, &store, consent) {
        Ok(a) => a,
        Err(Refusal::AwaitingApproval(message)) => {
            let waiting = Approvals { approved_by: None, grants_accepted_by: flags.accept_grants.clone() };
            store.wait_for_approval(&start(&waiting).record(&plan))?;
            eprintln!("awaiting approval: {message}");
            eprintln!(
                "run {run_id} waits at the gate: `deployhost approve {run_id} --as NAME`, then `deployhost resume {run_id}`"
            );
            out.not_started(&ExitStatus::AwaitingApproval, Some(&run_id), &message);
            return Ok(ExitStatus::AwaitingApproval);
        }
        Err(Refusal::Promotion(message)) => {
            eprintln!("refused: {message}");
            out.not_started(&ExitStatus::Refused, None, &message);
            return Ok(ExitStatus::Refused);
        }
        Err(Refusal::State(e)) => return Err(e.into()),
    };
    match store.begin(&start(&approvals).record(&plan)) {
        Ok(()) => {}
        Err(e @ StateError::Locked { .. }) => {
            eprintln!("refused: {e}");
            out.not_started(&ExitStatus::Refused, None, &e.to_string());
            return Ok(ExitStatus::Refused);
        }
        Err(e) => return Err(e.into()),
    }
    execute(plan, runtime, inputs, &store, state_dir, &run_id, out).await
}

/// Continues a run that was interrupted or waited for approval: its
/// completed steps stand, the rest run.
pub async fn resume(run_id: &str, state_dir: &Path, out: &Output) -> Result<ExitStatus> {
    let store = StateStore::open(state_dir)?;
    let row = resumable(&store, run_id)?;
    if row.status == RunStatus::AwaitingApproval
        && let Err(status) = waiting_at_gate(&store, run_id)?
    {
        return Ok(status);
    }
    if row.status == RunStatus::AwaitingApproval && row.approved_by.is_none() {
        eprintln!("refused: run {run_id} has no approval yet: `deployhost approve {run_id} --as NAME`");
        out.not_started(&ExitStatus::AwaitingApproval, Some(run_id), "no approval yet");
        return Ok(ExitStatus::AwaitingApproval);
    }
    // A run that waited at the gate has no record yet.
    let previous = runner::load_record(state_dir, run_id).ok();
    carry_on(&store, &row, state_dir, previous, None, out).await
}

/// Compensates what an interrupted run completed (restores the databases
/// it migrated), then runs the pipeline's rollback steps.
pub async fn rollback(run_id: &str, state_dir: &Path, out: &Output) -> Result<ExitStatus> {
    let store = StateStore::open(state_dir)?;
    let row = resumable(&store, run_id)?;
    let previous = runner::load_record(state_dir, run_id)?;
    let reason = format!("manual rollback of run {run_id} ({})", row.status);
    carry_on(&store, &row, state_dir, Some(previous), Some(reason), out).await
}

/// Runs a recorded run again from its pipeline file, in this process:
/// what `previous` completed stands; with `rollback_only`, only the rollback.
pub(super) async fn carry_on(
    store: &StateStore,
    row: &crate::state::RunRow,
    state_dir: &Path,
    previous: Option<runner::RunRecord>,
    rollback_only: Option<String>,
    out: &Output,
) -> Result<ExitStatus> {
    let Prepared { plan, runtime, mut inputs, .. } =
        prepare(Path::new(&row.file), Some(row.environment.clone()), Some(row.version.clone()), false, state_dir)
            .await?;
    inputs.resume = previous;
    inputs.rollback_only = rollback_only;
    if let Err(e) = store.take_over(&row.id, &row.environment) {
        eprintln!("refused: {e}");
        out.not_started(&ExitStatus::Refused, Some(&row.id), &e.to_string());
        return Ok(ExitStatus::Refused);
    }
    execute(plan, runtime, inputs, store, state_dir, &row.id, out).await
}

/// A run waiting at the gate, and its pipeline as the file says now.
struct Waiting {
    row: crate::state::RunRow,
    loaded: crate::pipeline::Loaded,
    plan: Plan,
}

/// The run, if it waits at the gate; else the exit status, when it is not
/// waiting or its approval window has ended (the run is then recorded
/// `expired`).
fn waiting_at_gate(store: &StateStore, run_id: &str) -> Result<std::result::Result<Waiting, ExitStatus>> {
    let Some((row, _)) = store.run(run_id)? else { anyhow::bail!("no run `{run_id}`") };
    if row.status != RunStatus::AwaitingApproval {
        eprintln!("refused: run {run_id} is {}, not awaiting approval", row.status);
        return Ok(Err(ExitStatus::Refused));
    }
    let (loaded, plan) = load_plan(Path::new(&row.file), Some(row.environment.clone()), Some(row.version.clone()))?;
    if let Some(why) = promotion::approval_expired(&plan, &row.started) {
        store.finish(run_id, RunStatus::Expired, Some(&why))?;
        eprintln!("refused: run {run_id} expired: {why}");
        return Ok(Err(ExitStatus::Refused));
    }
    Ok(Ok(Waiting { row, loaded, plan }))
}

/// Records a rejection: the run ends `rejected` and can never resume.
pub fn reject(run_id: &str, name: &str, reason: Option<&str>, state_dir: &Path) -> Result<ExitStatus> {
    let store = StateStore::open(state_dir)?;
    let Waiting { row, plan, .. } = match waiting_at_gate(&store, run_id)? {
        Ok(waiting) => waiting,
        Err(status) => return Ok(status),
    };
    if !promotion::is_approver(&plan, name) {
        eprintln!("refused: `{name}` may not decide on deploys to `{}`", row.environment);
        return Ok(ExitStatus::Refused);
    }
    let why = format!("rejected by {name}{}", reason.map(|r| format!(": {r}")).unwrap_or_default());
    store.finish(run_id, RunStatus::Rejected, Some(&why))?;
    println!("run {run_id} {why}");
    Ok(ExitStatus::Success)
}

/// Records an approval for a run waiting at the gate.
pub fn approve(run_id: &str, name: &str, state_dir: &Path) -> Result<ExitStatus> {
    let store = StateStore::open(state_dir)?;
    let Waiting { row, loaded, plan } = match waiting_at_gate(&store, run_id)? {
        Ok(waiting) => waiting,
        Err(status) => return Ok(status),
    };
    let consent = Consent { approved_by: Some(name), accept_grants: row.grants_accepted_by.as_deref() };
    match promotion::check(&plan, &with_plugins(written_grants(&loaded.raw)?, &plan), &store, consent) {
        Ok(approvals) => {
            let approver = approvals.approved_by.unwrap_or_else(|| name.to_string());
            store.approve(run_id, &approver)?;
            println!("run {run_id} approved by {approver}: `deployhost resume {run_id}` starts it");
            Ok(ExitStatus::Success)
        }
        Err(Refusal::State(e)) => Err(e.into()),
        Err(Refusal::Promotion(m) | Refusal::AwaitingApproval(m)) => {
            eprintln!("refused: {m}");
            Ok(ExitStatus::Refused)
        }
    }
}

/// A run that may be resumed or rolled back: waiting, or dead.
fn resumable(store: &StateStore, run_id: &str) -> Result<crate::state::RunRow> {
    let Some((row, _)) = store.run(run_id)? else { anyhow::bail!("no run `{run_id}`") };
    let dead = row.process_gone();
    if !(dead || matches!(row.status, RunStatus::Interrupted | RunStatus::AwaitingApproval)) {
        anyhow::bail!("run {run_id} is {} (pid {}); only interrupted or waiting runs continue", row.status, row.pid);
    }
    Ok(row)
}

/// Runs a plan under an already recorded run id and lock, with progress
/// lines, SIGINT/SIGTERM handling, and the end recorded in the state store.
async fn execute(
    plan: Plan,
    runtime: Arc<Runtime>,
    mut inputs: RunInputs,
    store: &StateStore,
    state_dir: &Path,
    run_id: &str,
    out: &Output,
) -> Result<ExitStatus> {
    inputs.previous_version =
        store.last_passed(&plan.pipeline, &plan.environment, None)?.map(|r| r.version).unwrap_or_default();
    out.started(&plan, run_id, &runner::runs_dir(state_dir).join(run_id), &inputs);
    inputs.audit_tap = out.audit_tap();
    let mut seq = 0;
    let mut on_progress = |progress: Progress<'_>| {
        if let Progress::StepFinished(outcome) | Progress::RollbackStep(outcome) = &progress {
            store
                .record_step(run_id, seq, outcome)
                .with_context(|| format!("cannot record step `{}`", outcome.step))?;
            seq += 1;
        }
        out.progress(&progress);
        Ok(())
    };
    let running = runner::run(&plan, runtime, state_dir, run_id, inputs, &mut on_progress);
    // SIGINT or SIGTERM stops the run where it is: the current step's
    // sandbox, host programs and database connections are dropped (open
    // transactions roll back), the run is recorded as interrupted and the
    // environment's lock released.
    // Biased: once a signal has come, it wins over a run that is still going.
    let result = tokio::select! {
        biased;
        signal = crate::signals::stopped() => {
            let reason = format!("stopped by {signal}");
            runner::mark_interrupted(state_dir, run_id, &reason)?;
            store.finish(run_id, RunStatus::Interrupted, Some(&reason))?;
            out.stopped(state_dir, run_id, &ExitStatus::Interrupted, &reason);
            eprintln!("run {run_id} {reason}; the environment's lock is released");
            return Ok(ExitStatus::Interrupted);
        }
        result = running => result,
    };
    let record = match result {
        Ok(record) => record,
        Err(e) => {
            if let Err(also) = store.finish(run_id, RunStatus::Failed, Some(&format!("{e:#}"))) {
                return Err(anyhow::anyhow!(
                    "{e:#}; the run could not be recorded as failed either ({also}): `deployhost status {run_id}` \
                     shows it interrupted, with the steps recorded before"
                ));
            }
            out.stopped(state_dir, run_id, &ExitStatus::Failed, &format!("{e:#}"));
            return Err(e);
        }
    };
    let reason = record.rollback.as_ref().map(|r| format!("rolled back: {}", r.reason));
    store.finish(run_id, record.status, reason.as_deref())?;
    if crate::github::active() {
        let approved_by = store.run(run_id)?.and_then(|(r, _)| r.approved_by);
        crate::github::append_summary(&super::report::markdown(&record, approved_by.as_deref()));
    }
    let status = if record.passed() || record.rolled_back() { ExitStatus::Success } else { ExitStatus::Failed };
    out.finished(&record, &status);
    Ok(status)
}
