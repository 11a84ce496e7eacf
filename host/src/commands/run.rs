use super::inputs;
use super::{ExitStatus, check_plugins, load_plan, refuse};
use crate::approval;
use crate::exit::Refusal;
use crate::output::{Output, OutputOptions};
use crate::pipeline::model::ApprovalMode;
use crate::pipeline::written::WrittenGrants;
use crate::pipeline::{ConfigErrors, Plan};
use crate::promotion::{self, Approvals, CheckError, Consent, Gate};
use crate::runner::{self, Progress, RunInputs};
use crate::sandbox::Runtime;
use crate::state::{NewRun, StateError, StateStore};
use crate::status::RunStatus;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `deployhost run`'s arguments.
#[derive(clap::Args)]
pub struct RunArgs {
    /// The pipeline file.
    file: PathBuf,
    /// Target environment (overrides the file's `environment:`).
    #[arg(long = "env")]
    environment: Option<String>,
    /// Version being deployed (overrides the file's `version:`).
    #[arg(long)]
    version: Option<String>,
    /// Validate, load every plugin and print the plan; run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Refuse pipelines whose steps may run host programs (`run:`,
    /// `grants.exec`): everything stays in the sandbox.
    #[arg(long)]
    sandbox_only: bool,
    /// Who approved this deploy, for environments with `approval: name`
    /// (a typed name, not verified; `signed` and `github` refuse it).
    #[arg(long, env = "DEPLOYHOST_APPROVED_BY")]
    approved_by: Option<String>,
    /// Accept grants wider than when this version passed in the required
    /// environment; NAME must be one of the target environment's approvers.
    #[arg(long, value_name = "NAME")]
    accept_grants: Option<String>,
    #[command(flatten)]
    output: OutputOptions,
}

/// `deployhost resume`'s arguments.
#[derive(clap::Args)]
pub struct ResumeArgs {
    run_id: String,
    #[command(flatten)]
    output: OutputOptions,
}

impl ResumeArgs {
    pub async fn run(self, ctx: &super::Context) -> Result<ExitStatus> {
        resume(&self.run_id, &ctx.state_dir, &Output::new(&self.output, ctx.quiet)).await
    }
}

/// `deployhost rollback`'s arguments.
#[derive(clap::Args)]
pub struct RollbackArgs {
    /// An interrupted, failed or passed run.
    #[arg(required_unless_present = "environment", conflicts_with = "environment")]
    run_id: Option<String>,
    #[arg(long = "env")]
    environment: Option<String>,
    /// The version to return to; it must have passed in the environment.
    #[arg(long, requires = "environment")]
    to: Option<String>,
    /// Only list the runs that would be undone.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    output: OutputOptions,
}

impl RollbackArgs {
    pub async fn run(self, ctx: &super::Context) -> Result<ExitStatus> {
        let out = Output::new(&self.output, ctx.quiet);
        match (self.run_id, self.environment) {
            (Some(run_id), _) => rollback(&run_id, &ctx.state_dir, &out).await,
            (None, Some(environment)) => {
                super::rollback::environment(&environment, self.to.as_deref(), self.dry_run, &ctx.state_dir, &out).await
            }
            (None, None) => anyhow::bail!("give a run id or --env ENV"),
        }
    }
}

/// `deployhost approve`'s arguments.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("how").required(true).args(["name", "key", "signature", "print_statement"])))]
pub struct ApproveArgs {
    run_id: String,
    /// `approval: name`: the approver's name, typed (not verified); must be listed in `approvers`.
    #[arg(long = "as")]
    name: Option<String>,
    /// `approval: signed`: sign the run's statement with this SSH private key (ssh-keygen -Y sign).
    #[arg(long, value_name = "KEY")]
    key: Option<PathBuf>,
    /// `approval: signed`: a signature of the run's statement made elsewhere (namespace deployhost-approval).
    #[arg(long, value_name = "FILE")]
    signature: Option<PathBuf>,
    /// `approval: signed`: print the statement a signed approval of this run signs.
    #[arg(long)]
    print_statement: bool,
}

impl ApproveArgs {
    pub fn run(self, ctx: &super::Context) -> Result<ExitStatus> {
        let with = match (self.name, self.key, self.signature) {
            (Some(name), ..) => ApproveWith::Name(name),
            (_, Some(key), _) => ApproveWith::Key(key),
            (_, _, Some(file)) => ApproveWith::Signature(file),
            _ if self.print_statement => ApproveWith::PrintStatement,
            _ => anyhow::bail!("give --key KEY, --signature FILE, --print-statement or --as NAME"),
        };
        approve(&self.run_id, with, &ctx.state_dir)
    }
}

