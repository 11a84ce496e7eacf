//! The runner: takes a [`Plan`] and runs it, stage by stage, one sandbox
//! per step ([`crate::sandbox`]). Writes the run folder (`logs/`, `audit.jsonl`, `results.json`).

mod progress;
mod report_limits;
mod results;
mod rollback;
mod step;

pub use crate::outcome::{Failure, Metric, Status, StepOutcome};
pub use progress::Progress;
pub use step::{RunContext, run_step};

use crate::audit::{
    AuditLog, AuditTap, PluginLoaded, Record, RollbackBegun, RollbackEnded, RollbackInvalid, RunBegun, RunEnded,
};
use crate::capabilities::sql::{DbTarget, SqlRun, ToolSet};
use crate::pipeline::Plan;
use crate::redact::Redactor;
use crate::sandbox::Runtime;
use crate::status::RunStatus;
use anyhow::{Context, Result};
use results::ResultsFile;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// What a run needs from outside the plan: secret values and database
/// connections, resolved before anything starts.
#[derive(Default)]
pub struct RunInputs {
    pub secrets: BTreeMap<String, String>,
    pub databases: BTreeMap<String, DbTarget>,
    /// The version that last passed in this environment (`${PREVIOUS_VERSION}`).
    pub previous_version: String,
    /// Continue this run: its completed steps are kept, not run again.
    pub resume: Option<RunRecord>,
    /// Run no stage, only the rollback of what `resume` completed, for this reason.
    pub rollback_only: Option<String>,
    /// Sees every audit event (for streaming denials).
    pub audit_tap: Option<AuditTap>,
}

impl RunInputs {
    /// Masks every secret value and database credential this run resolved:
    /// the audit log, step logs and anything the CLI prints pass through it.
    pub fn redactor(&self) -> Redactor {
        let texts = self.secrets.values().cloned().chain(self.databases.values().flat_map(|d| d.secrets.clone()));
        Redactor::new(texts)
    }
}

/// `results.json`: the run as a whole.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    pub pipeline: String,
    pub environment: String,
    pub version: String,
    pub file: String,
    pub started: String,
    #[serde(default)]
    pub finished: Option<String>,
    /// `running`, `passed`, `failed`, `interrupted`, or `rolled-back` (undone
    /// by hand).
    pub status: RunStatus,
    pub steps: Vec<StepOutcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackRecord>,
    /// Why the run stopped early, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The audit chain's head and the change ledger's digests when the run
    /// ended (`deployhost verify`); absent while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<crate::chain::Seal>,
}

/// Why a run rolled back and what the rollback did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RollbackRecord {
    pub reason: String,
    /// Every blocking rollback step passed.
    pub ok: bool,
    pub steps: Vec<StepOutcome>,
}

impl RunRecord {
    pub fn passed(&self) -> bool {
        self.status == RunStatus::Passed
    }

    /// Undone by hand, completely.
    pub fn rolled_back(&self) -> bool {
        self.status == RunStatus::RolledBack
    }
}

pub fn runs_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("runs")
}

/// Where a run keeps its change ledger (see `capabilities/sql/ledger`).
pub fn changes_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("changes")
}

/// Sortable by time to the millisecond, unique enough for one machine:
/// `20261128T013045123Z-3fa2c1`.
pub fn new_run_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let now = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    let compact: String = now.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    format!("{compact}-{:06x}", h.finish() & 0xff_ffff)
}