/// `deployhost reject`'s arguments.
#[derive(clap::Args)]
pub struct RejectArgs {
    run_id: String,
    /// Who rejects; must be listed in the environment's `approvers`.
    #[arg(long = "as")]
    name: String,
    #[arg(long)]
    reason: Option<String>,
}

impl RejectArgs {
    pub fn run(self, ctx: &super::Context) -> Result<ExitStatus> {
        reject(&self.run_id, &self.name, self.reason.as_deref(), &ctx.state_dir)
    }
}

/// Who acts: see [`approval::starter`] (GitHub's actor, `DEPLOYHOST_ACTOR`,
/// git's `user.email`, `$USER`).
pub(super) fn who() -> String {
    approval::starter(Path::new("."))
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
        let host_steps = plan.steps().filter(|s| !s.grants.exec.is_empty()).map(|s| {
            loaded.error_at(
                &format!("{}.grants.exec", s.key),
                format!("--sandbox-only: step `{}` may run host programs {:?}", s.name, s.grants.exec),
            )
        });
        let superusers = plan.databases.iter().filter(|(_, d)| d.superuser).map(|(name, _)| {
            loaded.error_at(
                &format!("databases.{name}.superuser"),
                format!("--sandbox-only: database `{name}` may be reached as a superuser, which no grant binds"),
            )
        });
        let host_steps: Vec<_> = host_steps.chain(superusers).collect();
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
    let grants = plan.written_grants();
    Ok(Prepared { plan, runtime, inputs, grants })
}

/// What the state store records about a run as it starts.
struct Starting<'a> {
    id: &'a str,
    who: String,
    file: String,
    grants: &'a BTreeMap<String, WrittenGrants>,
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
            grants: self.grants,
            grants_accepted_by: self.approvals.grants_accepted_by.as_deref(),
        }
    }
}

impl RunArgs {
    pub async fn run(self, ctx: &super::Context) -> Result<ExitStatus> {
        let RunArgs { file, environment, version, dry_run, sandbox_only, approved_by, accept_grants, output } = self;
        let (file, state_dir) = (file.as_path(), ctx.state_dir.as_path());
        let out = &Output::new(&output, ctx.quiet);
        // Naming the starter may start a git process: it runs beside the
        // preparation (engine, plugins) instead of after it.
        let starter = (!dry_run).then(|| {
            let dir = crate::pipeline::pipeline_dir(file);
            std::thread::spawn(move || approval::starter(&dir))
        });
        let Prepared { plan, runtime, inputs, grants } =
            prepare(file, environment, version, sandbox_only, state_dir).await?;
        if dry_run {
            out.plan(&plan);
            return Ok(ExitStatus::Success);
        }

        let store = StateStore::open(state_dir)?;
        let run_id = runner::new_run_id();
        let gate = promotion::gate(&plan, &grants, &store, approved_by.as_deref(), accept_grants.as_deref());
        let gate = gate.await;
        let who = starter.and_then(|s| s.join().ok()).unwrap_or_else(|| "unknown".into());
        let start = |approvals| Starting {
            id: &run_id,
            who: who.clone(),
            file: plan.file.display().to_string(),
            grants: &grants,
            approvals,
        };
        let (approvals, given) = match gate {
            Ok(Gate::Proceed(approvals, given)) => (approvals, given),
            Ok(Gate::Await(message)) => {
                let waiting = Approvals { approved_by: None, grants_accepted_by: accept_grants.clone() };
                store.wait_for_approval(&start(&waiting).record(&plan))?;
                eprintln!("awaiting approval: {message}");
                let signed = plan.environment_rules.as_ref().map(approval::mode) == Some(ApprovalMode::Signed);
                let how = approve_with(signed);
                eprintln!(
                    "run {run_id} waits at the gate: `deployhost approve {run_id} {how}`, then `deployhost resume {run_id}`"
                );
                out.not_started(&ExitStatus::AwaitingApproval, Some(&run_id), &message);
                return Ok(ExitStatus::AwaitingApproval);
            }
            Err(CheckError::Refused(refusal)) => return Ok(refuse(Some(out), None, &refusal)),
            Err(CheckError::State(e)) => return Err(e.into()),
        };
        let timer = plan.environment_rules.as_ref().and_then(|r| r.wait_timer).filter(|t| !t.0.is_zero());
        if let (Some(given), Some(timer)) = (&given, timer) {
            // Approved, but the wait timer runs from the gate: the run waits
            // there, approval recorded, until `resume`.
            store.wait_for_approval(&start(&approvals).record(&plan))?;
            store.record_approval(&run_id, given.mode, &given.approver, None, given.detail.as_deref())?;
            let message = format!(
                "`{}` has a wait timer of {timer}: the run proceeds no sooner than that after reaching the gate",
                plan.environment
            );
            eprintln!("waiting: {message}");
            eprintln!("run {run_id} waits at the gate: `deployhost resume {run_id}` after {timer}");
            out.not_started(&ExitStatus::AwaitingApproval, Some(&run_id), &message);
            return Ok(ExitStatus::AwaitingApproval);
        }
        if let Err(refusal) = begin(&store, &start(&approvals).record(&plan))? {
            return Ok(refuse(Some(out), None, &refusal));
        }
        if let Some(given) = given {
            store.record_approval(&run_id, given.mode, &given.approver, None, given.detail.as_deref())?;
        }
        execute(plan, runtime, inputs, &store, state_dir, &run_id, out).await
    }
}

/// Continues a run that was interrupted or waited for approval: its
/// completed steps stand, the rest run.
pub async fn resume(run_id: &str, state_dir: &Path, out: &Output) -> Result<ExitStatus> {
    let store = StateStore::open(state_dir)?;
    let row = resumable(&store, run_id)?;
    let mut signed_for = None;
    if row.status == RunStatus::AwaitingApproval {
        let waiting = match waiting_at_gate(&store, run_id)? {
            Ok(waiting) => waiting,
            Err(refusal) => return Ok(refuse(Some(out), Some(run_id), &refusal)),
        };
        match past_the_gate(&store, &waiting, out)? {
            Ok(digests) => signed_for = digests,
            Err(status) => return Ok(status),
        }
    }
    // A run that waited at the gate has no record yet.
    let previous = runner::load_record(state_dir, run_id).ok();
    carry_on_signed(&store, &row, state_dir, previous, None, signed_for, out).await
}

/// May a run waiting at the gate go on? Its approval is there (and, when
/// signed, verifies now, against the plugins about to run), and the wait
/// timer has run out.
/// With a signed approval, the steps it was verified for.
fn past_the_gate(
    store: &StateStore,
    waiting: &Waiting,
    out: &Output,
) -> Result<std::result::Result<Option<Vec<String>>, ExitStatus>> {
    let Waiting { row, plan } = waiting;
    let run_id = row.id.as_str();
    let Some(rules) = &plan.environment_rules else { return Ok(Ok(None)) };
    let mode = approval::mode(rules);
    let record = store.approval(run_id)?;
    if row.approved_by.is_none() {
        let how = approve_with(mode == ApprovalMode::Signed);
        let refusal =
            Refusal::Waiting(format!("run {run_id} has no approval yet: `deployhost approve {run_id} {how}`"));
        return Ok(Err(refuse(Some(out), Some(run_id), &refusal)));
    }
    let mut signed_for = None;
    if rules.require_approval && mode != ApprovalMode::Name {
        let given = record.as_ref().map_or(ApprovalMode::Name, |r| r.mode);
        let checked = if given != mode {
            Err(Refusal::Refused(format!(
                "`{}` takes {} approvals; run {run_id} has a {} approval",
                plan.environment,
                mode.as_str(),
                given.as_str()
            )))
        } else if mode == ApprovalMode::Signed {
            let signature = record.as_ref().and_then(|r| r.signature.clone()).unwrap_or_default();
            let steps = approval::plan_steps(plan);
            let verified = verify_signed(plan, row, &signature, &steps).map(|_| ());
            signed_for = Some(steps);
            verified
        } else {
            Ok(())
        };
        if let Err(e) = checked {
            return Ok(Err(refuse(Some(out), Some(run_id), &e)));
        }
    }
    if let Some(left) = approval::wait_left(rules, &row.started) {
        let message = format!(
            "the wait timer of `{}` ({}) has {} left: resume after that",
            plan.environment,
            rules.wait_timer.map(|t| t.to_string()).unwrap_or_default(),
            approval::seconds(left)
        );
        return Ok(Err(refuse(Some(out), Some(run_id), &Refusal::Waiting(message))));
    }
    Ok(Ok(signed_for))
}