/// Runs every stage of `plan`; `on_progress` sees stages and steps start
/// and each outcome as it lands, and stops the run by failing (the state
/// store cannot record it). The run also stops when its folder cannot be
/// written: a run that cannot be audited does not go on deploying.
pub async fn run(
    plan: &Plan,
    runtime: Arc<Runtime>,
    state_dir: &Path,
    run_id: &str,
    inputs: RunInputs,
    on_progress: &mut dyn FnMut(Progress<'_>) -> Result<()>,
) -> Result<RunRecord> {
    let run_dir = runs_dir(state_dir).join(run_id);
    let redactor = Arc::new(inputs.redactor());
    let RunInputs { secrets, databases, previous_version, resume, rollback_only, audit_tap } = inputs;
    let audit = Arc::new(
        AuditLog::create(&run_dir_made(&run_dir)?.join("audit.jsonl"), run_id, redactor.clone())
            .with_context(|| format!("cannot create the audit log in {}", run_dir.display()))?
            .with_tap(audit_tap),
    );
    let sql = sql_run(plan, databases, state_dir, &run_dir);
    let run = Arc::new(RunContext {
        run_id: run_id.to_string(),
        pipeline: plan.pipeline.clone(),
        environment: plan.environment.clone(),
        version: plan.version.clone(),
        run_dir: run_dir.clone(),
        state_dir: state_dir.to_path_buf(),
        dir: plan.dir.clone(),
        empty_root: run_dir.join("sandbox-root"),
        audit,
        redactor,
        secrets: Arc::new(secrets),
        sql,
        reason: Default::default(),
        previous_version,
        write_roots: Arc::new(write_roots(plan)),
    });
    let mut journal = Journal::begin(plan, &run, resume.as_ref(), &runtime)?;
    // Steps a resumed run completed before: kept as they were.
    let mut done_before: HashMap<String, StepOutcome> = resume
        .iter()
        .flat_map(|r| r.steps.iter())
        .filter(|o| matches!(o.status, Status::Passed | Status::Warning))
        .map(|o| (o.step.clone(), o.clone()))
        .collect();

    let mut stopped_by: Option<String> = None;
    let by_hand = rollback_only.is_some();
    let stages: &[crate::pipeline::PlannedStage] = match rollback_only {
        // Only the rollback: what completed stands as it is.
        Some(reason) => {
            let record = &mut journal.record;
            record.steps = resume.map(|r| r.steps).unwrap_or_default();
            let in_flight = rollback::in_flight(plan, &run_dir.join("audit.jsonl"), &record.steps);
            record.steps.extend(in_flight);
            // Recorded again in order, so the rollback's steps come after them.
            for outcome in &record.steps {
                on_progress(Progress::StepFinished(outcome))?;
            }
            stopped_by = Some(format!("rolling back: {reason}"));
            let _ = run.reason.set(reason);
            &[]
        }
        None => &plan.stages,
    };
    let work = async {
        let mut stages_run = StagesRun {
            plan,
            runtime: &runtime,
            run: &run,
            done_before: &mut done_before,
            stopped_by: &mut stopped_by,
            journal: &mut journal,
            on_progress,
        };
        for stage in stages {
            stages_run.stage(stage).await?;
        }
        if let Some(reason) = run.reason.get() {
            roll_back(plan, &runtime, &run, reason, stages_run.journal, stages_run.on_progress).await?;
        }
        anyhow::Ok(())
    };
    // SIGINT or SIGTERM stops the run where it is: the current step's
    // sandbox, host programs and database connections are dropped (open
    // transactions roll back) with `work`. Biased: once a signal has come,
    // it wins over a run that is still going.
    let signal = {
        let work = std::pin::pin!(work);
        tokio::select! {
            biased;
            signal = crate::signals::stopped() => Some(signal),
            done = work => done.map(|()| None)?,
        }
    };
    match signal {
        Some(signal) => journal.interrupted(format!("stopped by {signal}")),
        None => journal.end(&run, by_hand, stopped_by),
    }
}

/// The run's side of the database capability: its connections, the
/// host's tools, the backup ledger in the state folder, the run's change
/// ledger, and the environment's `rollback: lossless`.
fn sql_run(plan: &Plan, databases: BTreeMap<String, DbTarget>, state_dir: &Path, run_dir: &Path) -> SqlRun {
    SqlRun {
        targets: Arc::new(databases),
        tools: Arc::new(ToolSet::default()),
        ledger: Some(state_dir.join("backups.jsonl")),
        changes: Some(changes_dir(run_dir)),
        lossless: plan.environment_rules.as_ref().filter(|e| e.rollback.is_some()).map(|e| {
            Arc::new(crate::capabilities::sql::Lossless {
                environment: plan.environment.clone(),
                accepted: e.accept_lossy.clone(),
            })
        }),
    }
}

/// Every folder a step of the pipeline may write (canonical where it exists).
fn write_roots(plan: &Plan) -> Vec<PathBuf> {
    plan.steps()
        .flat_map(|s| s.grants.mounts.iter().filter(|m| m.writable))
        .map(|m| m.host.canonicalize().unwrap_or_else(|_| m.host.clone()))
        .collect()
}

/// Makes the run folder, its `logs/` and the sandboxes' empty root.
fn run_dir_made(run_dir: &Path) -> Result<&Path> {
    std::fs::create_dir_all(run_dir.join("logs"))
        .and_then(|()| std::fs::create_dir_all(run_dir.join("sandbox-root")))
        .with_context(|| format!("cannot create the run folder {}", run_dir.display()))?;
    Ok(run_dir)
}

/// The run's record as it goes: `results.json` rewritten after each step,
/// and the audit log's framing records.
struct Journal {
    results: ResultsFile,
    record: RunRecord,
    audit: Arc<AuditLog>,
    run_dir: PathBuf,
}

impl Journal {
    /// The record of a new (or resumed) run, written, with its `run.start`
    /// (or `run.resume`) and each plugin's load audited.
    fn begin(plan: &Plan, run: &RunContext, resume: Option<&RunRecord>, runtime: &Runtime) -> Result<Journal> {
        let started = resume.map_or_else(|| crate::audit::timestamp(SystemTime::now()), |r| r.started.clone());
        let record = RunRecord {
            run_id: run.run_id.clone(),
            pipeline: plan.pipeline.clone(),
            environment: plan.environment.clone(),
            version: plan.version.clone(),
            file: plan.file.display().to_string(),
            started,
            finished: None,
            status: RunStatus::Running,
            steps: Vec::new(),
            rollback: None,
            reason: None,
            seal: None,
        };
        let begun = RunBegun {
            run: run.run_id.clone(),
            pipeline: plan.pipeline.clone(),
            environment: plan.environment.clone(),
            version: plan.version.clone(),
            file: record.file.clone(),
        };
        let audit = run.audit.clone();
        audit.record(None, if resume.is_some() { Record::RunResume(begun) } else { Record::RunStart(begun) });
        let mut journal =
            Journal { results: ResultsFile::new(&run.run_dir), record, audit, run_dir: run.run_dir.clone() };
        journal.results.save(&mut journal.record)?;
        for load in runtime.loads() {
            let loaded = PluginLoaded {
                plugin: load.plugin,
                sha256: load.digest,
                how: load.load.describe(),
                ms: load.took.as_millis() as u64,
            };
            journal.audit.record(None, Record::PluginLoad(loaded));
        }
        Ok(journal)
    }

    /// Writes `results.json` as it stands; fails once anything of the run
    /// folder could not be written.
    fn save(&mut self) -> Result<()> {
        self.results.save(&mut self.record)?;
        check_written(&self.audit, &self.run_dir)
    }

    /// The run as it stood when a signal stopped it: `interrupted`.
    fn interrupted(mut self, reason: String) -> Result<RunRecord> {
        self.record.status = RunStatus::Interrupted;
        self.record.reason = Some(reason);
        self.record.seal = None;
        self.record.finished = Some(crate::audit::timestamp(SystemTime::now()));
        self.results.save(&mut self.record)?;
        Ok(self.record)
    }

    /// The run's status, from its steps and its rollback; `run.end` audited.
    fn end(mut self, run: &RunContext, by_hand: bool, stopped_by: Option<String>) -> Result<RunRecord> {
        let record = &mut self.record;
        let passed = run.reason.get().is_none() && record.steps.iter().all(|o| o.ok() || !o.blocking);
        let undone = by_hand && record.rollback.as_ref().is_some_and(|r| r.ok);
        record.status = if passed {
            RunStatus::Passed
        } else if undone {
            RunStatus::RolledBack
        } else {
            RunStatus::Failed
        };
        record.finished = Some(crate::audit::timestamp(SystemTime::now()));
        record.reason = stopped_by.clone();
        self.audit.record(None, Record::RunEnd(RunEnded { status: record.status, reason: stopped_by }));
        self.results.save(&mut self.record)?;
        seal(&self.audit, &self.run_dir, &mut self.record, &mut self.results)?;
        Ok(self.record)
    }
}

/// What running the stages shares.
struct StagesRun<'a> {
    plan: &'a Plan,
    runtime: &'a Arc<Runtime>,
    run: &'a Arc<RunContext>,
    /// Steps a resumed run completed before.
    done_before: &'a mut HashMap<String, StepOutcome>,
    /// Why the run stopped early, once it has: later steps are skipped.
    stopped_by: &'a mut Option<String>,
    journal: &'a mut Journal,
    on_progress: &'a mut dyn FnMut(Progress<'_>) -> Result<()>,
}