/// Verifies a signed approval of `row` against the environment's
/// allowed signers, for the steps `steps` ([`approval::plan_steps`]): the
/// principal who signed (a listed approver, not the run's starter unless
/// allowed) and the key.
fn verify_signed(
    plan: &Plan,
    row: &crate::state::RunRow,
    signature: &str,
    steps: &[String],
) -> std::result::Result<(String, Option<String>), Refusal> {
    let Some(rules) = &plan.environment_rules else { return Err(Refusal::Refused("no approval rules".into())) };
    let Some(file) = &rules.allowed_signers else {
        return Err(Refusal::Invalid(format!("`{}` has no allowed_signers", plan.environment)));
    };
    let statement = approval::statement_for(row, steps);
    let verified = approval::ssh::verify(&plan.dir.join(file), &statement, signature).map_err(|e| {
        let Ok(then) = approval::recorded_steps(row) else { return e };
        let changed: Vec<&str> =
            steps.iter().filter(|s| !then.contains(s)).filter_map(|s| s.split(' ').next()).collect();
        match e {
            Refusal::Refused(m) if !changed.is_empty() => Refusal::Refused(format!(
                "{m}; the plan changed since the run reached the gate (plugins, parameters, commands or grants of \
                 step {}), so the approval does not cover it",
                changed.join(", ")
            )),
            other => other,
        }
    })?;
    let Some(principal) =
        verified.principals.iter().find(|p| rules.approvers.iter().any(|a| approval::same_person(a, p)))
    else {
        return Err(Refusal::Refused(format!(
            "the signature is by {}, who is not a listed approver of `{}` ({})",
            verified.principals.join(", "),
            plan.environment,
            rules.approvers.join(", ")
        )));
    };
    if !rules.allow_self_approval && approval::same_person(principal, &row.who) {
        return Err(Refusal::Refused(format!(
            "{principal} started run {} and may not approve it (set `allow_self_approval: true` on `{}` to allow it)",
            row.id, plan.environment
        )));
    }
    Ok((principal.clone(), verified.fingerprint))
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
    carry_on_signed(store, row, state_dir, previous, rollback_only, None, out).await
}

/// [`carry_on`]; with `signed_for`, only if the steps planned now are the
/// ones a signed approval was just verified for (the file could have
/// changed in between).
async fn carry_on_signed(
    store: &StateStore,
    row: &crate::state::RunRow,
    state_dir: &Path,
    previous: Option<runner::RunRecord>,
    rollback_only: Option<String>,
    signed_for: Option<Vec<String>>,
    out: &Output,
) -> Result<ExitStatus> {
    let Prepared { plan, runtime, mut inputs, .. } =
        prepare(Path::new(&row.file), Some(row.environment.clone()), Some(row.version.clone()), false, state_dir)
            .await?;
    if let Some(signed) = signed_for
        && signed != approval::plan_steps(&plan)
    {
        let e = Refusal::Refused(format!(
            "the plan changed while run {} was resuming; the signed approval does not cover it",
            row.id
        ));
        return Ok(refuse(Some(out), Some(&row.id), &e));
    }
    // Resume runs the plan recorded when the run began, in every approval
    // mode: a file edited since (a step given `exec: [sh]`) is refused.
    let changes = if rollback_only.is_none() { approval::plan_changes(row, &plan) } else { Vec::new() };
    if !changes.is_empty() {
        let e = Refusal::Refused(format!(
            "the pipeline file changed since run {} began, and resume runs only the plan it recorded: {}; start a \
             new run for the new plan",
            row.id,
            changes.join("; ")
        ));
        return Ok(refuse(Some(out), Some(&row.id), &e));
    }
    inputs.resume = previous;
    inputs.rollback_only = rollback_only;
    if let Err(e) = store.take_over(&row.id, &row.environment) {
        return Ok(refuse(Some(out), Some(&row.id), &Refusal::Refused(e.to_string())));
    }
    execute(plan, runtime, inputs, store, state_dir, &row.id, out).await
}

/// A run waiting at the gate, and its pipeline as the file says now.
struct Waiting {
    row: crate::state::RunRow,
    plan: Plan,
}

/// The run, if it waits at the gate; else why not, when it is not waiting
/// or its approval window has ended (the run is then recorded `expired`).
fn waiting_at_gate(store: &StateStore, run_id: &str) -> Result<std::result::Result<Waiting, Refusal>> {
    let Some((row, _)) = store.run(run_id)? else { anyhow::bail!("no run `{run_id}`") };
    if row.status != RunStatus::AwaitingApproval {
        return Ok(Err(Refusal::Refused(format!("run {run_id} is {}, not awaiting approval", row.status))));
    }
    let (_, plan) = load_plan(Path::new(&row.file), Some(row.environment.clone()), Some(row.version.clone()))?;
    if let Some(why) = promotion::approval_expired(&plan, &row.started) {
        store.finish(run_id, RunStatus::Expired, Some(&why))?;
        return Ok(Err(Refusal::Refused(format!("run {run_id} expired: {why}"))));
    }
    Ok(Ok(Waiting { row, plan }))
}

/// Records a rejection: the run ends `rejected` and can never resume.
pub fn reject(run_id: &str, name: &str, reason: Option<&str>, state_dir: &Path) -> Result<ExitStatus> {
    let store = StateStore::open(state_dir)?;
    let Waiting { row, plan } = match waiting_at_gate(&store, run_id)? {
        Ok(waiting) => waiting,
        Err(refusal) => return Ok(refuse(None, Some(run_id), &refusal)),
    };
    if !promotion::is_approver(&plan, name) {
        let refusal = Refusal::Refused(format!("`{name}` may not decide on deploys to `{}`", row.environment));
        return Ok(refuse(None, Some(run_id), &refusal));
    }
    let why = format!("rejected by {name}{}", reason.map(|r| format!(": {r}")).unwrap_or_default());
    store.finish(run_id, RunStatus::Rejected, Some(&why))?;
    println!("run {run_id} {why}");
    Ok(ExitStatus::Success)
}

/// How `deployhost approve` gives its approval.
pub enum ApproveWith {
    /// `--as NAME`: a typed name (`approval: name`).
    Name(String),
    /// `--key KEY`: sign the run's statement with this SSH key.
    Key(std::path::PathBuf),
    /// `--signature FILE`: a signature of the statement made elsewhere.
    Signature(std::path::PathBuf),
    /// `--print-statement`: print what a signed approval signs.
    PrintStatement,
}