impl StagesRun<'_> {
    /// Runs one stage (its steps skipped once the run is stopped).
    async fn stage(&mut self, stage: &crate::pipeline::PlannedStage) -> Result<()> {
        let (stopped_by, journal, on_progress) = (&mut *self.stopped_by, &mut *self.journal, &mut *self.on_progress);
        let names = stage.steps.iter().map(|s| s.name.as_str()).collect();
        on_progress(Progress::Stage { name: &stage.name, parallel: stage.parallel, steps: names })?;
        if let Some(reason) = stopped_by.as_deref() {
            for step in &stage.steps {
                let skipped = skipped(step, reason);
                on_progress(Progress::StepFinished(&skipped))?;
                journal.record.steps.push(skipped);
            }
            return Ok(());
        }
        if stage.parallel {
            return self.parallel(stage).await;
        }
        for step in &stage.steps {
            let outcome = match (&stopped_by, self.done_before.remove(&step.name)) {
                (Some(reason), _) => skipped(step, reason),
                (None, Some(before)) => before,
                (None, None) => {
                    crate::signals::hold_if_stopped().await;
                    on_progress(step_started(step, false))?;
                    step::run_step(self.runtime, self.run, step).await
                }
            };
            // What a stopped step's programs left behind goes with it.
            crate::capabilities::exec::after_stop();
            note_failure(self.plan, self.run, &outcome, stopped_by);
            on_progress(Progress::StepFinished(&outcome))?;
            journal.record.steps.push(outcome);
            journal.save()?;
            crate::failpoint::after_step(journal.record.steps.len());
        }
        Ok(())
    }

    /// A parallel stage: its steps at once, recorded in the stage's order.
    async fn parallel(&mut self, stage: &crate::pipeline::PlannedStage) -> Result<()> {
        let (stopped_by, journal, on_progress) = (&mut *self.stopped_by, &mut *self.journal, &mut *self.on_progress);
        crate::signals::hold_if_stopped().await;
        let mut set = tokio::task::JoinSet::new();
        let mut done = Vec::new();
        for (i, step) in stage.steps.iter().enumerate() {
            if let Some(before) = self.done_before.remove(&step.name) {
                done.push((i, before));
                continue;
            }
            on_progress(step_started(step, false))?;
            let (runtime, run, step) = (self.runtime.clone(), self.run.clone(), step.clone());
            set.spawn(async move { (i, step::run_step(&runtime, &run, &step).await) });
        }
        while let Some(joined) = set.join_next().await {
            let (i, outcome) = joined.context("a step task failed")?;
            crate::capabilities::exec::after_stop();
            on_progress(Progress::StepFinished(&outcome))?;
            done.push((i, outcome));
        }
        done.sort_by_key(|(i, _)| *i);
        let before = journal.record.steps.len();
        for (_, outcome) in done {
            note_failure(self.plan, self.run, &outcome, stopped_by);
            journal.record.steps.push(outcome);
        }
        journal.save()?;
        (before + 1..=journal.record.steps.len()).for_each(crate::failpoint::after_step);
        Ok(())
    }
}

/// The rollback: the compensations of what completed (newest first), then
/// the pipeline's own rollback steps.
async fn roll_back(
    plan: &Plan,
    runtime: &Arc<Runtime>,
    run: &Arc<RunContext>,
    reason: &str,
    journal: &mut Journal,
    on_progress: &mut dyn FnMut(Progress<'_>) -> Result<()>,
) -> Result<()> {
    let audit = journal.audit.clone();
    audit.record(None, Record::RollbackStart(RollbackBegun { reason: reason.to_string() }));
    on_progress(Progress::RollbackStarted { reason })?;
    let mut rollback = RollbackRecord { reason: reason.to_string(), ok: true, steps: Vec::new() };
    let saga = rollback::compensations(plan, &journal.record.steps, &changes_dir(&run.run_dir));
    let own = plan.rollback.iter().flat_map(|r| r.steps.iter().cloned().map(Ok));
    for step in saga.into_iter().chain(own) {
        let outcome = match step {
            Ok(step) => {
                on_progress(step_started(&step, true))?;
                step::run_step(runtime, run, &step).await
            }
            Err(unrunnable) => {
                audit.record(None, Record::RollbackInvalid(RollbackInvalid { error: unrunnable.why.clone() }));
                unrunnable.outcome()
            }
        };
        rollback.ok &= outcome.ok() || !outcome.blocking;
        on_progress(Progress::RollbackStep(&outcome))?;
        rollback.steps.push(outcome);
        journal.record.rollback = Some(rollback.clone());
        journal.save()?;
    }
    audit.record(None, Record::RollbackEnd(RollbackEnded { ok: rollback.ok }));
    on_progress(Progress::RollbackFinished { ok: rollback.ok })?;
    journal.record.rollback = Some(rollback);
    Ok(())
}

/// Seals the ended run: the audit chain's head and the change ledger's
/// digests go into `results.json`. The state store keeps the same seal with
/// the digest of `results.json` ([`sealed_results_sha256`]).
fn seal(audit: &AuditLog, run_dir: &Path, record: &mut RunRecord, results: &mut ResultsFile) -> Result<()> {
    check_written(audit, run_dir)?;
    let Some(head) = audit.head() else { return Ok(()) };
    let changes = ledger_digests(&changes_dir(run_dir))
        .with_context(|| format!("cannot read the change ledger in {}", run_dir.display()))?;
    record.seal = Some(crate::chain::Seal { audit: head, changes, results: None });
    results.save(record)
}

/// sha256 of each file of the change ledger, by name.
pub fn ledger_digests(dir: &Path) -> std::io::Result<BTreeMap<String, String>> {
    let mut digests = BTreeMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(digests),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            let bytes = std::fs::read(entry.path())?;
            digests.insert(entry.file_name().to_string_lossy().into_owned(), crate::chain::sha256(&bytes));
        }
    }
    Ok(digests)
}