/// Records an approval for a run waiting at the gate.
pub fn approve(run_id: &str, with: ApproveWith, state_dir: &Path) -> Result<ExitStatus> {
    let store = StateStore::open(state_dir)?;
    let Waiting { row, plan } = match waiting_at_gate(&store, run_id)? {
        Ok(waiting) => waiting,
        Err(refusal) => return Ok(refuse(None, Some(run_id), &refusal)),
    };
    let mode = plan.environment_rules.as_ref().map_or(ApprovalMode::Name, approval::mode);
    let refused = |m: String| Ok(refuse(None, Some(run_id), &Refusal::Refused(m)));
    let env = &row.environment;
    let (name, signed) = match (mode, with) {
        (ApprovalMode::Name, ApproveWith::Name(name)) => (name, None),
        (ApprovalMode::Name, _) => return refused(format!("`{env}` takes typed names (`approval: name`): --as NAME")),
        (ApprovalMode::Github, _) => {
            return refused(format!(
                "`{env}` takes the approval GitHub records for the workflow run (`approval: github`): approve the \
                 deployment in GitHub"
            ));
        }
        (ApprovalMode::Signed, ApproveWith::Name(_)) => {
            return refused(format!(
                "`{env}` takes signed approvals (`approval: signed`): `deployhost approve {run_id} --key ~/.ssh/id_ed25519`"
            ));
        }
        (ApprovalMode::Signed, ApproveWith::PrintStatement) => {
            print!("{}", approval::statement_for(&row, &approval::recorded_steps(&row)?));
            return Ok(ExitStatus::Success);
        }
        (ApprovalMode::Signed, how) => {
            let signature = match how {
                ApproveWith::Key(key) => {
                    match approval::ssh::sign(&key, &approval::statement_for(&row, &approval::recorded_steps(&row)?)) {
                        Ok(s) => s,
                        Err(e) => return Ok(refuse(None, Some(run_id), &e)),
                    }
                }
                ApproveWith::Signature(file) => crate::files::read_regular_string(&file, 64 << 10)
                    .with_context(|| format!("cannot read the signature {}", file.display()))?,
                _ => unreachable!("handled above"),
            };
            // The signature covers the plugins recorded with the run.
            match verify_signed(&plan, &row, &signature, &approval::recorded_steps(&row)?) {
                Ok((principal, key)) => (principal, Some((signature, key))),
                Err(e) => return Ok(refuse(None, Some(run_id), &e)),
            }
        }
    };
    let name = name.as_str();
    let verified = signed.as_ref().map(|_| name);
    let consent = Consent {
        approved_by: verified.is_none().then_some(name),
        accept_grants: row.grants_accepted_by.as_deref(),
        verified,
    };
    match promotion::check(&plan, &plan.written_grants(), &store, consent) {
        Ok(approvals) => {
            let approver = approvals.approved_by.unwrap_or_else(|| name.to_string());
            match &signed {
                Some((signature, key)) => {
                    store.record_approval(run_id, ApprovalMode::Signed, &approver, Some(signature), key.as_deref())?;
                    println!("run {run_id} approved: signed by {approver} (key {})", key.as_deref().unwrap_or("?"));
                    println!("`deployhost resume {run_id}` starts it");
                }
                None => {
                    store.record_approval(run_id, ApprovalMode::Name, &approver, None, None)?;
                    println!("run {run_id} approved by {approver}: `deployhost resume {run_id}` starts it");
                }
            }
            Ok(ExitStatus::Success)
        }
        Err(CheckError::State(e)) => Err(e.into()),
        // A run waiting for approval is not approved by a name that is not enough.
        Err(CheckError::Refused(Refusal::Waiting(m) | Refusal::Refused(m) | Refusal::Invalid(m))) => {
            Ok(refuse(None, Some(run_id), &Refusal::Refused(m)))
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

/// What `deployhost approve RUN` takes for this environment's mode.
fn approve_with(signed: bool) -> &'static str {
    if signed { "--key ~/.ssh/id_ed25519" } else { "--as NAME" }
}

/// Starts the run in the state store; a held lock refuses it (exit 4).
/// Records the run as started, holding its environment's lock; another
/// run holding it is a refusal.
fn begin(store: &StateStore, run: &NewRun) -> Result<std::result::Result<(), Refusal>> {
    match store.begin(run) {
        Ok(()) => Ok(Ok(())),
        Err(e @ StateError::Locked { .. }) => Ok(Err(Refusal::Refused(e.to_string()))),
        Err(e) => Err(e.into()),
    }
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
    // The process ends with this command. Unmapping the instance pool and
    // unregistering each plugin's code on the way out cost more than a
    // short run's steps (7% of 200 parallel probes), and the kernel frees
    // all of it at exit anyway.
    std::mem::forget(runtime.clone());
    let result = runner::run(&plan, runtime, state_dir, run_id, inputs, &mut on_progress).await;
    let record = match result {
        // Stopped by a signal: recorded as interrupted, the environment's lock released.
        Ok(record) if record.status == RunStatus::Interrupted => {
            let reason = record.reason.clone().unwrap_or_default();
            store.finish(run_id, RunStatus::Interrupted, Some(&reason))?;
            out.stopped(state_dir, run_id, Some(&record), &ExitStatus::Interrupted, &reason);
            eprintln!("run {run_id} {reason}; the environment's lock is released");
            return Ok(ExitStatus::Interrupted);
        }
        Ok(record) => record,
        Err(e) => {
            if let Err(also) = store.finish(run_id, RunStatus::Failed, Some(&format!("{e:#}"))) {
                return Err(anyhow::anyhow!(
                    "{e:#}; the run could not be recorded as failed either ({also}): `deployhost status {run_id}` \
                     shows it interrupted, with the steps recorded before"
                ));
            }
            let record = runner::load_record(state_dir, run_id).ok();
            out.stopped(state_dir, run_id, record.as_ref(), &ExitStatus::Failed, &format!("{e:#}"));
            return Err(e);
        }
    };
    let reason = record.rollback.as_ref().map(|r| format!("rolled back: {}", r.reason));
    let seal = match record.seal.clone() {
        Some(mut seal) => {
            seal.results = Some(runner::sealed_results_sha256(&runner::runs_dir(state_dir).join(run_id))?);
            Some(seal)
        }
        None => None,
    };
    store.finish_sealed(run_id, record.status, reason.as_deref(), seal.as_ref())?;
    if crate::github::active() {
        let approved_by = store.run(run_id)?.and_then(|(r, _)| r.approved_by);
        let approval = approval::evidence(store.approval(run_id)?.as_ref(), approved_by.as_deref());
        crate::github::append_summary(&super::report::markdown(&record, approved_by.as_deref(), approval.as_deref()));
    }
    let status = if record.passed() || record.rolled_back() { ExitStatus::Success } else { ExitStatus::Failed };
    out.finished(&record, &status);
    Ok(status)
}