/// The sha256 of a run's `results.json` as it reads without its `seal`:
/// what the state store keeps, so an edit of the file shows.
pub fn sealed_results_sha256(run_dir: &Path) -> Result<String> {
    results::sealed_sha256(run_dir)
}

/// Fails once anything of the run folder (audit, a step log) could not be
/// written, typically a full disk.
fn check_written(audit: &AuditLog, run_dir: &Path) -> Result<()> {
    match audit.write_error() {
        Some(e) => anyhow::bail!("the run folder {} cannot be written ({e}); the run is stopped", run_dir.display()),
        None => Ok(()),
    }
}

/// The first failed blocking step stops the pipeline, and so does a
/// rollback trigger, which also records why the run rolls back.
fn note_failure(plan: &Plan, run: &RunContext, outcome: &StepOutcome, stopped_by: &mut Option<String>) {
    if stopped_by.is_some() {
        return;
    }
    if let Some(reason) = rollback::trigger(plan, outcome) {
        *stopped_by = Some(format!("rolling back: {reason}"));
        let _ = run.reason.set(reason);
    } else if outcome.blocking && !outcome.ok() {
        *stopped_by = Some(format!("blocking step `{}` failed", outcome.step));
    }
}

fn step_started(step: &crate::pipeline::PlannedStep, rollback: bool) -> Progress<'_> {
    tracing::debug!(step = %step.name, plugin = %step.plugin.label(), "step starting");
    Progress::StepStarted { stage: &step.stage, step: &step.name, plugin: step.plugin.label(), rollback }
}

fn skipped(step: &crate::pipeline::PlannedStep, reason: &str) -> StepOutcome {
    StepOutcome::not_run(step, Status::Skipped, format!("not run: {reason}"))
}

/// Reads the `results.json` of the run folder `run_dir`.
pub fn read_record(run_dir: &Path) -> Result<RunRecord> {
    results::read(run_dir)
}

/// Reads a finished or interrupted run's `results.json`.
pub fn load_record(state_dir: &Path, run_id: &str) -> Result<RunRecord> {
    let dir = runs_dir(state_dir).join(run_id);
    if !dir.join("results.json").exists() {
        anyhow::bail!("no run `{run_id}` ({})", dir.join("results.json").display());
    }
    results::read(&dir)
}
